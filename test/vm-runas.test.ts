/** QEMU drops to the job user (-runas): the argument, who gets it, and whose stray hypervisors root may kill. Pure. */
import t from 'tap';
import { qemuArgs, runAsFor, type QemuPlan } from '../src/vm/qemuArgs.js';
import { maskedArgs } from '../src/vm/snapshot.js';
import { statusUid, stragglerOwnerOk } from '../src/job/vmEngine.js';
import type { VmSpec } from '../src/vm/driver.js';

const plan: QemuPlan = {
  machine: 'microvm', accel: 'tcg', cpus: 1, memoryMB: 256, kernel: '/k', initrd: '/i', cmdline: 'x',
  sockets: { control: '/r/c', stdout: '/r/o', stderr: '/r/e', qmp: '/r/q' }, console: '/r/con', pidfile: '/r/pid', network: { mode: 'none' },
};

t.test('-runas uid:gid for job users, none for root, invalid ids refused', async (t) => {
  t.same(runAsFor({ uid: 0, gid: 0 }), undefined, 'root\'s own VMs keep root');
  t.same(runAsFor({ uid: 1001, gid: 100 }), { uid: 1001, gid: 100 });
  const a = qemuArgs({ ...plan, runAs: { uid: 1001, gid: 100 } });
  t.equal(a[a.indexOf('-runas') + 1], '1001:100');
  t.ok(a.indexOf('-runas') < a.indexOf('-daemonize'));
  t.notOk(qemuArgs(plan).includes('-runas'));
  for (const bad of [{ uid: 0, gid: 0 }, { uid: -1, gid: 1 }, { uid: 1.5, gid: 1 }, { uid: 1, gid: NaN }, { uid: 2 ** 32 - 1, gid: 1 }]) {
    t.throws(() => qemuArgs({ ...plan, runAs: bad }), /invalid -runas/, JSON.stringify(bad));
  }
});

t.test('the snapshot key does not depend on the job user (templates are shared and built as root)', async (t) => {
  const spec = (uid: number): VmSpec => ({ id: 'a', image: { id: 'i', digest: 'd', kind: 'kernel', files: { kernel: '/k', initrd: '/i' } }, cpus: 1, memoryMB: 256,
    hostname: 'h', user: { name: 'u', uid, gid: uid }, env: {}, network: { mode: 'none' } });
  t.same(maskedArgs(spec(1001), 'tcg', 1), maskedArgs(spec(2002), 'tcg', 1));
  t.notOk(maskedArgs(spec(1001), 'tcg', 1).includes('-runas'));
});

t.test('statusUid: one uid only when real, effective, saved and fs agree', async (t) => {
  t.equal(statusUid('Name:\tqemu\nUid:\t1001\t1001\t1001\t1001\nGid:\t1\t1\t1\t1\n'), 1001);
  t.equal(statusUid('Uid:\t0\t0\t0\t0\n'), 0);
  t.equal(statusUid('Uid:\t1001\t0\t1001\t1001\n'), undefined, 'a process between ids is nobody\'s');
  t.equal(statusUid(''), undefined);
});

t.test('killStragglers kills root\'s hypervisors and a QEMU that dropped to the uid it names, never another user\'s', async (t) => {
  const argv = ['qemu-system-x86_64', '-runas', '1001:100', '-pidfile', '/st/run/x/qemu.pid'];
  t.ok(stragglerOwnerOk(0, ['virtiofsd', '--socket-path=/st/run/x/fs.sock'], undefined), 'root\'s');
  t.ok(stragglerOwnerOk(1001, argv, 1001), 'the job user\'s, as recorded');
  t.ok(stragglerOwnerOk(1001, argv, undefined), 'no record: the uid its own -runas names');
  t.notOk(stragglerOwnerOk(1001, argv, 2002), 'not when the record names another user');
  t.notOk(stragglerOwnerOk(2002, argv, undefined), 'not a process of another uid than its -runas');
  t.notOk(stragglerOwnerOk(1001, argv.filter((a) => a !== '-runas' && a !== '1001:100'), 1001), 'not a user process without -runas');
  t.notOk(stragglerOwnerOk(1001, ['qemu-system-x86_64', '-runas', '1001:100x'], 1001));
  t.notOk(stragglerOwnerOk(undefined, argv, 1001), 'not a process whose uids disagree');
});

t.test('killStragglers leaves a hypervisor in another mount namespace alone: the same path there is another VM\'s', async (t) => {
  if (process.getuid?.() !== 0) { t.comment('skipped: needs root (unshare -m)'); return; }
  const { mkdtemp, copyFile, rm } = await import('node:fs/promises');
  const { spawn } = await import('node:child_process');
  const { join } = await import('node:path');
  const { killStragglers } = await import('../src/job/vmEngine.js');
  const dir = await mkdtemp('/tmp/wmn-strag-');
  const fake = join(dir, 'qemu-system-x86_64'); // a shell under a hypervisor's name, naming the VM's runtime dir
  await copyFile('/bin/sh', fake);
  const { chmod } = await import('node:fs/promises');
  await chmod(fake, 0o755);
  const runDir = join(dir, 'run', 'x');
  const start = (prefix: string[]) => spawn(prefix[0] ?? fake, [...prefix.slice(1), ...(prefix.length ? [fake] : []), '-c', 'sleep 60', `${runDir}/qemu.pid`], { stdio: 'ignore' });
  const ours = start([]);
  const theirs = start(['/usr/bin/unshare', '--mount', '--propagation', 'private']);
  t.teardown(async () => { ours.kill('SIGKILL'); theirs.kill('SIGKILL'); await rm(dir, { recursive: true, force: true }); });
  await new Promise((r) => setTimeout(r, 300));
  const killed = await killStragglers(runDir);
  t.ok(killed.includes(ours.pid!), 'ours is killed');
  t.notOk(killed.some((p) => p !== ours.pid), 'the one in another mount namespace is not');
  t.equal(theirs.exitCode, null, 'it still runs');
});
