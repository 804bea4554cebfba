// src/images/overlay.ts with the real qemu-img and qemu-io: writes through the overlay land in the overlay,
// the (read-only) base is never written.
import t from 'tap';
import { createHash } from 'node:crypto';
import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { createOverlay, removeOverlay } from '../src/images/overlay.js';

const dir = t.testdir({});
const sha = async (p: string) => createHash('sha256').update(await readFile(p)).digest('hex');
const qemuIo = (fmt: string, file: string, cmd: string) => execa('qemu-io', ['-f', fmt, '-c', cmd, file], { reject: false });
const base = join(dir, 'base.raw');
const MiB = 1024 * 1024;

t.before(async () => {
  await writeFile(base, Buffer.alloc(4 * MiB, 0x11));
  await chmod(base, 0o400); // as in the cache
});

t.test('writes through a raw-backed overlay never touch the base', async (t) => {
  const before = await sha(base);
  const ov = join(dir, 'vm1.qcow2');
  await createOverlay(base, 'raw', ov);
  t.equal((await stat(ov)).mode & 0o777, 0o600, 'overlay is private');
  const info = JSON.parse((await execa('qemu-img', ['info', '--output=json', ov])).stdout);
  t.equal(info['backing-filename'], base);
  t.equal(info['backing-filename-format'], 'raw');
  t.equal(info['virtual-size'], 4 * MiB);
  const w = await qemuIo('qcow2', ov, 'write -P 0xab 1048576 65536');
  t.equal(w.exitCode, 0, `write through the overlay: ${w.stderr}`);
  // qemu-io read -P exits 1 on a pattern mismatch
  t.equal((await qemuIo('qcow2', ov, 'read -P 0xab 1048576 65536')).exitCode, 0, 'the guest sees its write');
  t.equal((await qemuIo('qcow2', ov, 'read -P 0x11 0 65536')).exitCode, 0, 'unwritten areas come from the base');
  t.equal((await qemuIo('raw', base, 'read -P 0x11 1048576 65536')).exitCode, 0, 'the base still has its own bytes where the guest wrote');
  t.equal(await sha(base), before, 'base unchanged byte for byte');
  await removeOverlay(ov);
  await removeOverlay(ov); // idempotent
  await t.rejects(stat(ov));
});

t.test('a qcow2 base, a grown overlay, and the refusals', async (t) => {
  const qbase = join(dir, 'base.qcow2');
  await execa('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', base, qbase]);
  await chmod(qbase, 0o400);
  const before = await sha(qbase);
  const ov = join(dir, 'vm2.qcow2');
  await createOverlay(qbase, 'qcow2', ov, 1);
  t.equal(JSON.parse((await execa('qemu-img', ['info', '--output=json', ov])).stdout)['virtual-size'], 2 ** 30, 'grown to 1 GiB');
  t.equal((await qemuIo('qcow2', ov, 'write -P 0xcd 0 65536')).exitCode, 0);
  t.equal(await sha(qbase), before, 'qcow2 base unchanged');

  // an existing overlay is never truncated
  const ovBefore = await sha(ov);
  await t.rejects(createOverlay(qbase, 'qcow2', ov), { code: 'overlay-failed', message: /already exists/ });
  t.equal(await sha(ov), ovBefore);

  // a size smaller than the base would cut the disk
  const big = join(dir, 'big.raw');
  await writeFile(big, '');
  await execa('truncate', ['-s', '2G', big]);
  await t.rejects(createOverlay(big, 'raw', join(dir, 'small.qcow2'), 1), { message: /smaller than the base/ });

  // a base that chains to another host file is refused (the guest could read it)
  await t.rejects(createOverlay(ov, 'qcow2', join(dir, 'chained.qcow2')), { message: /backing file of its own/ });

  await t.rejects(createOverlay(join(dir, 'missing.raw'), 'raw', join(dir, 'x.qcow2')), { message: /not a regular file/ });
  await t.rejects(createOverlay(base, 'raw', join(dir, 'a,b.qcow2')), { message: /qemu-img would misread/ });
  await t.rejects(createOverlay('relative.raw', 'raw', join(dir, 'y.qcow2')), { message: /absolute/ });
  await t.rejects(createOverlay(base, 'vmdk' as 'raw', join(dir, 'z.qcow2')), { message: /not raw or qcow2/ });
});

t.test('an overlay is refused, with the room it needs, when its file system cannot hold the disk it may grow to', async (t) => {
  const { mkdtemp, rm, readdir } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { OverlaySpaceError } = await import('../src/images/overlay.js');
  // a small file system of our own: 16 MiB of tmpfs
  const mnt = await mkdtemp(join(tmpdir(), 'wnod-ovfs-'));
  await execa('mount', ['-t', 'tmpfs', '-o', 'size=16m,mode=0700', 'tmpfs', mnt]);
  t.teardown(async () => { await execa('umount', [mnt], { reject: false }); await rm(mnt, { recursive: true, force: true }); });
  const big = join(dir, 'big.raw');
  await execa('qemu-img', ['create', '-q', '-f', 'raw', big, '64M']); // sparse: a 64 MiB disk the guest may fill
  const err = await createOverlay(big, 'raw', join(mnt, 'vm.qcow2')).then(() => undefined, (e: Error) => e);
  t.type(err, OverlaySpaceError, `refused (got: ${err?.message})`);
  t.equal((err as { code?: string }).code, 'overlay-no-space');
  t.match(err?.message, /\d+ MiB free .* needs up to 64 MiB/, 'the message says what is free and what is needed');
  t.same(await readdir(mnt), [], 'nothing was created');
  await t.rejects(createOverlay(base, 'raw', join(mnt, 'vm2.qcow2'), undefined, { needGB: 1 }), { code: 'overlay-no-space' },
    'the image\'s disk_gb counts when it is larger than the base');
  await createOverlay(base, 'raw', join(mnt, 'vm3.qcow2'));
  t.ok((await stat(join(mnt, 'vm3.qcow2'))).isFile(), 'a 4 MiB disk fits');
});
