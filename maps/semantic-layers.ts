/**
 * nuPlan's SemanticMapLayer names for the polygon layers a roadmap can draw, and the GeoPackage
 * tables behind them (NuPlanMap's `_semantic_vector_layer_map`).
 */
export const POLYGON_LAYERS = [
  'LANE',
  'LANE_CONNECTOR',
  'ROADBLOCK',
  'ROADBLOCK_CONNECTOR',
  'INTERSECTION',
  'STOP_LINE',
  'CROSSWALK',
  'WALKWAYS',
  'CARPARK_AREA',
] as const;

export type PolygonLayerName = (typeof POLYGON_LAYERS)[number];

/** The sources of a semantic layer's objects: the table whose geometry is tested against the query square, and the table drawn. */
export interface SemanticLayerSource {
  /** Table whose geometry selects objects (intersects the query square). */
  selectTable: string;
  /** Table holding the drawn polygon; equal to selectTable except for lane connectors. */
  drawTable: string;
  /** Column of drawTable that contains the selecting feature's id, when the tables differ. */
  drawJoinColumn?: string;
  /** Column of baseline_paths that contains this layer's feature id (lanes and lane connectors only). */
  baselineJoinColumn?: string;
}

export const SEMANTIC_LAYER_SOURCES: Record<PolygonLayerName, SemanticLayerSource> = {
  LANE: { selectTable: 'lanes_polygons', drawTable: 'lanes_polygons', baselineJoinColumn: 'lane_fid' },
  LANE_CONNECTOR: {
    selectTable: 'lane_connectors',
    drawTable: 'gen_lane_connectors_scaled_width_polygons',
    drawJoinColumn: 'lane_connector_fid',
    baselineJoinColumn: 'lane_connector_fid',
  },
  ROADBLOCK: { selectTable: 'lane_groups_polygons', drawTable: 'lane_groups_polygons' },
  ROADBLOCK_CONNECTOR: { selectTable: 'lane_group_connectors', drawTable: 'lane_group_connectors' },
  INTERSECTION: { selectTable: 'intersections', drawTable: 'intersections' },
  STOP_LINE: { selectTable: 'stop_polygons', drawTable: 'stop_polygons' },
  CROSSWALK: { selectTable: 'crosswalks', drawTable: 'crosswalks' },
  WALKWAYS: { selectTable: 'walkways', drawTable: 'walkways' },
  CARPARK_AREA: { selectTable: 'carpark_areas', drawTable: 'carpark_areas' },
};

/** Baseline paths table: one line per lane (lane_fid) and per lane connector (lane_connector_fid). */
export const BASELINE_TABLE = 'baseline_paths';

/** Every table the rasterizer reads, with its geometry kind. */
export const MAP_TABLES: Record<string, 'polygon' | 'line'> = {
  lanes_polygons: 'polygon',
  lane_connectors: 'line',
  gen_lane_connectors_scaled_width_polygons: 'polygon',
  lane_groups_polygons: 'polygon',
  lane_group_connectors: 'polygon',
  intersections: 'polygon',
  stop_polygons: 'polygon',
  crosswalks: 'polygon',
  walkways: 'polygon',
  carpark_areas: 'polygon',
  baseline_paths: 'line',
};

/**
 * Tables without which a map is rejected at load: the baseline-path channel of every raster draws
 * the baseline paths of the LANE and LANE_CONNECTOR objects, which these tables define. A missing
 * table of any other layer only fails the requests that draw that layer.
 */
export const REQUIRED_TABLES: readonly string[] = ['lanes_polygons', 'lane_connectors', 'gen_lane_connectors_scaled_width_polygons', BASELINE_TABLE];

/** Integer columns kept per table for the joins above. */
export const JOIN_COLUMNS: Record<string, string[]> = {
  lanes_polygons: ['lane_fid'],
  gen_lane_connectors_scaled_width_polygons: ['lane_connector_fid'],
  baseline_paths: ['lane_fid', 'lane_connector_fid'],
};

/**
 * Checks a layer name against nuPlan's polygon layers.
 * @returns the name typed as a polygon layer, or null when it is not one
 */
export function asPolygonLayer(name: string): PolygonLayerName | null {
  return (POLYGON_LAYERS as readonly string[]).includes(name) ? (name as PolygonLayerName) : null;
}
