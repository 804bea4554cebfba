// The submit filter per job, as BLAH runs it: a fresh node on a realistic temp script with a real VOMS proxy
// (verification included), against a bare `node -e 0`; arms interleaved, medians of --runs (default 21). The
// `no_code_cache` arm runs the bundle without the launcher's V8 code cache (src/filter/launcher.cjs).
// Where the time goes: `empty_script` (node on an empty file: node's own start-up and module loader),
// `load_only` (the launcher with no BLAH script: builtins, the bundle and its code cache loaded, a deny at once;
// what remains of `filter` is the job's work). Node's start-up snapshots, measured here so the choice stays
// checkable: `snapshot_empty` starts from a user-land snapshot holding nothing (`--build-snapshot`), and
// `snapshot_filter` from one with the filter's builtins loaded and its bundle compiled, then runs the same job.
//   bash scripts/bench.sh filter [--runs 21]
import { parseArgs } from 'node:util';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { makeProxy, makeTestPki } from '../test/kit/pki.js';
import { makeTestSite } from '../test/kit/site.js';
import { median } from './lib/stats.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '21' } } });
const RUNS = Math.max(3, Number(values.runs));
const root = join(import.meta.dirname, '..');
const dir = await mkdtemp(join(tmpdir(), 'wnod-bench-filter-'));
const pki = await makeTestPki(join(dir, 'pki'), { vo: 'atlas' });
const site = await makeTestSite(join(dir, 'site'), { vomsdir: pki.vomsdir, certdir: pki.certdir });
const proxy = await makeProxy(pki, { vo: 'atlas', fqans: ['/atlas/Role=production', '/atlas'] });
const script = join(dir, 'blahtmp');
// What a CREAM CE hands the filter for a typical job (DESIGN A1).
await writeFile(script, [
  '#!/bin/bash',
  `GlueHostApplicationSoftwareRunTimeEnvironment[0]='"vm_sl6"'`,
  `GlueHostMainMemoryRAMSize_Min='2000'`,
  `GlueCEImplementationName='"CREAM"'`,
  `GlueCEPolicyMaxWallClockTime_Min='720'`,
  `VirtualOrganisation='atlas'`,
  `x509UserProxyFQAN='"userFQAN=/atlas/Role=production/Capability=NULL" "userFQAN=/atlas/Role=NULL/Capability=NULL"'`,
  `x509userproxy='${proxy}'`,
  `x509UserProxySubject='/C=XX/O=wnod test/CN=Alice'`,
  `uniquejobid='https://ce.wnod.test:8443/CREAM123456789'`,
  'blah_opt_mpinodes=1',
  `source ${join(root, 'plugins/pbs_local_submit_attributes.sh')}`,
  '',
].join('\n'));

