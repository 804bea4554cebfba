// Tests that run things as an unprivileged job user need that user to reach the repo (the hooks' bundle, dist/,
// fixtures under .tap/). A clone inside a private directory (mktemp -d is 0700) hides it. Then, and only then, the
// repo is bind-mounted once per test process at a world-traversable path and paths are mapped through it; the
// mount goes away when the process exits. Nothing outside the project changes mode.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, statSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { repoRoot } from './cli.js';

/** True when every directory from / down to `path` lets others traverse it. */
function othersCanReach(path: string): boolean {
  for (let p = path; ; p = dirname(p)) {
    if ((statSync(p).mode & 0o001) === 0) return false;
    if (p === dirname(p)) return true;
  }
}

let view: string | undefined;

/** The repo as other users can reach it: repoRoot itself, or a bind mount of it. */
export function reachableRepo(): string {
  if (view !== undefined) return view;
  if (othersCanReach(repoRoot)) return (view = repoRoot);
  const mnt = mkdtempSync(join(tmpdir(), 'wnod-repo-'));
  execFileSync('chmod', ['0755', mnt]);
  execFileSync('mount', ['--bind', repoRoot, mnt]);
  process.on('exit', () => {
    try { execFileSync('umount', ['-l', mnt]); rmdirSync(mnt); } catch { /* best effort at exit */ }
  });
  return (view = mnt);
}

/** A path inside the repo, as other users can reach it. */
export function reachable(path: string): string {
  const rel = relative(repoRoot, path);
  if (rel.startsWith('..')) return path;
  return join(reachableRepo(), rel);
}
