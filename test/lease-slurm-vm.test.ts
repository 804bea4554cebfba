// Leases on a REAL Slurm (scripts/slurm-local.sh, `wnod install slurm --apply`): `wnod lease` as an unprivileged
// user submits its pilot with sbatch (src/lrm/slurm/adapter.ts), the Prolog boots the VM with its ssh forwarded,
// the runner runs the pilot inside it; `ssh` into the VM; `wnod lease delete` (scancel) ends it cleanly. An admin's
// scancel ends a lease the same way. VMs booted: 2 (TCG or KVM, the minimal kernel).
import t, { type Test } from 'tap';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { vmHostname } from '../src/vm/qemu.js';
import { vmIdForJob } from '../src/vm/state.js';
import { ensureTestUser } from './kit/pbsmom.js';
import { ensureBuilt } from './kit/cli.js';
import { reachableRepo } from './kit/reachable.js';
import { buildSshTestImage } from './kit/sshImage.js';
import { leaseUser } from './kit/leaseSite.js';
import { hypervisorsOf } from './kit/hypervisors.js';
import { slurmMissing } from './kit/slurm.js';
import { makeSlurmSite, type SlurmSite } from './kit/slurmSite.js';

type LeaseJson = { id: string; state: string; jobId?: string; address?: string; hostKey?: string; reason?: string; history?: Array<{ event: string; by: string }> };

const skip = await slurmMissing();
t.test('leases on a real Slurm', { skip: skip ?? false }, async (t) => {
  await ensureBuilt();
  const repo = reachableRepo();
  const img = await buildSshTestImage({ kernel: 'mini' });
  const user = await ensureTestUser('wdmlease');
  const dir = await mkdtemp(join(tmpdir(), 'wdm-lease-'));
  let ss: SlurmSite | undefined;
  t.teardown(async () => {
    await ss?.stop();
    await rm(dir, { recursive: true, force: true });
    await rm(join(user.home, '.wnod'), { recursive: true, force: true });
  });
  ss = await makeSlurmSite({
    dir, repo, img, basePort: 17510, cluster: 'wdm',
    // the user's group may lease vm_test; no ticket key for users: the node's group-default decides
    site: { rules: [{ name: 'leasers', group: user.group, images: ['vm_test'], default: 'vm_test' }], policy: { no_ticket: 'group-default' } },
  });
  const { fx, site } = ss;
  const u = await leaseUser({ dir, user, cli: join(repo, 'dist', 'cli', 'main.js'), configPath: site.configPath, env: fx.env });

  const create = async (t: Test): Promise<LeaseJson> => {
    const r = await u.lease(['create', '--image', 'vm_test', '--ssh-key', u.pubKey, '--hours', '1', '--json']);
    t.equal(r.exitCode, 0, `lease create exits 0 (stderr: ${r.stderr.slice(0, 400)})`);
    return JSON.parse(r.stdout) as LeaseJson;
  };
  const noVm = async (t: Test, what: string) => {
    t.same(await readdir(join(site.stateDir, 'vms')).catch(() => []), [], `${what}: no VM record`);
    t.same(await hypervisorsOf(site.stateDir), [], `${what}: no QEMU or virtiofsd left`);
  };

  await t.test('create → ssh into the VM → delete: released, the pilot job ended, nothing left', async (t) => {
    const l = await create(t);
    t.equal(l.state, 'ready', `create waited until the VM served ssh (${l.reason ?? ''})`);
    t.match(l.jobId, /^\d+$/, 'a Slurm job id');
    t.match(l.address, /^127\.0\.0\.1:\d+$/);
    t.match(l.hostKey, /^ssh-ed25519 /);
    const r = await u.ssh(l.address!, l.hostKey!, 'hostname; id -u');
    t.equal(r.exitCode, 0, `ssh with the host key pinned (stderr: ${r.stderr.slice(0, 300)})`);
    t.equal(r.stdout, `${vmHostname(vmIdForJob(l.jobId!))}\n${user.uid}`, 'hostname ran inside the lease\'s VM, as the user');
    const listed = JSON.parse((await u.lease(['list', '--json'])).stdout) as LeaseJson[];
    t.match(listed.find((x) => x.id === l.id), { state: 'ready', address: l.address }, 'list agrees');
    const d = await u.lease(['delete', l.id, '--json']);
    t.equal(d.exitCode, 0, `delete exits 0 (stderr: ${d.stderr.slice(0, 300)})`);
    t.equal((JSON.parse(d.stdout) as LeaseJson).state, 'released');
    const done = await fx.waitDone(l.jobId!);
    t.equal(done.state, 'CANCELLED', 'the pilot was scancelled');
    await noVm(t, 'after delete');
    const shown = JSON.parse((await u.lease(['show', l.id, '--json'])).stdout) as LeaseJson;
    t.same(shown.history!.filter((e) => e.by === 'pilot').map((e) => e.event), ['running', 'ready', 'terminating', 'released'], 'the pilot recorded its whole life');
    t.not((await u.ssh(l.address!, l.hostKey!, 'hostname')).exitCode, 0, 'nothing answers at the address any more');
    t.match(await fx.nodeState('n1'), /^(idle|mixed)$/, 'the node is not drained');
  });

  await t.test('an admin\'s scancel ends a lease through the same clean path', async (t) => {
    const l = await create(t);
    t.equal(l.state, 'ready');
    await execa('scancel', [l.jobId!], { env: fx.env });
    await fx.waitDone(l.jobId!);
    const until = Date.now() + 60_000;
    const show = async () => JSON.parse((await u.lease(['show', l.id, '--json'])).stdout) as LeaseJson;
    let shown = await show();
    while (!['released', 'failed'].includes(shown.state) && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 300));
      shown = await show();
    }
    t.equal(shown.state, 'released', 'released by the pilot');
    t.ok(shown.history!.some((e) => e.event === 'terminating' && e.by === 'pilot'), 'the pilot recorded the SIGTERM');
    await noVm(t, 'after scancel');
  });
});
