/** The root prologue (pbs_mom's `prologue` / `prologue.<class>`): pbs_mom's argv and job script into a JobStart
 * for the core's admission (src/job/admit.ts), its outcome into pbs_mom's exit code: 0 = go (also for a recorded
 * refusal, see main), 1 = abort, 2 = requeue (bounded by the core's counter). */
import { Writable } from 'node:stream';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { SiteConfig } from '../../config/types.js';
import { describe } from '../../util/errors.js';
import { admitJob } from '../../job/admit.js';
import { hookLog, logTarget, appendPrivate } from '../../job/log.js';
import { recordRefusal } from '../../job/jobstate.js';
import { jobUser } from '../../job/jobUser.js';
import { lookupGroupId } from '../../util/unixUsers.js';
import { Refusal, TransientFault, userLine } from '../../job/outcome.js';
import type { JobContext, JobNodes, JobStart } from '../../job/contract.js';
import { motherSuperiorNodes, readJobFile } from './nodes.js';
import { jobTicketForAdmission, ticketMismatch } from './jobTicket.js';
import { readScriptHeader } from '../../header/scriptHeader.js';
import { parsePrologueArgv, type PrologueArgs, type TorqueVersion } from './argv.js';
import { readJobScript, JobScriptError } from './jobscript.js';
import { PROLOGUE_EXIT, prologueExit } from './outcome.js';
import { momConfigRunsPrivileged } from './install.js';

/** What every hook entry point gets besides argv and env. */
export interface HookContext extends JobContext {
  configPath: string;
  /** the job's output (pbs_mom: the .o file) */
  stdout?: Writable;
  torqueVersion?: TorqueVersion | 'auto';
  /** the root-only log for what happens before the config is read (the shim's --log, baked at install) */
  fallbackLog?: string | undefined;
  /** injectable for tests; default src/config/load.ts */
  loadConfig?: (path: string) => Promise<SiteConfig>;
}

async function configFor(ctx: HookContext): Promise<SiteConfig> {
  const load = ctx.loadConfig ?? (await import('../../config/load.js')).loadConfig;
  return load(ctx.configPath);
}

/** The core's view of a job pbs_mom is about to start; `nodes`: its hosts when it has several (jobNodes). */
export function jobStart(cfg: SiteConfig, args: PrologueArgs, env: NodeJS.ProcessEnv, nodes?: JobNodes | Error): JobStart {
  return {
    lrm: 'torque', jobId: args.jobId, user: args.user, group: args.group, queue: args.queue,
    script: nodes && !(nodes instanceof Error) ? () => scriptWithSistersTicket(cfg, args) : () => readTorqueScript(cfg, args),
    // pbs_mom's PBS_O_WORKDIR: the job's submit dir
    workdir: env.PBS_O_WORKDIR,
    holds: { cpus: nodes && !(nodes instanceof Error) ? nodes.slots[0] : args.resourceList.ppn, memoryMB: args.resourceList.memMB, nodes: args.resourceList.nodeCount },
    ...(nodes ? { cluster: async () => { if (nodes instanceof Error) throw nodes; return nodes; } } : {}),
    // the job holds ppn slots (and mem, when asked) of the node: its VM gets them, within the image's and the
    // rule's maxima (decision.ts fitToHolds, as for Slurm), not the ticket's cpus on top of them
    sizeByHolds: true,
  };
}

/** A job that asked for several nodes, on the mother superior: its hosts from pbs_mom's node file (this one
 * first); undefined when they are one host (a single VM); an Error (a fault worth a retry) when unreadable. */
