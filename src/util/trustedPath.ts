/** Whether root may trust a path: the file or directory and every parent up to / are owned by root (or by the
 * running user) and nobody else can write there — else another user could swap what root runs or builds in. */
import { lstat, realpath } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { WnodError } from './errors.js';

export class UntrustedPathError extends WnodError {
  constructor(readonly path: string, message: string) {
    super('untrusted-path', message);
  }
}

/** What is wrong with one path's owner and mode for root to trust it (undefined = nothing). A directory writable by
 * group/others is tolerated when sticky and not the leaf (like /tmp: nobody can rename our entries). Pure. */
export function trustProblem(path: string, st: { uid: number; mode: number; isDir: boolean; isLink: boolean }, o: { leaf: boolean; owners: number[] }): string | undefined {
  if (st.isLink) return `${path} is a symbolic link`;
  if (!o.owners.includes(st.uid)) return `${path} is owned by uid ${st.uid}, not by root`;
  if ((st.mode & 0o022) !== 0 && !(st.isDir && !o.leaf && (st.mode & 0o1000) !== 0)) {
    return `${path} is writable by ${(st.mode & 0o020) ? 'its group' : 'others'} (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')})`;
  }
  return undefined;
}

/** Throw UntrustedPathError naming the first of `path` (symbolic links resolved) and its parents root must not trust. */
export async function assertTrustedPath(path: string, what: string): Promise<void> {
  const owners = [...new Set([0, process.geteuid?.() ?? 0])];
  let p = await realpath(resolve(path)).catch((e: NodeJS.ErrnoException) => { throw new UntrustedPathError(path, `${what}: cannot check ${path}: ${e.code ?? e.message}`); });
  for (let leaf = true; ; leaf = false) {
    const st = await lstat(p).catch((e: NodeJS.ErrnoException) => { throw new UntrustedPathError(p, `${what}: cannot check ${p}: ${e.code ?? e.message}`); });
    const problem = trustProblem(p, { uid: st.uid, mode: st.mode, isDir: st.isDirectory(), isLink: st.isSymbolicLink() }, { leaf, owners });
    if (problem) throw new UntrustedPathError(p, `${what}: refusing ${path}: ${problem}`);
    if (p === '/') return;
    p = dirname(p);
  }
}
