/**
 * CPU accounting for the benchmarks, from /proc (Linux): on a shared 2-core box wall-clock rates follow
 * whatever CPU the other tenants leave, so each bench also says how many CPU seconds each part of the
 * pipeline used.
 */
import { readdirSync, readFileSync } from 'node:fs';

const CLOCK_TICKS = 100; // USER_HZ

/** CPU seconds (user + system) a process has used so far; 0 when it is gone or unreadable. */
export function procCpuSecs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

function pids(): number[] {
  return readdirSync('/proc')
    .filter((d) => /^[0-9]+$/.test(d))
    .map(Number);
}

/** The pid of the local nats-server listening on the port of `url` (undefined if none is found). */
export function natsServerPid(url: string): number | undefined {
  const port = new URL(url.replace(/^nats:/, 'http:')).port || '4222';
  for (const pid of pids()) {
    try {
      const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (args[0]?.endsWith('nats-server') && args.includes('-p') && args[args.indexOf('-p') + 1] === port) return pid;
    } catch {
      // gone
    }
  }
  return undefined;
}

/** CPU seconds so far of every process whose name (`comm`) is one of `names`, by pid. */
export function cpuByName(names: readonly string[]): Map<number, number> {
  const out = new Map<number, number>();
  for (const pid of pids()) {
    try {
      const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      if (names.includes(comm)) out.set(pid, procCpuSecs(pid));
    } catch {
      // gone
    }
  }
  return out;
}

/** CPU seconds used since `before` by the processes of `after` (a process that started meanwhile counts whole). */
export function cpuSince(before: ReadonlyMap<number, number>, after: ReadonlyMap<number, number>): number {
  let s = 0;
  for (const [pid, t] of after) s += t - (before.get(pid) ?? 0);
  return s;
}
