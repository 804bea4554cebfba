// Startup cost of VOMS verification per job (the filter runs once per job), printing JSON figures.
//   node --import=./node_modules/@tapjs/typescript/dist/esm/import.mjs bench/voms-startup.ts [--runs 21]   (needs dist/: npx tsc)
// Fresh node processes, arms interleaved run by run: bare `node -e 0` (the baseline), importing dist/voms, importing
// and verifying a real voms-proxy-fake proxy, and `wnod voms inspect --json`. Each child also reports, in process,
// the import and verify times (less noisy than wall time on a loaded machine). Medians and ratios to the baseline.
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { makeProxy, makeTestPki } from '../test/kit/pki.js';
import { median } from './lib/stats.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '21' } } });
const RUNS = Number(values.runs);
const root = join(import.meta.dirname, '..');
const pki = await makeTestPki();
const proxy = await makeProxy(pki, { fqans: ['/testvo/Role=production', '/testvo'] });
const opts = JSON.stringify({ vomsdir: pki.vomsdir, certdir: pki.certdir });
const index = JSON.stringify(join(root, 'dist/voms/index.js'));
const verifyChild = `const t0=performance.now();const m=await import(${index});const t1=performance.now();` +
  `const r=await m.verifyProxyFile(${JSON.stringify(proxy)},${opts});const t2=performance.now();` +
  `if(!r.vo)process.exit(3);console.log(JSON.stringify({imp:t1-t0,ver:t2-t1}))`;
const arms: Record<string, string[]> = {
  bare: ['-e', '0'],
  import_voms: ['--input-type=module', '-e', `await import(${index})`],
  import_and_verify: ['--input-type=module', '-e', verifyChild],
  cli_inspect_json: [join(root, 'dist/cli/main.js'), 'voms', 'inspect', '--proxy', proxy, '--vomsdir', pki.vomsdir, '--certdir', pki.certdir, '--json'],
};
const wall: Record<string, number[]> = Object.fromEntries(Object.keys(arms).map((k) => [k, []]));
const imp: number[] = [];
const ver: number[] = [];
for (let i = 0; i < RUNS; i++) {
  for (const [k, args] of Object.entries(arms)) {
    const s = process.hrtime.bigint();
    const out = execFileSync(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] }).toString();
    wall[k]!.push(Number(process.hrtime.bigint() - s) / 1e6);
    if (k === 'import_and_verify') { const o = JSON.parse(out); imp.push(o.imp); ver.push(o.ver); }
  }
}
const med = Object.fromEntries(Object.entries(wall).map(([k, xs]) => [k, +median(xs).toFixed(1)]));
process.stdout.write(JSON.stringify({
  bench: 'voms-startup', runs: RUNS, node: process.version,
  median_wall_ms: med,
  ratio_to_bare: Object.fromEntries(Object.entries(med).map(([k, x]) => [k, +(x / med.bare!).toFixed(2)])),
  in_process_median_ms: { import_voms: +median(imp).toFixed(2), verify_proxy_file: +median(ver).toFixed(2) },
}, null, 1) + '\n');
