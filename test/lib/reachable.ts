// The repo as an unprivileged job user can reach it (a bind mount when the clone sits in a private directory):
// src/testkit/reachable.ts, bound to this repo.
import { reachableIn, reachableRepo as reachableOf } from '../../src/testkit/reachable.js';
import { repoRoot } from './cli.js';

/** The repo as other users can reach it: repoRoot itself, or a bind mount of it. */
export const reachableRepo = (): string => reachableOf(repoRoot);

/** A path inside the repo, as other users can reach it. */
export const reachable = (path: string): string => reachableIn(repoRoot, path);