const filterArgs = [join(root, 'dist/hot/filter.cjs'), '--config', site.configPath, script];
const first = execFileSync(process.execPath, filterArgs, { encoding: 'utf8' });
if (!/^# wnod-ticket: /m.test(first)) throw new Error(`the filter did not allow the bench job:\n${first}`);

const noCacheArgs = [join(root, 'dist/hot/filter-main.cjs'), ...filterArgs.slice(1)];
const emptyScript = join(dir, 'empty.cjs'); // .cjs: no package.json lookup for its module type
await writeFile(emptyScript, '');
const snapshots = await buildSnapshots();
const arms: Record<string, string[]> = {
  bare: ['-e', '0'], filter: filterArgs, no_code_cache: noCacheArgs, empty_script: [emptyScript], load_only: [filterArgs[0]!],
  snapshot_empty: ['--snapshot-blob', snapshots.empty, emptyScript],
  snapshot_filter: ['--snapshot-blob', snapshots.filter, ...filterArgs],
};
const withoutTicket = (out: string) => out.replace(/^# wnod-ticket: .*$/m, '');
const snapFirst = execFileSync(process.execPath, arms.snapshot_filter!, { encoding: 'utf8' });
if (withoutTicket(snapFirst) !== withoutTicket(first)) throw new Error(`the snapshot arm decided otherwise:\n${snapFirst}`);
const wall: Record<string, number[]> = Object.fromEntries(Object.keys(arms).map((k) => [k, []]));
for (let i = 0; i < RUNS; i++) {
  for (const [name, args] of Object.entries(arms)) {
    const t0 = process.hrtime.bigint();
    execFileSync(process.execPath, args, { stdio: ['ignore', 'ignore', 'ignore'] });
    wall[name]!.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
}
// Instructions (valgrind callgrind, when installed): deterministic, unlike wall time on a shared machine.
function instructions(args: string[]): number | undefined {
  const r = spawnSync('valgrind', ['--tool=callgrind', '--callgrind-out-file=/dev/null', process.execPath, ...args], { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] });
  const m = /Collected : (\d+)/.exec(r.stderr ?? '');
  return m ? Number(m[1]) : undefined;
}
const ins: Record<string, number> = {};
for (const [name, args] of Object.entries(arms)) {
  const n = instructions(args);
  if (n === undefined) break; // no valgrind
  ins[name] = n;
}
const insRatios = Object.fromEntries(Object.keys(ins).filter((k) => k !== 'bare').map((k) => [k, +(ins[k]! / ins.bare!).toFixed(3)]));

const bare = median(wall.bare!);
const filter = median(wall.filter!);
const noCache = median(wall.no_code_cache!);
const ratios = Object.fromEntries(Object.keys(arms).filter((k) => k !== 'bare').map((k) => [k, +(median(wall[k]!) / bare).toFixed(3)]));
console.log(JSON.stringify({
  bench: 'filter', runs: RUNS, node: process.version, load: loadavg()[0],
  median_ms: { bare_node: +bare.toFixed(1), ...Object.fromEntries(Object.keys(arms).filter((k) => k !== 'bare').map((k) => [k, +median(wall[k]!).toFixed(1)])) },
  ratio: +(filter / bare).toFixed(3), ratio_no_code_cache: +(noCache / bare).toFixed(3), ratios, target_ratio: 1.2, met: filter / bare <= 1.2,
  instructions: ins.bare ? { bare_node: ins.bare, ...Object.fromEntries(Object.entries(ins).filter(([k]) => k !== 'bare')),
    ratio: insRatios.filter, ratio_no_code_cache: insRatios.no_code_cache, ratios: insRatios } : null,
}));

/** Start-up snapshots of this Node (`node --build-snapshot`): one empty, and one holding the filter's command line
 * (src/filter/cli.ts, bundled as the build bundles it) loaded, its builtins with it; the deserialized main runs it
 * on the job's arguments. The bundle is given the launcher's bundle path, so it finds its node_modules (YAML, loaded
 * lazily) and the same compiled-config cache entry. */
async function buildSnapshots(): Promise<{ empty: string; filter: string }> {
  const bundle = join(root, 'dist/hot/filter-main.cjs');
  const { build } = await import('esbuild');
  const out = await build({
    entryPoints: [join(root, 'src/filter/cli.ts')], bundle: true, platform: 'node', format: 'cjs', target: 'node20', write: false,
    external: ['yaml', 'ldapts'], define: { 'import.meta.url': '__wnodModuleUrl' }, logLevel: 'warning',
    banner: { js: "const __wnodModuleUrl = require('node:url').pathToFileURL(__filename).href;" },
  });
  const entry = (body: string) => `'use strict';\nconst v8 = require('node:v8');\n${body}\n`;
  const emptyEntry = join(dir, 'snapshot-empty.cjs');
  await writeFile(emptyEntry, entry('v8.startupSnapshot.setDeserializeMainFunction(() => {});'));
  const filterEntry = join(dir, 'snapshot-filter.cjs');
  await writeFile(filterEntry, entry([
    // node:module may not be loaded while a snapshot is built: the bundle's require is made when it first runs
    'let real;',
    `const lateRequire = (id) => (real ??= require('node:module').createRequire(${JSON.stringify(bundle)}))(id);`,
    'const m = { exports: {} };',
    `(function (require, module, exports, __filename, __dirname) {\n${out.outputFiles[0]!.text}\n})(lateRequire, m, m.exports, ${JSON.stringify(bundle)}, ${JSON.stringify(dirname(bundle))});`,
    // argv[1] is the launcher the command line names, as when node runs it
    'v8.startupSnapshot.setDeserializeMainFunction(() => m.exports.main(process.argv.slice(2)));',
  ].join('\n')));
  const blobs = { empty: join(dir, 'empty.blob'), filter: join(dir, 'filter.blob') };
  execFileSync(process.execPath, ['--snapshot-blob', blobs.empty, '--build-snapshot', emptyEntry], { stdio: 'ignore' });
  execFileSync(process.execPath, ['--snapshot-blob', blobs.filter, '--build-snapshot', filterEntry], { stdio: 'ignore' });
  return blobs;
}
