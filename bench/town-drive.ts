import type { SampleFeature, SampleTown } from '../maps/sample-map.js';
import type { BenchScene, BenchAgent } from './workloads.js';

/** Layout of a drive through a generated town. */
export interface DriveOptions {
  /** Simulation steps (default 149, one nuPlan scenario at 10 Hz). */
  steps?: number;
  /** Ego speed [m/s] (default 10). */
  speed?: number;
  /** Step period [s] (default 0.1). */
  stepSeconds?: number;
  /** Minimum and maximum tracked objects per step (default 50 and 150). */
  minObjects?: number;
  maxObjects?: number;
  /** Seed of the object placement (default 7). */
  seed?: number;
}

/** Half size of the square that counts map objects around an intersection [m]; that of a 224 px raster of 0.5 m. */
const DENSITY_HALF_SIZE = 56;
/** Distance the ego drives before it enters the busiest intersection [m]. */
const APPROACH_LENGTH = 50;
/** Objects are placed on lanes whose baseline path has its midpoint within this distance of the ego's route [m]. */
const OBJECT_RADIUS = 70;
/** Upper bounds of the graph walks, so that a malformed town cannot loop forever. */
const MAX_ROUTE_ELEMENTS = 64;
const MAX_PREDECESSORS = 8;

const TURN_STRAIGHT = 1;
const TURN_LEFT = 2;

interface Connector {
  fid: number;
  exitLane: number;
  entryLane: number;
  turnType: number;
  intersectionFid: number | null;
}

/** The lane graph of a generated town: baseline paths of lanes and lane connectors [m], and how they join. */
interface LaneGraph {
  laneBaselines: Map<number, Float64Array>;
  connectorBaselines: Map<number, Float64Array>;
  connectors: Map<number, Connector>;
  connectorsByExitLane: Map<number, Connector[]>;
  connectorsByEntryLane: Map<number, Connector[]>;
}

/** One lane or lane connector of a route. */
type RouteElement = { kind: 'lane' | 'connector'; fid: number };

