// The minimal guest kernel: the .config verifier (pure), the fragment in the repo, and a real boot of the test image
// with it (TCG). The kernel itself is built by scripts/test.sh before tap (`wnod kernel build`), not here.
import t from 'tap';
import { chown, mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { parseFragment, droppedOptions, miniKernelKey, fragmentFile, buildMiniKernel } from '../src/kernel/miniKernel.js';
import { buildTestImage, testVmImage, type TestImage } from '../src/guest/testImage.js';
import { qemuArgs, type QemuPlan } from '../src/vm/qemuArgs.js';
import { QemuDriver } from '../src/vm/qemu.js';
import { runOnce } from '../src/vm/session.js';
import { wnod, ensureBuilt } from './kit/cli.js';
import { collect } from './kit/collect.js';

const NOBODY = { name: 'nobody', uid: 65534, gid: 65534 };
// one short top-level dir: a socket path under a per-test dir named after the test would pass the 108-byte limit
// a short path of its own (not tap's fixture dir under the repo): QEMU's Unix sockets live below it, < 108 bytes
const root = mkdtempSync(join(tmpdir(), 'wnod-mini-'));
chmodSync(root, 0o755); // the job user (nobody) reaches its workdir below
t.teardown(() => rmSync(root, { recursive: true, force: true }));

t.test('the .config verifier names every option Kconfig dropped', async (t) => {
  const frag = parseFragment('# comment\nCONFIG_VIRTIO_FS=y\nCONFIG_NET_9P=y\n# CONFIG_MODULES is not set\nCONFIG_NR_CPUS=4\n');
  t.same([...frag], [['CONFIG_VIRTIO_FS', 'y'], ['CONFIG_NET_9P', 'y'], ['CONFIG_MODULES', 'n'], ['CONFIG_NR_CPUS', '4']]);
  const held = 'CONFIG_VIRTIO_FS=y\nCONFIG_NET_9P=y\n# CONFIG_MODULES is not set\nCONFIG_NR_CPUS=4\nCONFIG_OTHER=y\n';
  t.same(droppedOptions(frag, held), [], 'everything held');
  // VIRTIO_FS dropped (FUSE_FS missing: absent from .config), MODULES turned on, NR_CPUS changed
  const final = '# CONFIG_FUSE_FS is not set\nCONFIG_NET_9P=y\nCONFIG_MODULES=y\nCONFIG_NR_CPUS=64\n';
  t.same(droppedOptions(frag, final), [
    { option: 'CONFIG_VIRTIO_FS', want: 'y', got: 'n' },
    { option: 'CONFIG_MODULES', want: 'n', got: 'y' },
    { option: 'CONFIG_NR_CPUS', want: '4', got: '64' },
  ]);
  t.throws(() => parseFragment('CONFIG_A=y\nCONFIG_A=n\n', 'f'), { code: 'kernel-build', message: /f:2: CONFIG_A is set twice/ });
  t.throws(() => parseFragment('CONFIG_A y\n', 'f'), { message: /f:1: not a Kconfig line/ });
  t.not(miniKernelKey({ fragment: 'CONFIG_A=y\n', sourceVersion: '6.1.1-1', compiler: 'gcc 12' }),
    miniKernelKey({ fragment: 'CONFIG_A=y\n', sourceVersion: '6.1.1-2', compiler: 'gcc 12' }), 'the source version is in the key');
});

t.test('a mini test image carries its machine options: acpi=off and its command line', async (t) => {
  const fake = (kernelFlavor: 'debian' | 'mini'): TestImage => ({ dir: '/c/k', key: 'k', kernel: '/c/k/vmlinux', initrd: '/c/k/initrd.img',
    rootDisk: '/c/k/root.ext4', kernelPackage: 'p', busyboxVersion: 'b', bashPackages: [], modules: [], kernelFlavor });
  const mini = testVmImage(fake('mini'), true);
  t.equal(mini.acpi, false);
  t.equal(mini.cmdline, 'nolapic_timer noreplace-smp wnod.root=/dev/vda');
  const deb = testVmImage(fake('debian'));
  t.equal(deb.id, 'wnod-test');
  t.equal(deb.acpi, undefined, 'the Debian kernel keeps QEMU\'s ACPI');
  t.equal(deb.cmdline, undefined);
  const plan = (acpi?: boolean): QemuPlan => ({ machine: 'microvm', accel: 'tcg', cpus: 1, memoryMB: 256, acpi,
    sockets: { control: 'c', stdout: 'o', stderr: 'e', qmp: 'q' }, console: 'con', pidfile: 'pid', network: { mode: 'none' } });
  t.ok(qemuArgs(plan(false)).includes('microvm,x-option-roms=off,acpi=off'));
  t.ok(qemuArgs(plan()).includes('microvm,x-option-roms=off'));
});

t.test('the fragment in the repo has what the guest and the snapshot path need', async (t) => {
  const frag = parseFragment(await readFile(fragmentFile(), 'utf8'), 'wnod-mini.config');
  for (const o of ['PVH', 'VIRTIO_MMIO', 'VIRTIO_PCI', 'VIRTIO_CONSOLE', 'VIRTIO_FS', 'NET_9P_VIRTIO', '9P_FS', 'EXT4_FS', 'MAGIC_SYSRQ', 'BLK_DEV_INITRD']) {
    t.equal(frag.get(`CONFIG_${o}`), 'y', o);
  }
  t.equal(frag.get('CONFIG_MODULES'), 'n');
  t.equal(frag.get('CONFIG_FTRACE'), 'n');
});

t.test('the built kernel holds the fragment, and the CLI finds it in the cache', async (t) => {
  await ensureBuilt();
  const k = await buildMiniKernel(); // cached by scripts/test.sh; builds (minutes) when run alone on a cold cache
  t.same(droppedOptions(parseFragment(await readFile(fragmentFile(), 'utf8')), await readFile(k.config, 'utf8')), []);
  t.ok((await stat(k.vmlinux)).size > 1_000_000, 'a vmlinux');
  const r = await wnod(['kernel', 'build', '--json']);
  t.equal(r.exitCode, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { key: string; vmlinux: string; built: boolean };
  t.same({ key: j.key, vmlinux: j.vmlinux, built: j.built }, { key: k.key, vmlinux: k.vmlinux, built: false });
});

t.test('the mini test image boots: uname, a workdir write as the job user, the exit code', async (t) => {
  const img = await buildTestImage({ kernel: 'mini' });
  t.equal(img.kernelFlavor, 'mini');
  t.same(img.modules, [], 'no modules in the initramfs');
  const vmImage = testVmImage(img);
  t.equal(vmImage.id, 'wnod-test-mini');
  const work = join(root, 'work');
  await mkdir(work);
  await chown(work, NOBODY.uid, NOBODY.gid);
  const driver = new QemuDriver({ stateDir: join(root, 'state'), accel: 'tcg' });
  const out = collect(); const err = collect();
  const r = await runOnce(driver, { id: 'mini1', image: vmImage, cpus: 1, memoryMB: 256, hostname: 't-mini1', user: NOBODY,
    env: { PATH: '/bin:/usr/bin' }, network: { mode: 'none' }, workdir: { hostPath: work, uid: NOBODY.uid, gid: NOBODY.gid } },
  { argv: ['/bin/sh', '-c', 'uname -r; id -u; sleep 0.2; echo inside > made; exit 5'], stdout: out, stderr: err, readyTimeoutMs: 180_000 });
  t.equal(r.exitCode, 5, `exit code back (stderr: ${err.text()})`);
  const [release, uid] = out.text().trim().split('\n');
  t.match(release, /^6\.1\.\d+$/, 'the mini kernel ran (no Debian -cloud-amd64 suffix)');
  t.equal(uid, '65534');
  t.equal(await readFile(join(work, 'made'), 'utf8'), 'inside\n');
  t.equal((await stat(join(work, 'made'))).uid, NOBODY.uid, 'owned by the job user on the host');

  // the root-disk variant: virtio-blk + ext4 built in, the init's switch_root onto the disk
  t.equal(testVmImage(img, true).id, 'wnod-test-mini-disk');
  const dout = collect();
  const d = await runOnce(driver, { id: 'mini2', image: testVmImage(img, true), cpus: 1, memoryMB: 256, hostname: 't-mini2',
    user: { name: 'root', uid: 0, gid: 0 }, env: { PATH: '/bin:/usr/bin' }, network: { mode: 'none' } },
  { argv: ['/bin/sh', '-c', 'mount | grep -q "^/dev/vda on / type ext4" && echo on-disk'], stdout: dout, stderr: collect(), readyTimeoutMs: 180_000 });
  t.equal(d.exitCode, 0);
  t.equal(dout.text(), 'on-disk\n', 'the job ran on the ext4 root disk');
});

t.test('--kernel is checked on the command line', async (t) => {
  await ensureBuilt();
  const r = await wnod(['vm', 'build-test-image', '--kernel', 'vmlinuz']);
  t.equal(r.exitCode, 2);
  t.match(r.stderr, /--kernel must be debian or mini, got 'vmlinuz'/);
  const k = await wnod(['kernel', 'frobnicate']);
  t.equal(k.exitCode, 2);
  t.match(k.stderr, /unknown 'kernel' subcommand 'frobnicate'/);
});
