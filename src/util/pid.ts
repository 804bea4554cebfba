/** What /proc says of a pid. A process that has exited but is not reaped yet (a zombie: state Z, or X on its way
 * out) does nothing any more, so it counts as gone: orphans of a killed detached process wait for init to reap
 * them, which some inits (containers' own) do late. */
import { readFile } from 'node:fs/promises';

/** The state letter (field 3) of a /proc/<pid>/stat line; the comm field before it may hold spaces and ')'. Pure. */
export function statState(stat: string): string | undefined {
  const close = stat.lastIndexOf(')');
  return close < 0 ? undefined : stat.charAt(close + 2) || undefined;
}

/** An exited process not yet reaped (pure). */
export const exitedState = (state: string | undefined): boolean => state === 'Z' || state === 'X';

/** Is a process with this pid running (a zombie is not)? */
export async function pidRunning(pid: number): Promise<boolean> {
  if (!Number.isInteger(pid) || pid < 1) return false;
  try {
    return !exitedState(statState(await readFile(`/proc/${pid}/stat`, 'utf8')));
  } catch {
    return false;
  }
}
