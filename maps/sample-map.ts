/**
 * Generator of synthetic maps in nuPlan's GeoPackage schema. Each map is a jittered grid town
 * with two lanes in each direction per road and a signalised intersection at every grid node.
 * The intersections have straight, left and right turn lane connectors, crosswalks and stop
 * polygons, and the blocks have sidewalks and car parks. Traffic drives on the right.
 *
 * The town is built in a projected CRS [m] and written in EPSG:4326 with x = longitude and
 * y = latitude, the axis order that GeoPackage stores.
 */
import { mkdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';

import gdal from 'gdal-async';
import { createRandom } from './seeded-random.js';

export interface SampleMapOptions {
  /** Grid blocks along x and y; 3x3 (default) is the small sample, larger gives city-scale maps. */
  blocksX?: number;
  blocksY?: number;
  /** Block edge [m] (default 120). */
  blockSize?: number;
  /** Seed of the deterministic jitter (default 1). */
  seed?: number;
  /** UTM zone CRS for meta.projectedCoordSystem, e.g. 'epsg:32611' (default), and the origin of the grid in it [m]. */
  projectedCrs?: string;
  originX?: number;
  originY?: number;
}

export interface SampleMapSummary {
  /** Absolute path of the written GeoPackage. */
  path: string;
  /** Feature count per layer, `meta` included. */
  layerCounts: Record<string, number>;
}

/** Geometry in the projected CRS [m]; coordinates are flat x, y pairs and rings are not closed. */
export type SampleGeometry =
  | { type: 'LineString'; coords: Float64Array }
  | { type: 'Polygon'; rings: Float64Array[] };

export type SampleFieldValue = number | string | null;

/** One feature of a generated layer; `fid` counts from 1 in each layer. */
export interface SampleFeature {
  fid: number;
  geometry: SampleGeometry | null;
  fields: Record<string, SampleFieldValue>;
}

type FieldKind = 'integer' | 'real' | 'string';

interface LayerSchema {
  name: string;
  geometry: 'Polygon' | 'LineString' | null;
  fields: ReadonlyArray<readonly [string, FieldKind]>;
}

/** Layers of nuPlan's map GeoPackage that this generator writes, with their geometry types and fields, in write order. */
const LAYER_SCHEMAS = [
  {
    name: 'lanes_polygons',
    geometry: 'Polygon',
    fields: [
      ['lane_group_fid', 'integer'],
      ['lane_fid', 'integer'],
      ['lane_index', 'integer'],
      ['speed_limit_mps', 'real'],
      ['left_boundary_fid', 'integer'],
      ['right_boundary_fid', 'integer'],
    ],
  },
  {
    name: 'lane_groups_polygons',
    geometry: 'Polygon',
    fields: [
      ['from_edge_fid', 'integer'],
      ['to_edge_fid', 'integer'],
    ],
  },
  {
    name: 'lane_connectors',
    geometry: 'LineString',
    fields: [
      ['exit_lane_group_fid', 'integer'],
      ['exit_lane_fid', 'integer'],
      ['entry_lane_group_fid', 'integer'],
      ['entry_lane_fid', 'integer'],
      ['lane_group_connector_fid', 'integer'],
      ['intersection_fid', 'integer'],
      ['turn_type_fid', 'integer'],
    ],
  },
  {
    name: 'lane_group_connectors',
    geometry: 'Polygon',
    fields: [
      ['intersection_fid', 'integer'],
      ['from_lane_group_fid', 'integer'],
      ['to_lane_group_fid', 'integer'],
    ],
  },
  {
    name: 'baseline_paths',
    geometry: 'LineString',
    fields: [
      ['path_type_fid', 'integer'],
      ['lane_fid', 'integer'],
      ['lane_connector_fid', 'integer'],
    ],
  },
  { name: 'boundaries', geometry: 'LineString', fields: [['boundary_type_fid', 'integer']] },
  {
    name: 'intersections',
    geometry: 'Polygon',
    fields: [
      ['intersection_type_fid', 'integer'],
      ['is_mini', 'integer'],
    ],
  },
  {
    name: 'stop_polygons',
    geometry: 'Polygon',
    fields: [
      ['stop_polygon_type_fid', 'integer'],
      ['lane_group_fid', 'integer'],
      ['lane_fids', 'string'],
    ],
  },
  {
    name: 'crosswalks',
    geometry: 'Polygon',
    fields: [
      ['intersection_fids', 'string'],
      ['is_marked', 'integer'],
    ],
  },
  {
    name: 'gen_lane_connectors_scaled_width_polygons',
    geometry: 'Polygon',
    fields: [
      ['baseline_path_fid', 'integer'],
      ['lane_connector_fid', 'integer'],
    ],
  },
  { name: 'walkways', geometry: 'Polygon', fields: [] },
  { name: 'carpark_areas', geometry: 'Polygon', fields: [['heading', 'real']] },
  {
    name: 'meta',
    geometry: null,
    fields: [
      ['key', 'string'],
      ['value', 'string'],
    ],
  },
] as const satisfies readonly LayerSchema[];

export type SampleLayerName = (typeof LAYER_SCHEMAS)[number]['name'];

/** A generated town: features per layer in the projected CRS, before the transformation to EPSG:4326. */
export interface SampleTown {
  /** Projected CRS of the geometry, lower case, e.g. 'epsg:32611'. */
  projectedCrs: string;
  layers: Record<SampleLayerName, SampleFeature[]>;
}

// Road cross-section and intersection layout [m].
const LANE_WIDTH = 3.5;
const LANES_PER_DIRECTION = 2;
/** Distance from the road centre line to the curb [m]. */
const ROAD_HALF_WIDTH = LANE_WIDTH * LANES_PER_DIRECTION;
/** Distance from a grid node to where the lanes of each arm end and the intersection polygon begins [m]. */
const INTERSECTION_SETBACK = 12;
/** Depth of a crosswalk along its arm, starting at the intersection polygon [m]. */
const CROSSWALK_DEPTH = 4;
/** Gap between a crosswalk and the stop polygons behind it [m]. */
const STOP_GAP = 0.5;
/** Depth of a stop polygon along its lane [m]. */
const STOP_DEPTH = 2;
const SIDEWALK_WIDTH = 3;
/** Gap in the middle of a split road, bridged by straight lane connectors [m]. */
const SPLIT_GAP = 4;
/** Inset of a car park from the road centre lines around its block [m]. */
const CARPARK_INSET = ROAD_HALF_WIDTH + SIDEWALK_WIDTH + 4;
/** Size of the hole in the centre car park relative to its outline. */
const CARPARK_HOLE_SCALE = 0.4;
/** Maximum jitter of a grid node along x and along y, as a fraction of the block size. */
const JITTER_FRACTION = 0.06;
/**
 * Smallest block size [m]. At 60 m the shortest jittered road is 52.8 m, so each half of a split
 * road keeps 12.4 m of lane, more than the 6.5 m that the crosswalk and stop polygon take.
 */
const MIN_BLOCK_SIZE = 60;
/** Maximum spacing of baseline path vertices along a lane [m]. */
const BASELINE_VERTEX_SPACING = 10;
const TURN_CONNECTOR_VERTICES = 12;
const SPLIT_CONNECTOR_VERTICES = 4;
/** Speed limits [m/s]: 30 mph on local roads, 40 mph on every fourth grid row and column. */
const LOCAL_SPEED_LIMIT = 13.4112;
const ARTERIAL_SPEED_LIMIT = 17.8816;
const ARTERIAL_SPACING = 4;

// Codes of the *_type_fid fields.
// NOTE: turn_type_fid uses 1 = straight, 2 = left, 3 = right like other maps in this schema, while
// nuPlan's LaneConnectorType enum counts from 0 (STRAIGHT = 0). Which of the two nuPlan reads is unverified.
const TURN_TYPE_STRAIGHT = 1;
const TURN_TYPE_LEFT = 2;
const TURN_TYPE_RIGHT = 3;
const PATH_TYPE_LANE = 0;
const PATH_TYPE_LANE_CONNECTOR = 1;
/** Line between two lanes of one direction, or a curb. */
const BOUNDARY_TYPE_LANE_LINE = 1;
/** Line between the two directions of a road. */
const BOUNDARY_TYPE_CENTRE_LINE = 2;
const INTERSECTION_TYPE_TRAFFIC_LIGHT = 1;
/** nuPlan's StopLineType.TRAFFIC_LIGHT. */
const STOP_POLYGON_TYPE_TRAFFIC_LIGHT = 2;

/** Handle length of a cubic Bezier curve relative to its chord: 1/3 keeps a straight line straight, 0.39 approximates a quarter circle. */
const STRAIGHT_HANDLE = 1 / 3;
const TURN_HANDLE = 0.39;

const DEFAULT_OPTIONS = {
  blocksX: 3,
  blocksY: 3,
  blockSize: 120,
  seed: 1,
  projectedCrs: 'epsg:32611',
  // A point of UTM zone 11N near Las Vegas [m].
  originX: 664_000,
  originY: 3_996_000,
} as const;

type ResolvedOptions = { [K in keyof SampleMapOptions]-?: NonNullable<SampleMapOptions[K]> };

/** Arm slots of a grid node, counter-clockwise from east. */
const SLOT_COUNT = 4;
const SLOT_UNIT_X = [1, 0, -1, 0] as const;
const SLOT_UNIT_Y = [0, 1, 0, -1] as const;

/**
 * Turn type and connected lane indices by the number of slots counter-clockwise from the arriving
 * arm to the leaving arm: one slot is a right turn, two are straight ahead, three are a left turn.
 */
const TURNS_BY_SLOT_STEP: Record<number, { turnType: number; laneIndices: number[] }> = {
  1: { turnType: TURN_TYPE_RIGHT, laneIndices: [1] },
  2: { turnType: TURN_TYPE_STRAIGHT, laneIndices: [0, 1] },
  3: { turnType: TURN_TYPE_LEFT, laneIndices: [0] },
};

/** One travel direction of a road between two grid nodes. */
interface DirectedRoad {
  startX: number;
  startY: number;
  /** Unit travel direction. */
  tx: number;
  ty: number;
  /** Length between the two grid nodes [m]. */
  length: number;
  speedLimit: number;
  /** Lane segments in travel order, each with LANES_PER_DIRECTION lanes. */
  segments: LaneSegment[];
}

interface LaneSegment {
  /** Start and end along the road [m]. */
  from: number;
  to: number;
  laneGroupFid: number;
  /** Lane fids by lane_index; index 0 is the leftmost lane, next to the centre line. */
  laneFids: number[];
}

/** Road leaving a grid node through one arm slot. */
interface Arm {
  /** Unit direction from the node along the road. */
  ux: number;
  uy: number;
  /** Direction that drives into the node. */
  inbound: DirectedRoad;
  /** Direction that drives away from the node. */
  outbound: DirectedRoad;
}

/** Centre line of a lane connector with unit tangents at its vertices. */
interface Curve {
  points: Float64Array;
  tangents: Float64Array;
}

/**
 * Validates the options and fills in the defaults.
 * Throws an Error that names the invalid option and its value.
 */
function resolveOptions(options: SampleMapOptions): ResolvedOptions {
  const resolved: ResolvedOptions = { ...DEFAULT_OPTIONS };
  for (const [key, value] of Object.entries(options)) {
    if (!(key in DEFAULT_OPTIONS)) {
      throw new Error(`Unknown option "${key}": expected one of ${Object.keys(DEFAULT_OPTIONS).join(', ')}.`);
    }
    if (value !== undefined) (resolved as Record<string, unknown>)[key] = value;
  }

  for (const key of ['blocksX', 'blocksY'] as const) {
    const value = resolved[key];
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new Error(`Invalid ${key} ${String(value)}: expected an integer of at least 1 (grid blocks).`);
    }
  }
  if (!Number.isFinite(resolved.blockSize) || resolved.blockSize < MIN_BLOCK_SIZE) {
    throw new Error(
      `Invalid blockSize ${String(resolved.blockSize)} m: expected a finite number of at least ${MIN_BLOCK_SIZE} m, ` +
        'because smaller blocks leave no room for the stop polygons and crosswalks.',
    );
  }
  if (!Number.isSafeInteger(resolved.seed)) {
    throw new Error(`Invalid seed ${String(resolved.seed)}: expected an integer.`);
  }
  for (const key of ['originX', 'originY'] as const) {
    if (!Number.isFinite(resolved[key])) {
      throw new Error(`Invalid ${key} ${String(resolved[key])}: expected a finite coordinate in metres.`);
    }
  }
  if (typeof resolved.projectedCrs !== 'string' || !/^epsg:\d+$/i.test(resolved.projectedCrs.trim())) {
    throw new Error(
      `Invalid projectedCrs ${JSON.stringify(resolved.projectedCrs)}: expected "epsg:<code>" of a projected CRS in metres, e.g. "epsg:32611".`,
    );
  }
  resolved.projectedCrs = resolved.projectedCrs.trim().toLowerCase();
  return resolved;
}

