import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import * as protoLoader from '@grpc/proto-loader';

/** Options under which every component decodes messages: camelCase fields, enum names, int64 as numbers. */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: false,
  oneofs: true,
};

/** Finds the proto folder from this file, in both the sources (server/) and the build (dist/server/). */
export function protoRoot(): string {
  for (const relative of ['../proto', '../../proto']) {
    const candidate = fileURLToPath(new URL(relative, import.meta.url));
    if (existsSync(`${candidate}/rasterd/v1/raster_service.proto`)) return candidate;
  }
  throw new Error('proto/rasterd/v1/raster_service.proto not found beside the server; reinstall rasterd');
}

/** Loads rasterd.v1 (RasterService and its messages). */
export function loadRasterProto(): protoLoader.PackageDefinition {
  return protoLoader.loadSync('rasterd/v1/raster_service.proto', { ...PROTO_LOADER_OPTIONS, includeDirs: [protoRoot()] });
}

export const SERVICE_NAME = 'rasterd.v1.RasterService';
