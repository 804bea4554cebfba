/** The hooks' two audiences: one clear line for the user (stdout → the job's .o file) and the details for the
 * admin in the root-only log (config.logFile, JSON lines, 0600). Secrets and hypervisor details go to the log only. */
import { open, mkdir } from 'node:fs/promises';
import { constants } from 'node:fs';
import { dirname } from 'node:path';
import type { Writable } from 'node:stream';
import { userLine } from './outcome.js';

export interface HookLog {
  /** Tell the user one line (stdout of the hook = the job's output file). */
  user(text: string): void;
  /** Record details for the admin in the root-only log; never throws (a broken log must not fail a job). */
  detail(event: string, fields?: Record<string, unknown>): Promise<void>;
}

/** A logger for one hook run of one job. `logFile` is created 0600 in a 0700 directory if missing. */
export function hookLog(logFile: string, hook: string, jobId: string | undefined, out: Writable = process.stdout): HookLog {
  return {
    user(text) {
      out.write(userLine(text) + '\n');
    },
    async detail(event, fields = {}) {
      const line = JSON.stringify({ time: new Date().toISOString(), hook, job: jobId, pid: process.pid, event, ...fields }) + '\n';
      try {
        await appendPrivate(logFile, line);
      } catch (err) {
        process.stderr.write(`wnod ${hook}: cannot write log ${logFile}: ${(err as Error).message}\n`);
      }
    },
  };
}

/** Append one line to a root-only file: O_APPEND (one write, no interleaving), no symlinks, mode forced to 0600. */
export async function appendPrivate(path: string, line: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const fh = await open(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  try {
    const st = await fh.stat();
    if ((st.mode & 0o077) !== 0 && st.uid === process.getuid?.()) await fh.chmod(0o600);
    await fh.write(line);
  } finally {
    await fh.close();
  }
}
