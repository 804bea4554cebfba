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
