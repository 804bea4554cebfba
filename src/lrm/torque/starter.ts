/** The job starter (`$job_starter`): pbs_mom runs `starter <login shell>` as the job user with one stdin line, the
 * job script's path, and the full job environment; for TM tasks (pbsdsh) `starter <argv…>`. Its exit status is the
 * job's. It runs the job in the job's VM (seam) or, when the prologue decided so, bare on the host. */
import { spawn } from 'node:child_process';
import { constants as osConstants, userInfo } from 'node:os';
import { basename, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import type { SiteConfig } from '../../config/types.js';
import { describe, WnodError } from '../../util/errors.js';
import { run } from '../../util/run.js';
import { parseJobId } from './argv.js';
import { readModeMarker, readJobRecord } from './jobstate.js';
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

/** Run the job as pbs_mom asked; resolves to the job's exit status. */
export async function main(argv: string[], env: NodeJS.ProcessEnv, ctx: StarterContext): Promise<number> {
  const err = (text: string) => process.stderr.write(`wnod: ${text}\n`);
  const load = ctx.loadConfig ?? (await import('../../config/load.js')).loadConfig;
  let cfg: SiteConfig;
  let jobId: string;
  let inv: StarterInvocation;
  try {
    cfg = await load(ctx.configPath);
    jobId = parseJobId(env.PBS_JOBID, 'PBS_JOBID');
    const line = looksLikeBatch(argv) ? await readFirstLine(ctx.stdin ?? process.stdin) : undefined;
    inv = classifyStarterCall(argv, line, cfg.lrm.momPriv, jobId);
  } catch (e) {
    err(`the job could not be started: ${describe(e)}`);
    return 1;
  }
  let mode;
  try {
    mode = await readModeMarker(cfg.vm.stateDir, jobId);
  } catch (e) {
    err(`the job could not be started: ${describe(e)}`);
    return 1;
  }
  if (mode === undefined) {
    err('this worker node has no wnod decision for the job (the wnod prologue did not accept it); not running it');
    return 1;
  }
  const cleanEnv = Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => typeof e[1] === 'string'));
  if (mode === 'vm') {
    // run the job inside its VM (vmEngine.ts: through the agent sockets, found from the job id)
    if (!ctx.vm) {
      err('the job should run in a virtual machine, but the wnod VM engine is not available on this node');
      return 1;
    }
    return ctx.vm.runJob({
      jobId, user: userInfo().username, group: '', cfg, env: cleanEnv, cwd: process.cwd(),
      scriptPath: inv.kind === 'batch' ? inv.scriptPath : '', ...(inv.kind === 'tm' ? { argv: inv.argv } : {}),
    });
  }
  return runBare(inv, cleanEnv, await dropTo(cfg, jobId));
}

/** With `$job_starter_run_privileged true` we start as root: run the job as its owner, never as root. */
async function dropTo(cfg: SiteConfig, jobId: string): Promise<{ uid: number; gid: number } | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const rec = await readJobRecord(cfg.vm.stateDir, jobId);
  if (!rec) throw new StarterError(`running as root and no job record for ${jobId}: cannot tell whom to run the job as`);
  const uid = Number((await run('id', ['-u', '--', rec.user], { timeoutMs: 10_000 })).stdout.trim());
  const gid = Number((await run('id', ['-g', '--', rec.user], { timeoutMs: 10_000 })).stdout.trim());
  if (!Number.isInteger(uid) || !Number.isInteger(gid) || uid === 0) throw new StarterError(`job user ${rec.user} resolves to uid ${uid}: refusing to run a job as root`);
  return { uid, gid };
}

/** Run the job on the host as pbs_mom would without a starter: a login shell reading the script path on stdin. */
function runBare(inv: StarterInvocation, env: Record<string, string>, ids: { uid: number; gid: number } | undefined): Promise<number> {
  return new Promise((resolveExit) => {
    const [file, args, argv0] = inv.kind === 'batch'
      ? [inv.shell, [] as string[], `-${basename(inv.shell)}`]
      : [inv.argv[0]!, inv.argv.slice(1), inv.argv[0]!];
    const child = spawn(file, args, { argv0, env, stdio: [inv.kind === 'batch' ? 'pipe' : 'ignore', 'inherit', 'inherit'], ...(ids ?? {}) });
    if (inv.kind === 'batch') child.stdin!.end(inv.stdinLine + '\n');
    // pbs_mom signals the whole session (us included); pass what reaches us on to the job and wait for it
    const forwarded = (['SIGTERM', 'SIGINT', 'SIGHUP'] as const).map((sig) => [sig, () => { child.kill(sig); }] as const);
    for (const [sig, fn] of forwarded) process.on(sig, fn);
    child.on('error', (e) => {
      process.stderr.write(`wnod: cannot start ${file}: ${e.message}\n`);
      resolveExit(127);
    });
    child.on('exit', (code, signal) => {
      if (signal) {
        // die of the same signal, so that pbs_mom records 256+signal as it would without a starter
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
