/** The per-job record the core keeps on the node (`<vm.stateDir>/torque/<jobId>.json`, root-only; the directory
 * keeps its first LRM's name so that upgraded nodes find their records): admission's decision, the ticket nonce it
 * consumed and the attempt counter that damps the LRM's retry loop.
 * Every read-modify-write holds one lock (`<dir>/.lock`) and every write is atomic. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mkdirMode, removeFileAtomic, writeFileAtomic } from '../util/atomic.js';
import { acquireLock, withLock, type Lock } from '../util/lock.js';
import { WnodError } from '../util/errors.js';
import { checkJobId } from './jobId.js';
import type { JobNetPlan } from '../cluster/jobNetPlan.js';

/** What admission decided for a job: run it in a VM of `image`, or bare on the host (policy no_ticket: bare). */
export type JobMode = 'vm' | 'bare';

export interface JobRecord {
  v: 1;
  jobId: string;
  user: string;
  /** admissions of this job started on this node (counted when each starts, so one killed by the LRM's alarm
   * counts too): bounds the LRM's requeue loop */
  attempts: number;
  /** nonce of the ticket this job consumed: a retried admission may present it again, nobody else may */
  nonce?: string;
  mode?: JobMode;
  /** the decision's identity and limits (from the ticket or the group default), for the epilogue's accounting */
  decision?: {
    image: string; digest: string; dn: string; fqan: string; vo: string; cpus: number; memoryMB: number; rule: string;
  };
  /** VM engine seam: the VM's id and how long its boot took */
  vmId?: string;
  bootS?: number;
  decidedAt?: string;
  /** the lease this job is the pilot of (its header's `# wnod-lease:`): accounted as a cloud VM (APEL cloud record) */
  lease?: string;
  /** a multi-node job's private network on this node (src/job/jobNetwork.ts): what the teardown removes */
  jobNet?: { plan: JobNetPlan; claimDir: string };
}

export class JobRecordError extends WnodError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('job-record', message, options);
  }
}

const LOCK_TIMEOUT_MS = 30_000;

/** `<stateDir>/torque`: root-owned 0755 (the public mode markers are read by the job user's run). */
export function jobStateDir(stateDir: string): string {
  return join(stateDir, 'torque');
}

function recordPath(stateDir: string, jobId: string): string {
  return join(jobStateDir(stateDir), `${checkJobId(jobId)}.json`);
}

/** The job's claim: an flock held by the one admission (or teardown) working on the job, so that a second
 * prologue for the same job id can neither replace nor kill what the first is building. */
export function claimPath(stateDir: string, jobId: string): string {
  return join(jobStateDir(stateDir), `${checkJobId(jobId)}.claim`);
}

/** Take the job's claim, waiting at most `timeoutMs` (a crashed holder's claim is freed by the kernel). */
export async function claimJob(stateDir: string, jobId: string, timeoutMs: number): Promise<Lock> {
  await ensureJobStateDir(stateDir);
  return acquireLock(claimPath(stateDir, jobId), 'exclusive', { timeoutMs });
}

/** The world-readable marker that tells the job's run (as the user) how to run the job. */
export function modeMarkerPath(stateDir: string, jobId: string): string {
  return join(jobStateDir(stateDir), `${checkJobId(jobId)}.mode`);
}

/** Create stateDir 0711 and `<stateDir>/torque` 0755, modes set explicitly whatever the umask (pbs_mom runs the
 * hooks under 077): the job user's run must traverse both and read its marker. */
export async function ensureJobStateDir(stateDir: string): Promise<string> {
  // pbs_mom runs the hooks under the job's umask (077 by default): the modes are set explicitly
  await mkdirMode(stateDir, 0o711);
  const dir = jobStateDir(stateDir);
  await mkdirMode(dir, 0o755);
  return dir;
}

/** Parse a job record file (pure): strict about the fields the hooks rely on. */
export function parseJobRecord(text: string, where: string): JobRecord {
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (err) {
    throw new JobRecordError(`${where}: not JSON: ${(err as Error).message}`, { cause: err });
  }
  const r = obj as Partial<JobRecord> | null;
  if (!r || typeof r !== 'object' || r.v !== 1 || typeof r.jobId !== 'string' || typeof r.user !== 'string'
    || typeof r.attempts !== 'number' || !Number.isInteger(r.attempts) || r.attempts < 0) {
    throw new JobRecordError(`${where}: not a wnod job record (v, jobId, user, attempts)`);
  }
  if (r.mode !== undefined && r.mode !== 'vm' && r.mode !== 'bare') throw new JobRecordError(`${where}: mode ${JSON.stringify(r.mode)} is not vm or bare`);
  return r as JobRecord;
}

