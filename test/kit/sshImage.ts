/** The ssh variant of the test image (leases): the test image's initramfs with one more cpio appended — Debian's
 * dropbear-bin, the shared libraries it needs (the NEEDED closure, read with readelf) and the dynamic loader. Linux
 * unpacks concatenated archives in order, so the base stays untouched and shared (the base's own libc, for bash,
 * is the same package version resolved at the same time, or is overwritten by this one's). Cached by its inputs beside the
 * test image. Test support only. */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rename, rm, writeFile, copyFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { run } from '../../src/util/run.js';
import { withLock } from '../../src/util/lock.js';
import { cpioArchive } from '../../src/vm/cpio.js';
import { buildTestImage, DEFAULT_TEST_IMAGE_CACHE, parsePolicyCandidates, type TestImage, type TestKernel } from '../../src/guest/testImage.js';
import { dependencyClosure, elfPayload, parseDepends, parseNeeded } from '../../src/guest/debPayload.js';

/** Bump when the layout of the added archive changes. */
const SSH_BUILDER_VERSION = 3;
const SERVER_PKG = 'dropbear-bin';
/** The binaries the pilot uses (server, host key), and a multi-node job's VMs (client, key conversion from the
 * OpenSSH format the context carries), as they sit in the package. */
const BINARIES = ['usr/sbin/dropbear', 'usr/bin/dropbearkey', 'usr/bin/dbclient', 'usr/bin/dropbearconvert'];

export interface SshTestImage extends TestImage {
  /** versions of the packages in the added archive, e.g. dropbear-bin=2022.83-1+deb12u3 */
  sshPackages: string[];
}

export { parseDepends, parseNeeded };

async function candidates(pkgs: string[]): Promise<Array<[string, string]>> {
  return parsePolicyCandidates((await run('apt-cache', ['policy', ...pkgs], { timeoutMs: 60_000 })).stdout, pkgs);
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
    // the binaries, their NEEDED closure and the loader (src/guest/debPayload.ts)
    const entries = new Map((await elfPayload(root, BINARIES)).map((e) => [e.path, e]));
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
