// On node:child_process alone: the root hooks start a node process per job, and loading execa (its modules and
// the builtins they pull in) was a third of a hook's start-up (bench/slurm.ts, issue 14).
import { spawn } from 'node:child_process';
import { WnodError } from './errors.js';

export class CommandError extends WnodError {
  constructor(readonly file: string, readonly exitCode: number | undefined, readonly stderr: string, message: string) {
    super('command-failed', message);
  }
}

export interface RunResult { stdout: string; stderr: string; exitCode: number }

export interface RunOptions {
  /** killed (SIGTERM, SIGKILL 5 s later) past this; default 60 s */
  timeoutMs?: number;
  cwd?: string;
  /** added to this process's environment, or the whole environment with `extendEnv: false` */
  env?: Record<string, string | undefined>;
  extendEnv?: boolean;
  /** written to the program's stdin, then closed; without it stdin is /dev/null */
  input?: string;
  /** the most bytes kept of stdout and of stderr each; past it the program is killed and the run fails */
  maxBuffer?: number;
}

const DEFAULT_MAX_BUFFER = 100_000_000;
const KILL_GRACE_MS = 5000;

/** Run a program with an argument array (never a shell) and a timeout; on failure throw with its stderr kept. */
export async function run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const { timeoutMs = 60_000, maxBuffer = DEFAULT_MAX_BUFFER } = opts;
  const env = opts.extendEnv === false ? opts.env : opts.env && { ...process.env, ...opts.env };
  const r = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; timedOut: boolean; overflow: boolean; error?: Error }>((resolve) => {
    const child = spawn(file, args, { cwd: opts.cwd, env, shell: false, stdio: [opts.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const size = [0, 0];
    let timedOut = false;
    let overflow = false;
    let killTimer: NodeJS.Timeout | undefined;
    const stop = () => {
      child.kill('SIGTERM');
      killTimer ??= setTimeout(() => child.kill('SIGKILL'), KILL_GRACE_MS);
    };
    const keep = (into: Buffer[], i: 0 | 1) => (chunk: Buffer) => {
      if (overflow) return;
      size[i]! += chunk.length;
      if (size[i]! > maxBuffer) {
        overflow = true;
        stop();
        return;
      }
      into.push(chunk);
    };
    child.stdout!.on('data', keep(out, 0));
    child.stderr!.on('data', keep(err, 1));
    const timer = setTimeout(() => { timedOut = true; stop(); }, timeoutMs);
    if (opts.input !== undefined) {
      child.stdin!.on('error', () => {}); // a program that exits without reading its input
      child.stdin!.end(opts.input);
    }
    let spawnError: Error | undefined;
    child.on('error', (e) => { spawnError = e; });
    // 'close': the program has exited and its stdout and stderr are drained (also after a spawn error)
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (killTimer) clearTimeout(killTimer);
      resolve({
        code, signal, timedOut, overflow, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'),
        ...(spawnError ? { error: spawnError } : {}),
      });
    });
  });
  const { stdout, stderr } = r;
  if (r.timedOut) throw new CommandError(file, undefined, stderr, `${file} timed out after ${timeoutMs} ms`);
  if (r.overflow) throw new CommandError(file, undefined, stderr, `${file} ${args[0] ?? ''} printed more than ${maxBuffer} bytes`);
  if (r.error || (r.code === null && !r.signal)) {
    // never started (ENOENT for the program or the cwd, EACCES …): say so rather than "exit -2"
    throw new CommandError(file, undefined, stderr, `${file} could not be started: ${r.error?.message ?? 'unknown error'}`);
  }
  if (r.code !== 0) {
    const why = stderr.trim().split('\n').slice(-3).join(' / ') || (r.signal ? `killed by ${r.signal}` : 'no message');
    throw new CommandError(file, r.code ?? undefined, stderr, `${file} ${args[0] ?? ''} failed (exit ${r.code ?? r.signal}): ${why}`);
  }
  return { stdout, stderr, exitCode: 0 };
}
