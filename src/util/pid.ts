/** What /proc says of a pid. A process that has exited but is not reaped yet (a zombie: state Z, or X on its way
 * out) does nothing any more, so it counts as gone: orphans of a killed detached process wait for init to reap
 * them, which some inits (containers' own) do late. But /proc/<pid>/stat is its first thread's: that one is a zombie
 * as soon as it exits, while another thread of the process may still be inside a syscall (SIGKILL waits for an
 * uninterruptible one, a file creation or an fsync on a busy disk, to return) — until every thread has gone, the
 * process can still change files. */
import { readdir, readFile } from 'node:fs/promises';

/** The state letter (field 3) of a /proc/<pid>/stat line; the comm field before it may hold spaces and ')'. Pure. */
export function statState(stat: string): string | undefined {
  const close = stat.lastIndexOf(')');
  return close < 0 ? undefined : stat.charAt(close + 2) || undefined;
}

/** An exited process not yet reaped (pure). */
export const exitedState = (state: string | undefined): boolean => state === 'Z' || state === 'X';

/** Has the process whose first thread's /proc/<pid>/stat reads `stat` ended, every thread of it? */
export async function processEnded(pid: number, stat: string): Promise<boolean> {
  if (!exitedState(statState(stat))) return false;
  // its first thread is a zombie; the others are listed beside it until they have exited too
  const tasks = await readdir(`/proc/${pid}/task`).catch(() => [] as string[]);
  return tasks.every((t) => t === String(pid));
}

/** Is a process with this pid running (a zombie whose threads have all gone is not)? */
export async function pidRunning(pid: number): Promise<boolean> {
  if (!Number.isInteger(pid) || pid < 1) return false;
  let stat: string;
  try {
    stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false;
  }
  return !(await processEnded(pid, stat));
}
