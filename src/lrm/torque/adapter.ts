/** The Torque LRM adapter: qsub / qdel / qstat with argument arrays, bounded time, and strict parsing of what
 * they print (Torque 6.1: `qsub` prints the job id; `qstat -f -1 ID` prints `Job Id: ID` and ` job_state = X`
 * lines; an unknown id is `qstat: Unknown Job Id Error ID` / `qdel: Unknown Job Id ID` with exit 153). */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run, CommandError } from '../../util/run.js';
import { WnodError } from '../../util/errors.js';
import type { LrmAdapter, PilotStatus, PilotSubmission } from '../adapter.js';
import { parseJobId } from './argv.js';

export class LrmError extends WnodError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('lrm', message, options);
  }
}

/** `HH:MM:SS` for qsub -l walltime. */
export function walltime(seconds: number): string {
  if (!Number.isInteger(seconds) || seconds < 1) throw new LrmError(`walltime must be a positive whole number of seconds, got ${seconds}`);
  const h = Math.floor(seconds / 3600);
  return `${String(h).padStart(2, '0')}:${String(Math.floor(seconds / 60) % 60).padStart(2, '0')}:${String(seconds % 60).padStart(2, '0')}`;
}

/** qsub's arguments for a pilot (pure). */
export function qsubArgs(j: PilotSubmission, scriptPath: string): string[] {
  const name = j.name.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 15) || 'wnod-lease';
  const a = ['-N', name, '-l', `walltime=${walltime(j.walltimeS)},nodes=1:ppn=${j.cpus},mem=${j.memoryMB}mb`, '-o', j.stdoutPath, '-e', j.stderrPath];
  if (j.queue) a.push('-q', j.queue);
  if (j.jobClass) a.push('-T', j.jobClass);
  a.push(scriptPath);
  return a;
}

/** The job id qsub printed (one line). */
export function parseQsubOutput(stdout: string): string {
  const lines = stdout.split('\n').map((l) => l.trim()).filter(Boolean);
  if (lines.length !== 1) throw new LrmError(`qsub printed ${lines.length} lines, expected one job id: ${JSON.stringify(stdout.slice(0, 200))}`);
  try {
    return parseJobId(lines[0], 'qsub output');
  } catch (err) {
    throw new LrmError((err as Error).message, { cause: err });
  }
}

const STATE: Record<string, PilotStatus> = { Q: 'queued', H: 'queued', W: 'queued', T: 'queued', S: 'queued', R: 'running', E: 'running', C: 'done' };

/** The state in `qstat -f -1 ID` output for exactly that job. */
export function parseQstatFull(stdout: string, jobId: string): PilotStatus {
  let current: string | undefined;
  for (const line of stdout.split('\n')) {
    const id = /^Job Id:\s*(\S+)\s*$/.exec(line);
    if (id) { current = id[1]; continue; }
    const st = /^\s+job_state = ([A-Z])\s*$/.exec(line);
    if (st && current !== undefined && (current === jobId || current.split('.')[0] === jobId.split('.')[0])) {
      const s = STATE[st[1]!];
      if (!s) throw new LrmError(`qstat: unknown job_state ${st[1]} for ${jobId}`);
      return s;
    }
  }
  throw new LrmError(`qstat printed no job_state for ${jobId}`);
}

/** True when a Torque client's stderr says the server does not know the job. */
export function isUnknownJob(stderr: string): boolean {
  return /Unknown Job Id/i.test(stderr);
}

export class TorqueAdapter implements LrmAdapter {
  readonly name = 'torque';
  constructor(private readonly opts: { binDir?: string | undefined; timeoutMs?: number } = {}) {}

  private bin(name: 'qsub' | 'qdel' | 'qstat'): string {
    return this.opts.binDir ? join(this.opts.binDir, name) : name;
  }

  async submit(j: PilotSubmission): Promise<string> {
    // qsub takes the script as a file; PBS_O_WORKDIR is qsub's own working directory
    const tmp = await mkdtemp(join(tmpdir(), 'wnod-pilot-'));
    try {
      const script = join(tmp, 'pilot.sh');
      await writeFile(script, j.script, { mode: 0o600 });
      const r = await run(this.bin('qsub'), qsubArgs(j, script), { cwd: j.workdir, timeoutMs: this.opts.timeoutMs ?? 60_000 }).catch((err: unknown) => {
        throw new LrmError(`the batch system refused the pilot: ${err instanceof CommandError ? err.stderr.trim().slice(0, 500) || err.message : (err as Error).message}`, { cause: err });
      });
      return parseQsubOutput(r.stdout);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  async cancel(jobId: string): Promise<void> {
    parseJobId(jobId);
    try {
      await run(this.bin('qdel'), [jobId], { timeoutMs: this.opts.timeoutMs ?? 60_000 });
    } catch (err) {
      if (err instanceof CommandError && isUnknownJob(err.stderr)) return;
      throw new LrmError(`qdel ${jobId}: ${(err as Error).message}`, { cause: err });
    }
  }

  async status(jobId: string): Promise<PilotStatus> {
    parseJobId(jobId);
    try {
      return parseQstatFull((await run(this.bin('qstat'), ['-f', '-1', jobId], { timeoutMs: this.opts.timeoutMs ?? 60_000 })).stdout, jobId);
    } catch (err) {
      if (err instanceof CommandError && isUnknownJob(err.stderr)) return 'unknown';
      throw err;
    }
  }
}
