// The submit filter's launcher (dist/hot/filter.cjs, what the BLAH shim runs): it runs the bundle with the V8
// code cache made by the build, and behaves exactly like the bundle with the cache, without it, or with a cache
// V8 rejects (another Node).
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { cp, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeTestSite } from './kit/site.js';
import { ensureBuilt, repoRoot } from './kit/cli.js';

await ensureBuilt();
const hot = join(repoRoot, 'dist/hot');
const dir = await mkdtemp(join(tmpdir(), 'wnod-flaunch-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const site = await makeTestSite(join(dir, 'site'));
const script = join(dir, 'blahtmp');
await writeFile(script, ["#!/bin/bash", "GlueHostApplicationSoftwareRunTimeEnvironment[0]='\"vm_sl6\"'", "VirtualOrganisation='atlas'", 'blah_opt_mpinodes=1', ''].join('\n'));
const run = (entry: string): string => execFileSync(process.execPath, [entry, '--config', site.configPath, script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });

t.test('the build made a code cache this Node accepts', async (t) => {
  const launcher = createRequire(import.meta.url)(join(hot, 'filter.cjs')) as { compile(useCache: boolean): { cachedDataRejected?: boolean }; cachePath(): string };
  t.ok((await readdir(hot)).some((n) => join(hot, n) === launcher.cachePath()), 'a cache for this V8 version is beside the bundle');
  t.equal(launcher.compile(true).cachedDataRejected, false, 'V8 took the cache');
});

t.test('the launcher decides as the bundle does, with the cache, without it, and with a foreign one', async (t) => {
  const direct = run(join(hot, 'filter-main.cjs'));
  t.match(direct, /^# wnod-deny: /m, 'the bundle answers with directives');
  t.equal(run(join(hot, 'filter.cjs')), direct, 'with the code cache');
  const bare = join(repoRoot, 'dist', `hot-test-${process.pid}`); // inside the repo: the bundle finds node_modules
  t.teardown(() => rm(bare, { recursive: true, force: true }));
  await cp(hot, bare, { recursive: true });
  const caches = (await readdir(bare)).filter((n) => n.endsWith('.cache'));
  t.ok(caches.length > 0);
  for (const c of caches) await rm(join(bare, c));
  t.equal(run(join(bare, 'filter.cjs')), direct, 'without a cache');
  for (const c of caches) await writeFile(join(bare, c), Buffer.alloc(4096, 0x5a));
  t.equal(run(join(bare, 'filter.cjs')), direct, 'with a garbage cache (V8 rejects it and compiles)');
});
