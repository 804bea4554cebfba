import { stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

/** Identifies a build of some modules (size and mtime of each file), so that a cache of their output is not served
 * across an upgrade. `modules` are paths relative to `base` without extension: `.ts` when tests run the sources,
 * `.js` when built. A module that does not exist (bundled into `base`) is left out: `base` itself always counts. */
export async function codeStamp(base: string, modules: readonly string[]): Promise<string> {
  const ext = base.endsWith('.ts') ? '.ts' : '.js';
  const files = [base, ...modules.map((m) => new URL(m + ext, base).href)].map((u) => fileURLToPath(u));
  const parts = await Promise.all(files.map(async (f) => {
    const s = await stat(f, { bigint: true }).catch(() => undefined);
    return s ? `${f}:${s.size}:${s.mtimeNs}` : '';
  }));
  return parts.join('|');
}
