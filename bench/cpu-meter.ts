import { readFileSync } from 'node:fs';

/**
 * Clock ticks per second of /proc/stat and /proc/PID/stat. NOTE: assumed to be 100, the value of
 * sysconf(_SC_CLK_TCK) on common Linux builds; Node.js has no binding to read it.
 */
const TICKS_PER_SECOND = 100;

/**
 * Returns the busy ticks of all CPUs: user, nice, system and steal. Idle and iowait are left out.
 * Interrupt and softirq time is left out too, because the kernel processes the benchmark's own
 * loopback traffic there without charging it to the benchmark's processes.
 */
function totalBusyTicks(): number | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0];
    const fields = line.trim().split(/\s+/).slice(1).map(Number);
    const [user, nice, system, , , , , steal] = fields;
    return user + nice + system + (steal ?? 0);
  } catch {
    return null;
  }
}

/** User and system ticks of one process; 0 once it has exited. */
function processTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name in brackets may contain spaces; the fields after it are fixed.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
}

/**
 * Measures how much CPU other processes on the machine used while a benchmark path ran, so that
 * rows disturbed by other work can be identified.
 */
export class CpuMeter {
  private readonly startBusy: number | null;
  private readonly startOwn: number;
  private readonly started = performance.now();

  /** @param pids the benchmark's own processes (this one and its server), left out of the count */
  constructor(private readonly pids: number[]) {
    this.startBusy = totalBusyTicks();
    this.startOwn = pids.reduce((sum, pid) => sum + processTicks(pid), 0);
  }

  /**
   * Returns the mean CPU use of all other processes since construction [cores], or null where
   * /proc is unavailable or less than 0.2 s passed (too few ticks to count).
   */
  otherCores(): number | null {
    const busy = totalBusyTicks();
    const seconds = (performance.now() - this.started) / 1000;
    if (busy === null || this.startBusy === null || seconds < 0.2) return null;
    const own = this.pids.reduce((sum, pid) => sum + processTicks(pid), 0) - this.startOwn;
    return Math.max(0, (busy - this.startBusy - own) / TICKS_PER_SECOND / seconds);
  }
}
