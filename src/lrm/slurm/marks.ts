/** What the Slurm Prolog leaves on the node for the job's other two processes, in `<vm.state_dir>/slurm/`
 * (root-owned 0755):
 *   <id>.mode    root:<job gid> 0640 — `vm` or `refuse\n<reason>`: the SPANK plugin swaps the batch step's argv
 *                for the runner when it exists (and is root's), the runner reads the refusal reason from it;
 *   <id>.status  <job uid> 0600, created empty by the Prolog — the runner writes the job's exit status there, the
 *                Epilog reads it (Slurm hands the Epilog 0:0 for cancelled and timed-out jobs).
 * Jobs decided `bare` get neither: they run natively. Paths come from the config and a validated job id only. */
import { chown, lstat, mkdir, open, readFile, unlink, chmod } from 'node:fs/promises';
import { constants } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../util/atomic.js';
import { WnodError } from '../../util/errors.js';
import { parseSlurmJobId } from './jobId.js';

export class SlurmMarkError extends WnodError {
  constructor(code: string, message: string) {
    super(code, message);
  }
}

/** `<stateDir>/slurm`: the plugin's `marks=` directory. */
export function slurmStateDir(stateDir: string): string {
  return join(stateDir, 'slurm');
}

const markPath = (stateDir: string, jobId: string) => join(slurmStateDir(stateDir), `${parseSlurmJobId(jobId)}.mode`);
const statusPath = (stateDir: string, jobId: string) => join(slurmStateDir(stateDir), `${parseSlurmJobId(jobId)}.status`);

/** The exit status of a job wnod refused on the node (the reason is the first `wnod:` line of its stderr file). */
export { REFUSED_EXIT } from '../../job/outcome.js';

export type SlurmMark = { kind: 'vm' } | { kind: 'refuse'; reason: string };

/** Create `<stateDir>/slurm` root-owned 0755 (stateDir itself 0755 when missing: the job user traverses both). */
export async function ensureSlurmStateDir(stateDir: string): Promise<string> {
  await mkdir(stateDir, { recursive: true, mode: 0o755 });
  const dir = slurmStateDir(stateDir);
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const st = await lstat(dir);
  if (!st.isDirectory() || st.uid !== 0) throw new SlurmMarkError('bad-state-dir', `${dir} is not a root-owned directory`);
  if ((st.mode & 0o777) !== 0o755) await chmod(dir, 0o755);
  return dir;
}

/** The mark's text (pure). The reason is one line of printable text. */
export function renderMark(m: SlurmMark): string {
  return m.kind === 'vm' ? 'vm\n' : `refuse\n${m.reason.replace(/[^\x20-\x7e]+/g, ' ').trim().slice(0, 500)}\n`;
}

/** Parse a mark (pure). */
export function parseMark(text: string): SlurmMark {
  const [kind, reason] = text.split('\n');
  if (kind === 'vm') return { kind: 'vm' };
  if (kind === 'refuse') return { kind: 'refuse', reason: reason ?? '' };
  throw new SlurmMarkError('bad-mark', `not a wnod job mark: ${JSON.stringify(text.slice(0, 20))}`);
}

/** Prolog (root): mark the job, readable by its group only, and give its runner the status file. */
export async function markJob(stateDir: string, jobId: string, ids: { uid: number; gid: number }, mark: SlurmMark): Promise<void> {
  await ensureSlurmStateDir(stateDir);
  const status = statusPath(stateDir, jobId);
  await unlink(status).catch((e: NodeJS.ErrnoException) => { if (e.code !== 'ENOENT') throw e; });
  const fh = await open(status, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    await fh.chown(ids.uid, ids.gid);
  } finally {
    await fh.close();
  }
  const path = markPath(stateDir, jobId);
  // written then published by rename: the plugin sees no mark or the whole one, always root's
  await writeFileAtomic(path, renderMark(mark), 0o640);
  await chown(path, 0, ids.gid);
}

/** Runner (job user): the job's mark, or undefined when the Prolog left none. */
export async function readMark(stateDir: string, jobId: string): Promise<SlurmMark | undefined> {
  const path = markPath(stateDir, jobId);
  let text: string;
  try {
    const st = await lstat(path);
    if (!st.isFile() || st.uid !== 0 || (st.mode & 0o022) !== 0) throw new SlurmMarkError('bad-mark', `${path} is not a root-owned file`);
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return parseMark(text.slice(0, 1024));
}

/** What the runner reports: the job's exit status and when it ran (epoch ms). */
export interface RunReport {
  exit: number;
  startedAt: number;
  endedAt: number;
}

export function renderReport(r: RunReport): string {
  return `${JSON.stringify(r)}\n`;
}

/** Parse a report (pure, strict: the job user wrote it). */
export function parseReport(text: string): RunReport | undefined {
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    return undefined;
  }
  const r = o as Partial<RunReport> | null;
  if (!r || typeof r !== 'object' || Object.keys(r).length !== 3) return undefined;
  if (!Number.isInteger(r.exit) || r.exit! < 0 || r.exit! > 255) return undefined;
  if (!Number.isSafeInteger(r.startedAt) || !Number.isSafeInteger(r.endedAt) || r.endedAt! < r.startedAt! || r.startedAt! < 0) return undefined;
  return { exit: r.exit!, startedAt: r.startedAt!, endedAt: r.endedAt! };
}

/** Runner (job user): write the report into the file the Prolog made for it (never create, never follow a link). */
export async function writeReport(stateDir: string, jobId: string, r: RunReport): Promise<void> {
  const fh = await open(statusPath(stateDir, jobId), constants.O_WRONLY | constants.O_TRUNC | constants.O_NOFOLLOW);
  try {
    await fh.writeFile(renderReport(r));
  } finally {
    await fh.close();
  }
}

/** Epilog (root): the runner's report, if it wrote a valid one into the file owned by the job's uid. */
export async function readReport(stateDir: string, jobId: string, uid: number): Promise<RunReport | undefined> {
  let fh;
  try {
    fh = await open(statusPath(stateDir, jobId), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ELOOP') return undefined;
    throw err;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile() || st.uid !== uid || st.size > 512) return undefined;
    const buf = Buffer.alloc(512);
    const { bytesRead } = await fh.read(buf, 0, 512, 0);
    return parseReport(buf.subarray(0, bytesRead).toString('utf8'));
  } finally {
    await fh.close();
  }
}

/** Epilog (root): remove the job's mark and status file. */
export async function clearJob(stateDir: string, jobId: string): Promise<void> {
  for (const p of [markPath(stateDir, jobId), statusPath(stateDir, jobId)]) {
    await unlink(p).catch((e: NodeJS.ErrnoException) => { if (e.code !== 'ENOENT') throw e; });
  }
}
