// A lease through the Torque LRM adapter on a REAL Torque 6.1.3 (test/kit/torqueRealSite.ts: installed as the
// README says, `wnod install torque --apply` and its qmgr lines): inside the Torque namespace, as an unprivileged
// user, `wnod lease create` qsubs the pilot (src/lrm/torque/adapter.ts), the real pbs_mom runs it with wnod's hooks
// (the prologue starts the boot detached, the starter waits for the VM and runs the pilot in it), `ssh` with the
// pinned host key reaches the VM through the forwarded port, `wnod lease delete` qdels the pilot, and nothing is
// left: no VM, the job complete, the node free. Works from a clone in a private dir (reachable.ts) and with or
// without KVM. VMs booted: 1 (the minimal kernel).
import t, { type Test } from 'tap';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { vmIdForJob } from '../src/vm/state.js';
import { ensureTestUser } from './kit/pbsmom.js';
import { buildSshTestImage } from './kit/sshImage.js';
import { leaseUser } from './kit/leaseSite.js';
import { hypervisorsOf } from './kit/hypervisors.js';
import { torqueUnavailable } from './kit/torque.js';
import { makeRealTorqueSite, type RealTorqueSite } from './kit/torqueRealSite.js';
import { reachableRepo } from './kit/reachable.js';

type LeaseJson = { id: string; state: string; jobId?: string; address?: string; hostKey?: string; reason?: string; history?: Array<{ event: string; by: string }> };

