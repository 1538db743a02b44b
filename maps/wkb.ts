/**
 * A minimal reader of OGC/ISO well-known binary for the geometry types nuPlan maps use: points are
 * ignored; line strings, polygons and their multi-part forms are appended to flat coordinate
 * buffers. Z and M ordinates are skipped. Both byte orders are read.
 */

/** Ring or line parts of one geometry, appended to the map-wide buffers. */
export interface WkbSink {
  /** Appends a vertex [m or deg]. */
  addVertex(x: number, y: number): void;
  /** Starts a ring (polygon) or a line; `hole` marks a polygon's interior ring. */
  startRing(hole: boolean): void;
}

const WKB_LINESTRING = 2;
const WKB_POLYGON = 3;
const WKB_MULTILINESTRING = 5;
const WKB_MULTIPOLYGON = 6;
const WKB_COLLECTION = 7;

/** Parses one geometry from `buffer` at `offset`; returns the offset after it. Throws on types it cannot draw. */
export function readWkb(buffer: Buffer, offset: number, sink: WkbSink): number {
  const littleEndian = buffer.readUInt8(offset) === 1;
  offset += 1;
  const rawType = littleEndian ? buffer.readUInt32LE(offset) : buffer.readUInt32BE(offset);
  offset += 4;

  // ISO codes add 1000 (Z), 2000 (M) or 3000 (ZM); EWKB-style flags set the high bits.
  const hasZFlag = (rawType & 0x80000000) !== 0;
  const hasMFlag = (rawType & 0x40000000) !== 0;
  const isoType = rawType & 0x0fffffff;
  const baseType = isoType % 1000;
  const isoDims = Math.floor(isoType / 1000);
  const hasZ = hasZFlag || isoDims === 1 || isoDims === 3;
  const hasM = hasMFlag || isoDims === 2 || isoDims === 3;
  const stride = 16 + (hasZ ? 8 : 0) + (hasM ? 8 : 0);

  const readCount = (): number => {
    const count = littleEndian ? buffer.readUInt32LE(offset) : buffer.readUInt32BE(offset);
    offset += 4;
    return count;
  };
  const readPoints = (): void => {
    const count = readCount();
    if (offset + count * stride > buffer.length) throw new Error(`WKB is truncated: ${count} points need ${count * stride} bytes`);
    for (let i = 0; i < count; i++) {
      const x = littleEndian ? buffer.readDoubleLE(offset) : buffer.readDoubleBE(offset);
      const y = littleEndian ? buffer.readDoubleLE(offset + 8) : buffer.readDoubleBE(offset + 8);
      sink.addVertex(x, y);
      offset += stride;
    }
  };

  switch (baseType) {
    case WKB_LINESTRING:
      sink.startRing(false);
      readPoints();
      return offset;
    case WKB_POLYGON: {
      const rings = readCount();
      for (let ring = 0; ring < rings; ring++) {
        sink.startRing(ring > 0);
        readPoints();
      }
      return offset;
    }
    case WKB_MULTILINESTRING:
    case WKB_MULTIPOLYGON:
    case WKB_COLLECTION: {
      const parts = readCount();
      for (let part = 0; part < parts; part++) offset = readWkb(buffer, offset, sink);
      return offset;
    }
    default:
      throw new Error(`WKB geometry type ${rawType} is not a line string or polygon`);
  }
}