/**
 * Parses `projectedCrs` ('epsg:<code>') with GDAL and checks that it is projected in metres.
 * Throws an Error that names the CRS when it is unknown, geographic or not in metres.
 */
function parseProjectedCrs(projectedCrs: string): gdal.SpatialReference {
  let srs: gdal.SpatialReference;
  try {
    srs = gdal.SpatialReference.fromUserInput(projectedCrs);
  } catch (error) {
    throw new Error(`Invalid projectedCrs "${projectedCrs}": GDAL does not know it (${(error as Error).message}).`);
  }
  if (!srs.isProjected()) {
    throw new Error(`Invalid projectedCrs "${projectedCrs}": it is not a projected CRS; use a UTM zone such as "epsg:32611".`);
  }
  const units = srs.getLinearUnits();
  if (units.value !== 1) {
    throw new Error(`Invalid projectedCrs "${projectedCrs}": its unit is ${units.units}, expected metres.`);
  }
  return srs;
}


/** Reverses the vertex order of a flat x, y ring or line. */
function reversePoints(points: Float64Array): Float64Array {
  const count = points.length / 2;
  const reversed = new Float64Array(points.length);
  for (let i = 0; i < count; i++) {
    reversed[2 * i] = points[2 * (count - 1 - i)];
    reversed[2 * i + 1] = points[2 * (count - 1 - i) + 1];
  }
  return reversed;
}

