import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Lines of a child's stderr kept for error messages. */
const KEPT_LOG_LINES = 200;

/**
 * Reads a memory field of /proc/PID/status (VmHWM: peak resident set, VmRSS: current) [bytes].
 * @returns null where /proc is unavailable (not Linux) or the process has exited
 */
export function procMemoryBytes(pid: number, field: 'VmHWM' | 'VmRSS'): number | null {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** A running child process of the benchmark, with its first stdout JSON line. */
/**
 * Returns a function that stops `child`: SIGTERM, then SIGKILL after `graceMs` [ms], resolving once
 * it has exited. Calling it after the child exited does nothing.
 */
export function stopperOf(child: ChildProcess): (graceMs?: number) => Promise<void> {
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return async (graceMs = 5_000) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  };
}

export interface StartedChild<T> {
  child: ChildProcess;
  ready: T;
  /** The last stderr lines. */
  logs: string[];
  /** Sends SIGTERM, then SIGKILL after `graceMs`; resolves once the process exited. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Starts `node SCRIPT ...args` and waits for the first JSON line it writes to stdout.
 * @throws Error with the child's stderr when it exits first or writes no line within `timeoutMs`
 */
export function startChild<T>(script: string, args: string[], timeoutMs: number, env: NodeJS.ProcessEnv = {}): Promise<StartedChild<T>> {
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const logs: string[] = [];
  let pendingErr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    pendingErr += chunk.toString('utf8');
    const lines = pendingErr.split('\n');
    pendingErr = lines.pop() ?? '';
    logs.push(...lines);
    if (logs.length > KEPT_LOG_LINES) logs.splice(0, logs.length - KEPT_LOG_LINES);
  });
  const stop = stopperOf(child);

  return new Promise((resolve, reject) => {
    let pendingOut = '';
    let settled = false;
    const fail = (message: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void stop(1_000).then(() => reject(new Error(`${message}\n${[...logs, pendingErr].join('\n')}`)));
    };
    const timer = setTimeout(() => fail(`${script} did not start within ${timeoutMs} ms`), timeoutMs);
    child.stdout!.on('data', (chunk: Buffer) => {
      pendingOut += chunk.toString('utf8');
      const newline = pendingOut.indexOf('\n');
      if (newline < 0 || settled) return;
      try {
        const ready = JSON.parse(pendingOut.slice(0, newline)) as T;
        settled = true;
        clearTimeout(timer);
        resolve({ child, ready, logs, stop });
      } catch (error) {
        fail(`${script} wrote a line that is not JSON: ${pendingOut.slice(0, newline)} (${(error as Error).message})`);
      }
    });
    child.once('exit', () => fail(`${script} exited with code ${child.exitCode} before it was ready`));
  });
}
