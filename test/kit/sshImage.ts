/** The ssh variant of the test image (leases): the test image's initramfs with one more cpio appended — Debian's
 * dropbear-bin, the shared libraries it needs (the NEEDED closure, read with readelf) and the dynamic loader. Linux
 * unpacks concatenated archives in order, so the base stays untouched and shared. Cached by its inputs beside the
 * test image. Test support only. */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, readlink, rename, rm, writeFile, lstat, copyFile } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { run } from '../../src/util/run.js';
import { withLock } from '../../src/util/lock.js';
import { cpioArchive, type CpioEntry } from '../../src/vm/cpio.js';
import { buildTestImage, DEFAULT_TEST_IMAGE_CACHE, TestImageError, parsePolicyCandidate, type TestImage, type TestKernel } from '../../src/guest/testImage.js';

/** Bump when the layout of the added archive changes. */
const SSH_BUILDER_VERSION = 2;
const SERVER_PKG = 'dropbear-bin';
/** The binaries the pilot uses, as they sit in the package. */
const BINARIES = ['usr/sbin/dropbear', 'usr/bin/dropbearkey'];
const LOADER = 'lib64/ld-linux-x86-64.so.2';
const LIB_DIRS = ['lib/x86_64-linux-gnu', 'usr/lib/x86_64-linux-gnu'];

export interface SshTestImage extends TestImage {
  /** versions of the packages in the added archive, e.g. dropbear-bin=2022.83-1+deb12u3 */
  sshPackages: string[];
}

/** The direct `Depends:` of a package from `apt-cache depends` output (alternatives and virtuals skipped). */
export function parseDepends(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s{2}Depends:\s*([a-z0-9][a-z0-9.+-]*)\s*$/.exec(line);
    if (m && !out.includes(m[1]!)) out.push(m[1]!);
  }
  return out;
}

/** The NEEDED sonames in `readelf -d` output. */
export function parseNeeded(text: string): string[] {
  return [...text.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]\s/]+)\]/g)].map((m) => m[1]!);
}

/** The package and everything it depends on, transitively (its libraries' libraries: libtomcrypt needs libgmp). */
async function dependencyClosure(pkg: string, limit = 40): Promise<string[]> {
  const out = [pkg];
  // one apt-cache per level (~0.5 s each): it prints the packages in argument order, so the order is breadth-first
  for (let i = 0; i < out.length;) {
    const level = out.slice(i);
    i = out.length;
    for (const d of parseDepends((await run('apt-cache', ['depends', ...level], { timeoutMs: 60_000 })).stdout)) {
      if (!out.includes(d)) out.push(d);
    }
    if (out.length > limit) throw new TestImageError(`${pkg} depends on more than ${limit} packages: not a small ssh server`);
  }
  return out;
}

async function candidates(pkgs: string[]): Promise<Array<[string, string]>> {
  // one apt-cache policy for all: a section per package, headed `NAME:` at column 0
  const text = (await run('apt-cache', ['policy', ...pkgs], { timeoutMs: 60_000 })).stdout;
  const sections = new Map<string, string>();
  for (const part of text.split(/^(?=\S+:\s*$)/m)) {
    const name = /^(\S+):/.exec(part)?.[1];
    if (name) sections.set(name, part);
  }
  return pkgs.map((p) => [p, parsePolicyCandidate(sections.get(p) ?? '', p)]);
}

/** Build (once) and return the ssh test image. */
export async function buildSshTestImage(opts: { cacheDir?: string; log?: (s: string) => void; kernel?: TestKernel } = {}): Promise<SshTestImage> {
  const cacheDir = opts.cacheDir ?? DEFAULT_TEST_IMAGE_CACHE;
  const log = opts.log ?? (() => {});
  const base = await buildTestImage({ cacheDir, log, ...(opts.kernel ? { kernel: opts.kernel } : {}) });
  const pkgs = await candidates(await dependencyClosure(SERVER_PKG));
  const key = createHash('sha256').update(JSON.stringify({ v: SSH_BUILDER_VERSION, base: base.key, pkgs })).digest('hex').slice(0, 20);
  const dir = join(cacheDir, `ssh-${key}`);
  if (!existsSync(join(dir, 'manifest.json'))) {
    await withLock(join(cacheDir, `ssh-${key}.lock`), 'exclusive', async () => {
      if (!existsSync(join(dir, 'manifest.json'))) await build(cacheDir, dir, base, pkgs, log);
    }, { timeoutMs: 900_000 });
  }
  return { ...base, dir, key: `${base.key}-ssh-${key}`, initrd: join(dir, 'initrd.img'), sshPackages: pkgs.map(([p, v]) => `${p}=${v}`) };
}