/** Returns twice the signed area of an unclosed ring [m²]; positive for counter-clockwise rings. */
function signedArea2(ring: Float64Array): number {
  let sum = 0;
  const count = ring.length / 2;
  for (let i = 0; i < count; i++) {
    const j = (i + 1) % count;
    sum += ring[2 * i] * ring[2 * j + 1] - ring[2 * j] * ring[2 * i + 1];
  }
  return sum;
}

/** Builds a polygon with a counter-clockwise exterior ring and clockwise holes (OGC Simple Features order). */
function polygon(exterior: Float64Array, ...holes: Float64Array[]): SampleGeometry {
  const rings = [signedArea2(exterior) < 0 ? reversePoints(exterior) : exterior];
  for (const hole of holes) rings.push(signedArea2(hole) > 0 ? reversePoints(hole) : hole);
  return { type: 'Polygon', rings };
}

function lineString(coords: Float64Array): SampleGeometry {
  return { type: 'LineString', coords };
}

/** Returns the point at `along` [m] from the start of `road` and `offset` [m] to the right of its centre line. */
function roadPoint(road: DirectedRoad, along: number, offset: number): [number, number] {
  // The right-hand normal of travel direction (tx, ty) is (ty, -tx).
  return [road.startX + along * road.tx + offset * road.ty, road.startY + along * road.ty - offset * road.tx];
}

/** Returns the ring of the strip of `road` between `from` and `to` [m] along it and `left` to `right` [m] right of its centre line. */
function roadStrip(road: DirectedRoad, from: number, to: number, left: number, right: number): Float64Array {
  return Float64Array.from([
    ...roadPoint(road, from, left),
    ...roadPoint(road, to, left),
    ...roadPoint(road, to, right),
    ...roadPoint(road, from, right),
  ]);
}

/** Samples the line at `offset` [m] right of the centre of `road` from `from` to `to` [m], with vertices at most `spacing` [m] apart. */
function roadLine(road: DirectedRoad, from: number, to: number, offset: number, spacing: number): Float64Array {
  const count = Math.max(2, Math.ceil((to - from) / spacing) + 1);
  const coords = new Float64Array(2 * count);
  for (let i = 0; i < count; i++) {
    const [x, y] = roadPoint(road, from + ((to - from) * i) / (count - 1), offset);
    coords[2 * i] = x;
    coords[2 * i + 1] = y;
  }
  return coords;
}

