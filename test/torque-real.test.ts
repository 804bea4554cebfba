// wnod on a real Torque 6.1.3 (test/kit/torque.ts: trqauthd, pbs_server, pbs_sched and one pbs_mom np=4 in private
// namespaces), installed as the README says — `wnod install torque … --apply`, then the printed qmgr lines — and
// driven with the real qsub/qdel as an unprivileged user: a job in its VM, qdel, walltime, a refused job (the reason
// in its .e file in the submit dir), a replayed ticket, 4 jobs at once, a plain job on the same node through the
// MOM-wide starter, a ppn=2 job. Works from a clone in a private dir (reachable.ts) and with or without KVM (TCG).
import t, { type Test } from 'tap';
import { readFile, readdir, stat } from 'node:fs/promises';
import { release as hostRelease } from 'node:os';
import { join } from 'node:path';
import { torqueUnavailable } from './kit/torque.js';
import { makeRealTorqueSite, type RealTorqueSite } from './kit/torqueRealSite.js';
import { hypervisorsOf } from './kit/hypervisors.js';
import { buildTestImage, type TestImage } from '../src/guest/testImage.js';
import { readRecords } from '../src/accounting/store.js';
import { REFUSED_EXIT } from '../src/job/outcome.js';

const why = torqueUnavailable();

