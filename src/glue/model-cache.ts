// A cache of the GLUE model keyed by the identity of the config file. BDII runs the provider every cycle; parsing
// and validating a YAML catalog of 1 000 images costs ~0.5 s of CPU, reading this JSON a few ms. The key holds
// what the kernel changes on every write or replacement of the file (inode, size, mtime, ctime — ctime cannot be
// set from user space) and the build of the code that made the model.
import { readFile, stat } from 'node:fs/promises';
import { codeStamp } from '../util/code-stamp.js';
import { writeFileAtomic } from '../util/atomic.js';
import type { GlueModel } from './model.js';

/** Bump when the shape or meaning of GlueModel changes. */
const FORMAT = 2;

interface CacheFile {
  key: string;
  model: GlueModel;
}

/** The cache file beside the last-good output base path. */
export function modelCachePath(lastGoodBase: string): string {
  return `${lastGoodBase}.model.json`;
}

/** The identity of `configPath` plus the code that turns it into a model. */
export async function configIdentity(configPath: string): Promise<string> {
  const s = await stat(configPath, { bigint: true });
  const code = await codeStamp(import.meta.url, ['./model', '../config/parse', '../config/reader', '../config/image']);
  return [FORMAT, `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`, code].join('|');
}

/** The cached model when its key matches, else undefined (a missing or damaged cache is just a miss). */
export async function readCachedModel(file: string, key: string): Promise<GlueModel | undefined> {
  try {
    const c = JSON.parse(await readFile(file, 'utf8')) as CacheFile;
    if (c && c.key === key && c.model && c.model.glue1 && c.model.glue2) return c.model;
  } catch {
    // fall through: rebuild from the config
  }
  return undefined;
}

/** Store the model under `key` (atomic: a concurrent reader sees the old or the new cache). */
export async function writeCachedModel(file: string, key: string, model: GlueModel): Promise<void> {
  const c: CacheFile = { key, model };
  await writeFileAtomic(file, JSON.stringify(c), 0o600);
}
