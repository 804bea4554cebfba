// The submit filter per job, as BLAH runs it: a fresh node on a realistic temp script with a real VOMS proxy
// (verification included), against a bare `node -e 0`; arms interleaved, medians of --runs (default 21).
//   bash scripts/bench.sh filter [--runs 21]
import { parseArgs } from 'node:util';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

const arms: Record<string, string[]> = { bare: ['-e', '0'], filter: filterArgs };
const wall: Record<string, number[]> = { bare: [], filter: [] };
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
const insBare = instructions(['-e', '0']);
const insFilter = insBare === undefined ? undefined : instructions(filterArgs);

const bare = median(wall.bare!);
const filter = median(wall.filter!);
console.log(JSON.stringify({
  bench: 'filter', runs: RUNS, node: process.version,
  median_ms: { bare_node: +bare.toFixed(1), filter: +filter.toFixed(1) },
  ratio: +(filter / bare).toFixed(3), target_ratio: 1.3, met: filter / bare <= 1.3,
  instructions: insBare && insFilter ? { bare_node: insBare, filter: insFilter, ratio: +(insFilter / insBare).toFixed(3) } : null,
}));
