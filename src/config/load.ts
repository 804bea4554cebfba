// Reading the site config, fast. The filter and the hooks run once per job, and loading the YAML library costs
// more than the rest of their work: a validated config is therefore kept as JSON in a root-owned cache keyed by
// the sha256 of the file's bytes (and of the validator's own code), and the YAML parser is loaded only on a miss.
import { readFile, stat, mkdir } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { codeStamp } from '../util/code-stamp.js';
import { ConfigError } from './errors.js';
import { writeFileAtomic } from '../util/atomic.js';
import type { SiteConfig } from './types.js';

export { ConfigError } from './errors.js';
export { imageDigest, IMAGE_ID } from './image.js';

export const DEFAULT_CONFIG_PATH = '/etc/wnod/wnod.yaml';
/** Fixed, not configurable: a cache any user could point elsewhere would let them choose their own policy. */
export const COMPILED_CONFIG_DIR = '/var/cache/wnod/compiled-config';
const MAX_CONFIG_BYTES = 4 << 20;

let validatorStamp: string | undefined;
/** Identifies the validator's code, so that a wnod upgrade never serves a config validated by older rules. */
async function stamp(): Promise<string> {
  validatorStamp ??= await codeStamp(import.meta.url, ['./parse', './reader', './image', '../cluster/jobNetPlan']);
  return validatorStamp;
}

/** A cached entry is used only when root owns it and its directory and nobody else can write either. */
async function trusted(path: string): Promise<boolean> {
  const [d, f] = await Promise.all([stat(COMPILED_CONFIG_DIR), stat(path)]);
  return d.uid === 0 && (d.mode & 0o022) === 0 && f.uid === 0 && (f.mode & 0o022) === 0 && f.isFile();
}

/** Read and validate a site config file. Throws ConfigError listing every problem, each with file:line: key. */
export async function loadConfig(path: string = DEFAULT_CONFIG_PATH): Promise<SiteConfig> {
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (err) {
    throw new ConfigError([{ file: path, line: 0, key: '', message: `cannot read: ${(err as Error).message}` }]);
  }
  if (buf.length > MAX_CONFIG_BYTES) throw new ConfigError([{ file: path, line: 1, key: '', message: `file larger than ${MAX_CONFIG_BYTES} bytes` }]);
  const key = createHash('sha256').update(await stamp()).update('\0').update(buf).digest('hex');
  const cachePath = join(COMPILED_CONFIG_DIR, `${key}.json`);
  try {
    if (await trusted(cachePath)) {
      const cfg = JSON.parse(await readFile(cachePath, 'utf8')) as SiteConfig;
      return { ...cfg, path };
    }
  } catch {
    // no cache entry (or unreadable): validate from the YAML below
  }
  const { parseConfig } = await import('./parse.js');
  const cfg = parseConfig(buf.toString('utf8'), path);
  if (process.getuid?.() === 0) {
    // Only root writes the cache (the prologue on worker nodes, `wnod check` run by the admin on a CE).
    await mkdir(COMPILED_CONFIG_DIR, { recursive: true, mode: 0o755 })
      .then(() => writeFileAtomic(cachePath, JSON.stringify(cfg), 0o644))
      .then(() => pruneCompiled())
      .catch(() => {});
  }
  return cfg;
}

/** Drop cache entries unused for a week (a miss is rare: this runs after a config change). */
async function pruneCompiled(): Promise<void> {
  const { readdir, unlink } = await import('node:fs/promises');
  const old = Date.now() - 7 * 86400_000;
  for (const name of await readdir(COMPILED_CONFIG_DIR)) {
    const p = join(COMPILED_CONFIG_DIR, name);
    const s = await stat(p).catch(() => undefined);
    if (s && s.atimeMs < old && s.mtimeMs < old) await unlink(p).catch(() => {});
  }
}

/** Validate config text without touching any cache (for tests and tools that hold text, not a file). */
export async function parseConfigText(text: string, file: string): Promise<SiteConfig> {
  const { parseConfig } = await import('./parse.js');
  return parseConfig(text, file);
}