async function build(cacheDir: string, dir: string, base: TestImage, pkgs: Array<[string, string]>, log: (s: string) => void): Promise<void> {
  const work = await mkdtemp(join(cacheDir, '.build-ssh-'));
  try {
    const dl = join(work, 'deb');
    const root = join(work, 'root');
    await mkdir(dl);
    log(`downloading ${pkgs.map(([p, v]) => `${p}=${v}`).join(' ')}`);
    for (const [p, v] of pkgs) {
      await run('apt-get', ['download', '-qq', `${p}=${v}`], { cwd: dl, timeoutMs: 600_000 });
    }
    for (const f of await readdir(dl)) if (f.endsWith('.deb')) await run('dpkg-deb', ['-x', join(dl, f), root], { timeoutMs: 120_000 });
    const entries = new Map<string, CpioEntry>();
    const addDirs = (rel: string) => {
      for (let d = posix.dirname(rel); d !== '.'; d = posix.dirname(d)) if (!entries.has(d)) entries.set(d, { path: d, type: 'dir', mode: 0o755 });
    };
    const addFile = async (rel: string, mode: number) => {
      addDirs(rel);
      entries.set(rel, { path: rel, type: 'file', mode, data: await readFile(join(root, rel)) });
    };
    // a library by soname: the real file, and the soname as a link to it when the package has one
    const findLib = async (soname: string): Promise<string> => {
      for (const d of LIB_DIRS) {
        const rel = `${d}/${soname}`;
        const st = await lstat(join(root, rel)).catch(() => undefined);
        if (!st) continue;
        if (st.isSymbolicLink()) {
          const target = posix.join(d, await readlink(join(root, rel)));
          addDirs(rel);
          entries.set(rel, { path: rel, type: 'symlink', mode: 0o777, data: posix.basename(target) });
          return target;
        }
        return rel;
      }
      throw new TestImageError(`${soname}: not in the downloaded packages (${pkgs.map(([p]) => p).join(', ')})`);
    };
    const todo = [...BINARIES];
    const seen = new Set<string>();
    for (const b of BINARIES) await addFile(b, 0o755);
    while (todo.length > 0) {
      const file = todo.pop()!;
      for (const soname of parseNeeded((await run('readelf', ['-d', join(root, file)], { timeoutMs: 30_000 })).stdout)) {
        if (seen.has(soname)) continue;
        seen.add(soname);
        const real = await findLib(soname);
        await addFile(real, 0o644);
        todo.push(real);
      }
    }
    // the loader the binaries name (PT_INTERP): a link into the multiarch dir, as on Debian
    const loaderTarget = await readlink(join(root, LOADER));
    const loaderReal = loaderTarget.replace(/^\//, '');
    await addFile(loaderReal, 0o755); // executable: the kernel maps it as the program's interpreter
    addDirs(LOADER);
    entries.set(LOADER, { path: LOADER, type: 'symlink', mode: 0o777, data: loaderTarget });
    entries.set('etc/shells', { path: 'etc/shells', type: 'file', mode: 0o644, data: '/bin/sh\n' });
    const archive = cpioArchive([...entries.values()].sort((a, b) => a.path.localeCompare(b.path)));
    const out = join(work, 'out');
    await mkdir(out);
    await copyFile(base.initrd, join(out, 'initrd.img'));
    await writeFile(join(out, 'initrd.img'), archive, { flag: 'a' });
    await writeFile(join(out, 'ssh.cpio'), archive);
    await writeFile(join(out, 'manifest.json'), JSON.stringify({ base: base.key, packages: pkgs, files: [...entries.keys()], builtAt: new Date().toISOString() }, null, 2) + '\n');
    await mkdir(dirname(dir), { recursive: true });
    await rename(out, dir);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
