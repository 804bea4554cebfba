// The Torque hooks with the real VM engine: `wnod install torque` puts the shims into a mom_priv, the pbs_mom harness
// drives prologue → starter → epilogue, and every job runs in a real QEMU VM (TCG) of the test image.
// VMs booted here: 5 (valid job, an interpreter the image lacks, two qdels, alarm); the refusals boot none.
import t, { type Test } from 'tap';
import { readFile, readdir, stat } from 'node:fs/promises';
import { release as hostRelease } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { REFUSED_EXIT } from '../src/job/outcome.js';
import { PbsMom, epilogueArgv, type JobSpec } from './kit/pbsmom.js';
import { buildTestImage, type TestImage } from '../src/guest/testImage.js';
import { readRecords } from '../src/accounting/store.js';
import { ImageCache } from '../src/images/cache.js';
import { vmHostname } from '../src/vm/qemu.js';
import { vmIdForJob } from '../src/vm/state.js';
import { jobVmEngine } from '../src/job/vmEngine.js';
import { makeTorqueVmSite, type TorqueVmSite } from './kit/torqueVmSite.js';
import { hypervisorsOf } from './kit/hypervisors.js';

let s: TorqueVmSite;
let img: TestImage;

t.before(async () => {
  img = await buildTestImage();
  s = await makeTorqueVmSite(img, { tmpPrefix: 'wnod-torque-vm-', site: { more: [{ id: 'vm_hang', disk: true, cmdline: 'rdinit=/bin/busybox sleep 100000' }] } });
});

t.teardown(async () => { await s?.close(); });

const job = (id: string, header: string, body: string, more: Partial<JobSpec> = {}): JobSpec => ({
  id, user: s.user, workdir: s.workdir, jobClass: 'wnod', queue: 'wnod', script: `#!/bin/bash\n#PBS -q wnod\n${header}\ncd "$PBS_O_WORKDIR"\n${body}`, ...more,
});

const hypervisors = (): Promise<number[]> => hypervisorsOf(s.site.stateDir);

/** Nothing of any VM is left: no record, no runtime dir, no process, no cache holder. */
async function assertNoVm(t: Test, what: string): Promise<void> {
  t.same(await readdir(join(s.site.stateDir, 'vms')).catch(() => []), [], `${what}: no VM record`);
  t.same(await readdir(join(s.site.stateDir, 'run')).catch(() => []), [], `${what}: no runtime dir (overlay, sockets)`);
  t.same(await hypervisors(), [], `${what}: no QEMU or virtiofsd left`);
  const holders = (await new ImageCache(s.cfg.cache).list()).flatMap((e) => e.holders);
  t.same(holders, [], `${what}: no image-cache holder left`);
}

let usedTicket = '';

/** qdel (abort `ac`) once the job has written `file` from inside its VM. */
async function qdelOnceRunning(ac: AbortController, file: string, done: () => boolean): Promise<void> {
  while (!done() && !(await stat(file).then(() => true, () => false))) await new Promise((r) => setTimeout(r, 100));
  await new Promise((r) => setTimeout(r, 500)); // into its sleep
  ac.abort();
}

