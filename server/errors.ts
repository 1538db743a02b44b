import { status, type ServiceError } from '@grpc/grpc-js';

import { MapLayerUnavailableError } from '../raster/map-query.js';
import { InvalidRequestError } from './request.js';

/** An error that carries its gRPC status code. */
export class StatusError extends Error {
  constructor(readonly code: status, message: string) {
    super(message);
    this.name = 'StatusError';
  }
}

/** Maps an error thrown while serving a call to the status the caller gets. */
export function toServiceError(error: unknown): Partial<ServiceError> {
  if (error instanceof StatusError) return { code: error.code, details: error.message };
  if (error instanceof InvalidRequestError) return { code: status.INVALID_ARGUMENT, details: error.message };
  if (error instanceof MapLayerUnavailableError) return { code: status.FAILED_PRECONDITION, details: error.message };
  return { code: status.INTERNAL, details: `internal error: ${(error as Error)?.message ?? String(error)}` };
}

/** Tests whether the caller, not the server, is at fault: such errors get a reply but are not logged as server errors. */
export function isClientError(error: unknown): boolean {
  return error instanceof InvalidRequestError || error instanceof MapLayerUnavailableError ||
    (error instanceof StatusError && error.code !== status.INTERNAL);
}
