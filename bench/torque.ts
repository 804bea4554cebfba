// Issue 12's benchmark on a real Torque 6.1.3 (test/kit/torqueRealSite.ts: trqauthd, pbs_server, pbs_sched, one
// pbs_mom with 4 slots, wnod installed as the README says): the time from qsub until every job is complete, for
//   bare1 / bare4        1 job / 4 simultaneous jobs on the plain queue (no wnod code: the starter shim execs them)
//   restore1 / restore4  the same through wnod, VMs restored from a warm snapshot (vm.snapshots: true)
//   cold1 / cold4        the same through wnod, VMs cold booted (vm.snapshots: false)
// interleaved in rotating order per round, medians, same run. The config is switched between series (the hooks read
// it on every call). Completion is seen by polling qstat every 250 ms (the same for every series).
//   node --import=./node_modules/@tapjs/typescript/dist/esm/import.mjs bench/torque.ts [--rounds 3] [--accel tcg] [--tag wtqb] [--user wtqbench]
// (as root, after a build). Prints one JSON object.
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { readFile, readdir } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { parseDocument } from 'yaml';
import { buildTestImage } from '../src/guest/testImage.js';
import { writeFileAtomic } from '../src/util/atomic.js';
import { lookupTemplate } from '../src/vm/snapshot.js';
import { makeRealTorqueSite } from '../test/kit/torqueRealSite.js';
import { median } from './lib/stats.js';

const { values } = parseArgs({ options: {
  rounds: { type: 'string', default: '3' }, accel: { type: 'string', default: 'tcg' },
  // a private Torque of its own: its tag (ports, dirs) and job user apart from other runs on the machine
  tag: { type: 'string', default: 'wtqb' }, user: { type: 'string', default: 'wtqbench' },
} });
const ROUNDS = Number(values.rounds);
if (!Number.isSafeInteger(ROUNDS) || ROUNDS < 1 || !['tcg', 'auto', 'kvm'].includes(values.accel!)) {
  process.stderr.write('usage: torque.ts [--rounds R>=1] [--accel tcg|auto|kvm]\n');
  process.exit(2);
}
const BODY = 'sleep 1\necho done\n'; // wall time that emulation does not stretch

const img = await buildTestImage({ kernel: 'mini' }); // the fast path: snapshots need the minimal kernel (9p)
const ts = await makeRealTorqueSite(img, { tag: values.tag!, userName: values.user!, np: 4, site: { vm: { accel: values.accel, snapshots: true } } });
const round3 = (x: number): number => Number(x.toFixed(3));

async function setSnapshots(on: boolean): Promise<void> {
  const doc = parseDocument(await readFile(ts.site.configPath, 'utf8'));
  doc.setIn(['vm', 'snapshots'], on);
  await writeFileAtomic(ts.site.configPath, doc.toString(), 0o644);
}

let seq = 0;
const ids: Record<string, string[]> = {};

/** Submit k jobs at once and wait until all are complete: seconds from the first qsub to the last completion. */
async function batch(series: string, k: number): Promise<number> {
  const wnod = !series.startsWith('bare');
  const t0 = performance.now();
  const jobs = await Promise.all(Array.from({ length: k }, async () => {
    const name = `b${++seq}`;
    const id = wnod ? await ts.submit(name, ts.wnodScript(ts.ticket(), BODY))
      : await ts.node.qsub(ts.user, `#!/bin/bash\n${BODY}`, { cwd: ts.work, args: ['-N', name, '-q', 'batch'] });
    return { name, id };
  }));
  const done = await Promise.all(jobs.map((j) => ts.finished(j.name, j.id)));
  const s = (performance.now() - t0) / 1000;
  if (done.some((d) => d.status !== 0)) throw new Error(`${series}: a job failed: ${JSON.stringify(done.map((d) => [d.status, d.err.slice(0, 200)]))}`);
  (ids[series] ??= []).push(...jobs.map((j) => j.id));
  return s;
}

/** How each wnod job booted, from the root log (the detached boot's vm-ready line). */
async function bootModes(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const line of (await readFile(ts.cfg.logFile, 'utf8').catch(() => '')).split('\n')) {
    if (!line.includes('"event":"vm-ready"') || !line.includes('"hook":"boot"')) continue;
    const o = JSON.parse(line) as { job: string; boot?: { mode: string } };
    out[o.job] = o.boot?.mode ?? 'cold';
  }
  return out;
}

try {
  // warm up: the first job of the shape cold boots and asks for a template; wait until one exists
  await setSnapshots(true);
  await batch('warmup', 1);
  const templates = `${ts.site.stateDir}/templates`;
  const ready = async () => {
    for (const n of await readdir(templates).catch(() => [] as string[])) if (/^[0-9a-f]{32}$/.test(n) && (await lookupTemplate(templates, n)).status === 'ready') return true;
    return false;
  };
  for (let i = 0; i < 1500 && !(await ready()); i++) await new Promise((r) => setTimeout(r, 200));
  if (!(await ready())) throw new Error(`no snapshot template was built (see ${templates}/build.log)`);
  await batch('warmup', 1);
  await batch('bare1', 1);

  const series: Array<[string, number, boolean | undefined]> = [
    ['bare1', 1, undefined], ['restore1', 1, true], ['cold1', 1, false],
    ['bare4', 4, undefined], ['restore4', 4, true], ['cold4', 4, false],
  ];
  const times: Record<string, number[]> = {};
  for (let r = 0; r < ROUNDS; r++) {
    for (let i = 0; i < series.length; i++) {
      const [name, k, snap] = series[(i + r) % series.length]!;
      if (snap !== undefined) await setSnapshots(snap);
      (times[name] ??= []).push(await batch(name, k));
    }
  }
  const med = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, round3(median(v))]));
  const modes = await bootModes();
  const restored = (ids.restore1 ?? []).concat(ids.restore4 ?? []).filter((id) => modes[id] === 'restore').length;
  process.stdout.write(JSON.stringify({
    bench: 'torque', date: new Date().toISOString(), accel: values.accel, rounds: ROUNDS, loadavg: loadavg().map(round3),
    medianS: med, samplesS: Object.fromEntries(Object.entries(times).map(([k, v]) => [k, v.map(round3)])),
    ratios: {
      restore4_over_restore1: round3(med.restore4! / med.restore1!), cold4_over_cold1: round3(med.cold4! / med.cold1!),
      restore1_minus_bare1_s: round3(med.restore1! - med.bare1!), cold1_minus_bare1_s: round3(med.cold1! - med.bare1!),
    },
    restoredJobs: `${restored} of ${(ids.restore1?.length ?? 0) + (ids.restore4?.length ?? 0)}`,
  }, null, 1) + '\n');
} finally {
  await ts.stop();
}
