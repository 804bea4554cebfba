/** Finding and reading the job script pbs_mom keeps in `<mom_priv>/jobs/<id>.SC` — by a path we build from the
 * configured mom_priv and a validated job id, never from a path the job could have influenced. */
import { open, lstat, realpath } from 'node:fs/promises';
import { constants } from 'node:fs';
import { join, resolve } from 'node:path';
import { WnodError } from '../../util/errors.js';
import { parseJobId } from './argv.js';

/** The job script is missing, or not a regular file inside mom_priv/jobs. */
export class JobScriptError extends WnodError {
  constructor(code: 'script-missing' | 'script-unsafe', message: string) {
    super(code, message);
  }
}

/** Scripts above this are not read whole: the ticket line sits in the directives at the top. */
export const MAX_SCRIPT_BYTES = 1024 * 1024;

/** The script path for a job: `<momPriv>/jobs/<jobId>.SC`. A path given by pbs_mom (argv[8]) must be exactly it. */
export function jobScriptPath(momPriv: string, jobId: string, argvPath?: string): string {
  parseJobId(jobId);
  const expected = join(resolve(momPriv), 'jobs', `${jobId}.SC`);
  if (argvPath !== undefined && resolve(argvPath) !== expected) {
    throw new JobScriptError('script-unsafe', `job script path ${JSON.stringify(argvPath)} from argv is not ${expected} (mom_priv from the config)`);
  }
  return expected;
}

/** Read the job script of `jobId` (bounded): refuses symlinks, non-regular files and anything outside mom_priv/jobs. */
export async function readJobScript(momPriv: string, jobId: string, argvPath?: string, maxBytes = MAX_SCRIPT_BYTES): Promise<string> {
  const path = jobScriptPath(momPriv, jobId, argvPath);
  const jobsDir = await realpath(join(resolve(momPriv), 'jobs')).catch(() => {
    throw new JobScriptError('script-missing', `mom_priv jobs directory ${join(momPriv, 'jobs')} does not exist`);
  });
  let st;
  try {
    st = await lstat(path);
  } catch {
    throw new JobScriptError('script-missing', `job script ${path} does not exist`);
  }
  if (st.isSymbolicLink()) throw new JobScriptError('script-unsafe', `job script ${path} is a symbolic link`);
  if (!st.isFile()) throw new JobScriptError('script-unsafe', `job script ${path} is not a regular file`);
  // O_NOFOLLOW closes the race between lstat and open; the fstat check pins the opened file to what we inspected.
  const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    const fst = await fh.stat();
    if (!fst.isFile() || fst.ino !== st.ino || fst.dev !== st.dev) throw new JobScriptError('script-unsafe', `job script ${path} changed while opening it`);
    if ((await realpath(path)) !== join(jobsDir, `${jobId}.SC`)) throw new JobScriptError('script-unsafe', `job script ${path} resolves outside ${jobsDir}`);
    if (fst.size > maxBytes) {
      // Read the head only: the ticket line sits in the directives at the top.
      const buf = Buffer.alloc(maxBytes);
      const { bytesRead } = await fh.read(buf, 0, maxBytes, 0);
      return buf.subarray(0, bytesRead).toString('utf8');
    }
    const buf = Buffer.alloc(fst.size);
    const { bytesRead } = await fh.read(buf, 0, fst.size, 0);
    return buf.subarray(0, bytesRead).toString('utf8');
  } finally {
    await fh.close();
  }
}
