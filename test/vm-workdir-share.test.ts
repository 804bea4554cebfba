// The working directory served by virtiofsd must be the inode that was checked, not whatever the path names later.
import t from 'tap';
import { mkdtemp, mkdir, symlink, copyFile, chown, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { checkServedRoot, pinWorkdir } from '../src/vm/workdirShare.js';

t.test('pinWorkdir refuses a symlink and a directory of another user', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wnod-share-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const mine = join(dir, 'mine');
  await mkdir(mine);
  await chown(mine, 65534, 65534);
  t.match(await pinWorkdir(mine, 65534), { uid: 65534 });
  await symlink('/etc', join(dir, 'link'));
  await t.rejects(pinWorkdir(join(dir, 'link'), 0), { message: /is a symbolic link or not a directory/ });
  await t.rejects(pinWorkdir(mine, 1234), { message: /owned by uid 65534, not by the job's uid 1234/ });
});

t.test('checkServedRoot compares the served root (a chrooted child) with the pinned inode', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wnod-share-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const pinnedDir = join(dir, 'a');
  const otherDir = join(dir, 'b');
  await mkdir(pinnedDir);
  await mkdir(otherDir);
  await copyFile('/bin/busybox', join(otherDir, 'busybox'));
  // A stand-in for virtiofsd: a parent whose child serves (is chrooted into) otherDir, as virtiofsd's sandboxed
  // child is pivoted into the directory it serves.
  const parent = spawn('sh', ['-c', `chroot ${otherDir} /busybox sleep 10 & wait`], { stdio: 'ignore' });
  t.teardown(() => { try { process.kill(-parent.pid!, 'SIGKILL'); } catch { parent.kill('SIGKILL'); } });
  await t.rejects(checkServedRoot(parent.pid!, await pinWorkdir(pinnedDir, 0), 5000), { message: /was replaced while it was being shared/ });
  await t.resolves(checkServedRoot(parent.pid!, await pinWorkdir(otherDir, 0), 5000));
  parent.kill('SIGKILL');
  const lonely = spawn('sleep', ['10'], { stdio: 'ignore' });
  t.teardown(() => lonely.kill('SIGKILL'));
  await t.rejects(checkServedRoot(lonely.pid!, await pinWorkdir(pinnedDir, 0), 300), { message: /did not start serving/ });
});

t.test('a working directory whose path holds commas and backslashes is served by virtiofsd as that very directory', async (t) => {
  const { connect } = await import('node:net');
  const { virtiofsdArgs } = await import('../src/vm/workdirShare.js');
  const { VIRTIOFSD } = await import('../src/vm/qemu.js');
  const dir = await mkdtemp(join(tmpdir(), 'wnod-share-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // '/…/a' exists too: an unescaped comma would make virtiofsd serve it (or fail on the option after the comma)
  await mkdir(join(dir, 'a'));
  const tricky = join(dir, 'a,cache=none,b\\c');
  await mkdir(tricky);
  const sock = join(dir, 'fs.sock');
  const d = spawn(VIRTIOFSD, virtiofsdArgs(sock, tricky), { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  d.stderr.on('data', (b: Buffer) => { if (err.length < 4000) err += b.toString(); });
  t.teardown(() => { d.kill('SIGKILL'); });
  // virtiofsd pivots into what it serves once its vhost-user socket is connected: play QEMU's part that far
  for (let i = 0; i < 250; i++) {
    if (d.exitCode !== null) break;
    const ok = await new Promise<boolean>((res) => {
      const c = connect(sock, () => res(true));
      c.on('error', () => res(false));
      t.teardown(() => c.destroy());
    });
    if (ok) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  t.equal(d.exitCode, null, `virtiofsd runs (stderr: ${err.slice(0, 300)})`);
  await t.resolves(checkServedRoot(d.pid!, await pinWorkdir(tricky, 0), 10_000), 'it serves the directory with the commas, not /…/a');
});

t.test('a working directory in the kernel\'s trees (/proc/<pid> passes the owner check) is refused', async (t) => {
  const { pseudoFsProblem, workdirFsProblem } = await import('../src/vm/workdirShare.js');
  // a process of an ordinary user owns its /proc/<pid>: the owner check alone would share the host's procfs
  const child = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'sleep', '30'], { stdio: 'ignore' });
  t.teardown(() => child.kill('SIGKILL'));
  await new Promise((r) => setTimeout(r, 200));
  const procDir = `/proc/${child.pid}`;
  await t.rejects(pinWorkdir(procDir, 65534), { message: /is under \/proc/ });
  t.match(await workdirFsProblem(procDir), /under \/proc/);
  t.match(await workdirFsProblem('/sys/kernel'), /under \/sys/);
  t.match(await workdirFsProblem('/dev/shm'), /under \/dev/);
  t.equal(await workdirFsProblem(tmpdir()), undefined, 'a real file system is fine');
  t.match(pseudoFsProblem('/srv/elsewhere', 0x9fa0), /kernel's proc file system/, 'procfs mounted elsewhere is refused by its type');
  t.match(pseudoFsProblem('/srv/elsewhere', 0x62656572), /sysfs/);
});
