import { execa, type Options } from 'execa';
import { WnodError } from './errors.js';

export class CommandError extends WnodError {
  constructor(readonly file: string, readonly exitCode: number | undefined, readonly stderr: string, message: string) {
    super('command-failed', message);
  }
}

export interface RunResult { stdout: string; stderr: string; exitCode: number }

/** Run a program with an argument array (never a shell) and a timeout; on failure throw with its stderr kept. */
export async function run(file: string, args: readonly string[], opts: Options & { timeoutMs?: number } = {}): Promise<RunResult> {
  const { timeoutMs = 60_000, ...rest } = opts;
  const r = await execa(file, args, { timeout: timeoutMs, reject: false, stripFinalNewline: false, ...rest, shell: false });
  const stdout = typeof r.stdout === 'string' ? r.stdout : '';
  const stderr = typeof r.stderr === 'string' ? r.stderr : '';
  if (r.timedOut) throw new CommandError(file, undefined, stderr, `${file} timed out after ${timeoutMs} ms`);
  if (r.exitCode === undefined && !r.signal) {
    // never started (ENOENT for the program or the cwd, EACCES …): say so rather than "exit undefined"
    const cause = (r as { cause?: unknown }).cause;
    throw new CommandError(file, undefined, stderr, `${file} could not be started: ${cause instanceof Error ? cause.message : r.message}`);
  }
  if (r.exitCode !== 0) {
    const why = stderr.trim().split('\n').slice(-3).join(' / ') || (r.signal ? `killed by ${r.signal}` : 'no message');
    throw new CommandError(file, r.exitCode, stderr, `${file} ${args[0] ?? ''} failed (exit ${r.exitCode ?? r.signal}): ${why}`);
  }
  return { stdout, stderr, exitCode: 0 };
}
