// Leases end to end: `wnod lease` as an unprivileged user, its real Torque adapter talking to a fake Torque server
// that runs every pilot through the pbs_mom harness with the installed hooks, and real VMs (TCG) of the ssh test
// image. VMs booted here: 4 (one per lease); the refusals boot none.
import t, { type Test } from 'tap';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { vmHostname } from '../src/vm/qemu.js';
import { vmIdForJob } from '../src/vm/state.js';
import { JOB_EXEC_OVERLIMIT } from './kit/pbsmom.js';
import { makeLeaseSite, type LeaseSite } from './kit/leaseSite.js';

let s: LeaseSite;

t.before(async () => {
  s = await makeLeaseSite();
});

t.teardown(async () => {
  if (s) {
    await s.close();
    await rm(s.registry, { recursive: true, force: true });
  }
});

type LeaseJson = { id: string; state: string; jobId?: string; address?: string; hostKey?: string; reason?: string; history?: Array<{ event: string; by: string }> };

async function create(t: Test, extra: string[] = []): Promise<LeaseJson> {
  const r = await s.lease(['create', '--image', 'vm_test', '--ssh-key', s.pubKey, '--hours', '1', '--json', ...extra]);
  t.equal(r.exitCode, 0, `lease create exits 0 (stderr: ${r.stderr.slice(0, 400)})`);
  return JSON.parse(r.stdout) as LeaseJson;
}

/** Nothing of any VM is left on the node. */
async function assertNoVm(t: Test, what: string): Promise<void> {
  t.same(await readdir(join(s.site.stateDir, 'vms')).catch(() => []), [], `${what}: no VM record`);
  t.same(await s.hypervisors(), [], `${what}: no QEMU or virtiofsd left`);
}

t.test('create → ssh runs hostname inside the VM → delete: the VM is gone, the state says released', async (t) => {
  const l = await create(t);
  t.equal(l.state, 'ready', 'create waited until the VM served ssh');
  t.match(l.address, /^127\.0\.0\.1:\d+$/, 'a loopback port on this node');
  t.match(l.hostKey, /^ssh-ed25519 /, 'the VM\'s host key, made inside the VM');
  const r = await s.ssh(l.address!, l.hostKey!, 'hostname; id -u');
  t.equal(r.exitCode, 0, `ssh works with the host key pinned (stderr: ${r.stderr.slice(0, 300)})`);
  t.equal(r.stdout, `${vmHostname(vmIdForJob(l.jobId!))}\n${s.user.uid}`, 'hostname ran inside the lease\'s VM, as the user');
  const d = await s.lease(['delete', l.id, '--json']);
  t.equal(d.exitCode, 0, 'delete exits 0');
  const after = JSON.parse(d.stdout) as LeaseJson;
  t.equal(after.state, 'released');
  t.notOk(after.address, 'a released lease has no address');
  await s.lrm.wait(l.jobId!);
  await assertNoVm(t, 'after delete');
  const shown = JSON.parse((await s.lease(['show', l.id, '--json'])).stdout) as LeaseJson;
  t.same(shown.history!.map((e) => `${e.event}/${e.by}`).filter((e) => !e.startsWith('terminating/cli')),
    ['requested/cli', 'queued/cli', 'running/pilot', 'ready/pilot', 'terminating/pilot', 'released/pilot'], 'every step recorded, by whom');
  const again = await s.ssh(l.address!, l.hostKey!, 'hostname');
  t.not(again.exitCode, 0, 'nothing answers at the address any more');
});

t.test('the batch system SIGTERMs the pilot (an admin\'s qdel): released recorded by the pilot, no VM', async (t) => {
  const l = await create(t);
  t.equal(l.state, 'ready');
  // root's qdel, as an admin or a preemption would: the user's CLI plays no part
  const { execa } = await import('execa');
  await execa(join(s.lrm.binDir, 'qdel'), [l.jobId!]);
  const res = await s.lrm.wait(l.jobId!);
  t.equal(res?.attempts[0]?.starter?.signal, null, 'the starter ended by itself before kill_delay\'s SIGKILL');
  await assertNoVm(t, 'after the SIGTERM');
  const shown = JSON.parse((await s.lease(['show', l.id, '--json'])).stdout) as LeaseJson;
  t.ok(['released', 'failed'].includes(shown.state), `terminal state (${shown.state})`);
  t.equal(shown.state, 'released', 'the pilot released it cleanly');
  t.ok(shown.history!.some((e) => e.event === 'terminating' && e.by === 'pilot'), 'the pilot recorded the SIGTERM');
});

