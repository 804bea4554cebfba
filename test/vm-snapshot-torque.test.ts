// Warm snapshots through the Torque hooks (vm.snapshots: true): the first job of an image and shape cold boots and
// starts a detached template build; the next goes prologue → starter → epilogue on a restored clone, its workdir
// over 9p (the mini kernel has it), and the prologue's root log says how each VM came up.
import t from 'tap';
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import type { JobSpec } from './kit/pbsmom.js';
import { buildTestImage } from '../src/guest/testImage.js';
import { lookupTemplate } from '../src/vm/snapshot.js';
import { makeTorqueVmSite, type TorqueVmSite } from './kit/torqueVmSite.js';

let s: TorqueVmSite;

t.before(async () => {
  const img = await buildTestImage({ kernel: 'mini' });
  s = await makeTorqueVmSite(img, { tmpPrefix: 'wnod-snap-torque-', site: { vm: { snapshots: true } } });
});

t.teardown(async () => { await s?.close(); });

const job = (id: string, body: string): JobSpec => ({
  id, user: s.user, workdir: s.workdir, jobClass: 'wnod', queue: 'wnod', script: `#!/bin/bash\n#PBS -q wnod\n# wnod-ticket: ${s.ticket()}\ncd "$PBS_O_WORKDIR"\n${body}`,
});

/** The prologue's vm-ready events in the root log, by job. */
async function bootOf(jobId: string): Promise<{ mode?: string; coldReason?: string } | undefined> {
  const lines = (await readFile(s.cfg.logFile, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  return lines.find((l) => l.job === jobId && l.event === 'vm-ready')?.boot as { mode?: string; coldReason?: string } | undefined;
}

t.test('first job cold boots and asks for a template; the next runs on a restored clone through all three hooks', async (t) => {
  const r1 = await s.mom.runJob(job('900.wn1', 'echo first > first.txt; exit 0\n'));
  t.equal(r1.exitStatus, 0, `first job ran (stderr: ${r1.stderr})`);
  t.match(await bootOf('900.wn1'), { mode: 'cold', coldReason: /no snapshot template yet/ }, 'the root log says cold, and why');

  const tdir = join(s.site.stateDir, 'templates');
  let key: string | undefined;
  for (let i = 0; i < 600 && !key; i++) {
    for (const n of await readdir(tdir).catch(() => [] as string[])) {
      if (/^[0-9a-f]{32}$/.test(n) && (await lookupTemplate(tdir, n)).status === 'ready') key = n;
    }
    if (!key) await new Promise((r) => setTimeout(r, 200));
  }
  t.ok(key, `the detached build saved a template (log: ${await readFile(join(tdir, 'build.log'), 'utf8').catch(() => '')})`);
  t.equal((await stat(tdir)).mode & 0o077, 0, 'templates are root-only');
  const list = await execa(process.execPath, [s.cli, 'snapshot', 'list', '--state-dir', s.site.stateDir]);
  t.match(list.stdout, new RegExp(`^${key} ready ${s.site.imageId} 1cpu 256MB none `, 'm'), 'wnod snapshot list shows it');

  const body = ['echo "uid=$(id -u) host=$(hostname) var=$MY_VAR"', 'echo from-the-clone > result.txt', 'exit 6'].join('\n') + '\n';
  const r2 = await s.mom.runJob({ ...job('901.wn1', body), vars: { MY_VAR: 'warm' } });
  t.equal(r2.attempts[0]!.prologue!.exitCode, 0, 'prologue: VM ready');
  t.match(await bootOf('901.wn1'), { mode: 'restore' }, 'restored from the template');
  t.equal(r2.exitStatus, 6, 'the in-VM exit status is the job\'s');
  t.match(r2.stdout, `uid=${s.user.uid} `, 'runs as the job user');
  t.match(r2.stdout, 'var=warm', 'with the job\'s environment');
  const st = await stat(join(s.workdir, 'result.txt'));
  t.equal(await readFile(join(s.workdir, 'result.txt'), 'utf8'), 'from-the-clone\n', 'the workdir is the job\'s (9p)');
  t.equal(st.uid, s.user.uid, 'a file written inside is owned by the job user on the host');
  t.equal(st.mode & 0o6000, 0, 'no setuid/setgid bits');
  t.same(await readdir(join(s.site.stateDir, 'vms')).catch(() => []), [], 'the epilogue removed the VM');
  t.same(await readdir(join(s.site.stateDir, 'run')).catch(() => []), [], 'and its runtime dir');
});

t.test('another shape than the default: the first job cold boots and is only remembered; the second asks for a template; the third is restored', async (t) => {
  const tdir = join(s.site.stateDir, 'templates');
  const shaped = (id: string) => ({ ...job(id, 'echo shaped\n'), script: `#!/bin/bash\n#PBS -q wnod\n# wnod-ticket: ${s.ticket({ memoryMB: 320 })}\necho shaped\n` });
  const keys = async () => (await readdir(tdir)).filter((n) => /^[0-9a-f]{32}$/.test(n)).sort();
  const before = await keys();
  const r1 = await s.mom.runJob(shaped('910.wn1'));
  t.equal(r1.exitStatus, 0, r1.stderr);
  t.match(await bootOf('910.wn1'), { mode: 'cold', coldReason: /no snapshot template yet/ });
  const seen = (await readdir(tdir)).filter((n) => n.endsWith('.seen'));
  t.equal(seen.length, 1, 'the shape is remembered');
  t.same((await readdir(tdir)).filter((n) => n.endsWith('.request.json')), [], 'no build was asked for one job of that shape');
  await new Promise((r) => setTimeout(r, 3000));
  t.same(await keys(), before, 'and none was built');

  const r2 = await s.mom.runJob(shaped('911.wn1'));
  t.equal(r2.exitStatus, 0, r2.stderr);
  t.match(await bootOf('911.wn1'), { mode: 'cold' });
  let fresh: string | undefined;
  for (let i = 0; i < 600 && !fresh; i++) {
    fresh = (await keys()).find((k) => !before.includes(k));
    if (fresh && (await lookupTemplate(tdir, fresh)).status !== 'ready') fresh = undefined;
    if (!fresh) await new Promise((r) => setTimeout(r, 200));
  }
  t.ok(fresh, `the second job of the shape had a template built (log: ${await readFile(join(tdir, 'build.log'), 'utf8').catch(() => '')})`);
  const m = fresh ? await lookupTemplate(tdir, fresh) : undefined;
  t.match(m, { status: 'ready', meta: { memoryMB: 320 } }, 'for that shape');
  t.same((await readdir(tdir)).filter((n) => n.endsWith('.seen')), [], 'the marker went with the build');
  t.same(await keys(), [...before, fresh].sort(), 'the default shape\'s template is kept beside it');

  const r3 = await s.mom.runJob(shaped('912.wn1'));
  t.equal(r3.exitStatus, 0, r3.stderr);
  t.match(r3.stdout, /shaped/);
  t.match(await bootOf('912.wn1'), { mode: 'restore' }, 'the third job of the shape is restored');
});
