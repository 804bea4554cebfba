/** The guest the KVM probe boots: only what wnod itself ships or builds, so that `accel: auto` works on a node that
 * never built a test image — the minimal kernel from `wnod kernel build` (its cache, newest build) and an initramfs
 * made here from the repo's guest init and agent and the node's static busybox (Debian's busybox-static). */
import { createHash } from 'node:crypto';
import { open, readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpioArchive, type CpioEntry } from './cpio.js';
import { assertTrustedPath } from '../util/trustedPath.js';
import { writeFileAtomic } from '../util/atomic.js';
import { describe } from '../util/errors.js';

/** Where `wnod kernel build` caches the minimal kernel (src/kernel/miniKernel.ts's default). */
export const KERNEL_CACHE = '/var/cache/wnod/kernel';
/** The static busybox of Debian's busybox-static package (a dynamic one cannot run in an initramfs). */
export const STATIC_BUSYBOX = '/bin/busybox';
/** The minimal kernel's command line (no ACPI: the PIT ticks, the LAPIC timer calibration is skipped). */
const MINI_CMDLINE = 'nolapic_timer noreplace-smp';

/** A kernel guest with the wnod agent, as the probe boots it. `id` names its inputs (part of the verdict key). */
export interface ProbeGuest {
  id: string;
  kernel: string;
  initrd: string;
  cmdline?: string;
  acpi?: boolean;
}

/** Either a guest, or why there is none (for the verdict's reason). */
export type ProbeGuestLookup = { guest: ProbeGuest } | { missing: string };

const guestDir = (): string => fileURLToPath(new URL('../../guest/', import.meta.url));

/** True when an ELF file has no program interpreter (PT_INTERP), i.e. is statically linked. Pure. */
export function isStaticElf(head: Buffer): boolean {
  if (head.length < 64 || head.readUInt32BE(0) !== 0x7f454c46 || head[4] !== 2 || head[5] !== 1) return false; // ELF64 LE only
  const phoff = Number(head.readBigUInt64LE(32));
  const phentsize = head.readUInt16LE(54);
  const phnum = head.readUInt16LE(56);
  if (phentsize < 4 || phoff + phnum * phentsize > head.length) return false;
  for (let i = 0; i < phnum; i++) if (head.readUInt32LE(phoff + i * phentsize) === 3) return false;
  return true;
}

/** The newest complete minimal-kernel build in `cacheDir` (a `<key>/` holding manifest.json and vmlinux). */
export async function findBuiltMiniKernel(cacheDir = KERNEL_CACHE): Promise<{ key: string; vmlinux: string } | undefined> {
  let best: { at: number; key: string } | undefined;
  for (const n of await readdir(cacheDir).catch(() => [] as string[])) {
    if (!/^[0-9a-f]{20}$/.test(n)) continue;
    const m = await readFile(join(cacheDir, n, 'manifest.json'), 'utf8').then((x) => JSON.parse(x) as { builtAt?: string }, () => undefined);
    const at = Date.parse(m?.builtAt ?? '');
    if (!Number.isFinite(at) || !(await stat(join(cacheDir, n, 'vmlinux')).then((s) => s.isFile(), () => false))) continue;
    if (!best || at > best.at) best = { at, key: n };
  }
  return best ? { key: best.key, vmlinux: join(cacheDir, best.key, 'vmlinux') } : undefined;
}

