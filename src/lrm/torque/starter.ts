/** The job starter (`$job_starter`): pbs_mom runs `starter <login shell>` as the job user with one stdin line, the
 * job script's path, and the full job environment; for TM tasks (pbsdsh) `starter <argv…>`. Its exit status is the
 * job's. pbs_mom's call into the core's run (src/job/run.ts): in the job's VM or, when admission decided so, bare. */
import { basename, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import type { SiteConfig } from '../../config/types.js';
import { describe, WnodError } from '../../util/errors.js';
import { runJob } from '../../job/run.js';
import { NODE_FAULT_EXIT, userLine } from '../../job/outcome.js';
import { readJobMarker } from '../../job/jobstate.js';
import { awaitBootForRun } from '../../job/detachedBoot.js';
import { parseJobId } from './argv.js';
import { readJobScript } from './jobscript.js';
import { motherSuperiorNodes } from './nodes.js';
import { guestClusterEnv } from '../../cluster/jobCluster.js';
import type { HookContext } from './prologue.js';

export class StarterError extends WnodError {
  constructor(message: string) {
    super('bad-starter-call', message);
  }
}

/** How pbs_mom called the starter. */
export type StarterInvocation =
  | { kind: 'batch'; shell: string; scriptPath: string; stdinLine: string }
  | { kind: 'tm'; argv: string[] };

const LOGIN_SHELLS = new Set(['bash', 'sh', 'dash', 'zsh', 'ksh', 'csh', 'tcsh', 'fish']);
const MAX_LINE = 4096;

/** True when argv is `starter <login shell>`: then stdin carries the job script's path. */
export function looksLikeBatch(argv: readonly string[]): boolean {
  return argv.length === 1 && argv[0]!.startsWith('/') && LOGIN_SHELLS.has(basename(argv[0]!));
}

/** Classify a starter call (pure). Batch: the stdin line must be exactly `<momPriv>/jobs/<PBS_JOBID>.SC`. */
export function classifyStarterCall(argv: readonly string[], stdinLine: string | undefined, momPriv: string, jobId: string): StarterInvocation {
  if (argv.length === 0) throw new StarterError('the job starter got no arguments (expected a login shell or a task command)');
  if (!looksLikeBatch(argv)) return { kind: 'tm', argv: [...argv] };
  if (stdinLine === undefined || stdinLine === '') {
    // `starter /bin/bash` with an empty stdin is a TM task running a shell, not a batch job
    return { kind: 'tm', argv: [...argv] };
  }
  const want = join(resolve(momPriv), 'jobs', `${parseJobId(jobId, 'PBS_JOBID')}.SC`);
  if (stdinLine !== want) throw new StarterError(`the job starter's stdin line ${JSON.stringify(stdinLine.slice(0, 200))} is not the job script ${want}`);
  return { kind: 'batch', shell: argv[0]!, scriptPath: want, stdinLine };
}

/** Read stdin up to the first newline (bounded, with a deadline): pbs_mom writes one line and closes it. */
export async function readFirstLine(stream: Readable, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolveLine, reject) => {
    let buf = '';
    const done = (err?: Error) => {
      clearTimeout(timer);
      stream.removeAllListeners('data');
      stream.removeAllListeners('end');
      stream.pause();
      if (err) reject(err);
      else resolveLine(buf.split('\n')[0] ?? '');
    };
    const timer = setTimeout(() => done(new StarterError(`no line on stdin within ${timeoutMs} ms`)), timeoutMs);
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.includes('\n')) done();
      else if (buf.length > MAX_LINE) done(new StarterError(`stdin line longer than ${MAX_LINE} bytes`));
    });
    stream.on('end', () => done());
    stream.on('error', (err) => done(err));
  });
}

export interface StarterContext extends HookContext {
  stdin?: Readable;
}

/** Run the job as pbs_mom asked; resolves to the job's exit status. The shim (lrm-hooks/starter) calls this only
 * for jobs the prologue left a marker for; every other job it execs directly. */
export async function main(argv: string[], env: NodeJS.ProcessEnv, ctx: StarterContext): Promise<number> {
  const err = (text: string) => process.stderr.write(`${userLine(text)}\n`);
  // `$job_starter_run_privileged true`: root with the job's environment. Never act on it (the prologue aborts wnod
  // jobs on such a node; `wnod install torque` refuses such a config); PBS_JOBID here is the job's to choose.
  if (process.getuid?.() === 0) {
    err('the wnod job starter runs as root on this worker node ($job_starter_run_privileged), which wnod refuses; the job was not started');
    return NODE_FAULT_EXIT;
  }
  const load = ctx.loadConfig ?? (await import('../../config/load.js')).loadConfig;
  let cfg: SiteConfig;
  try {
    cfg = await load(ctx.configPath);
  } catch {
    // the config's path and its YAML are the admin's business (the prologue's log says what is wrong)
    err('this worker node is misconfigured (wnod site config); the job was not started');
    return NODE_FAULT_EXIT;
  }
  let jobId: string;
  let inv: StarterInvocation;
  try {
    jobId = parseJobId(env.PBS_JOBID, 'PBS_JOBID');
    const line = looksLikeBatch(argv) ? await readFirstLine(ctx.stdin ?? process.stdin) : undefined;
    inv = classifyStarterCall(argv, line, cfg.lrm.momPriv, jobId);
  } catch (e) {
    err(`the job could not be started: ${describe(e)}`);
    return NODE_FAULT_EXIT;
  }
  // a VM job: its VM boots detached from the prologue (detachedBoot.ts); wait for it, bounded, and tell why it failed
  const marker = await readJobMarker(cfg.vm.stateDir, jobId).catch(() => undefined);
  if (marker?.mode === 'vm') {
    const failed = await awaitBootForRun(cfg, jobId);
    if (failed) {
      err(failed.say);
      return failed.exit;
    }
  }
  const cleanEnv = Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => typeof e[1] === 'string'));
  // a job on several hosts: the script runs in the first VM (vm0) and sees the cluster of VMs (PBS_NODEFILE names
  // them), once every sister's VM answers: they boot alongside this one (sister.ts)
  let vms = 1;
  if (marker?.mode === 'vm') {
    try {
      vms = (await motherSuperiorNodes(cfg.lrm.momPriv, jobId))?.nodes.length ?? 1;
    } catch (e) {
      err(`the job could not be started: ${describe(e)}`);
      return NODE_FAULT_EXIT;
    }
  }
  const cluster = vms > 1 ? { ...guestClusterEnv(vms), ...(env.PBS_NODEFILE ? { WNOD_HOST_NODEFILE: env.PBS_NODEFILE } : {}) } : {};
  return runJob(cfg, jobId, {
    guest: {
      script: () => readJobScript(cfg.lrm.momPriv, jobId, inv.kind === 'batch' ? inv.scriptPath : undefined),
      ...(inv.kind === 'tm' ? { argv: inv.argv } : {}),
      env: { ...cleanEnv, ...cluster }, cwd: process.cwd(), workdir: env.PBS_O_WORKDIR,
      ...(vms > 1 ? { peers: Array.from({ length: vms - 1 }, (_, i) => `vm${i + 1}`), peersWaitS: cfg.lrm.prologueBudgetS + 60 } : {}),
    },
    // pbs_mom without a starter: a login shell reading the script path on stdin; a TM task: its own argv
    bare: inv.kind === 'batch'
      ? { file: inv.shell, args: [], argv0: `-${basename(inv.shell)}`, stdin: inv.stdinLine + '\n' }
      : { file: inv.argv[0]!, args: inv.argv.slice(1), argv0: inv.argv[0]! },
  }, ctx);
}
