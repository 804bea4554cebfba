/** Who a job runs as on this node: the one rule for the job user (known locally, never root). */
import type { UnixUser } from '../vm/driver.js';
import { lookupUser } from '../util/unixUsers.js';
import { Refusal } from './outcome.js';

/** The job user's uid/gid on this node (the guest gets the same). Root and unknown users are refused. */
export async function jobUser(name: string): Promise<UnixUser> {
  const e = await lookupUser(name);
  if (!e) throw new Refusal('unknown-user', `the job's user ${name} is not known on this worker node`);
  if (e.uid === 0) throw new Refusal('root-job', 'jobs of root are not run in a wnod VM');
  return { name, uid: e.uid, gid: e.gid };
}
