// End-to-end cost of running a Torque job in its own VM, as pbs_mom pays it: prologue start → epilogue end (the
// pbs_mom harness drives the installed hooks, the job runs in a fresh VM of the test image), minus the job's own run
// time, against running the same script bare.
//   node --import=./node_modules/@tapjs/typescript/dist/esm/import.mjs bench/torque-vm.ts [--n 5] [--rounds16 1] [--accel tcg] [--max-booting 0]
// (as root, after a build; or `bash scripts/bench.sh torque-vm`). Series, interleaved in rotating order per round:
//   bare        the job script run directly by /bin/sh on the host (the job's own run time)
//   hooks_bare  the same script through prologue → starter → epilogue with no VM (policy no_ticket: bare)
//   vm          the same script through the hooks in its own VM (ticket)
// then 16 jobs at once: 16 bare scripts in parallel vs 16 VM jobs in parallel. Prints one JSON object.
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { availableParallelism } from 'node:os';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import type { JobSpec } from '../test/kit/pbsmom.js';
import { buildTestImage } from '../src/guest/testImage.js';
import { makeTorqueVmSite } from '../test/kit/torqueVmSite.js';
import { readRecords } from '../src/accounting/store.js';
import { median } from './lib/stats.js';

const { values } = parseArgs({ options: { n: { type: 'string', default: '5' }, rounds16: { type: 'string', default: '1' }, accel: { type: 'string', default: 'tcg' }, 'max-booting': { type: 'string', default: '0' } } });
const N = Number(values.n);
const R16 = Number(values.rounds16);
const MAX_BOOTING = Number(values['max-booting']);
if (!Number.isSafeInteger(N) || N < 1 || !Number.isSafeInteger(R16) || R16 < 0 || !Number.isSafeInteger(MAX_BOOTING) || MAX_BOOTING < 0 || !['tcg', 'auto', 'kvm'].includes(values.accel!)) {
  process.stderr.write('usage: torque-vm.ts [--n N>=1] [--rounds16 R>=0] [--accel tcg|auto|kvm] [--max-booting M (0 = cores)]\n');
  process.exit(2);
}
const JOB_SLEEP_S = 1; // the job's own work: wall time that emulation does not stretch (CPU work under TCG would)
const BODY = `cd "$PBS_O_WORKDIR"\nsleep ${JOB_SLEEP_S}\necho done\n`;

const round1 = (x: number): number => Number(x.toFixed(1));
const round3 = (x: number): number => Number(x.toFixed(3));

const img = await buildTestImage();
// no qdel here: the site's kill_delay (12 s) never comes into play
const s = await makeTorqueVmSite(img, {
  tmpPrefix: 'wnod-bench-torque-vm-', userName: 'wnodbench',
  site: { vm: { accel: values.accel, max_booting: MAX_BOOTING }, policy: { no_ticket: 'bare' }, lrm: { max_requeues: 0 } },
});
const { dir, cfg, user, mom, workdir } = s;
const bareScript = join(dir, 'bare.sh');
await writeFile(bareScript, `#!/bin/sh\nexport PBS_O_WORKDIR=${workdir}\n${BODY}`, { mode: 0o755 });

const ticket = (): string => s.ticket({ dn: '/CN=bench' });

let seq = 0;
const spec = (withTicket: boolean): JobSpec => ({
  id: `${++seq}.bench`, user, workdir, jobClass: 'wnod', queue: 'wnod',
  script: `#!/bin/sh\n#PBS -q wnod\n${withTicket ? `# wnod-ticket: ${ticket()}\n` : ''}${BODY}`,
});

async function timeBare(): Promise<number> {
  const t0 = performance.now();
  await execa(bareScript, [], { uid: user.uid, gid: user.gid, cwd: workdir });
  return performance.now() - t0;
}

async function timeHooks(withTicket: boolean): Promise<number> {
  const job = spec(withTicket);
  const t0 = performance.now();
  const r = await mom.runJob(job);
  const ms = performance.now() - t0;
  if (r.exitStatus !== 0 || !r.stdout.includes('done')) throw new Error(`job ${job.id} failed: exit ${r.exitStatus}\n${r.stdout}\n${r.stderr}`);
  return ms;
}

const series: Record<'bare' | 'hooks_bare' | 'vm', number[]> = { bare: [], hooks_bare: [], vm: [] };
const runners: Array<[keyof typeof series, () => Promise<number>]> = [['bare', timeBare], ['hooks_bare', () => timeHooks(false)], ['vm', () => timeHooks(true)]];
try {
  await timeHooks(true); // warm-up: stages the image into the node cache once, as a node's first job of an image does
  for (let i = 0; i < N; i++) {
    for (let k = 0; k < runners.length; k++) {
      const [name, fn] = runners[(i + k) % runners.length]!;
      series[name].push(await fn());
    }
  }
  const bare = median(series.bare);
  const acct = (await readRecords(cfg.accountingFile)).records.filter((r) => r.mode === 'vm');
  const single = {
    bare_ms: round1(bare), hooks_bare_ms: round1(median(series.hooks_bare)), vm_ms: round1(median(series.vm)),
    hooks_bare_overhead_ms: round1(median(series.hooks_bare) - bare), vm_overhead_ms: round1(median(series.vm) - bare),
    ratio_vm_to_bare: round3(median(series.vm) / bare),
    vm_boot_s: round3(median(acct.map((r) => r.bootS))), vm_teardown_s: round3(median(acct.map((r) => r.teardownS))),
    vm_cpu_s: round3(median(acct.map((r) => r.vmCpuS))),
    raw_ms: Object.fromEntries(Object.entries(series).map(([k, v]) => [k, v.map(round1)])),
  };
  const conc: { bare16_ms: number[]; vm16_ms: number[]; vm16_per_job_ms: number[] } = { bare16_ms: [], vm16_ms: [], vm16_per_job_ms: [] };
  for (let i = 0; i < R16; i++) {
    let t0 = performance.now();
    await Promise.all(Array.from({ length: 16 }, () => timeBare()));
    conc.bare16_ms.push(performance.now() - t0);
    t0 = performance.now();
    const per = await Promise.all(Array.from({ length: 16 }, () => timeHooks(true)));
    conc.vm16_ms.push(performance.now() - t0);
    conc.vm16_per_job_ms.push(...per);
  }
  const at16 = R16 === 0 ? null : {
    rounds: R16, bare16_wall_ms: round1(median(conc.bare16_ms)), vm16_wall_ms: round1(median(conc.vm16_ms)),
    vm16_overhead_wall_ms: round1(median(conc.vm16_ms) - median(conc.bare16_ms)),
    ratio_vm16_to_bare16: round3(median(conc.vm16_ms) / median(conc.bare16_ms)),
    vm16_per_job_median_ms: round1(median(conc.vm16_per_job_ms)), vm16_per_job_max_ms: round1(Math.max(...conc.vm16_per_job_ms)),
  };
  process.stdout.write(JSON.stringify({
    bench: 'torque-vm', accel: cfg.vm.accel, cores: availableParallelism(), max_booting: cfg.vm.maxBooting, n: N, job_sleep_s: JOB_SLEEP_S,
    single, at16,
  }) + '\n');
} finally {
  await s.close();
}
