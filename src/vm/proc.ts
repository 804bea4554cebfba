/** Host process identity: a pid plus its start time (field 22 of /proc/<pid>/stat), so that a recorded pid that
 * the kernel reused for another process is never signalled. */
import { readFile } from 'node:fs/promises';
import { processEnded } from '../util/pid.js';

export interface ProcRef {
  pid: number;
  startTime: string;
}

/** The start time (clock ticks since boot) from a /proc/<pid>/stat line; the comm field may hold spaces and ')'. */
export function parseStatStartTime(stat: string): string | undefined {
  const close = stat.lastIndexOf(')');
  if (close < 0) return undefined;
  const fields = stat.slice(close + 2).split(' ');
  // fields[0] is field 3 (state); field 22 (starttime) is fields[19]
  const st = fields[19];
  return st && /^\d+$/.test(st) ? st : undefined;
}

/** The start time of a live process, or undefined if there is none with that pid. */
export async function procStartTime(pid: number): Promise<string | undefined> {
  if (!Number.isInteger(pid) || pid <= 1) return undefined;
  try {
    return parseStatStartTime(await readFile(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

/** A reference to a live process (for the state record). */
export async function procRef(pid: number): Promise<ProcRef | undefined> {
  const startTime = await procStartTime(pid);
  return startTime === undefined ? undefined : { pid, startTime };
}

/** Is this exact process (same pid, same start time) still alive (zombies count as gone)? */
export async function isAlive(ref: ProcRef | undefined): Promise<boolean> {
  if (!ref) return false;
  try {
    const stat = await readFile(`/proc/${ref.pid}/stat`, 'utf8');
    return parseStatStartTime(stat) === ref.startTime && !(await processEnded(ref.pid, stat));
  } catch {
    return false;
  }
}

/** Signal the process if it is still the one recorded; true if a signal was sent. */
export async function signalIfSame(ref: ProcRef | undefined, signal: NodeJS.Signals): Promise<boolean> {
  if (!ref || !(await isAlive(ref))) return false;
  try {
    process.kill(ref.pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** Wait until the process is gone, at most timeoutMs; true if it is gone. */
export async function waitGone(ref: ProcRef | undefined, timeoutMs: number, pollMs = 20): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!(await isAlive(ref))) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/** Stop a process: SIGTERM, wait graceMs, then SIGKILL and wait for it to go. True if it is gone. */
export async function terminate(ref: ProcRef | undefined, graceMs: number): Promise<boolean> {
  if (!(await isAlive(ref))) return true;
  if (graceMs > 0) {
    await signalIfSame(ref, 'SIGTERM');
    if (await waitGone(ref, graceMs)) return true;
  }
  await signalIfSame(ref, 'SIGKILL');
  return waitGone(ref, 5000);
}
