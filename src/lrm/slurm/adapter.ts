/** The Slurm LRM adapter for leases: sbatch / squeue / scancel with argument arrays, bounded time, a minimal
 * environment, and strict parsing of what they print (Slurm 22.05, observed): `sbatch --parsable` prints
 * `<id>` or `<id>;<cluster>`; `squeue -h --me -t all -o %i|%T` lists the user's jobs slurmctld still knows (a job
 * is purged MinJobAge after its end; `squeue -j ID` of a purged job exits 1, which we never need to interpret);
 * `scancel` of a finished or unknown job exits 0. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run, CommandError } from '../../util/run.js';
import { WnodError } from '../../util/errors.js';
import type { LrmAdapter, PilotStatus, PilotSubmission } from '../adapter.js';
import { parseSlurmJobId } from './jobId.js';

export class SlurmLrmError extends WnodError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('lrm', message);
    if (options?.cause !== undefined) (this as { cause?: unknown }).cause = options.cause;
  }
}

/** `H:MM:SS` for sbatch --time (Slurm reads hours:minutes:seconds). */
export function slurmTime(seconds: number): string {
  if (!Number.isInteger(seconds) || seconds < 1) throw new SlurmLrmError(`a time limit must be a positive whole number of seconds, got ${seconds}`);
  return `${Math.floor(seconds / 3600)}:${String(Math.floor(seconds / 60) % 60).padStart(2, '0')}:${String(seconds % 60).padStart(2, '0')}`;
}

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** sbatch's arguments for a pilot (pure). No --comment: the Prolog then reads the pilot's script, whose header
 * carries the ticket and the lease marker. */
export function sbatchArgs(j: PilotSubmission, partition: string, scriptPath: string): string[] {
  const p = j.queue ?? partition;
  if (!NAME.test(p)) throw new SlurmLrmError(`partition ${JSON.stringify(p)} is not a partition name`);
  const name = j.name.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 64) || 'wnod-lease';
  return [
    '--parsable', '--job-name', name, '--partition', p, '--time', slurmTime(j.walltimeS),
    // a lease group: one task per node (each node's Prolog boots that node's VM with what the job holds there)
    ...(j.nodes && j.nodes > 1 ? ['--nodes', String(j.nodes), '--ntasks-per-node', '1'] : ['--nodes', '1', '--ntasks', '1']), '--cpus-per-task', String(j.cpus), '--mem', `${j.memoryMB}M`,
    '--chdir', j.workdir, '--output', j.stdoutPath, '--error', j.stderrPath, scriptPath,
  ];
}

/** The job id `sbatch --parsable` printed (one line: `<id>` or `<id>;<cluster>`). */
export function parseSbatchParsable(stdout: string): string {
  const lines = stdout.split('\n').map((l) => l.trim()).filter(Boolean);
  if (lines.length !== 1) throw new SlurmLrmError(`sbatch printed ${lines.length} lines, expected one job id: ${JSON.stringify(stdout.slice(0, 200))}`);
  return parseSlurmJobId(lines[0]!.split(';')[0], 'sbatch output');
}

const QUEUED = new Set(['PENDING', 'CONFIGURING', 'REQUEUED', 'REQUEUE_HOLD', 'REQUEUE_FED', 'SUSPENDED', 'RESV_DEL_HOLD', 'SPECIAL_EXIT']);
const RUNNING = new Set(['RUNNING', 'COMPLETING', 'SIGNALING', 'STAGE_OUT', 'RESIZING', 'STOPPED']);
const DONE = new Set(['COMPLETED', 'CANCELLED', 'FAILED', 'TIMEOUT', 'NODE_FAIL', 'PREEMPTED', 'BOOT_FAIL', 'DEADLINE', 'OUT_OF_MEMORY', 'REVOKED']);

/** The state of job `jobId` in `squeue -h --me -t all -o %i|%T` output; `unknown` when slurmctld no longer lists it. */
export function parseSqueueStates(stdout: string, jobId: string): PilotStatus {
  for (const line of stdout.split('\n')) {
    if (line.trim() === '') continue;
    const m = /^(\S+)\|([A-Z_]+)$/.exec(line.trim());
    if (!m) throw new SlurmLrmError(`squeue printed an unexpected line: ${JSON.stringify(line.slice(0, 200))}`);
    if (m[1] !== jobId) continue;
    const s = m[2]!;
    if (QUEUED.has(s)) return 'queued';
    if (RUNNING.has(s)) return 'running';
    if (DONE.has(s)) return 'done';
    throw new SlurmLrmError(`squeue: unknown job state ${JSON.stringify(s.slice(0, 40))} for job ${jobId}`);
  }
  return 'unknown';
}

/** The clients get only what they need from our environment: the pilot must not inherit the CLI's (sbatch
 * exports its own environment to the job by default). */
function clientEnv(): Record<string, string> {
  const keep = ['PATH', 'HOME', 'USER', 'LOGNAME', 'LANG', 'SLURM_CONF'];
  return Object.fromEntries(keep.flatMap((k) => (process.env[k] !== undefined ? [[k, process.env[k]!]] : [])));
}

export class SlurmAdapter implements LrmAdapter {
  readonly name = 'slurm';
  constructor(private readonly opts: { partition: string; binDir?: string | undefined; timeoutMs?: number }) {}

  private bin(name: 'sbatch' | 'squeue' | 'scancel'): string {
    return this.opts.binDir ? join(this.opts.binDir, name) : name;
  }

  private call(name: 'sbatch' | 'squeue' | 'scancel', args: string[], cwd?: string) {
    return run(this.bin(name), args, { timeoutMs: this.opts.timeoutMs ?? 60_000, env: clientEnv(), extendEnv: false, ...(cwd ? { cwd } : {}) });
  }

  async submit(j: PilotSubmission): Promise<string> {
    // sbatch copies the script at submission: a private temp file that goes away right after
    const tmp = await mkdtemp(join(tmpdir(), 'wnod-pilot-'));
    try {
      const script = join(tmp, 'pilot.sh');
      await writeFile(script, j.script, { mode: 0o600 });
      const r = await this.call('sbatch', sbatchArgs(j, this.opts.partition, script), j.workdir).catch((err: unknown) => {
        throw new SlurmLrmError(`the batch system refused the pilot: ${err instanceof CommandError ? err.stderr.trim().slice(0, 500) || err.message : (err as Error).message}`, { cause: err });
      });
      return parseSbatchParsable(r.stdout);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  async cancel(jobId: string): Promise<void> {
    parseSlurmJobId(jobId, 'job id');
    // a finished or purged job: scancel exits 0
    await this.call('scancel', [jobId]).catch((err: unknown) => {
      throw new SlurmLrmError(`scancel ${jobId}: ${(err as Error).message}`, { cause: err });
    });
  }

  async status(jobId: string): Promise<PilotStatus> {
    parseSlurmJobId(jobId, 'job id');
    return parseSqueueStates((await this.call('squeue', ['-h', '--me', '-t', 'all', '-o', '%i|%T'])).stdout, jobId);
  }
}