/**
 * Samples a cubic Bezier curve from (x0, y0) with unit direction (dx0, dy0) to (x3, y3) with unit
 * direction (dx3, dy3) at `count` vertices. `handle` is the length of both control handles
 * relative to the chord.
 */
function bezierCurve(
  x0: number, y0: number, dx0: number, dy0: number,
  x3: number, y3: number, dx3: number, dy3: number,
  handle: number, count: number,
): Curve {
  const length = Math.hypot(x3 - x0, y3 - y0) * handle;
  const x1 = x0 + length * dx0;
  const y1 = y0 + length * dy0;
  const x2 = x3 - length * dx3;
  const y2 = y3 - length * dy3;
  const points = new Float64Array(2 * count);
  const tangents = new Float64Array(2 * count);
  for (let i = 0; i < count; i++) {
    const s = i / (count - 1);
    const r = 1 - s;
    points[2 * i] = r * r * r * x0 + 3 * r * r * s * x1 + 3 * r * s * s * x2 + s * s * s * x3;
    points[2 * i + 1] = r * r * r * y0 + 3 * r * r * s * y1 + 3 * r * s * s * y2 + s * s * s * y3;
    const tx = 3 * r * r * (x1 - x0) + 6 * r * s * (x2 - x1) + 3 * s * s * (x3 - x2);
    const ty = 3 * r * r * (y1 - y0) + 6 * r * s * (y2 - y1) + 3 * s * s * (y3 - y2);
    const norm = Math.hypot(tx, ty);
    tangents[2 * i] = tx / norm;
    tangents[2 * i + 1] = ty / norm;
  }
  return { points, tangents };
}

/** Returns the vertices of `curve` moved `offset` [m] to the left of its travel direction (negative: to the right). */
function offsetCurve(curve: Curve, offset: number): Float64Array {
  const result = new Float64Array(curve.points.length);
  for (let i = 0; i < result.length; i += 2) {
    // The left-hand normal of tangent (tx, ty) is (-ty, tx).
    result[i] = curve.points[i] - offset * curve.tangents[i + 1];
    result[i + 1] = curve.points[i + 1] + offset * curve.tangents[i];
  }
  return result;
}

/** Returns the ring between the left side of `leftmost` and the right side of `rightmost`, each half a lane wide. */
function curveBand(leftmost: Curve, rightmost: Curve): Float64Array {
  const left = offsetCurve(leftmost, LANE_WIDTH / 2);
  const right = reversePoints(offsetCurve(rightmost, -LANE_WIDTH / 2));
  const ring = new Float64Array(left.length + right.length);
  ring.set(left);
  ring.set(right, left.length);
  return ring;
}

/**
 * Returns the quadrilateral whose sides lie `inset` [m] inside the sides of the counter-clockwise
 * quadrilateral `quad` (flat x, y of 4 vertices).
 */
function insetQuad(quad: Float64Array, inset: number): Float64Array {
  const result = new Float64Array(8);
  for (let k = 0; k < 4; k++) {
    const previous = (k + 3) % 4;
    const next = (k + 1) % 4;
    // Side `previous` runs into vertex k and side k leaves it; both move inward along their left normals.
    const ax = quad[2 * k] - quad[2 * previous];
    const ay = quad[2 * k + 1] - quad[2 * previous + 1];
    const bx = quad[2 * next] - quad[2 * k];
    const by = quad[2 * next + 1] - quad[2 * k + 1];
    const aNorm = Math.hypot(ax, ay);
    const bNorm = Math.hypot(bx, by);
    const pax = quad[2 * k] - (inset * ay) / aNorm;
    const pay = quad[2 * k + 1] + (inset * ax) / aNorm;
    const pbx = quad[2 * k] - (inset * by) / bNorm;
    const pby = quad[2 * k + 1] + (inset * bx) / bNorm;
    // Intersect pa + s * a with pb + t * b.
    const cross = ax * by - ay * bx;
    const s = ((pbx - pax) * by - (pby - pay) * bx) / cross;
    result[2 * k] = pax + s * ax;
    result[2 * k + 1] = pay + s * ay;
  }
  return result;
}

/** Returns `quad` scaled by `scale` about the mean of its vertices. */
function scaleQuad(quad: Float64Array, scale: number): Float64Array {
  const cx = (quad[0] + quad[2] + quad[4] + quad[6]) / 4;
  const cy = (quad[1] + quad[3] + quad[5] + quad[7]) / 4;
  const result = new Float64Array(8);
  for (let i = 0; i < 8; i += 2) {
    result[i] = cx + (quad[i] - cx) * scale;
    result[i + 1] = cy + (quad[i + 1] - cy) * scale;
  }
  return result;
}

/** Collects the features of every layer and hands out fids. */
class TownBuilder {
  readonly layers = Object.fromEntries(LAYER_SCHEMAS.map((schema) => [schema.name, []])) as unknown as Record<
    SampleLayerName,
    SampleFeature[]
  >;

  /** Returns the fid that the next feature added to `layer` gets. */
  nextFid(layer: SampleLayerName): number {
    return this.layers[layer].length + 1;
  }

  /** Appends a feature to `layer` and returns its fid. */
  add(layer: SampleLayerName, geometry: SampleGeometry | null, fields: Record<string, SampleFieldValue>): number {
    const fid = this.nextFid(layer);
    this.layers[layer].push({ fid, geometry, fields });
    return fid;
  }
}

