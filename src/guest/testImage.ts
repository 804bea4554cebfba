/** The test-image builder: a small direct-boot image made from Debian packages only — the cloud kernel
 * (`apt-get download` + `dpkg-deb -x`), busybox-static, bash with the libraries it needs, and the wnod guest agent —
 * as an uncompressed initramfs (+ the virtio modules) and an ext4 root disk made with `mke2fs -d` (no loop mount).
 * Built once into a cache directory keyed by its inputs; tests, the benchmark and `wnod vm run --test-image` reuse
 * it. The package versions are resolved once per state of apt's lists (aptRecord.ts), not before every boot. */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rename, rm, writeFile, stat, symlink, chmod, copyFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run, CommandError } from '../util/run.js';
import { withLock } from '../util/lock.js';
import { WnodError } from '../util/errors.js';
import { cpioArchive, type CpioEntry } from '../vm/cpio.js';
import { extractVmlinuxLz4 } from '../vm/lz4.js';
import { loadOrder, moduleDepends, moduleName } from '../vm/kmod.js';
import type { VmImage } from '../vm/driver.js';
import { aptListsState, resolvedOnce, PACKAGE_NAME, PACKAGE_VERSION } from './aptRecord.js';
import { dependencyClosure, elfPayload } from './debPayload.js';

export class TestImageError extends WnodError {
  constructor(message: string) {
    super('test-image', message);
  }
}

/** Bump when the layout of the output changes: it is part of the cache key. */
const BUILDER_VERSION = 4;
export const DEFAULT_TEST_IMAGE_CACHE = '/var/cache/wnod-test-image';
const KERNEL_META = 'linux-image-cloud-amd64';
const BUSYBOX = 'busybox-static';
/** Real bash for job scripts that ask for it (`#!/bin/bash`): Debian's package and the library packages it depends
 * on; only the files its DT_NEEDED closure names go into the image. */
const BASH = 'bash';
const isLibraryPackage = (name: string): boolean => name.startsWith('lib');
/** The record of resolved versions, beside the cached images. */
const RESOLVED_RECORD = 'resolved.json';
/** Stands for the kernel package in the key of a mini-kernel image; the version is the kernel's cache key. */
const MINI_KERNEL_PKG = 'wnod-mini-kernel';
/** The mini kernel's command line. No ACPI (the image sets acpi: false), so no hardware-reduced mode: the PIT ticks
 * and the LAPIC timer can go, which skips its calibration (−0.25 s per boot under TCG; sleeps keep working).
 * noreplace-smp: a 1-vCPU guest would otherwise rewrite every lock prefix through text_poke (−0.1 s under TCG). */
const MINI_CMDLINE = 'nolapic_timer noreplace-smp';
/** Modules by guest feature: microvm uses virtio-mmio, q35 virtio-pci; the agent needs virtio-serial; the workdir
 * fuse+virtiofs. The init loads only the features the VM has (WNOD_FEATURES in the context): each module costs
 * tens of ms under TCG. */
const FEATURE_MODULES: Array<[string, string]> = [['mmio', 'virtio_mmio'], ['pci', 'virtio_pci'], ['base', 'virtio_console'],
  ['blk', 'virtio_blk'], ['fs', 'virtiofs'], ['net', 'virtio_net'], ['rng', 'virtio_rng']];
const WANTED_MODULES = FEATURE_MODULES.map(([, m]) => m);

export interface TestImage {
  dir: string;
  key: string;
  kernel: string;        // uncompressed vmlinux (PVH boot)
  initrd: string;        // uncompressed newc cpio
  rootDisk: string;      // ext4, holds the same userland (its /init is the stage after the initramfs)
  kernelPackage: string; // e.g. linux-image-6.1.0-56-cloud-amd64=6.1.192-2
  busyboxVersion: string;
  bashPackages: string[]; // e.g. bash=5.2.15-2+b9, libc6=…, libtinfo6=…
  modules: string[];     // load order
  kernelFlavor: TestKernel;
}

