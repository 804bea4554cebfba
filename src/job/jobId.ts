/** Job ids as the core accepts them: they name files on the node (records, mode markers, VM ids), so the rule is
 * strict — Torque's `13.host` / `7[2].host` and Slurm's plain numbers. Adapters validate with their own message. */
import { WnodError } from '../util/errors.js';

export const JOB_ID_RE = /^[0-9]+(\[[0-9]*\])?(\.[A-Za-z0-9.-]+)?$/;

/** `id` if it is a job id the core can name files by; throws otherwise. */
export function checkJobId(id: string): string {
  if (id.length > 255 || !JOB_ID_RE.test(id)) throw new WnodError('bad-job-id', `${JSON.stringify(id.slice(0, 80))} is not a job id wnod can name files by`);
  return id;
}