/** Grid of jittered node positions [m], indexed by j * (blocksX + 1) + i. */
interface NodeGrid {
  columns: number;
  rows: number;
  x: Float64Array;
  y: Float64Array;
}

function createNodeGrid(options: ResolvedOptions): NodeGrid {
  const columns = options.blocksX + 1;
  const rows = options.blocksY + 1;
  const random = createRandom(options.seed);
  const jitter = JITTER_FRACTION * options.blockSize;
  const x = new Float64Array(columns * rows);
  const y = new Float64Array(columns * rows);
  for (let j = 0; j < rows; j++) {
    for (let i = 0; i < columns; i++) {
      const node = j * columns + i;
      x[node] = options.originX + i * options.blockSize + (2 * random() - 1) * jitter;
      y[node] = options.originY + j * options.blockSize + (2 * random() - 1) * jitter;
    }
  }
  return { columns, rows, x, y };
}

/**
 * Adds the lanes of one travel direction: lane groups, lanes, their boundaries and baseline paths,
 * and on split roads the straight lane connectors across the gap in the middle.
 */
function addDirectedRoadLanes(builder: TownBuilder, road: DirectedRoad, split: boolean): void {
  const begin = INTERSECTION_SETBACK;
  const end = road.length - INTERSECTION_SETBACK;
  const middle = road.length / 2;
  const ranges: Array<[number, number]> = split
    ? [
        [begin, middle - SPLIT_GAP / 2],
        [middle + SPLIT_GAP / 2, end],
      ]
    : [[begin, end]];

  for (const [from, to] of ranges) {
    // NOTE: from_edge_fid and to_edge_fid refer to a topology layer that this generator does not write, so both are 0.
    const laneGroupFid = builder.add('lane_groups_polygons', polygon(roadStrip(road, from, to, 0, ROAD_HALF_WIDTH)), {
      from_edge_fid: 0,
      to_edge_fid: 0,
    });
    const laneFids: number[] = [];
    for (let laneIndex = 0; laneIndex < LANES_PER_DIRECTION; laneIndex++) {
      const left = laneIndex * LANE_WIDTH;
      const right = left + LANE_WIDTH;
      const leftBoundaryFid = builder.add('boundaries', lineString(roadLine(road, from, to, left, Infinity)), {
        boundary_type_fid: laneIndex === 0 ? BOUNDARY_TYPE_CENTRE_LINE : BOUNDARY_TYPE_LANE_LINE,
      });
      const rightBoundaryFid = builder.add('boundaries', lineString(roadLine(road, from, to, right, Infinity)), {
        boundary_type_fid: BOUNDARY_TYPE_LANE_LINE,
      });
      const laneFid = builder.nextFid('lanes_polygons');
      builder.add('lanes_polygons', polygon(roadStrip(road, from, to, left, right)), {
        lane_group_fid: laneGroupFid,
        lane_fid: laneFid,
        lane_index: laneIndex,
        speed_limit_mps: road.speedLimit,
        left_boundary_fid: leftBoundaryFid,
        right_boundary_fid: rightBoundaryFid,
      });
      builder.add('baseline_paths', lineString(roadLine(road, from, to, left + LANE_WIDTH / 2, BASELINE_VERTEX_SPACING)), {
        path_type_fid: PATH_TYPE_LANE,
        lane_fid: laneFid,
        lane_connector_fid: null,
      });
      laneFids.push(laneFid);
    }
    road.segments.push({ from, to, laneGroupFid, laneFids });
  }

  if (split) {
    const [first, second] = road.segments;
    const curves = first.laneFids.map((_, laneIndex) => {
      const offset = (laneIndex + 0.5) * LANE_WIDTH;
      const [x0, y0] = roadPoint(road, first.to, offset);
      const [x3, y3] = roadPoint(road, second.from, offset);
      return bezierCurve(x0, y0, road.tx, road.ty, x3, y3, road.tx, road.ty, STRAIGHT_HANDLE, SPLIT_CONNECTOR_VERTICES);
    });
    const connections = curves.map((curve, laneIndex) => ({ curve, fromLane: laneIndex, toLane: laneIndex }));
    addLaneGroupConnector(builder, first, second, null, TURN_TYPE_STRAIGHT, connections);
  }
}

/** Adds a lane group connector from `exit` to `entry` with one lane connector per connection. */
function addLaneGroupConnector(
  builder: TownBuilder,
  exit: LaneSegment,
  entry: LaneSegment,
  intersectionFid: number | null,
  turnType: number,
  connections: Array<{ curve: Curve; fromLane: number; toLane: number }>,
): void {
  const laneGroupConnectorFid = builder.add(
    'lane_group_connectors',
    polygon(curveBand(connections[0].curve, connections[connections.length - 1].curve)),
    { intersection_fid: intersectionFid, from_lane_group_fid: exit.laneGroupFid, to_lane_group_fid: entry.laneGroupFid },
  );
  for (const { curve, fromLane, toLane } of connections) {
    const laneConnectorFid = builder.nextFid('lane_connectors');
    const baselinePathFid = builder.add('baseline_paths', lineString(curve.points), {
      path_type_fid: PATH_TYPE_LANE_CONNECTOR,
      lane_fid: null,
      lane_connector_fid: laneConnectorFid,
    });
    builder.add('lane_connectors', lineString(curve.points), {
      exit_lane_group_fid: exit.laneGroupFid,
      exit_lane_fid: exit.laneFids[fromLane],
      entry_lane_group_fid: entry.laneGroupFid,
      entry_lane_fid: entry.laneFids[toLane],
      lane_group_connector_fid: laneGroupConnectorFid,
      intersection_fid: intersectionFid,
      turn_type_fid: turnType,
    });
    // All lanes have the same width, so the scaled-width polygon has a constant width.
    builder.add('gen_lane_connectors_scaled_width_polygons', polygon(curveBand(curve, curve)), {
      baseline_path_fid: baselinePathFid,
      lane_connector_fid: laneConnectorFid,
    });
  }
}

