/**
 * A gRPC client that sends request bytes as they are, so that tests can send truncated or
 * corrupted protobuf messages, plus the encoders and decoders of rasterd.v1 to build such bytes.
 */
import { join } from 'node:path';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

import { REPO_ROOT } from './fixtures.js';

const definition = protoLoader.loadSync('rasterd/v1/raster_service.proto', {
  includeDirs: [join(REPO_ROOT, 'proto')], keepCase: false, longs: Number, enums: String, defaults: false, oneofs: true,
});
const service = definition['rasterd.v1.RasterService'] as grpc.ServiceDefinition;

/** Encodes a request object (camelCase fields, as the generated clients take) for `method`. */
export function encodeRequest(method: string, request: unknown): Buffer {
  return service[method].requestSerialize(request);
}

/** Decodes the response bytes of `method`. */
export function decodeResponse<T>(method: string, bytes: Buffer): T {
  return service[method].responseDeserialize(bytes) as T;
}

/** The outcome of one call: OK with the response bytes, or a status. */
export interface RawReply {
  code: grpc.status;
  details: string;
  bytes?: Buffer;
  metadata?: grpc.Metadata;
}

/** A client for any rasterd.v1.RasterService method that takes and returns raw bytes. */
export class RawClient {
  private readonly client: grpc.Client;

  constructor(target: string) {
    this.client = new grpc.Client(target, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1 });
  }

  /** Calls a unary method with `bytes` as the request. Never rejects; failures come back as their status. */
  unary(method: string, bytes: Buffer, deadlineMs = 30_000, metadata = new grpc.Metadata()): Promise<RawReply> {
    return new Promise((resolve) => {
      let trailer: grpc.Metadata | undefined;
      const call = this.client.makeUnaryRequest<Buffer, Buffer>(
        `/rasterd.v1.RasterService/${method}`, (value) => value, (value) => value, bytes, metadata, { deadline: Date.now() + deadlineMs },
        (error, response) => {
          if (error) resolve({ code: error.code, details: error.details, metadata: error.metadata });
          else resolve({ code: grpc.status.OK, details: '', bytes: response, metadata: trailer });
        },
      );
      call.on('status', (status) => {
        trailer = status.metadata;
      });
    });
  }

  /**
   * Sends each message of `messages` on one RasterizeStream and half-closes it.
   * @returns the responses received and the final status
   */
  stream(messages: Buffer[], deadlineMs = 30_000): Promise<{ responses: Buffer[]; code: grpc.status; details: string }> {
    return new Promise((resolve) => {
      const call = this.client.makeBidiStreamRequest<Buffer, Buffer>(
        '/rasterd.v1.RasterService/RasterizeStream', (value) => value, (value) => value, new grpc.Metadata(), { deadline: Date.now() + deadlineMs },
      );
      const responses: Buffer[] = [];
      let settled = false;
      const settle = (code: grpc.status, details: string): void => {
        if (settled) return;
        settled = true;
        resolve({ responses, code, details });
      };
      call.on('data', (response: Buffer) => responses.push(response));
      call.on('error', (error: grpc.ServiceError) => settle(error.code, error.details));
      call.on('status', (status: grpc.StatusObject) => {
        if (status.code === grpc.status.OK) settle(status.code, status.details);
      });
      for (const message of messages) call.write(message);
      call.end();
    });
  }

  close(): void {
    this.client.close();
  }
}
