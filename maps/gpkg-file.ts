/**
 * Checks of a GeoPackage file that run before GDAL opens it, so that a wrong file, a truncated copy
 * or an unreadable write-ahead log is rejected with a message that names the cause and the fix.
 * GDAL alone reports these as "Error opening dataset" or "database disk image is malformed", or, for
 * the write-ahead log, reads the database without it.
 */
import { accessSync, closeSync, constants, openSync, readSync, statSync } from 'node:fs';
import { dirname } from 'node:path';

import gdal from 'gdal-async';

/** The first 16 bytes of every SQLite 3 database, and so of every GeoPackage. */
const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');
const SQLITE_HEADER_BYTES = 100;
/** A write-ahead log starts with a 32-byte header, before its first frame. */
const WAL_HEADER_BYTES = 32;

function readHeader(path: string): Buffer {
  const header = Buffer.alloc(SQLITE_HEADER_BYTES);
  const fd = openSync(path, 'r');
  try {
    const read = readSync(fd, header, 0, SQLITE_HEADER_BYTES, 0);
    return header.subarray(0, read);
  } finally {
    closeSync(fd);
  }
}

function isWritableFolder(folder: string): boolean {
  try {
    accessSync(folder, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Checks that `path` is a whole SQLite database that SQLite can read from where it is.
 * @throws Error naming the file and the fix when it is missing, not a SQLite database, shorter
 *   than its header records, or in WAL mode with a log that cannot be read in a read-only folder
 */
export function checkSqliteFile(path: string): void {
  let size: number;
  try {
    const stat = statSync(path);
    if (!stat.isFile()) throw new Error(`map ${path} is not a file; pass the path of a map.gpkg file`);
    size = stat.size;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`map ${path} does not exist; check --map, --maps-root and the maps index`);
    throw error;
  }

  const header = readHeader(path);
  if (header.length < SQLITE_HEADER_BYTES || !header.subarray(0, SQLITE_MAGIC.length).equals(SQLITE_MAGIC)) {
    const start = header.subarray(0, 16).toString('latin1').replace(/[^\x20-\x7e]/g, '.');
    throw new Error(`map ${path} is not a GeoPackage: it does not start with the SQLite 3 header (its first bytes read '${start}'); pass a nuPlan map.gpkg file`);
  }

  // The header stores the page size at offset 16 (1 means 65536) and the page count at offset 28.
  // The count is valid only when the change counter (offset 24) equals offset 92.
  const rawPageSize = header.readUInt16BE(16);
  const pageSize = rawPageSize === 1 ? 65_536 : rawPageSize;
  const pageCount = header.readUInt32BE(28);
  const countIsValid = header.readUInt32BE(24) === header.readUInt32BE(92);
  if (countIsValid && pageCount > 0 && size < pageSize * pageCount) {
    throw new Error(
      `map ${path} is truncated: its header records ${pageCount} pages of ${pageSize} bytes (${pageSize * pageCount} bytes) but the file has ${size} bytes; copy the map again`,
    );
  }

  // Write version 2 at offset 18 marks WAL mode.
  if (header[18] !== 2) return;
  const walPath = `${path}-wal`;
  let walSize = 0;
  try {
    walSize = statSync(walPath).size;
  } catch {
    return;
  }
  const shmExists = (() => {
    try {
      statSync(`${path}-shm`);
      return true;
    } catch {
      return false;
    }
  })();
  // SQLite needs the -shm index to read a log that it cannot recover. In a read-only folder without
  // that index, GDAL opens the file as immutable and silently ignores the log's changes.
  if (walSize > WAL_HEADER_BYTES && !shmExists && !isWritableFolder(dirname(path))) {
    throw new Error(
      `map ${path} has changes in its write-ahead log ${walPath} that SQLite cannot read in the read-only folder ${dirname(path)} without ${path}-shm; ` +
        `checkpoint it where the folder is writable (sqlite3 ${path} 'PRAGMA wal_checkpoint(TRUNCATE)') or copy the map and its -wal file to a writable folder`,
    );
  }
}

/** One row of gpkg_geometry_columns. */
export interface GeometryColumn {
  table: string;
  column: string;
  /** gpkg_spatial_ref_sys id: 0 is undefined geographic, -1 undefined Cartesian. */
  srsId: number;
  /** Declared type, e.g. POLYGON, MULTIPOLYGON, CURVEPOLYGON, GEOMETRY. */
  geometryType: string;
}

/**
 * Reads gpkg_geometry_columns: which column of each table contains its geometry, and under which srs_id.
 * @param resultSets receives the SQL result layer, which the caller must keep referenced until it
 *   closes `dataset`. gdal-async 3.12 releases a result layer collected by the garbage collector
 *   under the dataset's lock, and a collection during another call on the same dataset, which holds
 *   that lock, deadlocks the process.
 * @returns the rows by table name
 */
export function readGeometryColumns(dataset: gdal.Dataset, path: string, resultSets: gdal.Layer[]): Map<string, GeometryColumn> {
  let result: gdal.Layer;
  try {
    result = dataset.executeSQL('SELECT table_name, column_name, srs_id, geometry_type_name FROM gpkg_geometry_columns');
    resultSets.push(result);
  } catch (error) {
    throw new Error(`map ${path} has no readable gpkg_geometry_columns table, so it is not a valid GeoPackage: ${(error as Error).message}`);
  }
  const columns = new Map<string, GeometryColumn>();
  result.features.forEach((feature) => {
    const row = feature.fields.toObject() as Record<string, unknown>;
    const table = String(row.table_name);
    columns.set(table, {
      table,
      column: String(row.column_name),
      srsId: Number(row.srs_id),
      geometryType: String(row.geometry_type_name ?? '').toUpperCase(),
    });
  });
  return columns;
}
