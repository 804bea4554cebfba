// The BDII entry point shared by the GLUE 1.3 plugin and the GLUE 2.0 provider: render from the config, or
// re-emit the last good output. BDII runs us every cycle and takes stdout as LDIF, so stdout gets one complete
// document or nothing, and every problem goes to stderr (BDII's log).
import { readFile, stat } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { writeFileAtomic } from '../util/atomic.js';
import { describe } from '../util/errors.js';
import { buildGlueModel, glueTime, type GlueModel } from './model.js';
import { printGlue1Plugin } from './print-glue1.js';
import { printGlue2Provider } from './print-glue2.js';
import { GlueError } from './dn.js';
import { configIdentity, modelCachePath, readCachedModel, writeCachedModel } from './model-cache.js';

export type InfoProviderKind = 'plugin' | 'provider';

/** Where the effects go; the real process passes stdout/stderr, tests pass collectors. */
export interface InfoProviderIo {
  /** Write the whole document; resolves when it is flushed. */
  stdout(text: string): Promise<void>;
  stderr(line: string): void;
  now(): Date;
}

/** Default internal time budget: well inside BDII_READ_TIMEOUT (300 s), whose expiry drops all our output. */
export const DEFAULT_BUDGET_MS = 20_000;

const PRINTERS: Record<InfoProviderKind, (m: GlueModel) => string> = {
  plugin: (m) => printGlue1Plugin(m.glue1),
  provider: printGlue2Provider,
};

/** The cache file of one kind: the provider uses `base` itself, the plugin `base` with `.plugin` before `.ldif`. */
export function lastGoodPath(base: string, kind: InfoProviderKind): string {
  if (kind === 'provider') return base;
  return base.endsWith('.ldif') ? `${base.slice(0, -5)}.plugin.ldif` : `${base}.plugin`;
}

/** The last good output as of `now`: every GLUE2EntityCreationTime line re-stamped. Re-emitting the old time would
 * make each entry obsolete (glue-validator's EGI profile: an error) once the config has been stable longer than
 * GLUE2EntityValidity; the content is still what the site last published correctly. GLUE 1.3 has no such line. */
export function restampCreationTime(ldif: string, now: Date): string {
  return ldif.replace(/^GLUE2EntityCreationTime: .*$/gm, `GLUE2EntityCreationTime: ${glueTime(now)}`);
}

/** bdii-update locates records by searching for `dn:` anywhere in the text: it must only start records. */
export function checkBdiiReadable(ldif: string): void {
  for (let i = ldif.indexOf('dn:'); i !== -1; i = ldif.indexOf('dn:', i + 1)) {
    if (i !== 0 && ldif[i - 1] !== '\n') {
      throw new GlueError(`output byte ${i}: the text "dn:" inside a value would make bdii-update split the entry`);
    }
  }
}

/** The model for `configPath`: from the cache when the config file is unchanged, else loaded (the YAML loader
 * is imported only then) and cached. `onBase` learns the configured last-good base path. */
async function currentModel(configPath: string, lastGoodFlag: string | undefined, io: InfoProviderIo,
  onBase: (base: string) => void): Promise<{ model: GlueModel; fromCache: boolean }> {
  const now = glueTime(io.now());
  const key = await configIdentity(configPath).catch(() => undefined);
  if (lastGoodFlag !== undefined && key !== undefined) {
    const cached = await readCachedModel(modelCachePath(lastGoodFlag), key);
    if (cached) return { model: { ...cached, creationTime: now }, fromCache: true };
  }
  const { loadConfig } = await import('../config/load.js');
  const cfg = await loadConfig(configPath);
  onBase(cfg.glue.lastGoodFile);
  const model = buildGlueModel(cfg, io.now());
  if (key !== undefined) {
    const file = modelCachePath(lastGoodFlag ?? cfg.glue.lastGoodFile);
    await writeCachedModel(file, key, model).catch((err) => io.stderr(`wnod-glue: warning: cannot cache the model in ${file}: ${describe(err)}`));
  }
  return { model, fromCache: false };
}