if (why) {
  t.skip(`a real Torque cannot run here: ${why}`, () => {});
} else {
  let ts: RealTorqueSite;
  let img: TestImage;

  t.before(async () => {
    img = await buildTestImage();
    // vm_hang: a kernel whose init never starts the agent (a VM that never comes up)
    ts = await makeRealTorqueSite(img, { tag: 'wtq', userName: 'wtqjob', np: 4, site: { more: [{ id: 'vm_hang', disk: true, cmdline: 'rdinit=/bin/busybox sleep 100000' }] } });
  });

  t.teardown(async () => { await ts?.stop(); });

  const ticket: RealTorqueSite['ticket'] = (over) => ts.ticket(over);
  const wnodScript: RealTorqueSite['wnodScript'] = (tok, body, res) => ts.wnodScript(tok, body, res);
  const submit: RealTorqueSite['submit'] = (name, script, args) => ts.submit(name, script, args);
  const finished: RealTorqueSite['finished'] = (name, id, ms) => ts.finished(name, id, ms);

  /** Nothing of any job is left on the node: VM records, runtime dirs, hypervisors, job markers. */
  async function nothingLeft(t: Test, what: string): Promise<void> {
    t.same(await readdir(join(ts.site.stateDir, 'vms')).catch(() => []), [], `${what}: no VM record`);
    t.same(await readdir(join(ts.site.stateDir, 'run')).catch(() => []), [], `${what}: no runtime dir`);
    t.same(await hypervisorsOf(ts.site.stateDir), [], `${what}: no QEMU or virtiofsd`);
    t.same((await readdir(join(ts.site.stateDir, 'torque')).catch(() => [] as string[])).filter((f) => /\.(mode|json)$/.test(f)), [], `${what}: no job record or marker`);
  }

  let firstTicket = '';

  t.test('a job in its VM: guest kernel, exit status, a file of the user\'s in the workdir, the accounting line', async (t) => {
    t.match(ts.qmgr.join('\n'), /^set queue wnod kill_delay = \d+$/m, 'installed as the README says: install torque --apply, then its qmgr lines');
    firstTicket = ticket();
    const id = await submit('vmjob', wnodScript(firstTicket, 'echo "kernel=$(uname -r)"\necho "uid=$(id -u)"\necho from-the-vm > result.txt\nexit 7\n'));
    const r = await finished('vmjob', id);
    t.equal(r.status, 7, 'the in-VM exit status is the job\'s');
    const kver = img.kernelPackage.replace(/^linux-image-/, '').replace(/=.*$/, '');
    t.match(r.out, `kernel=${kver}\n`, 'the guest kernel answered');
    t.not(kver, hostRelease(), 'not the host\'s kernel');
    t.match(r.out, `uid=${ts.user.uid}\n`);
    const st = await stat(join(ts.work, 'result.txt'));
    t.equal(st.uid, ts.user.uid, 'the file in the workdir is the user\'s');
    t.equal(await readFile(join(ts.work, 'result.txt'), 'utf8'), 'from-the-vm\n');
    const rec = (await readRecords(ts.cfg.accountingFile)).records.find((x) => x.jobId === id);
    t.match(rec, { user: ts.user.name, image: ts.site.imageId, vo: 'testvo', exitStatus: 7, mode: 'vm', cpus: 1, memoryMB: 256 }, 'accounted');
    await nothingLeft(t, 'after the job');
  });

  t.test('a refused job: the reason in its .e file in the submit dir, exit 77, nothing booted; a replayed ticket too', async (t) => {
    const id = await submit('refused', wnodScript(ticket({ account: 'someoneelse' }), 'echo must-not-run\n'));
    const r = await finished('refused', id);
    t.equal(r.status, REFUSED_EXIT);
    t.match(r.err, /^wnod: the wnod ticket was issued to another account than wtqjob$/m, 'the one-line reason where a Torque user looks');
    t.notMatch(r.out + r.err, /must-not-run|wnod\.yaml|\/site\//, 'the job did not run; no config detail');
    const replay = await submit('replay', wnodScript(firstTicket, 'echo must-not-run\n'));
    const rr = await finished('replay', replay);
    t.equal(rr.status, REFUSED_EXIT);
    t.match(rr.err, /already used on this node/);
    await nothingLeft(t, 'after the refusals');
  });

  t.test('a plain job on the same node runs unchanged through the MOM-wide starter', async (t) => {
    const id = await ts.node.qsub(ts.user, '#!/bin/bash\necho "plain parent=$(cat /proc/$PPID/comm)"\nexit 3\n', { cwd: ts.work, args: ['-N', 'plain', '-q', 'batch'] });
    const r = await finished('plain', id);
    t.equal(r.status, 3);
    t.match(r.out, /^plain parent=bash$/m, 'the starter shim exec\'d the shell: no node in between');
    t.equal(r.err, '');
  });

  t.test('a ppn=2 job gets a 2-cpu VM (what it holds, within the image\'s maximum)', async (t) => {
    const id = await submit('ppn2', wnodScript(ticket(), 'echo "cpus=$(grep -c ^processor /proc/cpuinfo)"\n', 'nodes=1:ppn=2,walltime=00:10:00'));
    const r = await finished('ppn2', id);
    t.equal(r.status, 0, r.err);
    t.match(r.out, /^cpus=2$/m);
    t.match((await readRecords(ts.cfg.accountingFile)).records.find((x) => x.jobId === id), { cpus: 2 });
    await nothingLeft(t, 'after the ppn=2 job');
  });

  t.test('4 jobs at once, each in its own VM', async (t) => {
    const ids = await Promise.all([0, 1, 2, 3].map((i) => submit(`four${i}`, wnodScript(ticket(), `echo "host=$(hostname)"\nexit ${i}\n`))));
    const rs = await Promise.all(ids.map((id, i) => finished(`four${i}`, id)));
    t.same(rs.map((r) => r.status), [0, 1, 2, 3]);
    const hosts = rs.map((r) => /host=(\S+)/.exec(r.out)?.[1]);
    t.equal(new Set(hosts).size, 4, `four VMs: ${hosts.join(' ')}`);
    await nothingLeft(t, 'after 4 jobs');
  });

  t.test('qdel: TERM reaches the job in its VM, nothing left', async (t) => {
    const id = await submit('qdeljob', wnodScript(ticket(), 'trap \'echo got-term > term.txt; exit 3\' TERM\necho started > started.txt\nsleep 300 &\nwait\n'));
    const startedFile = join(ts.work, 'started.txt');
    for (let i = 0; i < 3000 && !(await stat(startedFile).then(() => true, () => false)); i++) await new Promise((r) => setTimeout(r, 200));
    await ts.node.must(['/usr/local/bin/qdel', id], { user: ts.user });
    const r = await finished('qdeljob', id);
    t.equal(await readFile(join(ts.work, 'term.txt'), 'utf8').catch(() => ''), 'got-term\n', 'the guest job got TERM');
    t.equal(r.status, 3, 'the job\'s own status after its trap');
    await nothingLeft(t, 'after qdel');
  });

  t.test('the boot is off pbs_server\'s dispatch path: a VM that never comes up does not hold up the next job', async (t) => {
    // the server dispatches the next job only once the running prologue returned: with the boot in the prologue,
    // the plain job behind the hanging one would start only after that prologue gave up
    const hang = await submit('hang', wnodScript(ticket({ image: 'vm_hang' }), 'echo must-not-run\n'));
    await ts.node.waitJob(hang, 'R');
    const plain = await ts.node.qsub(ts.user, '#!/bin/bash\necho after-the-hang\n', { cwd: ts.work, args: ['-N', 'behind', '-q', 'batch'] });
    const p = await finished('behind', plain);
    t.equal(p.status, 0);
    const h = await ts.node.job(hang);
    t.equal(h?.job_state, 'R', 'the plain job ran to its end while the hanging VM still booted');
    await ts.node.must(['/usr/local/bin/qdel', hang], { user: ts.user });
    const q = await finished('hang', hang);
    t.notMatch(q.out, /must-not-run/);
    await nothingLeft(t, 'after qdel during the boot');
  });

  t.test('walltime: the job in its VM is ended, nothing left', async (t) => {
    const id = await submit('wall', wnodScript(ticket(), 'echo started\nsleep 600\necho not-reached\n', 'nodes=1:ppn=1,walltime=00:00:15'));
    const r = await finished('wall', id);
    t.not(r.status, 0, `ended by the walltime (exit_status ${r.status})`);
    t.match(r.out, /started/);
    t.notMatch(r.out, /not-reached/);
    await nothingLeft(t, 'after the walltime kill');
  });
}
