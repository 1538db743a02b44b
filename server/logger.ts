import pino, { type Logger } from 'pino';

/**
 * Creates the service logger: JSON lines on stderr (one object per event), level from
 * RASTERD_LOG_LEVEL (default info).
 */
export function createLogger(level: string = process.env.RASTERD_LOG_LEVEL ?? 'info'): Logger {
  return pino({ name: 'rasterd', level, base: { pid: process.pid } }, pino.destination(2));
}

export type { Logger };