/** Which kernel a test image boots: Debian's cloud kernel (+ virtio modules) or wnod's minimal one (no modules). */
export type TestKernel = 'debian' | 'mini';

const guestDir = (): string => fileURLToPath(new URL('../../guest/', import.meta.url));

/** The versioned kernel package that the cloud meta-package depends on, e.g. linux-image-6.1.0-56-cloud-amd64. */
export function parseMetaDepends(aptCacheDepends: string, meta = KERNEL_META): string {
  for (const line of aptCacheDepends.split('\n')) {
    const m = /^\s*Depends:\s*(linux-image-[A-Za-z0-9.+-]+)\s*$/.exec(line);
    if (m && m[1] !== meta) return m[1]!;
  }
  throw new TestImageError(`apt-cache depends ${meta}: no linux-image-* dependency in its output`);
}

/** The candidate version from `apt-cache policy PKG`. */
export function parsePolicyCandidate(policy: string, pkg: string): string {
  const m = /^\s*Candidate:\s*(\S+)\s*$/m.exec(policy);
  if (!m || m[1] === '(none)') throw new TestImageError(`apt-cache policy ${pkg}: no candidate version (is the package in the apt sources?)`);
  return m[1]!;
}

/** The candidate of each package from one `apt-cache policy P1 P2 …` (a section per package, headed `NAME:`). */
export function parsePolicyCandidates(policy: string, pkgs: readonly string[]): Array<[string, string]> {
  const sections = new Map<string, string>();
  for (const part of policy.split(/^(?=\S+:\s*$)/m)) {
    const name = /^(\S+):/.exec(part)?.[1];
    if (name) sections.set(name, part);
  }
  return pkgs.map((p) => [p, parsePolicyCandidate(sections.get(p) ?? '', p)]);
}

/** `apt-cache ARGS…` → its stdout. */
export async function aptQuery(args: string[]): Promise<string> {
  return (await run('apt-cache', args, { timeoutMs: 60_000 })).stdout;
}

/** Run an apt-cache lookup; on a machine that never ran `apt-get update`, run it once and retry. */
export async function withAptMetadata<T>(attempt: () => Promise<T>, log: (s: string) => void): Promise<T> {
  try {
    return await attempt();
  } catch (err) {
    if (!(err instanceof TestImageError || err instanceof CommandError)) throw err;
    log('apt metadata missing: running apt-get update');
    await run('apt-get', ['update', '-qq'], { timeoutMs: 300_000 });
    return attempt();
  }
}

/** The candidate version of a package (apt-get update once if needed). */
export async function aptCandidate(pkg: string, log: (s: string) => void): Promise<string> {
  return withAptMetadata(async () => parsePolicyCandidate(await aptQuery(['policy', pkg]), pkg), log);
}

/** The inputs of a test image that come from apt: package names and versions. */
export interface TestImageInputs { kernelPkg: string; kernelVer: string; busyboxVer: string; bash: Array<[string, string]> }

/** Strictly the shape resolveInputs returns (a record is read back from disk). Pure. */
export function validInputs(v: unknown): v is TestImageInputs {
  const x = v as Partial<TestImageInputs> | undefined;
  const ver = (s: unknown) => typeof s === 'string' && PACKAGE_VERSION.test(s);
  return !!x && typeof x.kernelPkg === 'string' && PACKAGE_NAME.test(x.kernelPkg) && ver(x.kernelVer) && ver(x.busyboxVer)
    && Array.isArray(x.bash) && x.bash.length > 0 && x.bash.length <= 40 && x.bash[0]?.[0] === BASH
    && x.bash.every((p) => Array.isArray(p) && p.length === 2 && typeof p[0] === 'string' && PACKAGE_NAME.test(p[0]) && ver(p[1]));
}