/**
 * Adds the roads of the grid and returns the arms of every node, indexed by node * 4 + slot
 * (null where the grid border leaves a slot without road).
 */
function addRoads(builder: TownBuilder, grid: NodeGrid): Array<Arm | null> {
  const arms: Array<Arm | null> = new Array<Arm | null>(grid.x.length * SLOT_COUNT).fill(null);
  const addRoad = (a: number, b: number, slotAtA: number, split: boolean, arterial: boolean): void => {
    const dx = grid.x[b] - grid.x[a];
    const dy = grid.y[b] - grid.y[a];
    const length = Math.hypot(dx, dy);
    const speedLimit = arterial ? ARTERIAL_SPEED_LIMIT : LOCAL_SPEED_LIMIT;
    const forward: DirectedRoad = {
      startX: grid.x[a], startY: grid.y[a], tx: dx / length, ty: dy / length, length, speedLimit, segments: [],
    };
    const backward: DirectedRoad = {
      startX: grid.x[b], startY: grid.y[b], tx: -dx / length, ty: -dy / length, length, speedLimit, segments: [],
    };
    addDirectedRoadLanes(builder, forward, split);
    addDirectedRoadLanes(builder, backward, split);
    arms[a * SLOT_COUNT + slotAtA] = { ux: forward.tx, uy: forward.ty, inbound: backward, outbound: forward };
    arms[b * SLOT_COUNT + ((slotAtA + 2) % SLOT_COUNT)] = {
      ux: backward.tx, uy: backward.ty, inbound: forward, outbound: backward,
    };
  };

  // Half of the roads, in a checkerboard pattern, are split into two lane segments. This brings
  // city-scale maps to about 11.5 lanes and 18.5 lane connectors per intersection.
  for (let j = 0; j < grid.rows; j++) {
    for (let i = 0; i < grid.columns; i++) {
      const node = j * grid.columns + i;
      const split = (i + j) % 2 === 0;
      if (i + 1 < grid.columns) addRoad(node, node + 1, 0, split, j % ARTERIAL_SPACING === 0);
      if (j + 1 < grid.rows) addRoad(node, node + grid.columns, 1, split, i % ARTERIAL_SPACING === 0);
    }
  }
  return arms;
}

/** Adds the intersection at `node` with its crosswalks, stop polygons and lane connectors. */
function addIntersection(builder: TownBuilder, grid: NodeGrid, arms: Array<Arm | null>, node: number): void {
  const nodeX = grid.x[node];
  const nodeY = grid.y[node];
  const nodeArms = arms.slice(node * SLOT_COUNT, (node + 1) * SLOT_COUNT);

  // Each slot adds two corners: across the road end at INTERSECTION_SETBACK where an arm exists,
  // and a flat side at the curb where the grid border leaves the slot empty.
  const outline = new Float64Array(4 * SLOT_COUNT);
  nodeArms.forEach((arm, slot) => {
    const ux = arm ? arm.ux : SLOT_UNIT_X[slot];
    const uy = arm ? arm.uy : SLOT_UNIT_Y[slot];
    const reach = arm ? INTERSECTION_SETBACK : ROAD_HALF_WIDTH;
    outline.set(
      [
        nodeX + reach * ux + ROAD_HALF_WIDTH * uy,
        nodeY + reach * uy - ROAD_HALF_WIDTH * ux,
        nodeX + reach * ux - ROAD_HALF_WIDTH * uy,
        nodeY + reach * uy + ROAD_HALF_WIDTH * ux,
      ],
      4 * slot,
    );
  });
  const intersectionFid = builder.add('intersections', polygon(outline), {
    intersection_type_fid: INTERSECTION_TYPE_TRAFFIC_LIGHT,
    is_mini: 0,
  });

  for (const arm of nodeArms) {
    if (!arm) continue;
    const near = INTERSECTION_SETBACK;
    const far = INTERSECTION_SETBACK + CROSSWALK_DEPTH;
    const crosswalk = Float64Array.from([
      nodeX + near * arm.ux + ROAD_HALF_WIDTH * arm.uy, nodeY + near * arm.uy - ROAD_HALF_WIDTH * arm.ux,
      nodeX + far * arm.ux + ROAD_HALF_WIDTH * arm.uy, nodeY + far * arm.uy - ROAD_HALF_WIDTH * arm.ux,
      nodeX + far * arm.ux - ROAD_HALF_WIDTH * arm.uy, nodeY + far * arm.uy + ROAD_HALF_WIDTH * arm.ux,
      nodeX + near * arm.ux - ROAD_HALF_WIDTH * arm.uy, nodeY + near * arm.uy + ROAD_HALF_WIDTH * arm.ux,
    ]);
    builder.add('crosswalks', polygon(crosswalk), { intersection_fids: String(intersectionFid), is_marked: 1 });

    const road = arm.inbound;
    const segment = road.segments[road.segments.length - 1];
    const stopEnd = road.length - INTERSECTION_SETBACK - CROSSWALK_DEPTH - STOP_GAP;
    segment.laneFids.forEach((laneFid, laneIndex) => {
      const left = laneIndex * LANE_WIDTH;
      builder.add('stop_polygons', polygon(roadStrip(road, stopEnd - STOP_DEPTH, stopEnd, left, left + LANE_WIDTH)), {
        stop_polygon_type_fid: STOP_POLYGON_TYPE_TRAFFIC_LIGHT,
        lane_group_fid: segment.laneGroupFid,
        lane_fids: String(laneFid),
      });
    });
  }

  nodeArms.forEach((from, fromSlot) => {
    if (!from) return;
    for (let turn = 1; turn < SLOT_COUNT; turn++) {
      const to = nodeArms[(fromSlot + turn) % SLOT_COUNT];
      if (!to) continue;
      // Left turns leave from the leftmost lane, right turns from the rightmost lane.
      const { turnType, laneIndices } = TURNS_BY_SLOT_STEP[turn];
      const exit = from.inbound.segments[from.inbound.segments.length - 1];
      const entry = to.outbound.segments[0];
      const connections = laneIndices.map((laneIndex) => {
        const offset = (laneIndex + 0.5) * LANE_WIDTH;
        const [x0, y0] = roadPoint(from.inbound, exit.to, offset);
        const [x3, y3] = roadPoint(to.outbound, entry.from, offset);
        const curve = bezierCurve(
          x0, y0, from.inbound.tx, from.inbound.ty,
          x3, y3, to.outbound.tx, to.outbound.ty,
          turnType === TURN_TYPE_STRAIGHT ? STRAIGHT_HANDLE : TURN_HANDLE, TURN_CONNECTOR_VERTICES,
        );
        return { curve, fromLane: laneIndex, toLane: laneIndex };
      });
      addLaneGroupConnector(builder, exit, entry, intersectionFid, turnType, connections);
    }
  });
}

