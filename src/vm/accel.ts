/** KVM or TCG. `/dev/kvm` existing is not enough: on nested/PVM hosts its ioctls work but guests hang or die. So
 * KVM is used only when a bounded test boot of a real guest answers through its agent; the verdict is cached in the
 * state dir, keyed by what could change it (host kernel, QEMU binary), and a probe never outlasts its bound. */
import { access, constants, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { release } from 'node:os';
import { writeFileAtomic } from '../util/atomic.js';
import { withLock } from '../util/lock.js';

export type AccelMode = 'auto' | 'kvm' | 'tcg';

export interface AccelVerdict {
  accel: 'kvm' | 'tcg';
  reason: string;
  key: string;
  at: string;
  probeMs?: number;
}

export const PROBE_TIMEOUT_MS = 30_000;

/** Decide from the mode, whether /dev/kvm is usable, and a cached verdict (if its key still matches). Pure. */
export function decideAccel(mode: AccelMode, kvmUsable: boolean, cached: AccelVerdict | undefined, key: string): 'kvm' | 'tcg' | 'probe' {
  if (mode === 'tcg') return 'tcg';
  if (mode === 'kvm') return 'kvm';
  if (!kvmUsable) return 'tcg';
  if (cached && cached.key === key) return cached.accel;
  return 'probe';
}

async function kvmUsable(): Promise<boolean> {
  return access('/dev/kvm', constants.R_OK | constants.W_OK).then(() => true, () => false);
}

/** What the verdict depends on: the host kernel and the QEMU binary (path, size, mtime). */
async function verdictKey(qemu: string): Promise<string> {
  let q = qemu;
  if (!q.startsWith('/')) {
    for (const d of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
      if (await stat(join(d, qemu)).then(() => true, () => false)) { q = join(d, qemu); break; }
    }
  }
  const st = await stat(q).catch(() => undefined);
  return `${release()}|${q}|${st?.size ?? 0}|${st?.mtimeMs ?? 0}`;
}

export const verdictPath = (stateDir: string): string => join(stateDir, 'accel.json');

/** Read the cached verdict, if any. */
export async function readVerdict(stateDir: string): Promise<AccelVerdict | undefined> {
  try {
    return JSON.parse(await readFile(verdictPath(stateDir), 'utf8')) as AccelVerdict;
  } catch {
    return undefined;
  }
}

/** Boot a KVM guest with the given image and wait for its agent, at most timeoutMs. Imported lazily: the probe
 * uses the QEMU driver itself. */
async function probeKvm(stateDir: string, qemu: string | undefined, image: { kernel: string; initrd: string }, timeoutMs: number): Promise<{ ok: boolean; why: string }> {
  const { QemuDriver } = await import('./qemu.js');
  const d = new QemuDriver({ stateDir, accel: 'kvm', qemu });
  const id = `accel-probe-${process.pid}`;
  const state = await d.prepare({
    id, image: { id: 'accel-probe', digest: 'probe', kind: 'kernel', files: image }, cpus: 1, memoryMB: 256, hostname: 'accel-probe',
    user: { name: 'root', uid: 0, gid: 0 }, env: {}, network: { mode: 'none' }, accel: 'kvm',
  });
  try {
    await d.start(state);
    await d.waitReady(state, timeoutMs);
    // a short busy loop: hosts that die "after a while" usually die during timer-heavy work
    const { Writable } = await import('node:stream');
    const sink = new Writable({ write(_c, _e, cb) { cb(); } });
    const rc = await d.exec(state, { argv: ['/bin/sh', '-c', 'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 1; echo ok'],
      cwd: '/', env: {}, user: { name: 'root', uid: 0, gid: 0 }, stdout: sink, stderr: sink, timeoutMs: Math.max(5000, timeoutMs / 2) });
    return rc === 0 ? { ok: true, why: 'test boot under KVM answered' } : { ok: false, why: `test command exited ${rc}` };
  } catch (err) {
    return { ok: false, why: `test boot under KVM failed: ${(err as Error).message}` };
  } finally {
    await d.destroy(state).catch(() => {});
  }
}

/** The accelerator to use: from the mode, the cached verdict or a bounded probe (one prober at a time, by lock). */
export async function chooseAccel(opts: { stateDir: string; mode: AccelMode; qemu?: string; probeImage?: { kernel: string; initrd: string };
  timeoutMs?: number }): Promise<'kvm' | 'tcg'> {
  const qemu = opts.qemu ?? 'qemu-system-x86_64';
  const key = await verdictKey(qemu);
  const usable = await kvmUsable();
  const first = decideAccel(opts.mode, usable, await readVerdict(opts.stateDir), key);
  if (first !== 'probe') return first;
  if (!opts.probeImage) return 'tcg'; // nothing to probe with: the safe choice, not cached so a later probe can run
  return withLock(join(opts.stateDir, 'accel.lock'), 'exclusive', async () => {
    const again = decideAccel(opts.mode, usable, await readVerdict(opts.stateDir), key);
    if (again !== 'probe') return again;
    const t0 = Date.now();
    const r = await probeKvm(opts.stateDir, opts.qemu, opts.probeImage!, opts.timeoutMs ?? PROBE_TIMEOUT_MS);
    const verdict: AccelVerdict = { accel: r.ok ? 'kvm' : 'tcg', reason: r.why, key, at: new Date().toISOString(), probeMs: Date.now() - t0 };
    await writeFileAtomic(verdictPath(opts.stateDir), JSON.stringify(verdict, null, 2) + '\n', 0o644);
    return verdict.accel;
  }, { timeoutMs: (opts.timeoutMs ?? PROBE_TIMEOUT_MS) * 3 });
}