/** Returns a deterministic generator of uniform numbers in [0, 1) (the mulberry32 generator). */
function createRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = Math.imul(state ^ (state >>> 15), state | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function numberField(feature: SampleFeature, name: string): number | null {
  const value = feature.fields[name];
  return typeof value === 'number' ? value : null;
}

function lineCoords(feature: SampleFeature): Float64Array | null {
  return feature.geometry?.type === 'LineString' ? feature.geometry.coords : null;
}

function buildLaneGraph(town: SampleTown): LaneGraph {
  const laneBaselines = new Map<number, Float64Array>();
  const connectorBaselines = new Map<number, Float64Array>();
  for (const feature of town.layers.baseline_paths) {
    const coords = lineCoords(feature);
    if (!coords) continue;
    const lane = numberField(feature, 'lane_fid');
    const connector = numberField(feature, 'lane_connector_fid');
    if (lane !== null) laneBaselines.set(lane, coords);
    else if (connector !== null) connectorBaselines.set(connector, coords);
  }

  const connectors = new Map<number, Connector>();
  const connectorsByExitLane = new Map<number, Connector[]>();
  const connectorsByEntryLane = new Map<number, Connector[]>();
  for (const feature of town.layers.lane_connectors) {
    const exitLane = numberField(feature, 'exit_lane_fid');
    const entryLane = numberField(feature, 'entry_lane_fid');
    if (exitLane === null || entryLane === null || !connectorBaselines.has(feature.fid)) continue;
    const connector: Connector = {
      fid: feature.fid, exitLane, entryLane,
      turnType: numberField(feature, 'turn_type_fid') ?? TURN_STRAIGHT,
      intersectionFid: numberField(feature, 'intersection_fid'),
    };
    connectors.set(connector.fid, connector);
    const byExit = connectorsByExitLane.get(exitLane) ?? [];
    byExit.push(connector);
    connectorsByExitLane.set(exitLane, byExit);
    const byEntry = connectorsByEntryLane.get(entryLane) ?? [];
    byEntry.push(connector);
    connectorsByEntryLane.set(entryLane, byEntry);
  }
  return { laneBaselines, connectorBaselines, connectors, connectorsByExitLane, connectorsByEntryLane };
}

function boundingBox(coords: Float64Array): [number, number, number, number] {
  let minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
  for (let i = 0; i < coords.length; i += 2) {
    minX = Math.min(minX, coords[i]);
    maxX = Math.max(maxX, coords[i]);
    minY = Math.min(minY, coords[i + 1]);
    maxY = Math.max(maxY, coords[i + 1]);
  }
  return [minX, minY, maxX, maxY];
}

/**
 * Picks the busiest intersection: the one whose raster-sized square contains the most lane and
 * lane-connector baseline paths. Ties go to the intersection nearest the town's centre.
 * @returns the intersection fid
 */
function busiestIntersection(town: SampleTown, graph: LaneGraph): number {
  const boxes = [...graph.laneBaselines.values(), ...graph.connectorBaselines.values()].map(boundingBox);
  const centroids = town.layers.intersections.flatMap((feature) => {
    if (feature.geometry?.type !== 'Polygon') return [];
    const ring = feature.geometry.rings[0];
    let x = 0, y = 0;
    for (let i = 0; i < ring.length; i += 2) {
      x += ring[i];
      y += ring[i + 1];
    }
    return [{ fid: feature.fid, x: (2 * x) / ring.length, y: (2 * y) / ring.length }];
  });
  if (centroids.length === 0) throw new Error('the generated town has no intersections to drive through');
  const centreX = centroids.reduce((sum, c) => sum + c.x, 0) / centroids.length;
  const centreY = centroids.reduce((sum, c) => sum + c.y, 0) / centroids.length;

  let best = centroids[0].fid;
  let bestCount = -1;
  let bestDistance = Infinity;
  for (const { fid, x, y } of centroids) {
    let count = 0;
    for (const [minX, minY, maxX, maxY] of boxes) {
      if (maxX >= x - DENSITY_HALF_SIZE && minX <= x + DENSITY_HALF_SIZE && maxY >= y - DENSITY_HALF_SIZE && minY <= y + DENSITY_HALF_SIZE) count++;
    }
    const distance = Math.hypot(x - centreX, y - centreY);
    if (count > bestCount || (count === bestCount && distance < bestDistance)) {
      best = fid;
      bestCount = count;
      bestDistance = distance;
    }
  }
  return best;
}

function coordsOf(graph: LaneGraph, element: RouteElement): Float64Array {
  const coords = element.kind === 'lane' ? graph.laneBaselines.get(element.fid) : graph.connectorBaselines.get(element.fid);
  if (!coords) throw new Error(`the generated town has no baseline path for ${element.kind} ${element.fid}`);
  return coords;
}

function polylineLength(coords: Float64Array): number {
  let length = 0;
  for (let i = 2; i < coords.length; i += 2) length += Math.hypot(coords[i] - coords[i - 2], coords[i + 1] - coords[i - 1]);
  return length;
}

/** A polyline with its cumulative arc length, sampled by distance from its start. */
class Polyline {
  readonly points: Float64Array;
  readonly cumulative: Float64Array;

  constructor(parts: Float64Array[]) {
    const points: number[] = [];
    for (const part of parts) {
      for (let i = 0; i < part.length; i += 2) {
        const n = points.length;
        // Consecutive elements share their joining vertex; keep it once.
        if (n >= 2 && Math.hypot(points[n - 2] - part[i], points[n - 1] - part[i + 1]) < 1e-6) continue;
        points.push(part[i], part[i + 1]);
      }
    }
    this.points = Float64Array.from(points);
    this.cumulative = new Float64Array(points.length / 2);
    for (let k = 1; k < this.cumulative.length; k++) {
      this.cumulative[k] = this.cumulative[k - 1] + Math.hypot(points[2 * k] - points[2 * k - 2], points[2 * k + 1] - points[2 * k - 1]);
    }
  }

  get length(): number {
    return this.cumulative[this.cumulative.length - 1];
  }

  /** Returns the point at arc length `s` [m], clamped to the ends. */
  pointAt(s: number): [number, number] {
    const clamped = Math.min(Math.max(s, 0), this.length);
    let low = 0;
    let high = this.cumulative.length - 1;
    while (high - low > 1) {
      const middle = (low + high) >> 1;
      if (this.cumulative[middle] <= clamped) low = middle;
      else high = middle;
    }
    const span = this.cumulative[high] - this.cumulative[low];
    const t = span > 0 ? (clamped - this.cumulative[low]) / span : 0;
    return [
      this.points[2 * low] + t * (this.points[2 * high] - this.points[2 * low]),
      this.points[2 * low + 1] + t * (this.points[2 * high + 1] - this.points[2 * low + 1]),
    ];
  }

  /** Returns the pose at arc length `s` [m]. The heading [rad] is that of the chord from s - 0.5 m to s + 0.5 m. */
  poseAt(s: number): { x: number; y: number; heading: number } {
    const [x, y] = this.pointAt(s);
    const [x0, y0] = this.pointAt(Math.min(s, this.length - 1) - 0.5);
    const [x1, y1] = this.pointAt(Math.max(s, 1) + 0.5);
    return { x, y, heading: Math.atan2(y1 - y0, x1 - x0) };
  }
}

/**
 * Extends `start` forward through the lane graph until the route is at least `length` [m] long.
 * At each lane end it takes the connector that `chooseTurn` picks; the walk stops at a dead end.
 */
function extendRoute(graph: LaneGraph, start: RouteElement, length: number, chooseTurn: (options: Connector[], turnIndex: number) => Connector): RouteElement[] {
  const route: RouteElement[] = [start];
  let total = polylineLength(coordsOf(graph, start));
  let turnIndex = 0;
  while (total < length && route.length < MAX_ROUTE_ELEMENTS) {
    const last = route[route.length - 1];
    let next: RouteElement;
    if (last.kind === 'connector') {
      const connector = graph.connectors.get(last.fid);
      if (!connector) break;
      next = { kind: 'lane', fid: connector.entryLane };
    } else {
      const options = graph.connectorsByExitLane.get(last.fid) ?? [];
      if (options.length === 0) break;
      next = { kind: 'connector', fid: chooseTurn(options, turnIndex++).fid };
    }
    route.push(next);
    total += polylineLength(coordsOf(graph, next));
  }
  return route;
}

function straightOrFirst(options: Connector[]): Connector {
  return options.find((option) => option.turnType === TURN_STRAIGHT) ?? options[0];
}

/** Objects of one drive: a fixed pool that moves along lanes; each step shows the first n of them. */
interface MovingObject {
  type: 'vehicle' | 'pedestrian' | 'bicycle';
  path: Polyline;
  /** Arc length at step 0 [m] and speed [m/s] along `path`. */
  start: number;
  speed: number;
  /** Offset to the right of the lane centre [m]. */
  lateral: number;
  length: number;
  width: number;
  height: number;
}

function placeObjects(graph: LaneGraph, route: Polyline, count: number, durationSeconds: number, random: () => number): MovingObject[] {
  const routeSamples: Array<[number, number]> = [];
  for (let s = 0; s <= route.length; s += 5) routeSamples.push(route.pointAt(s));
  const nearRoute = (coords: Float64Array): boolean => {
    const [x, y] = new Polyline([coords]).pointAt(polylineLength(coords) / 2);
    return routeSamples.some(([rx, ry]) => Math.hypot(rx - x, ry - y) <= OBJECT_RADIUS);
  };

  // Objects start on lanes and drive on through lane connectors, so that intersections do not fill up at step 0.
  const candidates: RouteElement[] = [];
  for (const [fid, coords] of graph.laneBaselines) if (nearRoute(coords)) candidates.push({ kind: 'lane', fid });
  if (candidates.length === 0) throw new Error('no lane lies near the drive, so no tracked objects can be placed');

  const objects: MovingObject[] = [];
  for (let i = 0; i < count; i++) {
    const element = candidates[Math.floor(random() * candidates.length)];
    const shape = randomObjectShape(random);
    const start = random() * polylineLength(coordsOf(graph, element));
    const elements = extendRoute(graph, element, start + shape.speed * durationSeconds + 1, straightOrFirst);
    objects.push({ ...shape, path: new Polyline(elements.map((e) => coordsOf(graph, e))), start });
  }
  return objects;
}

/**
 * Draws an object's type, speed and size: 85 % vehicles, 10 % pedestrians and 5 % bicycles.
 * Two in five vehicles stand still (parked or queued) and the others drive at 3 to 12 m/s.
 * Pedestrians and bicycles keep 1.3 m right of the lane centre.
 */
function randomObjectShape(random: () => number): Omit<MovingObject, 'path' | 'start'> {
  const draw = random();
  if (draw < 0.85) {
    const speed = random() < 0.4 ? 0 : 3 + 9 * random();
    return { type: 'vehicle', speed, lateral: 0, length: 4.2 + random(), width: 1.8 + 0.3 * random(), height: 1.5 + 0.5 * random() };
  }
  if (draw < 0.95) return { type: 'pedestrian', speed: 1.3, lateral: 1.3, length: 0.6, width: 0.6, height: 1.7 };
  return { type: 'bicycle', speed: 4, lateral: 1.3, length: 1.8, width: 0.6, height: 1.7 };
}

/**
 * Builds a drive through the busiest intersection of a generated town. The ego follows lanes and
 * lane connectors at a constant speed, turning left at that intersection and going straight on
 * after it. Each step has 50 to 150 tracked objects that drive, ride or walk along lanes near its route.
 * @returns one scene per step, with the ego rear axle and object centres in the town's projected CRS [m]
 */
export function buildTownDrive(town: SampleTown, options: DriveOptions = {}): BenchScene[] {
  const steps = options.steps ?? 149;
  const speed = options.speed ?? 10;
  const stepSeconds = options.stepSeconds ?? 0.1;
  const minObjects = options.minObjects ?? 50;
  const maxObjects = options.maxObjects ?? 150;
  const random = createRandom(options.seed ?? 7);
  const graph = buildLaneGraph(town);
  const intersection = busiestIntersection(town, graph);

  // Enter the intersection from the lowest-fid lane that can turn left there.
  const entries = [...graph.connectors.values()]
    .filter((connector) => connector.intersectionFid === intersection && connector.turnType === TURN_LEFT)
    .sort((a, b) => a.exitLane - b.exitLane);
  if (entries.length === 0) throw new Error(`intersection ${intersection} has no left-turn lane connector to drive through`);
  const firstLane = entries[0].exitLane;

  // Walk back along straight predecessors until the approach is long enough.
  const before: RouteElement[] = [];
  let beforeLength = 0;
  const firstLaneLength = polylineLength(coordsOf(graph, { kind: 'lane', fid: firstLane }));
  let earliest = firstLane;
  for (let i = 0; i < MAX_PREDECESSORS && beforeLength + firstLaneLength < APPROACH_LENGTH; i++) {
    const previous = graph.connectorsByEntryLane.get(earliest)?.find((connector) => connector.turnType === TURN_STRAIGHT);
    if (!previous) break;
    before.unshift({ kind: 'lane', fid: previous.exitLane }, { kind: 'connector', fid: previous.fid });
    beforeLength += polylineLength(coordsOf(graph, { kind: 'connector', fid: previous.fid })) + polylineLength(coordsOf(graph, { kind: 'lane', fid: previous.exitLane }));
    earliest = previous.exitLane;
  }

  // The ego starts APPROACH_LENGTH before the intersection (or at the route start) and must not run off the route's end.
  const distance = speed * stepSeconds * (steps - 1);
  const startOffset = Math.max(0, beforeLength + firstLaneLength - APPROACH_LENGTH);
  const after = extendRoute(graph, { kind: 'lane', fid: firstLane }, startOffset + distance + 1 - beforeLength, (connectors, turnIndex) =>
    turnIndex === 0 ? connectors.find((connector) => connector.fid === entries[0].fid)! : straightOrFirst(connectors),
  );
  const route = new Polyline([...before, ...after].map((element) => coordsOf(graph, element)));

  const objects = placeObjects(graph, route, maxObjects, stepSeconds * steps, random);
  const scenes: BenchScene[] = [];
  for (let k = 0; k < steps; k++) {
    // The object count rises from minObjects to maxObjects at mid-drive and falls back.
    const phase = steps > 1 ? k / (steps - 1) : 0;
    const count = Math.round(minObjects + (maxObjects - minObjects) * 0.5 * (1 - Math.cos(2 * Math.PI * phase)));
    const seconds = k * stepSeconds;
    const agents: BenchAgent[] = objects.slice(0, count).map((object, i) => {
      const s = object.start + object.speed * seconds;
      const { x, y, heading } = object.path.poseAt(s);
      return {
        type: object.type,
        x: x + object.lateral * Math.sin(heading),
        y: y - object.lateral * Math.cos(heading),
        heading,
        length: object.length,
        width: object.width,
        height: object.height,
        track_token: `town-drive-${i}`,
      };
    });
    scenes.push({ id: `town-drive-${String(k).padStart(4, '0')}`, ego: route.poseAt(startOffset + speed * seconds), agents });
  }
  return scenes;
}
