/** The state directory: one JSON record per VM (written atomically), the runtime dir of each VM, the accel verdict.
 *
 *   <stateDir>/vms/<id>.json        the VmState record (root 0600)
 *   <stateDir>/run/<id>/            runtime files: pidfile, QMP socket, console log, initrd, overlay (root, 0711)
 *   <stateDir>/run/<id>/agent/      the agent sockets and exec.lock (the files handed to the job user by
 *                                   handOverAgent; the directory itself stays root's)
 *   <stateDir>/accel.json           the cached KVM/TCG verdict
 */
import { readFile, readdir, mkdir, open, lchown, chmod, lstat } from 'node:fs/promises';
import { constants } from 'node:fs';
import { join } from 'node:path';
import { removeFileAtomic, writeFileAtomic } from '../util/atomic.js';
import { VmSpecError, VmStateError } from './errors.js';
import { isAlive } from './proc.js';
import type { VmState, VmStep } from './driver.js';

const VM_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Throw unless `id` is a safe VM id (it names files). */
export function checkVmId(id: string): void {
  if (!VM_ID.test(id) || id.includes('..')) throw new VmSpecError(`invalid VM id '${id}': want [A-Za-z0-9][A-Za-z0-9._-]{0,63}`);
}

/** A VM id from a batch job id ("13.host.example" → "13.host.example"; other characters become '_'). */
export function vmIdForJob(jobId: string): string {
  const id = jobId.replace(/[^A-Za-z0-9._-]/g, '_').replace(/\.\.+/g, '.').replace(/^[^A-Za-z0-9]+/, '').slice(0, 64);
  checkVmId(id);
  return id;
}

export const recordDir = (stateDir: string): string => join(stateDir, 'vms');
export const recordPath = (stateDir: string, id: string): string => (checkVmId(id), join(stateDir, 'vms', `${id}.json`));
export const runDirOf = (stateDir: string, id: string): string => (checkVmId(id), join(stateDir, 'run', id));

/** The runtime sockets of VM `id`. Their paths follow from the state dir and the id alone, so the job starter
 * (job user, cannot read the root-only record) finds the agent from the job id. */
export function vmSockets(stateDir: string, id: string): { control: string; stdout: string; stderr: string; qmp: string; virtiofs: string } {
  const runDir = runDirOf(stateDir, id);
  return {
    control: join(runDir, 'agent', 'control.sock'),
    stdout: join(runDir, 'agent', 'stdout.sock'),
    stderr: join(runDir, 'agent', 'stderr.sock'),
    qmp: join(runDir, 'qmp.sock'),
    virtiofs: join(runDir, 'virtiofs.sock'),
  };
}

/** Parse and sanity-check a record's JSON text. */
export function parseRecord(text: string, where: string): VmState {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new VmStateError(`${where}: not JSON (${(err as Error).message})`, { cause: err });
  }
  const r = v as Partial<VmState>;
  if (!r || typeof r !== 'object' || r.version !== 1 || typeof r.id !== 'string' || typeof r.runDir !== 'string' ||
    typeof r.driver !== 'string' || !r.spec || !r.sockets || !r.pids || !r.steps || !Array.isArray(r.files)) {
    throw new VmStateError(`${where}: not a wnod VM state record (version 1)`);
  }
  checkVmId(r.id);
  return r as VmState;
}

/** Write a record atomically (root-only: it holds the paths root will delete and the pids it will kill). */
export async function writeRecord(stateDir: string, state: VmState): Promise<void> {
  await mkdir(recordDir(stateDir), { recursive: true, mode: 0o700 });
  await writeFileAtomic(recordPath(stateDir, state.id), JSON.stringify(state, null, 2) + '\n', 0o600);
}

/** Stamp a lifecycle step and persist. */
export async function stamp(stateDir: string, state: VmState, step: VmStep): Promise<VmState> {
  state.steps[step] = new Date().toISOString();
  await writeRecord(stateDir, state);
  return state;
}

/** Read one record; undefined if there is none. */
export async function readRecord(stateDir: string, id: string): Promise<VmState | undefined> {
  const p = recordPath(stateDir, id);
  let text: string;
  try {
    text = await readFile(p, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new VmStateError(`${p}: ${(err as Error).message}`, { cause: err });
  }
  return parseRecord(text, p);
}

/** A liveness check of VM `id`'s hypervisor (its recorded QEMU pid) for an exec's wait, when this process may read
 * the record (root); undefined otherwise (the job user's exec relies on the channel and the agent's heartbeat). */
export async function hypervisorAlive(stateDir: string, id: string): Promise<(() => Promise<boolean>) | undefined> {
  const ref = (await readRecord(stateDir, id).catch(() => undefined))?.pids.qemu;
  return ref ? () => isAlive(ref) : undefined;
}

/** Every record in the state dir; unreadable ones are reported through onBad and skipped. */
export async function listRecords(stateDir: string, onBad: (path: string, err: unknown) => void = () => {}): Promise<VmState[]> {
  let names: string[];
  try {
    names = await readdir(recordDir(stateDir));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: VmState[] = [];
  for (const n of names.sort()) {
    if (!n.endsWith('.json') || n.startsWith('.')) continue;
    const p = join(recordDir(stateDir), n);
    try {
      out.push(parseRecord(await readFile(p, 'utf8'), p));
    } catch (err) {
      onBad(p, err);
    }
  }
  return out;
}

/** Delete a record (idempotent). */
export async function removeRecord(stateDir: string, id: string): Promise<void> {
  await removeFileAtomic(recordPath(stateDir, id));
}

/** In the agent directory, the job user's one file for notes to the admin (the job's run writes, the teardown reads). */
export const AGENT_NOTES = 'notes';
const MAX_NOTES_BYTES = 4096;

/** The notes the job's run left for the admin (written by the job user: untrusted text, bounded, no symlinks). */
export async function readAgentNotes(agentDir: string): Promise<string[]> {
  const fh = await open(join(agentDir, AGENT_NOTES), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch(() => undefined);
  if (!fh) return [];
  try {
    if (!(await fh.stat()).isFile()) return [];
    const buf = Buffer.alloc(MAX_NOTES_BYTES);
    const { bytesRead } = await fh.read(buf, 0, MAX_NOTES_BYTES, 0);
    return buf.subarray(0, bytesRead).toString('utf8').split('\n').filter(Boolean).slice(0, 8);
  } finally {
    await fh.close();
  }
}

/** Give the job user its VM's agent sockets, exec lock and notes file — and nothing else. The agent directory stays root's
 * (0711): a user who owned it could swap a file for a symlink while root chowns by path (root would hand over
 * /etc/shadow), or plant a symlinked subdirectory for the epilogue's recursive delete to follow. */
export async function handOverAgent(sockets: { control: string; stdout: string; stderr: string }, agentDir: string, uid: number, gid: number): Promise<void> {
  const st = await lstat(agentDir);
  if (!st.isDirectory() || st.uid !== 0) throw new VmStateError(`${agentDir} is not a root-owned directory; refusing to hand it over`);
  await chmod(agentDir, 0o711);
  for (const f of ['exec.lock', AGENT_NOTES]) {
    const fh = await open(join(agentDir, f), constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
    try {
      await fh.chown(uid, gid);
      await fh.chmod(0o600);
    } finally {
      await fh.close();
    }
  }
  for (const path of [sockets.control, sockets.stdout, sockets.stderr]) {
    if (!(await lstat(path)).isSocket()) throw new VmStateError(`${path} is not the agent's socket`);
    await lchown(path, uid, gid);
    await chmod(path, 0o600);
  }
}
