import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** One map file to load under a name. */
export interface MapSource {
  name: string;
  version: string;
  path: string;
}

export const DEFAULT_MAP_VERSION = 'nuplan-maps-v1.0';

/**
 * Lists the maps of a nuPlan maps root the way GPKGMapsDB finds them: `DIR/<mapVersion>.json` maps
 * each location to {"version": V}, and the file is `DIR/<location>/<V>/map.gpkg`.
 * @throws Error naming the file and what to pass instead when the index is missing or malformed
 */
export function listMapsRoot(root: string, mapVersion: string = DEFAULT_MAP_VERSION): MapSource[] {
  const indexPath = join(root, `${mapVersion}.json`);
  if (!existsSync(indexPath)) {
    throw new Error(`maps root ${root} has no ${mapVersion}.json; pass the folder that contains it with --maps-root, or choose the index with --map-version`);
  }

  let index: unknown;
  try {
    index = JSON.parse(readFileSync(indexPath, 'utf8'));
  } catch (error) {
    throw new Error(`${indexPath} is not valid JSON: ${(error as Error).message}`);
  }
  if (index === null || typeof index !== 'object' || Array.isArray(index)) {
    throw new Error(`${indexPath} must map each location to {"version": "..."}`);
  }

  return Object.entries(index as Record<string, unknown>).map(([location, entry]) => {
    const version = (entry as { version?: unknown } | null)?.version;
    if (typeof version !== 'string' || version.length === 0) {
      throw new Error(`${indexPath}: location '${location}' has no "version" string`);
    }
    return { name: location, version, path: join(root, location, version, 'map.gpkg') };
  });
}

/**
 * Parses `--map NAME=PATH.gpkg`.
 * @throws Error quoting the value when it has no '=' or an empty side
 */
export function parseMapFlag(value: string): MapSource {
  const separator = value.indexOf('=');
  if (separator <= 0 || separator === value.length - 1) {
    throw new Error(`--map '${value}' must look like NAME=PATH.gpkg`);
  }
  return { name: value.slice(0, separator), version: 'file', path: value.slice(separator + 1) };
}
