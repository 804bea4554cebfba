/** The minimal guest kernel: Debian's `linux-source-6.1` built with `make tinyconfig` + the fragment kept in the
 * repo (guest/kernel/wnod-mini.config), no modules, booted as PVH from the uncompressed vmlinux. Built once into
 * a cache directory keyed by every input (fragment, source version, compiler, builder version); concurrent callers
 * build it once (file lock); the source tree is deleted after the build. */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../util/run.js';
import { withLock } from '../util/lock.js';
import { WnodError } from '../util/errors.js';
import { assertTrustedPath } from '../util/trustedPath.js';
import { aptCandidate, aptDownload } from '../guest/testImage.js';
import { resolvedOnce, PACKAGE_VERSION } from '../guest/aptRecord.js';

export class KernelBuildError extends WnodError {
  constructor(message: string) {
    super('kernel-build', message);
  }
}

/** Bump when the build steps or the output layout change: it is part of the cache key. */
const BUILDER_VERSION = 1;
export const DEFAULT_KERNEL_CACHE = '/var/cache/wnod/kernel';
export const SOURCE_PACKAGE = 'linux-source-6.1';
/** Fixed build identity: equal inputs give an equal vmlinux. */
const BUILD_ENV = { KBUILD_BUILD_TIMESTAMP: '1970-01-01 00:00:00 UTC', KBUILD_BUILD_USER: 'wnod', KBUILD_BUILD_HOST: 'wnod',
  KBUILD_BUILD_VERSION: '1', LC_ALL: 'C', ARCH: 'x86_64' };

export interface MiniKernel {
  dir: string;
  key: string;
  vmlinux: string;
  sourceVersion: string;
  config: string;   // the final .config
  release: string;  // `uname -r` inside the guest
  built: boolean;   // built by this call (false: found in the cache)
}

export const fragmentFile = (): string => fileURLToPath(new URL('../../guest/kernel/wnod-mini.config', import.meta.url));

/** A Kconfig fragment: `CONFIG_X=value` and `# CONFIG_X is not set` lines; other `#` lines are comments. Strict:
 * anything else, or an option given twice, is an error naming the line. */
export function parseFragment(text: string, name = 'fragment'): Map<string, string> {
  const opts = new Map<string, string>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    let m: RegExpExecArray | null;
    let opt: string; let val: string;
    if ((m = /^# (CONFIG_[A-Za-z0-9_]+) is not set$/.exec(line))) { opt = m[1]!; val = 'n'; }
    else if (line === '' || line.startsWith('#')) return;
    else if ((m = /^(CONFIG_[A-Za-z0-9_]+)=(\S.*)$/.exec(line))) { opt = m[1]!; val = m[2]!; }
    else throw new KernelBuildError(`${name}:${i + 1}: not a Kconfig line: '${line}'`);
    if (opts.has(opt)) throw new KernelBuildError(`${name}:${i + 1}: ${opt} is set twice`);
    opts.set(opt, val);
  });
  return opts;
}

/** Options of the fragment that the final .config does not hold (Kconfig drops options with unmet dependencies
 * silently). Pure. `got` is 'n' for an option that is unset or absent. */