/** The initramfs: busybox (its applets linked by the init), the guest init and agent, passwd/group. Pure. */
export function probeInitramfs(busybox: Uint8Array, init: Uint8Array, agent: Uint8Array): Buffer {
  const dirs = ['bin', 'sbin', 'usr', 'usr/bin', 'usr/sbin', 'usr/lib', 'usr/lib/wnod', 'etc', 'proc', 'sys', 'dev', 'run', 'tmp', 'wnod', 'root'];
  const entries: CpioEntry[] = dirs.map((d) => ({ path: d, type: 'dir', mode: d === 'tmp' ? 0o1777 : d === 'root' ? 0o700 : 0o755 }));
  entries.push({ path: 'dev/console', type: 'chardev', mode: 0o600, rdev: [5, 1] });
  entries.push({ path: 'dev/null', type: 'chardev', mode: 0o666, rdev: [1, 3] });
  entries.push({ path: 'bin/busybox', type: 'file', mode: 0o755, data: busybox });
  entries.push({ path: 'bin/sh', type: 'symlink', mode: 0o777, data: '/bin/busybox' });
  entries.push({ path: 'init', type: 'file', mode: 0o755, data: init });
  entries.push({ path: 'usr/lib/wnod/wnod-agent', type: 'file', mode: 0o755, data: agent });
  entries.push({ path: 'etc/passwd', type: 'file', mode: 0o644, data: 'root:x:0:0:root:/root:/bin/sh\n' });
  entries.push({ path: 'etc/group', type: 'file', mode: 0o644, data: 'root:x:0:\n' });
  return cpioArchive(entries);
}

/** A cheap identity of the guest the probe would boot now (kernel build key; size, mtime and inode of the other
 * inputs), without reading them: part of the verdict key, so a kernel built later, or a new agent, means a new probe. */
export async function probeGuestId(o: { kernelCacheDir?: string; busybox?: string } = {}): Promise<string> {
  const kernel = await findBuiltMiniKernel(o.kernelCacheDir ?? KERNEL_CACHE);
  if (!kernel) return 'none';
  const h = createHash('sha256');
  for (const p of [o.busybox ?? STATIC_BUSYBOX, join(guestDir(), 'init'), join(guestDir(), 'wnod-agent')]) {
    const st = await stat(p).catch(() => undefined);
    h.update(`${p}|${st?.size}|${st?.mtimeMs}|${st?.ino}\n`);
  }
  return `mini-${kernel.key}-${h.digest('hex').slice(0, 12)}`;
}

/** Find the probe's guest, writing its initramfs to `<stateDir>/probe-initrd.img` when its inputs changed. Every
 * input is checked trusted (root-owned, writable by nobody else): root boots it and runs its agent's answer. */
export async function probeGuest(stateDir: string, o: { kernelCacheDir?: string; busybox?: string } = {}): Promise<ProbeGuestLookup> {
  const kernel = await findBuiltMiniKernel(o.kernelCacheDir ?? KERNEL_CACHE);
  if (!kernel) return { missing: `the minimal guest kernel is not built on this node (run \`wnod kernel build\`; it is cached in ${o.kernelCacheDir ?? KERNEL_CACHE})` };
  const bb = o.busybox ?? STATIC_BUSYBOX;
  const inputs = [kernel.vmlinux, bb, join(guestDir(), 'init'), join(guestDir(), 'wnod-agent')];
  try {
    for (const p of inputs) await assertTrustedPath(p, 'an input of the KVM probe\'s guest');
  } catch (err) {
    return { missing: describe(err) };
  }
  const head = Buffer.alloc(4096);
  const fh = await open(bb, 'r').catch(() => undefined);
  if (!fh) return { missing: `${bb} is missing (install Debian's busybox-static)` };
  try {
    await fh.read(head, 0, head.length, 0);
  } finally {
    await fh.close();
  }
  if (!isStaticElf(head)) return { missing: `${bb} is not a static busybox (install Debian's busybox-static, not busybox)` };
  const [busybox, init, agent] = await Promise.all(inputs.slice(1).map((p) => readFile(p)));
  const h = createHash('sha256');
  for (const b of [busybox!, init!, agent!]) h.update(createHash('sha256').update(b).digest());
  const id = `${kernel.key}-${h.digest('hex')}`;
  const initrd = join(stateDir, 'probe-initrd.img');
  const have = await readFile(join(stateDir, 'probe-initrd.id'), 'utf8').catch(() => '');
  if (have !== id || !(await stat(initrd).then((s) => s.isFile(), () => false))) {
    await writeFileAtomic(initrd, probeInitramfs(busybox!, init!, agent!), 0o600);
    await writeFileAtomic(join(stateDir, 'probe-initrd.id'), id, 0o600);
  }
  return { guest: { id: await probeGuestId(o), kernel: kernel.vmlinux, initrd, cmdline: MINI_CMDLINE, acpi: false } };
}
