/** Dynamically linked Debian binaries for a small guest, with exactly the shared libraries they need: the packages
 * come from apt (`apt-cache depends` for which, `apt-get download` + `dpkg-deb -x` for the files), the libraries from
 * the binaries' DT_NEEDED closure (`readelf -d`), the loader from their PT_INTERP (`readelf -l`). Used by the test
 * image (bash) and the tests' ssh image (dropbear). */
import { lstat, readFile, readlink } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { run } from '../util/run.js';
import { WnodError } from '../util/errors.js';
import type { CpioEntry } from '../vm/cpio.js';

export class DebPayloadError extends WnodError {
  constructor(message: string) {
    super('deb-payload', message);
  }
}

/** Where Debian (amd64) keeps shared libraries, relative to the root. */
const LIB_DIRS = ['lib/x86_64-linux-gnu', 'usr/lib/x86_64-linux-gnu'];
const MAX_LINKS = 8;

/** The direct `PreDepends:`/`Depends:` of each package section of `apt-cache depends` output (alternatives and
 * virtual packages skipped). Pure. */
export function parseDepends(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s{2}(?:Pre)?Depends:\s*([a-z0-9][a-z0-9.+-]*)\s*$/.exec(line);
    if (m && !out.includes(m[1]!)) out.push(m[1]!);
  }
  return out;
}

/** The NEEDED sonames in `readelf -d` output. Pure. */
export function parseNeeded(text: string): string[] {
  return [...text.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]\s/]+)\]/g)].map((m) => m[1]!);
}

/** The program interpreter in `readelf -l` output (undefined for a static binary). Pure. */
export function parseInterp(text: string): string | undefined {
  return /\[Requesting program interpreter: (\/[^\]\s]+)\]/.exec(text)?.[1];
}

/** A package and, transitively, those of its dependencies `keep` accepts (e.g. only libraries), breadth-first: one
 * `apt-cache depends` per level. */
export async function dependencyClosure(pkg: string, keep: (name: string) => boolean = () => true, limit = 40): Promise<string[]> {
  const out = [pkg];
  for (let i = 0; i < out.length;) {
    const level = out.slice(i);
    i = out.length;
    for (const d of parseDepends((await run('apt-cache', ['depends', ...level], { timeoutMs: 60_000 })).stdout)) {
      if (keep(d) && !out.includes(d)) out.push(d);
    }
    if (out.length > limit) throw new DebPayloadError(`${pkg} depends on more than ${limit} packages: not a small payload`);
  }
  return out;
}

/** The binaries (paths relative to `root`, the packages extracted with dpkg-deb -x), their DT_NEEDED closure found
 * in the multiarch library dirs (soname links kept as links), and the loader they request, as cpio entries with
 * their parent dirs. A soname the packages lack is an error: the binary would not start in the guest. */
export async function elfPayload(root: string, binaries: readonly string[]): Promise<CpioEntry[]> {
  const entries = new Map<string, CpioEntry>();
  const addDirs = (rel: string) => {
    for (let d = posix.dirname(rel); d !== '.'; d = posix.dirname(d)) if (!entries.has(d)) entries.set(d, { path: d, type: 'dir', mode: 0o755 });
  };
  const addFile = async (rel: string, mode: number) => {
    addDirs(rel);
    entries.set(rel, { path: rel, type: 'file', mode, data: await readFile(join(root, rel)) });
  };
  // follow links inside the tree (absolute targets are relative to root), recording each link; the real file's path
  const follow = async (rel: string): Promise<string | undefined> => {
    for (let i = 0; i < MAX_LINKS; i++) {
      const st = await lstat(join(root, rel)).catch(() => undefined);
      if (!st) return undefined;
      if (!st.isSymbolicLink()) return st.isFile() ? rel : undefined;
      const target = await readlink(join(root, rel));
      addDirs(rel);
      entries.set(rel, { path: rel, type: 'symlink', mode: 0o777, data: target });
      rel = posix.normalize(target.startsWith('/') ? target.slice(1) : posix.join(posix.dirname(rel), target));
      if (rel.startsWith('..')) return undefined;
    }
    return undefined;
  };
  const readelf = async (flag: string, rel: string) => (await run('readelf', [flag, join(root, rel)], { timeoutMs: 30_000 })).stdout;

  const seen = new Set<string>();
  const todo: string[] = [];
  const interps = new Set<string>();
  for (const b of binaries) {
    const real = await follow(b);
    if (!real) throw new DebPayloadError(`${b}: not a file in the extracted packages`);
    await addFile(real, 0o755);
    todo.push(real);
    const interp = parseInterp(await readelf('-l', real));
    if (interp) interps.add(interp);
  }
  while (todo.length > 0) {
    const file = todo.pop()!;
    for (const soname of parseNeeded(await readelf('-d', file))) {
      if (seen.has(soname)) continue;
      seen.add(soname);
      let real: string | undefined;
      for (const d of LIB_DIRS) if ((real = await follow(`${d}/${soname}`))) break;
      if (!real) throw new DebPayloadError(`${soname} (needed by ${file}): not in the downloaded packages`);
      await addFile(real, 0o644);
      todo.push(real);
    }
  }
  for (const interp of interps) {
    const real = await follow(interp.slice(1));
    if (!real) throw new DebPayloadError(`the program interpreter ${interp}: not in the downloaded packages`);
    await addFile(real, 0o755); // executable: the kernel maps it as the program's interpreter
  }
  return [...entries.values()].sort((a, b) => a.path.localeCompare(b.path));
}
