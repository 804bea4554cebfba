/** The job's run on this node (as the job user, or as root dropping to it): in its VM when admission decided so,
 * else bare on the host as the LRM itself would run it. Its exit status is the job's; signals the LRM sends to our
 * session (cancel, time limit) go on to the job. */
import { spawn } from 'node:child_process';
import { constants as osConstants, userInfo } from 'node:os';
import type { SiteConfig } from '../config/types.js';
import { describe, WnodError } from '../util/errors.js';
import { readJobRecord, readJobMarker } from './jobstate.js';
import { NODE_FAULT_EXIT, REFUSED_EXIT, userLine } from './outcome.js';
import { jobUser } from './jobUser.js';
import type { GuestRun, JobContext } from './contract.js';

/** How the LRM would start the job on the host (bare mode): the program, its argv0, and what it reads on stdin. */
export interface BareCommand {
  file: string;
  args: string[];
  argv0: string;
  /** written to the job's stdin, then closed; without it stdin is /dev/null */
  stdin?: string | undefined;
}

/** Run job `jobId` the way admission decided; resolves to its exit status. */
export async function runJob(cfg: SiteConfig, jobId: string, job: { guest: GuestRun; bare: BareCommand }, ctx: JobContext): Promise<number> {
  const err = (text: string) => process.stderr.write(`${userLine(text)}\n`);
  let marker;
  try {
    marker = await readJobMarker(cfg.vm.stateDir, jobId);
  } catch (e) {
    err(`the job could not be started: ${describe(e)}`);
    return NODE_FAULT_EXIT;
  }
  if (marker === undefined) {
    err('this worker node has no wnod decision for the job (the wnod prologue did not accept it); not running it');
    return NODE_FAULT_EXIT;
  }
  // refused at admission, told here: the LRM ran the job only so that its output reaches the user
  if (marker.mode === 'refuse') {
    err(marker.reason || 'this worker node refused the job');
    return REFUSED_EXIT;
  }
  const mode = marker.mode;
  if (mode === 'vm') {
    // run the job inside its VM (vmEngine.ts: through the agent sockets, found from the job id)
    if (!ctx.vm) {
      err('the job should run in a virtual machine, but the wnod VM engine is not available on this node');
      return NODE_FAULT_EXIT;
    }
    return ctx.vm.runJob({ jobId, user: userInfo().username, group: '', cfg, ...job.guest });
  }
  return runBare(job.bare, job.guest.env, await dropTo(cfg, jobId));
}

/** Started as root (Torque's `$job_starter_run_privileged true`): run the job as its owner, never as root. */
async function dropTo(cfg: SiteConfig, jobId: string): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const rec = await readJobRecord(cfg.vm.stateDir, jobId);
  if (!rec) throw new WnodError('no-job-record', `running as root and no job record for ${jobId}: cannot tell whom to run the job as`);
  const { uid, gid } = await jobUser(rec.user);
  return { uid, gid };
}

/** Run the job on the host; pass the signals that reach us on to it and end as it ended. */
function runBare(cmd: BareCommand, env: Record<string, string>, ids: { uid: number; gid: number } | undefined): Promise<number> {
  return new Promise((resolveExit) => {
    const child = spawn(cmd.file, cmd.args, { argv0: cmd.argv0, env, stdio: [cmd.stdin !== undefined ? 'pipe' : 'ignore', 'inherit', 'inherit'], ...(ids ?? {}) });
    if (cmd.stdin !== undefined) child.stdin!.end(cmd.stdin);
    // the LRM signals the whole session (us included); pass what reaches us on to the job and wait for it
    const forwarded = (['SIGTERM', 'SIGINT', 'SIGHUP'] as const).map((sig) => [sig, () => { child.kill(sig); }] as const);
    for (const [sig, fn] of forwarded) process.on(sig, fn);
    child.on('error', (e) => {
      process.stderr.write(`wnod: cannot start ${cmd.file}: ${e.message}\n`);
      resolveExit(127);
    });
    child.on('exit', (code, signal) => {
      if (signal) {
        // die of the same signal, so that the LRM records it as it would without wnod (Torque: 256+signal)
        for (const [sig, fn] of forwarded) process.off(sig, fn);
        process.kill(process.pid, signal);
        setTimeout(() => resolveExit(128 + signalNumber(signal)), 1000); // a signal we cannot die of (ignored)
        return;
      }
      resolveExit(code ?? 1);
    });
  });
}

function signalNumber(sig: NodeJS.Signals): number {
  return (osConstants.signals as Record<string, number>)[sig] ?? 0;
}