export async function jobNodes(cfg: SiteConfig, args: PrologueArgs): Promise<JobNodes | Error | undefined> {
  if ((args.resourceList.nodeCount ?? 1) < 2) return undefined;
  try {
    const nodes = await motherSuperiorNodes(cfg.lrm.momPriv, args.jobId);
    if (!nodes) return new TransientFault('nodefile', `pbs_mom wrote no node file for job ${args.jobId} (nodes=${args.resourceList.nodes})`);
    return nodes.nodes.length > 1 ? nodes : undefined;
  } catch (err) {
    return new TransientFault('nodefile', describe(err), {}, { cause: err });
  }
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

/** The script of a job on several hosts, once its header's ticket is the one the sisters read from the job's
 * variables (sister.ts): the user could otherwise hand them another ticket of theirs than vm0's. */
async function scriptWithSistersTicket(cfg: SiteConfig, args: PrologueArgs): Promise<string> {
  const text = await readTorqueScript(cfg, args);
  let jobFile: string | undefined;
  try {
    jobFile = await readJobFile(cfg.lrm.momPriv, args.jobId);
  } catch (err) {
    throw new TransientFault('jobfile', describe(err), {}, { cause: err });
  }
  // observed: pbs_mom saves the job before it runs the prologue
  if (jobFile === undefined) throw new TransientFault('jobfile', `pbs_mom saved no job file for job ${args.jobId}`);
  const problem = ticketMismatch(readScriptHeader(text), jobTicketForAdmission(jobFile));
  if (problem) throw new Refusal('ticket-mismatch', `${problem}; the job was not started`);
  return text;
}

/** Run the prologue for pbs_mom's argv (without node and script); returns the exit code for pbs_mom.
 * A refusal exits 0 and is recorded (jobstate.ts recordRefusal): Torque delivers no output of a job its prologue
 * aborted, so the job's run (the starter) tells the user in the job's stderr and exits REFUSED_EXIT. Only what
 * cannot be recorded aborts (exit 1): no config, pbs_mom's argv unreadable, a privileged starter, a record that
 * cannot be written. */
export async function main(argv: string[], env: NodeJS.ProcessEnv, ctx: HookContext): Promise<number> {
  const out = ctx.stdout ?? process.stdout;
  let cfg: SiteConfig;
  try {
    cfg = await configFor(ctx);
  } catch (err) {
    // No config = no log file and no state dir to damp a requeue loop: abort the job. The detail (the config's
    // path, YAML lines) is the admin's: the install-time log, never the job's output files.
    out.write(userLine('this worker node is misconfigured (wnod site config); the job was not started') + '\n');
    await fallbackLog(ctx, 'prologue', argv[0], { event: 'config-unreadable', error: describe(err) });
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
  const admin = hookLog(logTarget(cfg), 'prologue', args.jobId, out);
  // $job_starter_run_privileged: pbs_mom would start the starter as root with the job's whole environment
  // (LD_PRELOAD, PATH): no wnod job may run on such a node, and aborting is the one way the starter never runs
  const privileged = await starterRunsPrivileged(cfg.lrm.momPriv).catch(() => false);
  if (privileged) {
    out.write(userLine('this worker node is misconfigured (its job starter would run as root); the job was not started') + '\n');
    await admin.detail('starter-privileged', { momConfig: join(cfg.lrm.momPriv, 'config'), fix: 'remove $job_starter_run_privileged from mom_priv/config and restart pbs_mom' });
    return PROLOGUE_EXIT.abort;
  }
  // the user's lines: kept for the refusal record (the starter prints it), not written into the .o file
  const said: string[] = [];
  const sink = new Writable({ write(chunk, _enc, cb) { said.push(...String(chunk).split('\n').filter(Boolean)); cb(); } });
  const log = hookLog(logTarget(cfg), 'prologue', args.jobId, sink);
  const outcome = await admitJob(cfg, jobStart(cfg, args, env, await jobNodes(cfg, args)), ctx, log);
  if (outcome.kind === 'retry') {
    for (const line of said) out.write(line + '\n'); // a requeue delivers nothing; the last attempt is recorded
    return prologueExit(outcome);
  }
  if (outcome.kind === 'refuse') {
    try {
      await recordRefusal(cfg.vm.stateDir, args.jobId, await jobGid(args), outcome.reason);
      await log.detail('refusal-recorded', { code: outcome.code });
    } catch (err) {
      // without its record a refused job would run as a plain one: abort it (the reason stays in the root log)
      await log.detail('refusal-record-failed', { error: describe(err) });
      out.write(userLine(outcome.reason) + '\n');
      return PROLOGUE_EXIT.abort;
    }
  }
  return prologueExit(outcome);
}

/** The gid of the job's group (pbs_mom passes its name), else the user's primary group. */
async function jobGid(args: PrologueArgs): Promise<number> {
  return (await lookupGroupId(args.group)) ?? (await jobUser(args.user)).gid;
}

async function starterRunsPrivileged(momPriv: string): Promise<boolean> {
  return momConfigRunsPrivileged(await readFile(join(momPriv, 'config'), 'utf8').catch(() => ''));
}

/** A hook without its config: the detail goes to the log file baked into the shim at install time (root-only),
 * or nowhere — never to stdout/stderr, which are the job's output files. */
export async function fallbackLog(ctx: HookContext, hook: string, jobId: string | undefined, what: { event: string } & Record<string, unknown>): Promise<void> {
  if (!ctx.fallbackLog) return;
  await appendPrivate(ctx.fallbackLog, JSON.stringify({ time: new Date().toISOString(), hook, job: jobId, pid: process.pid, config: ctx.configPath, ...what }) + '\n').catch(() => {});
}