t.test('valid ticket: the job runs in its VM, writes into the workdir as the user, its exit status is the job\'s', async (t) => {
  usedTicket = s.ticket();
  const body = [
    'echo "kernel=$(uname -r)"', 'echo "host=$(hostname)"', 'echo "uid=$(id -u)"', 'echo "path=$PATH"',
    'echo "jobid=$PBS_JOBID var=$MY_VAR ld=${LD_PRELOAD:-none}"', 'echo from-the-vm > result.txt',
    'a=(x y); [[ ${a[1]} == y ]] && echo "bash=${BASH_VERSINFO[0]}"', 'exit 7',
  ].join('\n') + '\n';
  const r = await s.mom.runJob(job('700.wn1', `# wnod-ticket: ${usedTicket}`, body, { vars: { MY_VAR: 'a b', LD_PRELOAD: '/tmp/evil.so' } }));
  t.equal(r.attempts[0]!.prologue!.exitCode, 0, 'prologue: VM ready');
  t.equal(r.exitStatus, 7, 'the in-VM exit status is the job\'s');
  const kver = img.kernelPackage.replace(/^linux-image-/, '').replace(/=.*$/, '');
  t.match(r.stdout, `kernel=${kver}\n`, 'the guest kernel answered uname -r');
  t.not(kver, hostRelease(), 'and it is not the host kernel');
  t.match(r.stdout, `host=${vmHostname(vmIdForJob('700.wn1'))}\n`, 'the VM\'s own hostname');
  t.match(r.stdout, `uid=${s.user.uid}\n`, 'runs as the job user inside');
  t.match(r.stdout, 'path=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin\n', 'the guest PATH, not the host\'s');
  t.match(r.stdout, 'jobid=700.wn1 var=a b ld=none\n', 'PBS_* and -v variables pass, LD_* does not');
  t.match(r.stdout, /\nbash=[45]\n/, 'the #!/bin/bash script ran in real bash (arrays, [[ ]])');
  t.notMatch(r.stderr, /is not in this image/, 'no interpreter note on the job\'s stderr');
  const st = await stat(join(s.workdir, 'result.txt'));
  t.equal(await readFile(join(s.workdir, 'result.txt'), 'utf8'), 'from-the-vm\n');
  t.equal(st.uid, s.user.uid, 'the file is owned by the job user');
  t.equal(st.mode & 0o777, 0o644, 'made with the guest\'s umask (022), not the wrapper\'s');
  const { records } = await readRecords(s.cfg.accountingFile);
  const rec = records.find((x) => x.jobId === '700.wn1');
  t.match(rec, { user: s.user.name, image: s.site.imageId, vo: 'testvo', exitStatus: 7, mode: 'vm', cpus: 1, memoryMB: 256 });
  t.ok(rec!.bootS > 0, 'boot time accounted');
  t.ok(rec!.vmCpuS > 0, 'the VM\'s CPU time accounted');
  await assertNoVm(t, 'after the epilogue');
  // pbs_mom may run the epilogue again (a retry, an admin): nothing to do, no error, nothing accounted twice
  const again = await execa(join(s.site.momPriv, 'epilogue.wnod'),
    epilogueArgv(job('700.wn1', '', ''), s.mom.scriptPath(job('700.wn1', '', '')), '6', 0, 'cput=00:00:01,walltime=00:00:02', 7),
    { cwd: s.site.momPriv, env: { PATH: '/bin:/usr/bin' }, reject: false });
  t.equal(again.exitCode, 0, 'second epilogue: exit 0');
  t.equal((await readRecords(s.cfg.accountingFile)).records.filter((x) => x.jobId === '700.wn1').length, 1, 'accounted once');
});

t.test('an interpreter the image lacks: the job runs with /bin/sh, the note goes to the root log, not the job\'s stderr', async (t) => {
  const spec = job('701.wn1', `# wnod-ticket: ${s.ticket()}`, 'echo "ran-by-sh"\n');
  const r = await s.mom.runJob({ ...spec, script: spec.script.replace('#!/bin/bash', '#!/usr/bin/zsh') });
  t.equal(r.exitStatus, 0);
  t.match(r.stdout, 'ran-by-sh\n');
  t.notMatch(r.stderr, /zsh|not in this image|wnod-note/, 'nothing of the note in the job\'s .e');
  const notes = (await readFile(s.cfg.logFile, 'utf8')).split('\n').filter((l) => l.includes('"guest-note"') && l.includes('"701.wn1"'));
  t.equal(notes.length, 1, 'one guest-note line for the job in the root log');
  t.match(JSON.parse(notes[0]!), { hook: 'epilogue', note: '/usr/bin/zsh is not in this image; running the job script with /bin/sh' });
  await assertNoVm(t, 'after the job');
});

