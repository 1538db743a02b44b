/**
 * Preload module of the transport experiment (`node --import .../nodelay-preload.js bin/rasterd.js
 * serve`): every HTTP/2 server created in the process sets TCP_NODELAY on the sockets it accepts,
 * which turns off Nagle's algorithm. grpc-js 1.14.7 has no option for this, so the module wraps
 * node:http2's createServer, which grpc-js calls when the server binds.
 */
import { createRequire } from 'node:module';
import type * as http2 from 'node:http2';
import type { Socket } from 'node:net';

// require() returns the module object that grpc-js also gets, so grpc-js calls the wrapped createServer.
const http2Module = createRequire(import.meta.url)('node:http2') as typeof http2;
const createServer = http2Module.createServer;
http2Module.createServer = ((...args: Parameters<typeof http2.createServer>) => {
  const server = createServer(...args);
  server.on('connection', (socket: Socket) => socket.setNoDelay(true));
  return server;
}) as typeof http2.createServer;