/** Resolve names and versions of the test image's packages from apt (seconds: the record keeps the answer). */
async function resolveInputs(log: (s: string) => void): Promise<TestImageInputs> {
  return withAptMetadata(async () => {
    const kernelPkg = parseMetaDepends(await aptQuery(['depends', KERNEL_META]));
    const bashPkgs = await dependencyClosure(BASH, isLibraryPackage);
    const pkgs = [kernelPkg, BUSYBOX, ...bashPkgs];
    const versions = new Map(parsePolicyCandidates(await aptQuery(['policy', ...pkgs]), pkgs));
    return { kernelPkg, kernelVer: versions.get(kernelPkg)!, busyboxVer: versions.get(BUSYBOX)!, bash: bashPkgs.map((p) => [p, versions.get(p)!]) };
  }, log);
}

/** `apt-get download PKG=VERSION` into a directory; the path of the .deb. */
export async function aptDownload(pkg: string, version: string, into: string): Promise<string> {
  // apt-get download writes into its cwd; _apt cannot write to our private dir, which only costs a warning.
  await run('apt-get', ['download', '-qq', `${pkg}=${version}`], { cwd: into, timeoutMs: 600_000 });
  const debs = (await readdir(into)).filter((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
  if (debs.length !== 1) throw new TestImageError(`apt-get download ${pkg}=${version}: expected one .deb in ${into}, found ${debs.length}`);
  return join(into, debs[0]!);
}

/** The cache key: a digest over every input of the build. */
export function testImageKey(inputs: TestImageInputs & { init: Uint8Array; agent: Uint8Array; reseed?: Uint8Array }): string {
  const h = createHash('sha256');
  h.update(JSON.stringify({ v: BUILDER_VERSION, k: inputs.kernelPkg, kv: inputs.kernelVer, b: inputs.busyboxVer, bash: inputs.bash, modules: WANTED_MODULES }));
  h.update(createHash('sha256').update(inputs.init).digest());
  h.update(createHash('sha256').update(inputs.agent).digest());
  if (inputs.reseed) h.update(createHash('sha256').update(inputs.reseed).digest());
  return h.digest('hex').slice(0, 20);
}

/** The userland tree shared by the initramfs and the root disk (busybox + applet links, init, agent, etc, and the
 * dynamically linked `extra` — bash and its libraries — which wins over an applet link of the same path). */
function userland(busybox: Buffer, applets: string[], init: Buffer, agent: Buffer, extra: CpioEntry[]): CpioEntry[] {
  const dirs = ['bin', 'sbin', 'usr', 'usr/bin', 'usr/sbin', 'usr/lib', 'usr/lib/wnod', 'lib', 'lib/modules', 'etc', 'proc', 'sys',
    'dev', 'run', 'tmp', 'wnod', 'root', 'home', 'mnt'];
  const entries: CpioEntry[] = dirs.map((d) => ({ path: d, type: 'dir', mode: d === 'tmp' ? 0o1777 : d === 'root' ? 0o700 : 0o755 }));
  entries.push({ path: 'dev/console', type: 'chardev', mode: 0o600, rdev: [5, 1] });
  entries.push({ path: 'dev/null', type: 'chardev', mode: 0o666, rdev: [1, 3] });
  entries.push({ path: 'bin/busybox', type: 'file', mode: 0o755, data: busybox });
  const extraPaths = new Set(extra.map((e) => e.path));
  for (const full of applets) {
    const rel = full.replace(/^\//, '');
    if (rel === 'bin/busybox' || extraPaths.has(rel) || !/^(usr\/)?s?bin\/[a-z0-9_.[-]+$/.test(rel)) continue;
    entries.push({ path: rel, type: 'symlink', mode: 0o777, data: '/bin/busybox' });
  }
  entries.push({ path: 'init', type: 'file', mode: 0o755, data: init });
  entries.push({ path: 'usr/lib/wnod/wnod-agent', type: 'file', mode: 0o755, data: agent });
  entries.push({ path: 'etc/passwd', type: 'file', mode: 0o644, data: 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' });
  entries.push({ path: 'etc/group', type: 'file', mode: 0o644, data: 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n' });
  entries.push({ path: 'etc/hostname', type: 'file', mode: 0o644, data: 'wnod\n' });
  const have = new Set(dirs);
  for (const e of extra) if (!(e.type === 'dir' && have.has(e.path))) entries.push(e);
  return entries;
}

/** Write entries as a directory tree (for mke2fs -d). */
async function materialise(entries: CpioEntry[], root: string): Promise<void> {
  for (const e of entries) {
    const p = join(root, e.path);
    if (e.type === 'dir') await mkdir(p, { recursive: true, mode: e.mode });
    else if (e.type === 'symlink') await symlink(String(e.data), p);
    else if (e.type === 'file') await writeFile(p, e.data ?? '', { mode: e.mode });
    else continue; // device nodes: devtmpfs provides them on the disk
    if (e.type !== 'symlink') await chmod(p, e.mode);
  }
}

/** The kernel of a test image being built: vmlinux in `out`, and the modules the init loads (none for mini). */
interface BuiltKernel { kver: string; order: string[]; tagged: string[]; files: Map<string, string> }

/** The minimal kernel (src/kernel/miniKernel.ts, built or cached): everything built in, no modules. */
async function miniKernelInto(mini: { vmlinux: string; release: string }, out: string): Promise<BuiltKernel> {
  await copyFile(mini.vmlinux, join(out, 'vmlinux'));
  return { kver: mini.release, order: [], tagged: [], files: new Map() };
}

/** Debian's cloud kernel: vmlinux from the package's bzImage, and the closure of the virtio modules. */
async function debianKernelInto(inputs: { kernelPkg: string; kernelVer: string }, work: string, dl: string, out: string,
  log: (s: string) => void): Promise<BuiltKernel> {
  log(`downloading ${inputs.kernelPkg}=${inputs.kernelVer}`);
  const kdeb = await aptDownload(inputs.kernelPkg, inputs.kernelVer, dl);
  const kx = join(work, 'kernel');
  await run('dpkg-deb', ['-x', kdeb, kx], { timeoutMs: 300_000 });

  const kver = (await readdir(join(kx, 'lib/modules')))[0];
  if (!kver) throw new TestImageError(`${inputs.kernelPkg}: no lib/modules/<version> in the package`);
  const vmlinuz = join(kx, 'boot', `vmlinuz-${kver}`);
  const vmlinux = extractVmlinuxLz4(await readFile(vmlinuz));
  if (vmlinux) await writeFile(join(out, 'vmlinux'), vmlinux);
  else await copyFile(vmlinuz, join(out, 'vmlinux')); // not LZ4: QEMU boots the bzImage itself, a little slower

  // kernel modules: the closure of WANTED_MODULES, flat in lib/modules/, loaded in order by init
  const modRoot = join(kx, 'lib/modules', kver);
  const files = new Map<string, string>();
  const walk = async (d: string): Promise<void> => {
    for (const ent of await readdir(d, { withFileTypes: true })) {
      const p = join(d, ent.name);
      if (ent.isDirectory()) await walk(p);
      else if (/\.ko$/.test(ent.name)) files.set(moduleName(ent.name), p);
    }
  };
  await walk(join(modRoot, 'kernel'));
  const builtin = new Set((await readFile(join(modRoot, 'modules.builtin'), 'utf8')).split('\n').filter(Boolean).map(moduleName));
  const depCache = new Map<string, string[]>();
  const deps = (name: string): string[] | undefined => depCache.get(name);
  for (const [name, p] of files) {
    if (name.startsWith('virtio') || ['fuse', 'failover', 'net_failover'].includes(name) || name.startsWith('vmw_vsock')) {
      depCache.set(name, moduleDepends(await readFile(p)));
    }
  }
  // one load list in dependency order; each module tagged with the feature that needs it, or "core" when
  // several features need it (virtio, virtio_ring): the init always loads core
  const order = loadOrder(WANTED_MODULES, deps, builtin);
  const users = new Map<string, Set<string>>();
  for (const [feature, m] of FEATURE_MODULES) {
    for (const x of loadOrder([m], deps, builtin)) users.set(x, (users.get(x) ?? new Set()).add(feature));
  }
  const tagged = order.map((m) => `${users.get(m)!.size > 1 ? 'core' : [...users.get(m)!][0]} ${m}.ko`);
  return { kver, order, tagged, files };
}

/** bash and its DT_NEEDED closure from the pinned packages; /bin/bash is there whether the package puts it in /bin
 * or (merged /usr) in /usr/bin. */
async function bashPayload(pkgs: Array<[string, string]>, work: string, dl: string, log: (s: string) => void): Promise<CpioEntry[]> {
  log(`downloading ${pkgs.map(([p, v]) => `${p}=${v}`).join(' ')}`);
  const tree = join(work, 'bash');
  for (const [p, v] of pkgs) await run('dpkg-deb', ['-x', await aptDownload(p, v, dl), tree], { timeoutMs: 120_000 });
  const bin = existsSync(join(tree, 'bin/bash')) ? 'bin/bash' : 'usr/bin/bash';
  const entries = await elfPayload(tree, [bin]);
  if (bin !== 'bin/bash') entries.push({ path: 'bin/bash', type: 'symlink', mode: 0o777, data: `/${bin}` });
  return entries;
}

async function build(cacheDir: string, key: string, inputs: TestImageInputs,
  init: Buffer, agent: Buffer, log: (s: string) => void, mini?: { vmlinux: string; release: string }): Promise<void> {
  const work = await mkdtemp(join(cacheDir, `.build-${key}-`));
  try {
    const dl = join(work, 'deb');
    await mkdir(dl);
    const out = join(work, 'out');
    await mkdir(out);
    const { kver, order, tagged, files } = mini ? await miniKernelInto(mini, out) : await debianKernelInto(inputs, work, dl, out, log);
    log(`downloading ${BUSYBOX}=${inputs.busyboxVer}`);
    const bdeb = await aptDownload(BUSYBOX, inputs.busyboxVer, dl);
    const bx = join(work, 'busybox');
    await run('dpkg-deb', ['-x', bdeb, bx], { timeoutMs: 60_000 });
    const busybox = await readFile(join(bx, 'bin/busybox'));
    const applets = (await run(join(bx, 'bin/busybox'), ['--list-full'])).stdout.split('\n').filter(Boolean).sort();
    const tree = userland(busybox, applets, init, agent, await bashPayload(inputs.bash, work, dl, log));
    tree.push({ path: 'usr/lib/wnod/wnod-reseed', type: 'file', mode: 0o755, data: await compileReseed(work) });
    const initrdEntries: CpioEntry[] = [...tree];
    for (const m of order) initrdEntries.push({ path: `lib/modules/${m}.ko`, type: 'file', mode: 0o644, data: await readFile(files.get(m)!) });
    // no load list without modules: the init then loads nothing
    if (order.length) initrdEntries.push({ path: 'lib/modules/wnod.load', type: 'file', mode: 0o644, data: tagged.map((l) => `${l}\n`).join('') });
    await writeFile(join(out, 'initrd.img'), cpioArchive(initrdEntries));

    // ext4 root disk from the same tree; UUID and hash seed from the key so equal inputs give equal disks
    const rootTree = join(work, 'rootfs');
    await mkdir(rootTree);
    await materialise(tree, rootTree);
    const uuid = `${key.slice(0, 8)}-${key.slice(8, 12)}-4${key.slice(13, 16)}-8${key.slice(17, 20)}-${key.slice(0, 12)}`;
    await run('mke2fs', ['-q', '-F', '-t', 'ext4', '-L', 'wnodroot', '-U', uuid, '-E', `hash_seed=${uuid}`, '-d', rootTree,
      join(out, 'root.ext4'), '64M'], { timeoutMs: 120_000, env: { E2FSPROGS_FAKE_TIME: '1' } });
    // `inputs` lets a machine without apt lists find this image again (builtWithoutApt)
    const manifest = { key, kernelPackage: `${inputs.kernelPkg}=${inputs.kernelVer}`, kernelVersion: kver, busyboxVersion: inputs.busyboxVer,
      bashPackages: inputs.bash.map(([p, v]) => `${p}=${v}`), modules: order, kernelFlavor: mini ? 'mini' : 'debian', inputs,
      builtAt: new Date().toISOString(), builderVersion: BUILDER_VERSION };
    await writeFile(join(out, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
    await rename(out, join(cacheDir, key)); // atomic: a half-built image is never visible under its key
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The guest's reseed/clock helper (guest/src/wnod-reseed.c): static, without libc (9 KB; exec'd on every restore). */
async function compileReseed(work: string): Promise<Buffer> {
  const out = join(work, 'wnod-reseed');
  await run('gcc', ['-static', '-nostdlib', '-Os', '-s', '-fno-stack-protector', '-fno-builtin', '-o', out, join(guestDir(), 'src', 'wnod-reseed.c')], { timeoutMs: 120_000 });
  return readFile(out);
}

/** Build the test image unless it is cached; return where it is. Concurrent callers build it once (file lock).
 * The package versions come from the record beside the cache (resolved again after an `apt-get update`); without
 * apt lists, an image built before is used as it is, and apt is asked only when something must be built. */
export async function buildTestImage(opts: { cacheDir?: string; log?: (s: string) => void; kernel?: TestKernel; kernelCacheDir?: string;
  /** apt's package lists (tests: a machine without them) */ aptLists?: string } = {}): Promise<TestImage> {
  const cacheDir = opts.cacheDir ?? DEFAULT_TEST_IMAGE_CACHE;
  const log = opts.log ?? (() => {});
  await mkdir(cacheDir, { recursive: true, mode: 0o755 });
  const [init, agent, reseed] = await Promise.all([readFile(join(guestDir(), 'init')), readFile(join(guestDir(), 'wnod-agent')),
    readFile(join(guestDir(), 'src', 'wnod-reseed.c'))]);
  let mini: { vmlinux: string; release: string; key: string } | undefined;
  if (opts.kernel === 'mini') {
    // loaded on demand: miniKernel.ts uses this module's apt helpers
    mini = await (await import('../kernel/miniKernel.js')).buildMiniKernel({ cacheDir: opts.kernelCacheDir, log, ...(opts.aptLists ? { aptLists: opts.aptLists } : {}) });
  }
  const flavor: TestKernel = mini ? 'mini' : 'debian';
  const withKernel = (r: TestImageInputs): TestImageInputs => (mini ? { ...r, kernelPkg: MINI_KERNEL_PKG, kernelVer: mini.key } : r);
  const keyOf = (i: TestImageInputs) => testImageKey({ ...i, init, agent, reseed });
  const record = join(cacheDir, RESOLVED_RECORD);
  const resolve = async () => withKernel(await resolvedOnce(record, () => resolveInputs(log), validInputs, { log, ...(opts.aptLists ? { lists: opts.aptLists } : {}) }));

  let dir: string | undefined;
  let inputs: TestImageInputs | undefined;
  if ((await aptListsState({ ...(opts.aptLists ? { lists: opts.aptLists } : {}) })) === undefined && !existsSync(record)) {
    dir = await builtWithoutApt(cacheDir, flavor, mini?.key, keyOf);
    if (dir) log(`no apt package lists: using the test image built before (${dir})`);
  }
  if (!dir) {
    inputs = await resolve();
    dir = join(cacheDir, keyOf(inputs));
  }
  if (!existsSync(join(dir, 'manifest.json'))) {
    if ((await aptListsState({ ...(opts.aptLists ? { lists: opts.aptLists } : {}) })) === undefined) {
      // something must be built, and apt-get download needs the lists: fetch them, then resolve against them
      log('apt package lists missing: running apt-get update');
      await run('apt-get', ['update', '-qq'], { timeoutMs: 300_000 });
      inputs = await resolve();
      dir = join(cacheDir, keyOf(inputs));
    }
    const key = keyOf(inputs!);
    const want = inputs!;
    await withLock(join(cacheDir, `${key}.lock`), 'exclusive', async () => {
      if (!existsSync(join(dir!, 'manifest.json'))) await build(cacheDir, key, want, init, agent, log, mini);
    }, { timeoutMs: 900_000 });
  }
  const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as { key: string; kernelPackage: string; busyboxVersion: string;
    bashPackages?: string[]; modules: string[]; kernelFlavor?: TestKernel };
  await stat(join(dir, 'vmlinux'));
  return { dir, key: manifest.key, kernel: join(dir, 'vmlinux'), initrd: join(dir, 'initrd.img'), rootDisk: join(dir, 'root.ext4'),
    kernelPackage: manifest.kernelPackage, busyboxVersion: manifest.busyboxVersion, bashPackages: manifest.bashPackages ?? [], modules: manifest.modules,
    kernelFlavor: manifest.kernelFlavor ?? 'debian' };
}

/** Without apt lists or a record: the newest image in the cache whose recorded inputs, with this checkout's guest
 * files, give its own key — exactly what a build here would make. */
async function builtWithoutApt(cacheDir: string, flavor: TestKernel, miniKey: string | undefined,
  keyOf: (i: TestImageInputs) => string): Promise<string | undefined> {
  let best: { at: number; dir: string } | undefined;
  for (const n of await readdir(cacheDir).catch(() => [] as string[])) {
    if (!/^[0-9a-f]{20}$/.test(n)) continue;
    const m = await readFile(join(cacheDir, n, 'manifest.json'), 'utf8').then((x) => JSON.parse(x) as { builtAt?: string; kernelFlavor?: string; inputs?: unknown },
      () => undefined);
    if (!m || (m.kernelFlavor ?? 'debian') !== flavor || !validInputs(m.inputs) || keyOf(m.inputs) !== n) continue;
    if (flavor === 'mini' && m.inputs.kernelVer !== miniKey) continue;
    const at = Date.parse(m.builtAt ?? '');
    if (Number.isFinite(at) && (!best || at > best.at)) best = { at, dir: join(cacheDir, n) };
  }
  return best?.dir;
}

/** The newest test image already built in `cacheDir` (kernel + initrd), without building one — the KVM probe's
 * guest on nodes where nobody asked for a build. */
export async function findBuiltTestImage(cacheDir = DEFAULT_TEST_IMAGE_CACHE): Promise<{ kernel: string; initrd: string } | undefined> {
  let best: { at: number; dir: string } | undefined;
  for (const n of await readdir(cacheDir).catch(() => [] as string[])) {
    if (!/^[0-9a-f]{20}$/.test(n)) continue;
    const m = await readFile(join(cacheDir, n, 'manifest.json'), 'utf8').then((x) => JSON.parse(x) as { builtAt?: string; kernelFlavor?: string }, () => undefined);
    const at = Date.parse(m?.builtAt ?? '');
    // Debian-kernel images only: the probe boots with the default machine options, which a mini kernel cannot use
    if (m && (m.kernelFlavor ?? 'debian') === 'debian' && Number.isFinite(at) && (!best || at > best.at)) best = { at, dir: join(cacheDir, n) };
  }
  return best ? { kernel: join(best.dir, 'vmlinux'), initrd: join(best.dir, 'initrd.img') } : undefined;
}

/** The test image as a VM image: initramfs only, or with the ext4 root disk (booted through an overlay). */
export function testVmImage(t: TestImage, withDisk = false): VmImage {
  return {
    id: `wnod-test${t.kernelFlavor === 'mini' ? '-mini' : ''}${withDisk ? '-disk' : ''}`, digest: t.key, kind: 'kernel',
    files: withDisk ? { kernel: t.kernel, initrd: t.initrd, disk: t.rootDisk } : { kernel: t.kernel, initrd: t.initrd },
    diskFormat: withDisk ? 'raw' : undefined,
    cmdline: [t.kernelFlavor === 'mini' ? MINI_CMDLINE : '', withDisk ? 'wnod.root=/dev/vda' : ''].filter(Boolean).join(' ') || undefined,
    ...(t.kernelFlavor === 'mini' ? { acpi: false } : {}),
  };
}