/** Adds four sidewalk strips around each block and the car parks. */
function addBlocks(builder: TownBuilder, grid: NodeGrid, options: ResolvedOptions): void {
  const centreI = Math.floor(options.blocksX / 2);
  const centreJ = Math.floor(options.blocksY / 2);
  for (let j = 0; j + 1 < grid.rows; j++) {
    for (let i = 0; i + 1 < grid.columns; i++) {
      const corners = [j * grid.columns + i, j * grid.columns + i + 1, (j + 1) * grid.columns + i + 1, (j + 1) * grid.columns + i];
      const block = Float64Array.from(corners.flatMap((node) => [grid.x[node], grid.y[node]]));
      const curb = insetQuad(block, ROAD_HALF_WIDTH);
      const backOfSidewalk = insetQuad(block, ROAD_HALF_WIDTH + SIDEWALK_WIDTH);
      for (let k = 0; k < 4; k++) {
        const next = (k + 1) % 4;
        const strip = Float64Array.from([
          curb[2 * k], curb[2 * k + 1], curb[2 * next], curb[2 * next + 1],
          backOfSidewalk[2 * next], backOfSidewalk[2 * next + 1], backOfSidewalk[2 * k], backOfSidewalk[2 * k + 1],
        ]);
        builder.add('walkways', polygon(strip), {});
      }

      // The centre block gets a car park around a building (a polygon with a hole), and a sparse
      // pattern of other blocks gets plain car parks.
      const isCentre = i === centreI && j === centreJ;
      if (!isCentre && (i + 2 * j) % 5 !== 2) continue;
      const outline = insetQuad(block, CARPARK_INSET);
      const geometry = isCentre ? polygon(outline, scaleQuad(outline, CARPARK_HOLE_SCALE)) : polygon(outline);
      // heading [rad] is the direction of the block's south side, counter-clockwise from east.
      builder.add('carpark_areas', geometry, { heading: Math.atan2(block[3] - block[1], block[2] - block[0]) });
    }
  }
}

/**
 * Builds the synthetic town for `options` in the projected CRS [m], without writing it. Equal
 * options give equal towns. Throws an Error that names an invalid option.
 */
export function buildSampleTown(options: SampleMapOptions = {}): SampleTown {
  const resolved = resolveOptions(options);
  const builder = new TownBuilder();
  const grid = createNodeGrid(resolved);
  const arms = addRoads(builder, grid);
  for (let node = 0; node < grid.x.length; node++) addIntersection(builder, grid, arms, node);
  addBlocks(builder, grid, resolved);

  builder.add('meta', null, { key: 'projectedCoordSystem', value: resolved.projectedCrs });
  builder.add('meta', null, { key: 'geographicCoordSystem', value: 'epsg:4326' });
  builder.add('meta', null, {
    key: 'generator',
    value:
      `rasterd sample-map: ${resolved.blocksX}x${resolved.blocksY} blocks of ${resolved.blockSize} m, ` +
      `seed ${resolved.seed}, origin (${resolved.originX}, ${resolved.originY}) m`,
  });
  return { projectedCrs: resolved.projectedCrs, layers: builder.layers };
}

const WKB_LINE_STRING = 2;
const WKB_POLYGON = 3;

