// What the cache stores for one catalog image: its artifacts by role, and the checks that make the digest and
// holder strings safe to use in paths and records. Pure.
import type { Image } from '../config/types.js';
import { WnodError } from '../util/errors.js';
import { isSha256 } from './fetch.js';

/** The files of one cache entry. */
export type Role = 'disk' | 'kernel' | 'initrd';
export const ROLES: readonly Role[] = ['disk', 'kernel', 'initrd'];

/** One file to fetch for an image. */
export interface RoleArtifact {
  role: Role;
  source: string;
  sha256: string;
}

/** An image or holder the cache refuses to handle (bad digest, missing artifact, malformed holder id). */
export class CacheInputError extends WnodError {
  constructor(message: string) {
    super('cache-bad-input', message);
  }
}

const HOLDER_RE = /^[A-Za-z0-9._-]{1,64}$/;

/** Throw unless `holder` is a VM id of 1–64 characters from [A-Za-z0-9._-]. */
export function checkHolder(holder: string): string {
  if (typeof holder !== 'string' || !HOLDER_RE.test(holder)) {
    throw new CacheInputError(`holder '${String(holder).slice(0, 80)}' is not a VM id ([A-Za-z0-9._-], 1 to 64 characters)`);
  }
  return holder;
}

/** Throw unless `digest` is a lower-case hex sha256 (it names a directory). */
export function checkDigest(digest: string, what = 'digest'): string {
  if (typeof digest !== 'string' || !isSha256(digest)) {
    throw new CacheInputError(`${what} '${String(digest).slice(0, 80)}' is not a lower-case hex sha256`);
  }
  return digest;
}

/** The artifacts to cache for `image`, by role, with their sources and digests validated. */
export function imageArtifacts(image: Image): RoleArtifact[] {
  const out: RoleArtifact[] = [];
  const where = `image '${image.id}'`;
  for (const role of ROLES) {
    const a = image[role];
    if (!a) continue;
    checkDigest(a.sha256.toLowerCase(), `${where} ${role}.sha256`);
    if (typeof a.source !== 'string' || a.source.length === 0) throw new CacheInputError(`${where} ${role}.source is empty`);
    out.push({ role, source: a.source, sha256: a.sha256.toLowerCase() });
  }
  if (image.kind === 'disk' && !image.disk) throw new CacheInputError(`${where} is kind 'disk' but has no disk`);
  if (image.kind === 'kernel' && !image.kernel) throw new CacheInputError(`${where} is kind 'kernel' but has no kernel`);
  if (out.length === 0) throw new CacheInputError(`${where} has no artifact to cache`);
  return out;
}

/** The cache key of `image`: its catalog digest, validated. */
export function imageDigest(image: Image): string {
  return checkDigest(typeof image.digest === 'string' ? image.digest.toLowerCase() : image.digest, `image '${image.id}' digest`);
}
