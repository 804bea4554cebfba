/** The root prologue (pbs_mom's `prologue` / `prologue.<class>`): pbs_mom's argv and job script into a JobStart
 * for the core's admission (src/job/admit.ts), its outcome into pbs_mom's exit code: 0 = go, 1 = refuse for good,
 * 2 = requeue (bounded by the core's counter). */
import type { Writable } from 'node:stream';
import type { SiteConfig } from '../../config/types.js';
import { describe } from '../../util/errors.js';
import { admitJob } from '../../job/admit.js';
import { hookLog, logTarget } from '../../job/log.js';
import { Refusal, TransientFault, userLine } from '../../job/outcome.js';
import type { JobContext, JobStart } from '../../job/contract.js';
import { parsePrologueArgv, type PrologueArgs, type TorqueVersion } from './argv.js';
import { readJobScript, JobScriptError } from './jobscript.js';
import { PROLOGUE_EXIT, prologueExit } from './outcome.js';

/** What every hook entry point gets besides argv and env. */
export interface HookContext extends JobContext {
  configPath: string;
  /** the job's output (pbs_mom: the .o file) */
  stdout?: Writable;
  torqueVersion?: TorqueVersion | 'auto';
  /** injectable for tests; default src/config/load.ts */
  loadConfig?: (path: string) => Promise<SiteConfig>;
}

async function configFor(ctx: HookContext): Promise<SiteConfig> {
  const load = ctx.loadConfig ?? (await import('../../config/load.js')).loadConfig;
  return load(ctx.configPath);
}

/** The core's view of a job pbs_mom is about to start. */
export function jobStart(cfg: SiteConfig, args: PrologueArgs, env: NodeJS.ProcessEnv): JobStart {
  return {
    lrm: 'torque', jobId: args.jobId, user: args.user, group: args.group, queue: args.queue,
    script: () => readTorqueScript(cfg, args),
    // pbs_mom's PBS_O_WORKDIR: the job's submit dir
    workdir: env.PBS_O_WORKDIR,
    holds: { cpus: args.resourceList.ppn, memoryMB: args.resourceList.memMB, nodes: args.resourceList.nodeCount },
  };
}

/** The job script from mom_priv: a script outside it is refused, a missing one is worth a retry. */
async function readTorqueScript(cfg: SiteConfig, args: PrologueArgs): Promise<string> {
  try {
    return await readJobScript(cfg.lrm.momPriv, args.jobId, args.scriptPath);
  } catch (err) {
    if (err instanceof JobScriptError && err.code === 'script-unsafe') throw new Refusal(err.code, 'the job script is not where the batch system keeps it; the job was not started', { error: err.message }, { cause: err });
    throw new TransientFault('script-missing', describe(err), {}, { cause: err });
  }
}

/** Run the prologue for pbs_mom's argv (without node and script); returns the exit code for pbs_mom. */
export async function main(argv: string[], env: NodeJS.ProcessEnv, ctx: HookContext): Promise<number> {
  const out = ctx.stdout ?? process.stdout;
  let cfg: SiteConfig;
  try {
    cfg = await configFor(ctx);
  } catch (err) {
    // No config = no log file and no state dir to damp a requeue loop: abort the job, tell the admin on stderr.
    out.write(userLine('this worker node is misconfigured (wnod site config); the job was not started') + '\n');
    process.stderr.write(`wnod prologue: ${describe(err)}\n`);
    return PROLOGUE_EXIT.abort;
  }
  let args: PrologueArgs;
  try {
    args = parsePrologueArgv(argv, ctx.torqueVersion ?? 'auto');
  } catch (err) {
    out.write(userLine('the batch system called the wnod prologue with unexpected arguments; the job was not started') + '\n');
    await hookLog(logTarget(cfg), 'prologue', undefined, out).detail('bad-argv', { error: describe(err), argv });
    return PROLOGUE_EXIT.abort;
  }
  const log = hookLog(logTarget(cfg), 'prologue', args.jobId, out);
  return prologueExit(await admitJob(cfg, jobStart(cfg, args, env), ctx, log));
}
