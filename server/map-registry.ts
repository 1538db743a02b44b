import { loadMap } from '../maps/map-cache.js';
import type { MapData } from '../maps/map-data.js';
import type { MapSource } from '../maps/maps-root.js';
import { attachRoadmapTiles, RoadmapTiles } from '../raster/roadmap-tiles.js';
import type { RasterSettings } from '../raster/settings.js';
import type { Logger } from './logger.js';

/** A map that failed to load, with the reason. */
export interface MapFailure {
  source: MapSource;
  reason: string;
}

/** The maps a server has loaded, by name. */
export class MapRegistry {
  readonly maps = new Map<string, MapData>();
  readonly failures: MapFailure[] = [];
  /** Load warnings per loaded map (each warning covers one problem in one table). */
  readonly warningCounts = new Map<string, number>();

  /**
   * @param cacheDir folder for map snapshots (see maps/map-cache.ts); undefined disables them
   */
  constructor(private readonly logger: Logger, private readonly cacheDir?: string, private readonly defaults?: RasterSettings) {}

  /** Returns the loaded map named `name`, or undefined. */
  get(name: string): MapData | undefined {
    return this.maps.get(name);
  }

  /** Names of the loaded maps, sorted. */
  names(): string[] {
    return [...this.maps.keys()].sort();
  }

  /** Builds (or reads from the cache) the roadmap tiles of a map for the server's default settings. */
  private async buildTiles(map: MapData, defaults: RasterSettings): Promise<void> {
    try {
      const { tiles, fromCache } = await RoadmapTiles.load(map, defaults, { cacheDir: this.cacheDir, logger: this.logger });
      attachRoadmapTiles(map, tiles);
      const count = tiles.tiles.filter((tile) => tile !== null).length;
      this.logger.info({ map: map.name, tiles: count, fromCache }, `map ${map.name}: ${count} roadmap tiles ${fromCache ? 'read from the cache' : 'built'}`);
    } catch (error) {
      this.logger.warn({ map: map.name, err: (error as Error).message }, `map ${map.name}: roadmap tiles not built, so tiles mode is unavailable for it`);
    }
  }

  /**
   * Loads every source, each fully (all tables and indexes) before serving. A map that fails is
   * logged with its reason and skipped; the others still load.
   * @param showProgress draw a progress bar on stderr (when it is a terminal)
   */
  async loadAll(sources: MapSource[], showProgress: boolean): Promise<void> {
    for (const source of sources) {
      if (this.maps.has(source.name)) {
        const reason = `a map named '${source.name}' is already loaded; give each --map a distinct NAME`;
        this.failures.push({ source, reason });
        this.logger.error({ map: source.name, path: source.path, reason }, `map ${source.name} (${source.path}) skipped: ${reason}`);
        continue;
      }
      let warnings = 0;
      try {
        const { map, fromCache } = await loadMap(source, {
          cacheDir: this.cacheDir,
          name: source.name,
          version: source.version,
          onTable: showProgress ? (table, done, total) => drawProgress(source.name, table, done, total) : undefined,
          onWarning: (warning) => {
            warnings++;
            this.logger.warn({ map: source.name, path: source.path, ...warning }, `map ${source.name} (${source.path}), table ${warning.table}: ${warning.message}`);
          },
        });
        if (showProgress) process.stderr.write('\n');
        this.maps.set(source.name, map);
        this.warningCounts.set(source.name, warnings);
        if (this.defaults) await this.buildTiles(map, this.defaults);
        this.logger.info(
          {
            map: source.name, path: source.path, projectedCrs: map.projectedCrs, layerCounts: map.layerCounts, vertices: map.coords.length / 2,
            loadMs: Math.round(map.loadMs), warnings, fromCache,
          },
          `map ${source.name} loaded in ${Math.round(map.loadMs)} ms${fromCache ? ' from its snapshot' : ''}${warnings > 0 ? ` with ${warnings} warnings` : ''}`,
        );
      } catch (error) {
        if (showProgress) process.stderr.write('\n');
        const reason = (error as Error).message;
        this.failures.push({ source, reason });
        this.logger.error({ map: source.name, path: source.path, reason }, `map ${source.name} failed to load, so it is not served: ${reason}`);
      }
      // Let health checks and other timers run between maps.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
}

function drawProgress(map: string, table: string, done: number, total: number): void {
  const width = 30;
  const filled = Math.round((done / total) * width);
  process.stderr.write(`\r${map.padEnd(24).slice(0, 24)} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${table.padEnd(42)}`);
}