const why = torqueUnavailable();
t.test('a lease through the Torque LRM adapter on a real Torque', { skip: why ?? false }, async (t) => {
  const img = await buildSshTestImage({ kernel: 'mini' });
  const user = await ensureTestUser('wtllease');
  let ts: RealTorqueSite | undefined;
  t.teardown(async () => {
    await ts?.stop();
    await rm(join(user.home, '.wnod'), { recursive: true, force: true });
  });
  ts = await makeRealTorqueSite(img, {
    tag: 'wtl', userName: user.name, np: 4,
    // the user's group may lease vm_test; no ticket key for users: the node's group-default decides
    site: { rules: [{ name: 'leasers', group: user.group, images: ['vm_test'], default: 'vm_test' }], policy: { no_ticket: 'group-default' } },
  });
  const node = ts.node;
  const cli = join(reachableRepo(), 'dist', 'cli', 'main.js');
  // qsub/qstat/qdel and the lease's forwarded port exist only inside the Torque namespace: run the user's side there
  const u = await leaseUser({
    dir: node.dir, user, cli, configPath: ts.site.configPath,
    run: (file, args, timeoutMs = 120_000, cwd = '/') => node.exec(['/usr/bin/env', '-u', 'NODE_OPTIONS', file, ...args], { user, cwd, timeoutMs, env: { LANG: 'C.UTF-8' } }),
  });

  const create = async (t: Test, wait = '300'): Promise<LeaseJson> => {
    const r = await u.lease(['create', '--image', 'vm_test', '--ssh-key', u.pubKey, '--hours', '1', '--wait', wait, '--json']);
    t.equal(r.exitCode, 0, `lease create exits 0 (stderr: ${r.stderr.slice(0, 600)})`);
    return JSON.parse(r.stdout || '{}') as LeaseJson;
  };
  const show = async (id: string) => JSON.parse((await u.lease(['show', id, '--json'])).stdout) as LeaseJson;
  /** the pilot job complete, then nothing of the lease left on the node (the epilogue ran as the job completed) */
  const nothingLeft = async (t: Test, jobId: string, what: string) => {
    await node.waitJob(jobId, 'C');
    t.same(await readdir(join(ts!.site.stateDir, 'vms')).catch(() => []), [], `${what}: no VM record`);
    t.same(await hypervisorsOf(ts!.site.stateDir), [], `${what}: no QEMU or virtiofsd left`);
    t.same((await readdir(join(ts!.site.stateDir, 'torque')).catch(() => [] as string[])).filter((f) => /\.(mode|json)$/.test(f)), [], `${what}: no job record or marker`);
    await node.waitFree();
    t.match(await node.nodeState(), /^free$/, `${what}: the node is free, not offline or down`);
  };

  await t.test('create → ssh into the VM → delete (qdel): released, the pilot job complete, nothing left', async (t) => {
    const l = await create(t);
    t.equal(l.state, 'ready', `create waited until the VM served ssh (${l.reason ?? ''})`);
    t.match(l.jobId, /^\d+\.wtlnode$/, 'a Torque job id');
    t.match(l.address, /^127\.0\.0\.1:\d+$/);
    t.match(l.hostKey, /^ssh-ed25519 /);
    if (l.state !== 'ready') return void t.comment((await node.momLog()).slice(-4000));
    t.equal((await node.job(l.jobId!))?.job_state, 'R', 'the pilot runs under the real pbs_mom');
    const r = await u.ssh(l.address!, l.hostKey!, 'hostname; id -u');
    t.equal(r.exitCode, 0, `ssh with the host key pinned (stderr: ${r.stderr.slice(0, 300)})`);
    // vmHostname's rule with the node's name (the namespace's hostname, not this process's)
    t.equal(r.stdout, `${node.host}-${vmIdForJob(l.jobId!)}`.replace(/[^A-Za-z0-9-]/g, '-') + `\n${user.uid}`, 'hostname ran inside the lease\'s VM, as the user');
    const listed = JSON.parse((await u.lease(['list', '--json'])).stdout) as LeaseJson[];
    t.match(listed.find((x) => x.id === l.id), { state: 'ready', address: l.address }, 'list agrees');
    const d = await u.lease(['delete', l.id, '--json']);
    t.equal(d.exitCode, 0, `delete exits 0 (stderr: ${d.stderr.slice(0, 300)})`);
    t.equal((JSON.parse(d.stdout || '{}') as LeaseJson).state, 'released');
    await nothingLeft(t, l.jobId!, 'after delete');
    t.same((await show(l.id)).history!.filter((e) => e.by === 'pilot').map((e) => e.event), ['running', 'ready', 'terminating', 'released'], 'the pilot recorded its whole life');
    t.not((await u.ssh(l.address!, l.hostKey!, 'hostname')).exitCode, 0, 'nothing answers at the address any more');
    // Torque delivered the pilot's output into the lease dir, the user's; the pilot said nothing on stderr
    const ld = join(u.registry, l.id);
    for (const f of ['pilot.out', 'pilot.err', 'events', 'lease.json']) t.equal((await stat(join(ld, f))).uid, user.uid, `${f} is the user's`);
    t.equal(await readFile(join(ld, 'pilot.err'), 'utf8'), '', 'no noise in the pilot\'s stderr');
  });

  await t.test('an admin\'s qdel ends a lease through the same clean path', async (t) => {
    const l = await create(t);
    t.equal(l.state, 'ready');
    await node.must(['/usr/local/bin/qdel', l.jobId!]);
    await nothingLeft(t, l.jobId!, 'after the admin\'s qdel');
    const until = Date.now() + 60_000;
    let shown = await show(l.id);
    while (!['released', 'failed'].includes(shown.state) && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 300));
      shown = await show(l.id);
    }
    t.equal(shown.state, 'released', `released by the pilot (${shown.reason ?? ''})`);
    t.ok(shown.history!.some((e) => e.event === 'terminating' && e.by === 'pilot'), 'the pilot recorded the SIGTERM');
  });

  await t.test('a lease deleted while its VM still boots (the detached boot): released, nothing left', async (t) => {
    const l = await create(t, '0');
    t.equal(l.state, 'queued', 'create returned at once');
    await node.waitJob(l.jobId!, 'R');
    const d = await u.lease(['delete', l.id, '--json']);
    t.equal(d.exitCode, 0, `delete exits 0 (stderr: ${d.stderr.slice(0, 300)})`);
    const after = JSON.parse(d.stdout || '{}') as LeaseJson;
    t.equal(after.state, 'released', `released (${after.reason ?? ''})`);
    await nothingLeft(t, l.jobId!, 'after a delete during the boot');
  });
});