t.test('refused tickets (forged, expired, other user, replayed): exit 77, the reason in the job\'s .e, no VM', async (t) => {
  const good = s.ticket();
  const forged = good.slice(0, 12) + (good[12] === 'A' ? 'B' : 'A') + good.slice(13);
  const cases: [string, string, RegExp][] = [
    ['710.wn1', forged, /ticket is not valid/],
    ['711.wn1', s.ticket({ iat: 1000, exp: 2000 }), /expired/],
    ['712.wn1', s.ticket({ account: 'someoneelse' }), /issued to another account/],
    ['713.wn1', usedTicket, /already used on this node/],
  ];
  for (const [id, tok, re] of cases) {
    const r = await s.mom.runJob(job(id, `# wnod-ticket: ${tok}`, 'echo must-not-run\n'));
    t.equal(r.exitStatus, REFUSED_EXIT, `${id}: refused`);
    t.match(r.stderr, re, `${id}: reason in the .e file`);
    t.notMatch(r.stdout, /must-not-run/, `${id}: the job did not run`);
  }
  await assertNoVm(t, 'after the refusals');
  const log = await readFile(s.cfg.logFile, 'utf8');
  t.notMatch(log, /"event":"vm-ready".*71[0-3]\.wn1/, 'no VM was ever started for them');
});

t.test('qdel: TERM reaches the job in the guest, the starter stops the VM before kill_delay, the epilogue cleans up', async (t) => {
  const body = 'trap \'echo got-term > term.txt; exit 3\' TERM\necho started\necho x > started720.txt\nsleep 120 &\nwait\necho not-reached\n';
  const ac = new AbortController();
  const running = s.mom.runJob(job('720.wn1', `# wnod-ticket: ${s.ticket()}`, body, { qdelSignal: ac.signal }));
  let done = false;
  void running.then(() => { done = true; });
  await qdelOnceRunning(ac, join(s.workdir, 'started720.txt'), () => done); // the VM boots detached: qdel once the job runs in it
  // wait for the trap's file, then for the VM to go — while the harness still waits out kill_delay (12 s),
  // i.e. before its SIGKILL and before the epilogue: only the starter can have stopped it
  const termFile = join(s.workdir, 'term.txt');
  // its content, not just the file: the trap's `echo >` creates it and writes it in two steps
  while (!done && (await readFile(termFile, 'utf8').catch(() => '')) === '') await new Promise((r) => setTimeout(r, 100));
  t.equal(await readFile(termFile, 'utf8').catch(() => ''), 'got-term\n', 'the guest job got TERM and ran its trap');
  while (!done && (await hypervisors()).length > 0) await new Promise((r) => setTimeout(r, 100));
  t.notOk(done, 'the VM was gone while pbs_mom still waited out kill_delay');
  const r = await running;
  t.match(r.stdout, /started/);
  t.notMatch(r.stdout, /not-reached/);
  t.equal(r.exitStatus, 3, 'the job\'s own exit status after its trap');
  t.equal(r.attempts[0]!.starter!.signal, null, 'the starter ended by itself, before kill_delay\'s SIGKILL');
  await assertNoVm(t, 'after qdel');
});

t.test('qdel of a job that ignores TERM: after stop_grace_s the starter powers its VM off, still inside kill_delay', async (t) => {
  let done = false;
  const ac = new AbortController();
  const running = s.mom.runJob(job('721.wn1', `# wnod-ticket: ${s.ticket()}`, 'trap "" TERM\necho started\necho x > started721.txt\nsleep 120\necho not-reached\n', { qdelSignal: ac.signal }));
  void running.then(() => { done = true; });
  await qdelOnceRunning(ac, join(s.workdir, 'started721.txt'), () => done);
  while (!done && (await hypervisors()).length === 0) await new Promise((r) => setTimeout(r, 100));
  while (!done && (await hypervisors()).length > 0) await new Promise((r) => setTimeout(r, 100));
  t.notOk(done, 'the VM was gone while pbs_mom still waited out kill_delay (12 s > stop_grace_s 5 s)');
  const r = await running;
  t.match(r.stdout, /started/);
  t.notMatch(r.stdout, /not-reached/);
  t.match(r.stderr, 'wnod: the job did not end within 5 s of SIGTERM; its virtual machine was stopped');
  t.equal(r.exitStatus, 143, 'reported as killed by TERM (128+15)');
  // the starter returns only once the VM closed the exec's channels: ending by itself proves the VM went first
  t.equal(r.attempts[0]!.starter!.signal, null, 'the starter ended by itself, before kill_delay\'s SIGKILL');
  await assertNoVm(t, 'after the forced stop');
});

