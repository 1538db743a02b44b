/**
 * Transport floor servers for the benchmark: a plain TCP server and two HTTP/2 servers on
 * 127.0.0.1, all responding to each request with a body of the requested size. Writes one JSON line
 * to stdout when listening: {"tcpPort", "http2Port", "http2NoDelayPort"}.
 *
 * TCP: the client sends the size as a 4-byte big-endian integer; the server writes that many bytes.
 * HTTP/2: GET /bytes/N returns status 200 with N bytes. The second HTTP/2 server disables Nagle's
 * algorithm on its sockets (setNoDelay), which grpc-js 1.14 does not do on its server side.
 */
import { createServer as createHttp2Server, type Http2Server, type ServerHttp2Stream } from 'node:http2';
import { createServer as createTcpServer, type AddressInfo, type Server, type Socket } from 'node:net';

/** Largest body served [bytes]; larger requests get status 400. */
const MAX_BODY_BYTES = 256 * 1024 * 1024;
const payload = Buffer.alloc(MAX_BODY_BYTES >> 4, 0x5a);

function bodyOf(size: number): Buffer[] {
  const chunks: Buffer[] = [];
  for (let remaining = size; remaining > 0; remaining -= payload.length) chunks.push(payload.subarray(0, Math.min(payload.length, remaining)));
  return chunks;
}

function serveTcp(socket: Socket): void {
  socket.setNoDelay(true);
  let pending = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 4) {
      const size = Math.min(pending.readUInt32BE(0), MAX_BODY_BYTES);
      pending = pending.subarray(4);
      for (const part of bodyOf(size)) socket.write(part);
    }
  });
  socket.on('error', () => socket.destroy());
}

function serveHttp2(stream: ServerHttp2Stream, path: string): void {
  const match = /^\/bytes\/(\d+)$/.exec(path);
  const size = match ? Number(match[1]) : NaN;
  if (!(size >= 0 && size <= MAX_BODY_BYTES)) {
    stream.respond({ ':status': 400 });
    stream.end();
    return;
  }
  stream.respond({ ':status': 200, 'content-type': 'application/octet-stream' });
  const parts = bodyOf(size);
  parts.forEach((part, i) => (i === parts.length - 1 ? stream.end(part) : stream.write(part)));
  if (parts.length === 0) stream.end();
}

function http2Server(noDelay: boolean): Http2Server {
  const server = createHttp2Server();
  if (noDelay) server.on('connection', (socket: Socket) => socket.setNoDelay(true));
  server.on('stream', (stream, headers) => serveHttp2(stream, String(headers[':path'] ?? '')));
  server.on('sessionError', () => undefined);
  return server;
}

function listen(server: Server | Http2Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

async function main(): Promise<void> {
  const tcpPort = await listen(createTcpServer(serveTcp));
  const http2Port = await listen(http2Server(false));
  const http2NoDelayPort = await listen(http2Server(true));
  process.stdout.write(`${JSON.stringify({ tcpPort, http2Port, http2NoDelayPort })}\n`);
  process.on('SIGTERM', () => process.exit(0));
}

main().catch((error: unknown) => {
  process.stderr.write(`transport-child: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  process.exit(1);
});