export function droppedOptions(fragment: Map<string, string>, dotConfig: string): Array<{ option: string; want: string; got: string }> {
  const final = parseFragment(dotConfig.split('\n').filter((l) => /^(CONFIG_|# CONFIG_\S+ is not set$)/.test(l.trim())).join('\n'), '.config');
  const out: Array<{ option: string; want: string; got: string }> = [];
  for (const [option, want] of fragment) {
    const got = final.get(option) ?? 'n';
    if (got !== want) out.push({ option, want, got });
  }
  return out;
}

/** The cache key: a digest over every input of the build. */
export function miniKernelKey(inputs: { fragment: string | Uint8Array; sourceVersion: string; compiler: string }): string {
  const h = createHash('sha256');
  h.update(JSON.stringify({ v: BUILDER_VERSION, src: `${SOURCE_PACKAGE}=${inputs.sourceVersion}`, cc: inputs.compiler, env: BUILD_ENV }));
  h.update(createHash('sha256').update(inputs.fragment).digest());
  return h.digest('hex').slice(0, 20);
}

/** The compiler and linker identity (first lines of `gcc --version` and `ld --version`). */
async function toolchain(): Promise<string> {
  const first = async (f: string) => (await run(f, ['--version'], { timeoutMs: 10_000 })).stdout.split('\n')[0]!.trim();
  return `${await first('gcc')} | ${await first('ld')}`;
}

async function build(cacheDir: string, key: string, sourceVersion: string, compiler: string, fragmentPath: string, fragment: Map<string, string>,
  log: (s: string) => void): Promise<void> {
  // a fixed path (we hold the lock): a leftover of a killed build is removed, and no random name reaches the build
  const work = join(cacheDir, `.build-${key}`);
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  try {
    const t0 = Date.now();
    log(`downloading ${SOURCE_PACKAGE}=${sourceVersion}`);
    const deb = await aptDownload(SOURCE_PACKAGE, sourceVersion, work);
    const x = join(work, 'deb');
    await run('dpkg-deb', ['-x', deb, x], { timeoutMs: 300_000 });
    await rm(deb);
    const tarball = (await readdir(join(x, 'usr/src'))).find((f) => /^linux-source-[0-9.]+\.tar\.xz$/.test(f));
    if (!tarball) throw new KernelBuildError(`${SOURCE_PACKAGE}=${sourceVersion}: no usr/src/linux-source-*.tar.xz in the package`);
    log(`unpacking ${tarball}`);
    // root: the tarball's owners and modes must not reach the tree (a file of some uid, or world-writable)
    await run('tar', ['-xf', join(x, 'usr/src', tarball), '-C', work, '--no-same-owner', '--no-same-permissions'], { timeoutMs: 600_000 });
    await rm(x, { recursive: true });
    const src = join(work, tarball.replace(/\.tar\.xz$/, ''));
    const env = { ...BUILD_ENV };
    const make = (args: string[], timeoutMs = 300_000) => run('make', ['-s', ...args], { cwd: src, env, timeoutMs, maxBuffer: 64 << 20 });

    await make(['tinyconfig']);
    await run('scripts/kconfig/merge_config.sh', ['-m', '.config', fragmentPath], { cwd: src, env, timeoutMs: 120_000 });
    await make(['olddefconfig']);
    const dotConfig = await readFile(join(src, '.config'), 'utf8');
    const dropped = droppedOptions(fragment, dotConfig);
    if (dropped.length) {
      throw new KernelBuildError(`${fragmentPath}: Kconfig dropped ${dropped.length} option(s) (unmet dependencies?): ` +
        dropped.map((d) => `${d.option} wanted ${d.want}, got ${d.got}`).join('; '));
    }
    const jobs = Math.max(1, cpus().length);
    log(`building vmlinux (make -j${jobs}; several minutes)`);
    await make([`-j${jobs}`, 'vmlinux'], 3_600_000);

    const out = join(work, 'out');
    await mkdir(out);
    await copyFile(join(src, 'vmlinux'), join(out, 'vmlinux'));
    await copyFile(join(src, '.config'), join(out, 'config'));
    const release = (await readFile(join(src, 'include/config/kernel.release'), 'utf8')).trim();
    const manifest = { key, sourcePackage: `${SOURCE_PACKAGE}=${sourceVersion}`, kernelRelease: release, compiler,
      builderVersion: BUILDER_VERSION, buildSeconds: Math.round((Date.now() - t0) / 1000), builtAt: new Date().toISOString() };
    await writeFile(join(out, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
    await rename(out, join(cacheDir, key)); // atomic: a half-built kernel is never visible under its key
    log(`built ${release} in ${manifest.buildSeconds} s`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Build the minimal kernel unless it is cached; return where it is. */
export async function buildMiniKernel(opts: { cacheDir?: string; log?: (s: string) => void; /** apt's package lists (tests) */ aptLists?: string } = {}): Promise<MiniKernel> {
  const cacheDir = opts.cacheDir ?? DEFAULT_KERNEL_CACHE;
  const log = opts.log ?? (() => {});
  await mkdir(cacheDir, { recursive: true, mode: 0o755 });
  // the build runs as root and the result is booted by root: nobody else may plant or swap anything in the cache
  await assertTrustedPath(cacheDir, 'kernel cache directory');
  const fragmentPath = fragmentFile();
  const fragmentText = await readFile(fragmentPath, 'utf8');
  const fragment = parseFragment(fragmentText, fragmentPath);
  // the source version is resolved once per state of apt's lists (src/guest/aptRecord.ts), not on every call
  const isVersion = (v: unknown): v is string => typeof v === 'string' && PACKAGE_VERSION.test(v);
  const [sourceVersion, compiler] = await Promise.all([
    resolvedOnce(join(cacheDir, 'resolved.json'), () => aptCandidate(SOURCE_PACKAGE, log), isVersion, { log, ...(opts.aptLists ? { lists: opts.aptLists } : {}) }),
    toolchain()]);
  const key = miniKernelKey({ fragment: fragmentText, sourceVersion, compiler });
  const dir = join(cacheDir, key);
  let built = false;
  if (!existsSync(join(dir, 'manifest.json'))) {
    await withLock(join(cacheDir, `${key}.lock`), 'exclusive', async () => {
      if (existsSync(join(dir, 'manifest.json'))) return;
      await build(cacheDir, key, sourceVersion, compiler, fragmentPath, fragment, log);
      built = true;
    }, { timeoutMs: 3_600_000 });
  }
  const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as { kernelRelease: string };
  await stat(join(dir, 'vmlinux'));
  return { dir, key, vmlinux: join(dir, 'vmlinux'), sourceVersion, config: join(dir, 'config'), release: manifest.kernelRelease, built };
}
