/** Slurm job ids as wnod accepts them: a plain job id (no array `_N` or het `+N` suffix), a decimal below
 * Slurm's NO_VAL. Everything that builds a path or a command from a job id goes through here first. */
import { WnodError } from '../../util/errors.js';

export class SlurmJobIdError extends WnodError {
  constructor(message: string) {
    super('bad-job-id', message);
  }
}

const SLURM_JOB_ID = /^[1-9][0-9]{0,9}$/;

export function parseSlurmJobId(value: string | undefined, what = 'SLURM_JOB_ID'): string {
  if (value === undefined || !SLURM_JOB_ID.test(value) || Number(value) >= 0xfffffffe) {
    throw new SlurmJobIdError(`${what} ${JSON.stringify((value ?? '').slice(0, 40))} is not a Slurm job id`);
  }
  return value;
}
