import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';

/**
 * Asks a server's grpc.health.v1 service for its status (for container health checks).
 * @param target host:port
 * @param service service name; '' is the whole server
 * @param timeoutMs deadline of the check [ms]
 * @returns the status name, e.g. 'SERVING'
 * @throws Error with the target when the server cannot be reached in time
 */
export async function checkHealth(target: string, service = '', timeoutMs = 3000): Promise<string> {
  const Health = grpc.makeGenericClientConstructor(healthService as grpc.ServiceDefinition, 'Health');
  const client = new Health(target, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    check(request: { service: string }, options: grpc.CallOptions, callback: (error: grpc.ServiceError | null, reply?: { status: string }) => void): void;
  };
  try {
    return await new Promise<string>((resolve, reject) => {
      client.check({ service }, { deadline: Date.now() + timeoutMs }, (error, reply) => {
        if (error) reject(new Error(`health check of ${target} failed: ${error.details || error.message}`));
        else resolve(reply?.status ?? 'UNKNOWN');
      });
    });
  } finally {
    client.close();
  }
}
