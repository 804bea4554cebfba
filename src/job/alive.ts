/** Whether a batch job still exists on this node, for `wnod gc` (a VM whose job is gone is an orphan, even while
 * its hypervisor runs: QEMU lives in its own session, so the LRM's kill of the job misses it). Without asking the
 * LRM's server: the core's job record — made when the job's first admission starts, removed by its last teardown —
 * and, on Torque, pbs_mom's own job file `mom_priv/jobs/<id>.JB` (present from before the prologue until the job
 * is purged from the node). */
import { lstat } from 'node:fs/promises';
import { join } from 'node:path';
import type { SiteConfig } from '../config/types.js';
import { readJobRecord } from './jobstate.js';
import { JOB_ID_RE } from './jobId.js';

/** true: the job exists here; false: it is gone; undefined: cannot tell (keep its VM). */
export async function jobOnNode(where: { stateDir: string; lrm?: Pick<SiteConfig['lrm'], 'type' | 'momPriv'> | undefined }, jobId: string): Promise<boolean | undefined> {
  if (jobId.length > 255 || !JOB_ID_RE.test(jobId)) return undefined;
  let rec;
  try {
    rec = await readJobRecord(where.stateDir, jobId);
  } catch {
    return undefined; // unreadable record: not proof of anything
  }
  if (!rec) return false;
  if (where.lrm?.type === 'torque') {
    const jobs = join(where.lrm.momPriv, 'jobs');
    if (!(await lstat(jobs).then((s) => s.isDirectory(), () => false))) return undefined;
    return lstat(join(jobs, `${jobId}.JB`)).then(() => true, () => false);
  }
  return true;
}