/** Run the plugin or provider once. Exit code is 0 when fresh output was printed, 1 otherwise (BDII ignores it;
 * it is for people and tests). */
export async function runInfoProvider(kind: InfoProviderKind, argv: string[], io: InfoProviderIo): Promise<number> {
  const tag = `wnod-glue-${kind}`;
  let opts: { config: string; lastGood?: string; budgetMs: number };
  try {
    const { values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: { config: { type: 'string' }, 'last-good': { type: 'string' }, 'budget-ms': { type: 'string' } },
    });
    if (!values.config) throw new Error('--config FILE is required');
    const budgetMs = values['budget-ms'] === undefined ? DEFAULT_BUDGET_MS : Number(values['budget-ms']);
    if (!Number.isInteger(budgetMs) || budgetMs <= 0) throw new Error(`--budget-ms: ${JSON.stringify(values['budget-ms'])} is not a positive integer`);
    opts = { config: values.config, budgetMs, ...(values['last-good'] ? { lastGood: values['last-good'] } : {}) };
  } catch (err) {
    io.stderr(`${tag}: error: ${describe(err)}; nothing printed`);
    return 2;
  }

  // One outcome only: whichever of render, failure or budget expiry comes first prints; the rest are ignored.
  let settled = false;
  let configuredLastGood: string | undefined;
  const fallback = async (why: string): Promise<number> => {
    const file = lastGoodPath(opts.lastGood ?? configuredLastGood ?? '/var/cache/wnod/glue-last-good.ldif', kind);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
      checkBdiiReadable(text);
    } catch (err) {
      io.stderr(`${tag}: error: ${why}; no last good output to re-emit (${describe(err)}): nothing printed`);
      return 1;
    }
    io.stderr(`${tag}: error: ${why}; re-emitting the last good output from ${file} (creation time: now)`);
    await io.stdout(restampCreationTime(text, io.now()));
    return 1;
  };

  let timer: NodeJS.Timeout | undefined;
  const budget = new Promise<number>((resolve) => {
    timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      resolve(fallback(`time budget of ${opts.budgetMs} ms exceeded`));
    }, opts.budgetMs);
  });
  const work = (async (): Promise<number> => {
    let text: string;
    let reuseLastGood = false;
    try {
      const { model, fromCache } = await currentModel(opts.config, opts.lastGood, io, (base) => { configuredLastGood = base; });
      reuseLastGood = fromCache;
      text = PRINTERS[kind](model);
      checkBdiiReadable(text);
      if (settled) return 1;
      for (const w of model.warnings) io.stderr(`${tag}: warning: ${w}`);
    } catch (err) {
      if (settled) return 1;
      settled = true;
      return fallback(describe(err).replace(/\n/g, '; '));
    }
    settled = true;
    await io.stdout(text);
    const file = lastGoodPath(opts.lastGood ?? configuredLastGood!, kind);
    try {
      // Same model as the last run: the kept output differs only in CreationTime, so spare the disk a write.
      if (reuseLastGood && (await stat(file).then((s) => s.isFile(), () => false))) return 0;
      await writeFileAtomic(file, text, 0o644);
    } catch (err) {
      io.stderr(`${tag}: error: cannot keep the last good output in ${file}: ${describe(err)}`);
    }
    return 0;
  })();
  try {
    return await Promise.race([work, budget]);
  } finally {
    clearTimeout(timer);
  }
}

/** The process wrapper used by the plugin.js / provider.js entry files. */
export function mainInfoProvider(kind: InfoProviderKind): void {
  const io: InfoProviderIo = {
    stdout: (text) => new Promise((resolve, reject) => {
      if (text === '') return resolve();
      process.stdout.write(text, (err) => (err ? reject(err) : resolve()));
    }),
    stderr: (line) => { process.stderr.write(line + '\n'); },
    now: () => new Date(),
  };
  runInfoProvider(kind, process.argv.slice(2), io).then(
    (code) => process.exit(code),
    (err) => { process.stderr.write(`wnod-glue-${kind}: error: ${describe(err)}\n`); process.exit(1); },
  );
}