/** Read a job's record, or undefined when there is none. */
export async function readJobRecord(stateDir: string, jobId: string): Promise<JobRecord | undefined> {
  const path = recordPath(stateDir, jobId);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return parseJobRecord(text, path);
}

/** Read-modify-write a job's record under the lock; `fn` returning undefined deletes it (and its mode marker). */
export async function updateJobRecord(
  stateDir: string, jobId: string, fn: (current: JobRecord | undefined) => JobRecord | undefined,
): Promise<JobRecord | undefined> {
  const dir = await ensureJobStateDir(stateDir);
  const path = recordPath(stateDir, jobId);
  return withLock(join(dir, '.lock'), 'exclusive', async () => {
    const current = await readJobRecord(stateDir, jobId);
    const next = fn(current);
    if (next === undefined) {
      await removeFileAtomic(path);
      await removeFileAtomic(modeMarkerPath(stateDir, jobId));
      return undefined;
    }
    await writeFileAtomic(path, JSON.stringify(next) + '\n', 0o600);
    if (next.mode !== undefined && next.mode !== current?.mode) await writeFileAtomic(modeMarkerPath(stateDir, jobId), `${next.mode}\n`, 0o644);
    return next;
  }, { timeoutMs: LOCK_TIMEOUT_MS });
}

/** A fresh record for a job. */
export function newJobRecord(jobId: string, user: string): JobRecord {
  return { v: 1, jobId, user, attempts: 0 };
}

/** Count one more admission of `jobId` (atomic: under the records' lock); `exhausted` once more than
 * `maxRequeues` happened. */
export async function countAttempt(stateDir: string, jobId: string, user: string, maxRequeues: number): Promise<{ attempts: number; exhausted: boolean }> {
  const rec = await updateJobRecord(stateDir, jobId, (cur) => ({ ...(cur ?? newJobRecord(jobId, user)), attempts: (cur?.attempts ?? 0) + 1 }));
  const attempts = rec!.attempts;
  return { attempts, exhausted: attempts > maxRequeues };
}

/** What the job's run finds in its marker: the decision, or a refusal and the one line the user reads. */
export type JobMarker = { mode: JobMode } | { mode: 'refuse'; reason: string };

/** Record a refusal in the job's marker, for an LRM that runs the job anyway (Torque delivers no output of a job
 * its prologue aborted): `refuse` and the one-line reason, root:<job gid> 0640 — the job's run reads it, other
 * users do not. Written whole (atomic rename), so the run sees no marker or all of it. */
export async function recordRefusal(stateDir: string, jobId: string, gid: number, reason: string): Promise<void> {
  await ensureJobStateDir(stateDir);
  const path = modeMarkerPath(stateDir, jobId);
  await writeFileAtomic(path, `refuse\n${reason.replace(/[\x00-\x1f\x7f]+/g, ' ').trim().slice(0, 500)}\n`, 0o640, { uid: 0, gid });
}

/** Read the job's marker (the run is the job user and may not read the record); undefined when there is none.
 * Other errors (e.g. a state dir the user cannot traverse) are thrown with the path. */
export async function readJobMarker(stateDir: string, jobId: string): Promise<JobMarker | undefined> {
  const path = modeMarkerPath(stateDir, jobId);
  let text: string;
  try {
    text = (await readFile(path, 'utf8')).slice(0, 1024);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new JobRecordError(`cannot read ${path}: ${(err as Error).message} (vm.state_dir and its torque/ must be traversable by job users)`, { cause: err });
  }
  const [first, reason] = text.split('\n');
  if (first === 'vm' || first === 'bare') return { mode: first };
  if (first === 'refuse') return { mode: 'refuse', reason: reason ?? '' };
  throw new JobRecordError(`${path}: ${JSON.stringify(text.slice(0, 20))} is not vm, bare or refuse`);
}

/** The decision in the job's marker (a refusal has none); undefined when there is none. */
export async function readModeMarker(stateDir: string, jobId: string): Promise<JobMode | undefined> {
  const m = await readJobMarker(stateDir, jobId);
  return m && m.mode !== 'refuse' ? m.mode : undefined;
}
