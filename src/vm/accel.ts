/** KVM or TCG. `/dev/kvm` existing is not enough: on nested/PVM hosts its ioctls work but guests hang or die. So
 * KVM is used only when a bounded test boot of a real guest — wnod's own minimal kernel and agent (probeGuest.ts),
 * never a test fixture — answers through its agent; the verdict, with its reason and time, is cached in the state
 * dir, keyed by what could change it (host kernel, QEMU binary, probe guest), and a probe never outlasts its bound.
 * `accelStatus` says which accelerator jobs get and why, without probing. */
import { access, constants, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { release } from 'node:os';
import { writeFileAtomic } from '../util/atomic.js';
import { withLock } from '../util/lock.js';
import { probeGuest, probeGuestId, type ProbeGuest, type ProbeGuestLookup } from './probeGuest.js';

export type AccelMode = 'auto' | 'kvm' | 'tcg';

export interface AccelVerdict {
  accel: 'kvm' | 'tcg';
  reason: string;
  key: string;
  at: string;
  probeMs?: number;
  /** the probe guest's identity ('none': there was none, so no probe ran) */
  guest?: string;
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

export const KVM_DEVICE = '/dev/kvm';

/** Can this process open the KVM device read-write? */
export async function kvmUsable(device = KVM_DEVICE): Promise<boolean> {
  return access(device, constants.R_OK | constants.W_OK).then(() => true, () => false);
}

/** What the verdict depends on: the host kernel, the QEMU binary (path, size, mtime) and the probe's guest. */
async function verdictKey(qemu: string, guestId: string): Promise<string> {
  let q = qemu;
  if (!q.startsWith('/')) {
    for (const d of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
      if (await stat(join(d, qemu)).then(() => true, () => false)) { q = join(d, qemu); break; }
    }
  }
  const st = await stat(q).catch(() => undefined);
  return `${release()}|${q}|${st?.size ?? 0}|${st?.mtimeMs ?? 0}|${guestId}`;
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

/** Boot `guest` under `accel` and run a short busy loop through its agent, at most timeoutMs. `accel: 'kvm'` is the
 * probe; tests boot the same guest under TCG to show it works on any host. Imported lazily: it uses the QEMU driver. */
export async function probeBoot(stateDir: string, qemu: string | undefined, guest: ProbeGuest, accel: 'kvm' | 'tcg', timeoutMs: number): Promise<{ ok: boolean; why: string }> {
  const { QemuDriver } = await import('./qemu.js');
  const d = new QemuDriver({ stateDir, accel, ...(qemu ? { qemu } : {}) });
  const id = `accel-probe-${process.pid}`;
  const root = { name: 'root', uid: 0, gid: 0 };
  let state;
  try {
    state = await d.prepare({
      id, image: { id: 'accel-probe', digest: 'probe', kind: 'kernel', files: { kernel: guest.kernel, initrd: guest.initrd },
        ...(guest.cmdline ? { cmdline: guest.cmdline } : {}), ...(guest.acpi === false ? { acpi: false } : {}) },
      cpus: 1, memoryMB: 256, hostname: 'accel-probe', user: root, env: {}, network: { mode: 'none' }, accel,
    });
    await d.start(state);
    await d.waitReady(state, timeoutMs);
    // a short busy loop: hosts that die "after a while" usually die during timer-heavy work
    const { Writable } = await import('node:stream');
    const sink = new Writable({ write(_c, _e, cb) { cb(); } });
    const rc = await d.exec(state, { argv: ['/bin/sh', '-c', 'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 1; echo ok'],
      cwd: '/', env: {}, user: root, stdout: sink, stderr: sink, timeoutMs: Math.max(5000, timeoutMs / 2) });
    return rc === 0 ? { ok: true, why: `a test boot under ${accel.toUpperCase()} answered` } : { ok: false, why: `the test command exited ${rc}` };
  } catch (err) {
    return { ok: false, why: `a test boot under ${accel.toUpperCase()} failed: ${(err as Error).message}` };
  } finally {
    if (state) await d.destroy(state).catch(() => {});
  }
}

export interface ChooseAccelOptions {
  stateDir: string;
  mode: AccelMode;
  qemu?: string | undefined;
  /** the guest to probe with (default: the product's own, src/vm/probeGuest.ts) */
  probeImage?: ProbeGuest | undefined;
  /** where `wnod kernel build` caches the minimal kernel (default /var/cache/wnod/kernel) */
  kernelCacheDir?: string | undefined;
  timeoutMs?: number | undefined;
  /** the KVM device whose access decides whether to probe at all (default /dev/kvm) */
  kvmDevice?: string | undefined;
}

/** The accelerator to use: from the mode, the cached verdict or a bounded probe (one prober at a time, by lock). */
export async function chooseAccel(opts: ChooseAccelOptions): Promise<'kvm' | 'tcg'> {
  return (await decideOrProbe(opts)).accel;
}

/** chooseAccel's work, returning the verdict it went by (a fresh or cached probe, or why none could run). */
async function decideOrProbe(opts: ChooseAccelOptions): Promise<{ accel: 'kvm' | 'tcg'; verdict?: AccelVerdict }> {
  const qemu = opts.qemu ?? 'qemu-system-x86_64';
  const guestOpts = opts.kernelCacheDir ? { kernelCacheDir: opts.kernelCacheDir } : {};
  const key = await verdictKey(qemu, opts.probeImage?.id ?? await probeGuestId(guestOpts));
  const usable = await kvmUsable(opts.kvmDevice);
  const cached = await readVerdict(opts.stateDir);
  const first = decideAccel(opts.mode, usable, cached, key);
  if (first !== 'probe') return { accel: first, ...(cached?.key === key ? { verdict: cached } : {}) };
  return withLock(join(opts.stateDir, 'accel.lock'), 'exclusive', async () => {
    const now = await readVerdict(opts.stateDir);
    const again = decideAccel(opts.mode, usable, now, key);
    if (again !== 'probe') return { accel: again, ...(now ? { verdict: now } : {}) };
    const t0 = Date.now();
    const found: ProbeGuestLookup = opts.probeImage ? { guest: opts.probeImage } : await probeGuest(opts.stateDir, guestOpts);
    const r = 'guest' in found
      ? await probeBoot(opts.stateDir, opts.qemu, found.guest, 'kvm', opts.timeoutMs ?? PROBE_TIMEOUT_MS)
      : { ok: false, why: `KVM was not tried: there is no guest to probe it with: ${found.missing}` };
    const verdict: AccelVerdict = { accel: r.ok ? 'kvm' : 'tcg', reason: r.why, key, at: new Date().toISOString(), probeMs: Date.now() - t0,
      guest: 'guest' in found ? found.guest.id : 'none' };
    await writeFileAtomic(verdictPath(opts.stateDir), JSON.stringify(verdict, null, 2) + '\n', 0o644);
    return { accel: verdict.accel, verdict };
  }, { timeoutMs: (opts.timeoutMs ?? PROBE_TIMEOUT_MS) * 3 });
}

/** Which accelerator jobs on this node get and why — for `wnod check`, `wnod status` and the admin. `accel` is
 * 'unknown' when the next VM start will probe (nothing cached for this host kernel, QEMU and probe guest). */
export interface AccelStatus {
  accel: 'kvm' | 'tcg' | 'unknown';
  /** config: vm.accel forces it; no-kvm: /dev/kvm unusable; probe: a probe boot decided; no-guest: nothing to probe
   * with (so TCG); pending: not probed yet */
  source: 'config' | 'no-kvm' | 'probe' | 'no-guest' | 'pending';
  reason: string;
  /** when the probe ran (ISO time), and how long it took */
  at?: string;
  probeMs?: number;
}

/** The accelerator status without probing (cheap: a few stats and the cached verdict). */
export async function accelStatus(opts: { stateDir: string; mode: AccelMode; qemu?: string | undefined; kernelCacheDir?: string | undefined;
  kvmDevice?: string | undefined }): Promise<AccelStatus> {
  const usable = await kvmUsable(opts.kvmDevice);
  if (opts.mode === 'tcg') return { accel: 'tcg', source: 'config', reason: 'vm.accel is tcg in the site config: software emulation, no probe' };
  if (opts.mode === 'kvm') {
    return { accel: 'kvm', source: 'config', reason: `vm.accel is kvm in the site config: no probe${usable ? '' : '; but /dev/kvm is not usable here, so VMs will fail to start'}` };
  }
  if (!usable) return { accel: 'tcg', source: 'no-kvm', reason: `${opts.kvmDevice ?? KVM_DEVICE} is missing or not readable and writable: software emulation` };
  const key = await verdictKey(opts.qemu ?? 'qemu-system-x86_64', await probeGuestId(opts.kernelCacheDir ? { kernelCacheDir: opts.kernelCacheDir } : {}));
  const v = await readVerdict(opts.stateDir);
  if (!v || v.key !== key) {
    return { accel: 'unknown', source: 'pending', reason: `not probed yet for this host kernel, QEMU and probe guest${v ? ` (the last verdict, ${v.accel} at ${v.at}, was for another)` : ''}: the next VM start probes KVM (at most ${PROBE_TIMEOUT_MS / 1000} s), or run \`wnod check --probe\`` };
  }
  return { accel: v.accel, source: v.guest === 'none' ? 'no-guest' : 'probe', reason: v.reason, at: v.at, ...(v.probeMs !== undefined ? { probeMs: v.probeMs } : {}) };
}

/** Probe now (unless a verdict for this host is cached) and report: `wnod check --probe`. */
export async function probeAccelNow(opts: ChooseAccelOptions): Promise<AccelStatus> {
  await decideOrProbe(opts);
  return accelStatus(opts);
}