t.test('expiry: a lease ends at its hours (the pilot\'s walltime) through the same clean path', async (t) => {
  const l = await create(t, ['--hours', '0.017']); // 61 s of walltime
  t.equal(l.state, 'ready');
  const res = await s.lrm.wait(l.jobId!);
  t.equal(res?.exitStatus, JOB_EXEC_OVERLIMIT, 'the batch system ended it for walltime');
  t.equal(res?.attempts[0]?.starter?.signal, null, 'the starter ended by itself, before the SIGKILL at the next poll');
  await assertNoVm(t, 'after expiry');
  const shown = JSON.parse((await s.lease(['show', l.id, '--json'])).stdout) as LeaseJson;
  t.equal(shown.state, 'released', 'released by the pilot');
  t.same(shown.history!.filter((e) => e.by === 'pilot').map((e) => e.event), ['running', 'ready', 'terminating', 'released']);
});

t.test('a registry restarted mid-lease reports the right state; a vanished pilot is marked failed', async (t) => {
  const l = await create(t);
  // every `wnod lease` is a new process: the registry is only its files
  const shown = JSON.parse((await s.lease(['show', l.id, '--json'])).stdout) as LeaseJson;
  t.equal(shown.state, 'ready', 'a fresh process replays ready');
  t.equal(shown.address, l.address, 'with the same address');
  const list = JSON.parse((await s.lease(['list', '--json'])).stdout) as LeaseJson[];
  t.match(list.find((x) => x.id === l.id), { state: 'ready', address: l.address }, 'list agrees');
  // the batch server loses the pilot (purged, server rebuilt): the registry must not claim a running lease
  await s.lrm.forget(l.jobId!);
  const lost = JSON.parse((await s.lease(['show', l.id, '--json'])).stdout) as LeaseJson;
  t.equal(lost.state, 'failed', 'a lease whose pilot vanished is failed');
  t.match(lost.reason, /no longer knows pilot job/);
  // the node still runs it (our fake only forgot it): end it; the first terminal event stays the answer
  const { execa } = await import('execa');
  await execa(join(s.lrm.binDir, 'qdel'), [l.jobId!], { reject: false });
  await s.lrm.stop();
  await assertNoVm(t, 'after the node ended it');
  t.equal((JSON.parse((await s.lease(['show', l.id, '--json'])).stdout) as LeaseJson).state, 'failed', 'still failed');
  await s.lrm.start();
});

t.test('an unauthorised image is refused before any job is submitted, with the reason', async (t) => {
  const before = await readdir(join(s.lrm.spool, 'jobs'));
  const leases = await readdir(s.registry).catch(() => []);
  const r = await s.lease(['create', '--image', 'vm_other', '--ssh-key', s.pubKey, '--json']);
  t.equal(r.exitCode, 1, 'exit 1');
  const j = JSON.parse(r.stdout) as { error: string; reason: string };
  t.equal(j.error, 'denied');
  t.match(j.reason, `is not authorised for image vm_other (rule leasers allows: vm_test)`);
  t.match(r.stderr, 'not authorised for image vm_other');
  t.same(await readdir(join(s.lrm.spool, 'jobs')), before, 'nothing reached the batch system');
  t.same(await readdir(s.registry).catch(() => []), leases, 'no lease recorded');
  const unknown = await s.lease(['create', '--image', 'vm_nope', '--ssh-key', s.pubKey]);
  t.equal(unknown.exitCode, 1);
  t.match(unknown.stderr, 'image vm_nope is not offered by this site');
  const priv = await s.lease(['create', '--image', 'vm_test', '--ssh-key', s.key]);
  t.equal(priv.exitCode, 1);
  t.match(priv.stderr, 'is a private key');
  t.same(await readdir(join(s.lrm.spool, 'jobs')), before, 'still nothing submitted');
});