t.test('a VM that never comes up: the prologue returns at once (the boot is detached), qdel during the boot stops it, the epilogue removes everything', async (t) => {
  // vm_hang boots a kernel whose init never starts the agent. Under a short $prologalarm (6 s before the kill) a
  // prologue that waited for the boot would be killed and requeued; the detached boot keeps it off that path
  const alarmMom = new PbsMom({ ...s.mom.opts, prologAlarmMs: 16_000, alarmMarginMs: 10_000 });
  let sawVm = false;
  let sawOverlay = false;
  let done = false;
  const ac = new AbortController();
  const running = alarmMom.runJob(job('730.wn1', `# wnod-ticket: ${s.ticket({ image: 'vm_hang' })}`, 'echo must-not-run\n', { qdelSignal: ac.signal }));
  void running.then(() => { done = true; });
  while (!done && !(sawVm && sawOverlay)) {
    if ((await hypervisors()).length > 0) sawVm = true;
    const runDir = join(s.site.stateDir, 'run', vmIdForJob('730.wn1'));
    if (await stat(join(runDir, 'disk.qcow2')).then(() => true, () => false)) sawOverlay = true;
    await new Promise((r) => setTimeout(r, 100));
  }
  ac.abort(); // qdel while the VM boots: the starter is waiting for it
  const r = await running;
  t.ok(sawVm, 'a QEMU was running when qdel came');
  t.ok(sawOverlay, 'with its per-job overlay');
  t.equal(r.attempts[0]!.prologue!.timedOut, false, 'the alarm never struck: the prologue did not wait for the boot');
  t.equal(r.attempts[0]!.prologue!.exitCode, 0);
  t.equal(r.requeues, 0);
  t.equal(r.attempts[0]!.epilogue!.exitCode, 0, 'the epilogue ran');
  t.notMatch(r.stdout, /must-not-run/);
  await assertNoVm(t, 'after qdel during the boot');
  t.same((await readdir(join(s.site.stateDir, 'torque'))).filter((f) => f.startsWith('730.wn1')), [], 'no boot file left');
});

t.test('TM tasks (pbsdsh) of a VM job are refused with a clear message', async (t) => {
  let err = '';
  const sink = { write: (s: string) => { err += s; return true; } };
  const vm = jobVmEngine({ stderr: sink as never, stdout: sink as never });
  const code = await vm.runJob({ jobId: '740.wn1', user: s.user.name, group: s.user.group, cfg: s.cfg, script: async () => '', argv: ['/bin/hostname'], env: {}, cwd: '/' });
  t.equal(code, 1);
  t.match(err, /parallel tasks \(pbsdsh, TM\) cannot be started in this job's virtual machine/);
});

t.test('PBS_O_WORKDIR=/proc/<pid> of the user\'s own process (its owner check passes) is refused before any VM', async (t) => {
  const { spawn } = await import('node:child_process');
  const child = spawn('setpriv', [`--reuid=${s.user.uid}`, `--regid=${s.user.gid}`, '--clear-groups', 'sleep', '60'], { stdio: 'ignore' });
  t.teardown(() => child.kill('SIGKILL'));
  await new Promise((r) => setTimeout(r, 200));
  const r = await s.mom.runJob(job('790.wn1', `# wnod-ticket: ${s.ticket()}`, 'echo ran\n', { workdir: `/proc/${child.pid}` }));
  t.equal(r.exitStatus, REFUSED_EXIT, 'refused for good');
  t.match(r.stderr, /working directory "\/proc\/\d+" is under \/proc/, 'the user reads why');
  t.notMatch(r.stdout, /^ran$/m, 'the job did not run');
  await assertNoVm(t, 'after the refusal');
});
