import type { Logger } from './logger.js';

/**
 * Logs errors that escaped every handler. An unhandled promise rejection is logged and serving
 * goes on, because each call's own errors are caught where they happen. An uncaught exception may
 * have left state half-updated, so it is logged as fatal and `stop` drains the server and exits 1.
 */
export function installProcessGuards(logger: Logger, stop: (reason: string, exitCode: number) => void): void {
  process.on('unhandledRejection', (reason) => {
    logger.error({ err: reason }, `unhandled promise rejection: ${(reason as Error)?.message ?? String(reason)}`);
  });
  process.on('uncaughtException', (error) => {
    logger.fatal({ err: error }, `uncaught exception, stopping: ${error.message}`);
    stop('uncaughtException', 1);
  });
}
