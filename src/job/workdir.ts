/** The job's working directory on this node: the one rule for sharing it into the job's VM (a real directory of
 * the job's own user: virtiofsd serves it as root, so another user's tree, or /etc, would be open to anyone root in
 * the guest), and where a running job finds it. */
import { realpath } from 'node:fs/promises';
import type { UnixUser } from '../vm/driver.js';
import { workdirProblem } from '../vm/workdirShare.js';
import { Refusal } from './outcome.js';

/** The real path of the job's working directory if it may be shared into its VM; undefined when there is none. */
export async function shareableWorkdir(path: string | undefined, user: UnixUser): Promise<string | undefined> {
  if (path === undefined || path === '') return undefined;
  const bad = (why: string) => new Refusal('workdir', `the job's working directory ${JSON.stringify(path.slice(0, 200))} ${why}; wnod shares only a directory of your own into the VM`);
  if (!path.startsWith('/') || /[\0\n]/.test(path)) throw bad('is not an absolute path');
  const real = await realpath(path).catch(() => undefined);
  if (!real) throw bad('does not exist on this worker node');
  const p = await workdirProblem(real, user.uid);
  if (p?.kind === 'not-dir') throw bad('is not a directory');
  if (p?.kind === 'owner') throw bad(`is owned by uid ${p.uid}, not by ${user.name}`);
  return real;
}

/** The working directory as the running job sees it (resolved), or undefined when it has none or it is gone. */
export async function runningWorkdir(path: string | undefined): Promise<string | undefined> {
  return path ? realpath(path).catch(() => undefined) : undefined;
}
