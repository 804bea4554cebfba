// The submit wrapper per job (wnod install blah's qsub: bash + the gate bundle on node with an empty environment,
// then the real qsub) against the real qsub alone, here a stand-in that only prints a job id, so that the figure is
// the wrapper's own cost. Arms interleaved, medians of --runs (default 21).
//   bash scripts/bench.sh submit-wrapper [--runs 21]
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeTestSite } from '../test/kit/site.js';
import { runFilter } from '../src/filter/filter.js';
import { median } from './lib/stats.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '21' } } });
const RUNS = Math.max(3, Number(values.runs));
const root = join(import.meta.dirname, '..');
const dir = await mkdtemp(join(tmpdir(), 'wnod-bench-submit-'));
await chmod(dir, 0o755);
const site = await makeTestSite(join(dir, 'site'));
for (const d of ['libexec', 'wbin', 'lrm']) await mkdir(join(dir, d), { mode: 0o755 });
const real = join(dir, 'lrm', 'qsub');
await writeFile(real, '#!/bin/sh\necho 1.server\n', { mode: 0o755 });
execFileSync(process.execPath, [join(root, 'dist/cli/main.js'), 'install', 'blah', '--config', site.configPath, '--blah-dir', join(dir, 'libexec'),
  '--bin-dir', join(dir, 'wbin'), '--real', real], { stdio: 'ignore' });
const req = join(dir, 'req');
await writeFile(req, `GlueHostApplicationSoftwareRunTimeEnvironment[0]='"vm_sl6"'\nVirtualOrganisation='dteam'\nblah_opt_mpinodes=2\n`);
const script = join(dir, 'batch.sh');
await writeFile(script, `#!/bin/bash\n#PBS -S /bin/bash\n${(await runFilter(req, site.configPath)).output}#PBS -l nodes=2\n#PBS -m n\ntrue\n`);

const arms: Record<string, string> = { real_qsub: real, wrapper: join(dir, 'wbin', 'qsub') };
const wall: Record<string, number[]> = { real_qsub: [], wrapper: [] };
for (let i = 0; i < RUNS; i++) {
  for (const [name, cmd] of Object.entries(arms)) {
    const t0 = process.hrtime.bigint();
    const out = execFileSync(cmd, [script], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } });
    wall[name]!.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (out.trim() !== '1.server') throw new Error(`${name} did not submit: ${out}`);
  }
}
const bare = median(wall.real_qsub!);
const wrapped = median(wall.wrapper!);
console.log(JSON.stringify({
  bench: 'submit-wrapper', runs: RUNS, node: process.version,
  median_ms: { real_qsub: +bare.toFixed(1), wrapper: +wrapped.toFixed(1) }, added_ms: +(wrapped - bare).toFixed(1),
}));
