// The demo and the tests run things as unprivileged users (BLAH's pool account, the job user), who must reach the
// repo (the hooks' bundle, dist/, fixtures). A clone inside a private directory (/root, or mktemp -d: 0700) hides
// it. Then, and only then, the repo is bind-mounted once per process at a world-traversable path and paths are
// mapped through it; the mount goes away when the process exits. Nothing outside the project changes mode.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, statSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { repoRoot } from './cli.js';

/** True when every directory from / down to `path` lets others traverse it. */
export function othersCanReach(path: string): boolean {
  for (let p = path; ; p = dirname(p)) {
    if ((statSync(p).mode & 0o001) === 0) return false;
    if (p === dirname(p)) return true;
  }
}

const views = new Map<string, string>();

/** `repo` as other users can reach it: itself, or a bind mount of it (root only). */
export function reachableRepoAt(repo: string): string {
  const known = views.get(repo);
  if (known !== undefined) return known;
  if (othersCanReach(repo)) {
    views.set(repo, repo);
    return repo;
  }
  const mnt = mkdtempSync(join(tmpdir(), 'wnod-repo-'));
  execFileSync('chmod', ['0755', mnt]);
  execFileSync('mount', ['--bind', repo, mnt]);
  process.on('exit', () => {
    try { execFileSync('umount', ['-l', mnt]); rmdirSync(mnt); } catch { /* best effort at exit */ }
  });
  views.set(repo, mnt);
  return mnt;
}

/** A path inside `repo`, as other users can reach it (paths outside it are returned as they are). */
export function reachableIn(repo: string, path: string): string {
  const rel = relative(repo, path);
  if (rel.startsWith('..')) return path;
  return join(reachableRepoAt(repo), rel);
}

/** This repo as other users can reach it: repoRoot itself, or a bind mount of it. */
export const reachableRepo = (): string => reachableRepoAt(repoRoot);

/** A path inside this repo, as other users can reach it. */
export const reachable = (path: string): string => reachableIn(repoRoot, path);
