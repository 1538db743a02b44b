/**
 * Helpers that damage copies of a GeoPackage for the bad-map tests. SQL runs through GDAL, whose
 * SQLite functions the GeoPackage triggers need. WKB and GeoPackage geometry blobs are written by
 * hand, in either byte order, with Z and M ordinates, as multi-parts or as curves.
 */
import gdal from 'gdal-async';

/**
 * SQL result layers by dataset, kept referenced until the dataset is closed: gdal-async 3.12
 * deadlocks when the garbage collector releases one during another call on the same dataset.
 */
const resultSets = new WeakMap<gdal.Dataset, gdal.Layer[]>();

/**
 * Runs one SQL statement on a GeoPackage opened for update.
 * gdal-async 3.12 throws an Error with an empty message for statements that return no rows (UPDATE,
 * DELETE, INSERT), so only errors with a message are raised.
 */
export function execute(dataset: gdal.Dataset, sql: string): void {
  try {
    const result = dataset.executeSQL(sql);
    const kept = resultSets.get(dataset) ?? [];
    kept.push(result);
    resultSets.set(dataset, kept);
  } catch (error) {
    if ((error as Error).message) throw new Error(`${sql}: ${(error as Error).message}`);
  }
}

/** Opens `path` for update, runs `edit`, and closes it so the changes reach the file. */
export function editMap(path: string, edit: (dataset: gdal.Dataset) => void): void {
  const dataset = gdal.open(path, 'r+', ['GPKG']);
  try {
    edit(dataset);
  } finally {
    dataset.close();
  }
}

/** Rings (polygon) or the single line (line string) of a feature, as [x, y] pairs in the stored CRS. */
export function readRings(dataset: gdal.Dataset, table: string, fid: number): number[][][] {
  const geometry = JSON.parse(dataset.layers.get(table).features.get(fid).getGeometry().toJSON()) as { type: string; coordinates: unknown };
  if (geometry.type === 'Polygon') return geometry.coordinates as number[][][];
  if (geometry.type === 'LineString') return [geometry.coordinates as number[][]];
  throw new Error(`${table} fid ${fid} is a ${geometry.type}, not a Polygon or LineString`);
}

/** How a WKB geometry is written. */
export interface WkbOptions {
  bigEndian?: boolean;
  /** Extra ordinates written after x, y; their values do not matter to the reader. */
  z?: boolean;
  m?: boolean;
}

class WkbWriter {
  private readonly parts: Buffer[] = [];
  constructor(private readonly bigEndian: boolean) {}

  byteOrder(): void {
    this.parts.push(Buffer.from([this.bigEndian ? 0 : 1]));
  }

  uint32(value: number): void {
    const buffer = Buffer.alloc(4);
    if (this.bigEndian) buffer.writeUInt32BE(value);
    else buffer.writeUInt32LE(value);
    this.parts.push(buffer);
  }

  double(value: number): void {
    const buffer = Buffer.alloc(8);
    if (this.bigEndian) buffer.writeDoubleBE(value);
    else buffer.writeDoubleLE(value);
    this.parts.push(buffer);
  }

  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** ISO WKB type code: 1000 adds Z, 2000 adds M, 3000 both. */
function isoType(base: number, options: WkbOptions): number {
  return base + (options.z ? 1000 : 0) + (options.m ? 2000 : 0);
}

function writePoints(writer: WkbWriter, points: number[][], options: WkbOptions): void {
  writer.uint32(points.length);
  for (const [x, y] of points) {
    writer.double(x);
    writer.double(y);
    if (options.z) writer.double(101.5);
    if (options.m) writer.double(7);
  }
}

/** ISO WKB of a Polygon (type 3) with the given rings. */
export function polygonWkb(rings: number[][][], options: WkbOptions = {}): Buffer {
  const writer = new WkbWriter(options.bigEndian ?? false);
  writer.byteOrder();
  writer.uint32(isoType(3, options));
  writer.uint32(rings.length);
  for (const ring of rings) writePoints(writer, ring, options);
  return writer.bytes();
}

/** ISO WKB of a LineString (type 2). */
export function lineStringWkb(points: number[][], options: WkbOptions = {}): Buffer {
  const writer = new WkbWriter(options.bigEndian ?? false);
  writer.byteOrder();
  writer.uint32(isoType(2, options));
  writePoints(writer, points, options);
  return writer.bytes();
}

/** ISO WKB of a MultiPolygon (type 6) of already encoded polygons. */
export function multiPolygonWkb(polygons: Buffer[]): Buffer {
  const writer = new WkbWriter(false);
  writer.byteOrder();
  writer.uint32(6);
  writer.uint32(polygons.length);
  return Buffer.concat([writer.bytes(), ...polygons]);
}

/** ISO WKB of a CurvePolygon (type 10) whose one ring is a CircularString (type 8) through `points`. */
export function curvePolygonWkb(points: number[][]): Buffer {
  const writer = new WkbWriter(false);
  writer.byteOrder();
  writer.uint32(10);
  writer.uint32(1);
  writer.byteOrder();
  writer.uint32(8);
  writePoints(writer, points, {});
  return writer.bytes();
}

/**
 * GeoPackage geometry blob: 'GP', version 0, flags (bit 0: little-endian header, bit 4: empty
 * geometry), srs_id, no envelope, then the WKB.
 */
export function gpkgBlob(wkb: Buffer, srsId: number, options: { bigEndian?: boolean; empty?: boolean } = {}): Buffer {
  const header = Buffer.alloc(8);
  header.write('GP', 0, 'latin1');
  header[2] = 0;
  header[3] = (options.bigEndian ? 0 : 1) | (options.empty ? 0x10 : 0);
  if (options.bigEndian) header.writeInt32BE(srsId, 4);
  else header.writeInt32LE(srsId, 4);
  return Buffer.concat([header, wkb]);
}

/** Sets the geometry of one feature to a GeoPackage blob. */
export function setGeometryBlob(dataset: gdal.Dataset, table: string, fid: number, blob: Buffer | null, column = 'geom'): void {
  execute(dataset, `UPDATE "${table}" SET "${column}" = ${blob === null ? 'NULL' : `X'${blob.toString('hex')}'`} WHERE fid = ${fid}`);
}