/** Encodes `geometry` as little-endian WKB and closes the polygon rings. */
function toWkb(geometry: SampleGeometry): Buffer {
  if (geometry.type === 'LineString') {
    const count = geometry.coords.length / 2;
    const view = new DataView(new ArrayBuffer(9 + 16 * count));
    view.setUint8(0, 1);
    view.setUint32(1, WKB_LINE_STRING, true);
    view.setUint32(5, count, true);
    for (let i = 0; i < geometry.coords.length; i++) view.setFloat64(9 + 8 * i, geometry.coords[i], true);
    return Buffer.from(view.buffer);
  }

  let size = 9;
  for (const ring of geometry.rings) size += 4 + 8 * (ring.length + 2);
  const view = new DataView(new ArrayBuffer(size));
  view.setUint8(0, 1);
  view.setUint32(1, WKB_POLYGON, true);
  view.setUint32(5, geometry.rings.length, true);
  let offset = 9;
  for (const ring of geometry.rings) {
    view.setUint32(offset, ring.length / 2 + 1, true);
    offset += 4;
    for (let i = 0; i < ring.length; i++, offset += 8) view.setFloat64(offset, ring[i], true);
    view.setFloat64(offset, ring[0], true);
    view.setFloat64(offset + 8, ring[1], true);
    offset += 16;
  }
  return Buffer.from(view.buffer);
}

const FIELD_TYPES: Record<FieldKind, string> = {
  integer: gdal.OFTInteger64,
  real: gdal.OFTReal,
  string: gdal.OFTString,
};

/**
 * Fills an in-memory layer with the features of `schema`, transformed to longitude and latitude.
 * Throws an Error that names the layer and fid of a geometry that fails to transform.
 */
function fillMemoryLayer(
  memory: gdal.Dataset,
  schema: LayerSchema,
  features: SampleFeature[],
  transformation: gdal.CoordinateTransformation,
  wgs84: gdal.SpatialReference,
  projectedCrs: string,
): void {
  let geometryType = gdal.wkbNone;
  if (schema.geometry === 'Polygon') geometryType = gdal.wkbPolygon;
  if (schema.geometry === 'LineString') geometryType = gdal.wkbLineString;
  const layer = memory.layers.create(schema.name, schema.geometry ? wgs84 : null, geometryType);
  for (const [name, kind] of schema.fields) layer.fields.add(new gdal.FieldDefn(name, FIELD_TYPES[kind]));

  for (const feature of features) {
    const row = new gdal.Feature(layer);
    row.fid = feature.fid;
    const values: Record<string, SampleFieldValue> = {};
    for (const [name, value] of Object.entries(feature.fields)) {
      if (value !== null) values[name] = value;
    }
    row.fields.set(values);
    if (feature.geometry) {
      const geometry = gdal.Geometry.fromWKB(toWkb(feature.geometry));
      try {
        geometry.transform(transformation);
      } catch (error) {
        throw new Error(
          `Failed to transform ${schema.name} fid ${feature.fid} from ${projectedCrs} to EPSG:4326 ` +
            `(${(error as Error).message}); choose originX/originY inside the area of use of ${projectedCrs}.`,
        );
      }
      row.setGeometry(geometry);
    }
    layer.features.add(row);
  }
}

/** Writes every layer of `town` to a new GeoPackage at `path`, one transaction per layer. */
async function writeGeoPackage(path: string, town: SampleTown): Promise<void> {
  const projected = parseProjectedCrs(town.projectedCrs);
  // OGC:CRS84 is WGS 84 with longitude first, so the transformation returns x = longitude and
  // y = latitude. gdal-async 3.12 has no binding for OSRSetAxisMappingStrategy. The global
  // OSR_DEFAULT_AXIS_MAPPING_STRATEGY option would also flip every CRS that other code in this process creates.
  const lonLat = gdal.SpatialReference.fromUserInput('OGC:CRS84');
  const transformation = new gdal.CoordinateTransformation(projected, lonLat);
  const wgs84 = gdal.SpatialReference.fromEPSG(4326);

  const memory = gdal.open('sample-map', 'w', 'Memory');
  const output = gdal.open(path, 'w', 'GPKG');
  try {
    for (const schema of LAYER_SCHEMAS) {
      fillMemoryLayer(memory, schema, town.layers[schema.name], transformation, wgs84, town.projectedCrs);
      // gdal-async 3.12 has no binding for dataset transactions. GDAL's vector translation (ogr2ogr)
      // copies the layer in one transaction instead, because '-gt unlimited' disables intermediate commits.
      await gdal.vectorTranslateAsync(output, memory, [
        '-gt', 'unlimited',
        '-preserve_fid',
        '-lco', 'FID=fid',
        '-lco', 'GEOMETRY_NAME=geom',
        schema.name,
      ]);
      memory.layers.remove(0);
    }
  } finally {
    output.close();
    memory.close();
  }
}

/**
 * Writes a synthetic town in nuPlan's GeoPackage schema to `path` (overwrites). Coordinates are
 * generated in `options.projectedCrs` [m] and stored in EPSG:4326 [deg], longitude first.
 *
 * The map is written to a temporary file next to `path` and renamed over it, so readers never see
 * a partly written map. Missing parent directories are created.
 *
 * NOTE: building the town and filling each layer run on the calling thread. For 24x24 blocks the
 * longest event-loop stall measured 0.64 s on a 2-core AMD EPYC machine.
 */
export async function writeSampleMap(path: string, options: SampleMapOptions = {}): Promise<SampleMapSummary> {
  const town = buildSampleTown(options);
  const target = resolve(path);
  await mkdir(dirname(target), { recursive: true });
  const temporary = join(dirname(target), `.${basename(target)}.${process.pid}.tmp.gpkg`);
  await rm(temporary, { force: true });
  try {
    await writeGeoPackage(temporary, town);
    // A journal left behind by an interrupted writer of the old file would be replayed into the new one.
    for (const suffix of ['-journal', '-wal', '-shm']) await rm(target + suffix, { force: true });
    await rename(temporary, target);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }

  const layerCounts: Record<string, number> = {};
  for (const schema of LAYER_SCHEMAS) layerCounts[schema.name] = town.layers[schema.name].length;
  return { path: target, layerCounts };
}
