// The libvirt driver against a real libvirtd (a private one in its own mount namespace, test/kit/libvirtd.ts)
// booting the real test image under TCG. Skipped, with the reason printed, where the daemon or the image cannot be had.
import t from 'tap';
import { mkdtemp, mkdir, chown, readFile, stat, writeFile, readdir, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PassThrough } from 'node:stream';
import { execa } from 'execa';
import { startPrivateLibvirtd, libvirtdUnavailable, type PrivateLibvirtd } from './kit/libvirtd.js';
import { buildTestImage, testVmImage, type TestImage } from '../src/guest/testImage.js';
import { LibvirtDriver, domainName, statusFrom, domainNetwork } from '../src/vm/libvirtDriver.js';
import { VmNotReadyError } from '../src/vm/errors.js';
import { readRecord } from '../src/vm/state.js';
import type { VmSpec } from '../src/vm/driver.js';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const user = { name: 'wnodtest', uid: 4242, gid: 4242 };

function collect(): { stream: PassThrough; text: () => string } {
  const chunks: Buffer[] = [];
  const stream = new PassThrough();
  stream.on('data', (b: Buffer) => chunks.push(b));
  return { stream, text: () => Buffer.concat(chunks).toString('utf8') };
}

t.test('pure: status and network mapping', async (t) => {
  t.equal(statusFrom('running', { prepared: 'x', started: 'x' }), 'running');
  t.equal(statusFrom('running', { started: 'x', ready: 'x' }), 'ready');
  t.equal(statusFrom('absent', { prepared: 'x' }), 'prepared', 'never started');
  t.equal(statusFrom('absent', { started: 'x', ready: 'x' }), 'stopped', 'a transient domain vanishes when it stops');
  t.equal(statusFrom('shut off', { started: 'x' }), 'stopped');
  t.equal(statusFrom('absent', { started: 'x', destroyed: 'x' }), 'destroyed');
  const spec = { id: 'a', network: { mode: 'bridge', bridge: 'br0', mac: '52:54:00:00:00:07' } } as VmSpec;
  t.same(domainNetwork(spec, true, '10.1.0.7'), { mode: 'bridge', bridge: 'br0', mac: '52:54:00:00:00:07', filter: true, ip: '10.1.0.7' });
  t.same(domainNetwork({ ...spec, network: { mode: 'user' } }, true, undefined), { mode: 'user', mac: '52:54:00:12:34:56' });
  t.throws(() => domainNetwork({ ...spec, network: { mode: 'bridge', bridge: 'br0' } }, true, undefined), /fixed MAC/);
  t.equal(domainName('13.host'), 'wnod-13.host');
});

t.test('an unreachable libvirt is not an absent domain: status unknown, destroy throws and keeps the record', async (t) => {
  if (!existsSync('/usr/bin/virsh')) {
    t.skip('virsh is not installed (scripts/install-deps.sh installs libvirt-clients)', () => {});
    return;
  }
  const stateDir = await mkdtemp('/tmp/wnod-lvu-');
  t.teardown(() => rm(stateDir, { recursive: true, force: true }));
  const driver = new LibvirtDriver({ stateDir, uri: `qemu+unix:///system?socket=${stateDir}/no-such-sock`, accel: 'tcg', virshTimeoutMs: 20_000 });
  const kernel = join(stateDir, 'vmlinux');
  await writeFile(kernel, 'not booted in this test');
  const st = await driver.prepare({ id: 'u1', image: { id: 'x', digest: 'd', kind: 'kernel', files: { kernel } }, cpus: 1, memoryMB: 256,
    hostname: 'wn-u1', user: { name: 'root', uid: 0, gid: 0 }, env: {}, network: { mode: 'none' } });
  t.equal(await driver.status(st), 'unknown');
  await t.rejects(driver.destroy(st), { code: 'virsh-failed' });
  t.ok(await readRecord(stateDir, 'u1'), 'the record stays for a later destroy or wnod gc');
  await t.rejects(driver.start(st), { code: 'vm-start' });
});

t.test('with a real libvirtd', async (t) => {
  const why = await libvirtdUnavailable();
  if (why) {
    t.comment(`libvirtd cannot run here: ${why}`);
    t.skip(`libvirtd cannot run here: ${why}`, () => {});
    return;
  }
  let image: TestImage;
  try {
    image = await buildTestImage({ log: (s) => t.comment(s) });
  } catch (err) {
    t.skip(`the test image cannot be built here: ${(err as Error).message}`, () => {});
    return;
  }
  let t0 = Date.now();
  const daemon: PrivateLibvirtd = await startPrivateLibvirtd();
  t.comment(`private libvirtd up in ${Date.now() - t0} ms (includes libvirt's QEMU capability probe): ${daemon.uri}`);
  const base = await mkdtemp('/tmp/wnod-lvt-');
  t.teardown(async () => {
    await daemon.stop();
    await rm(base, { recursive: true, force: true });
  });
  const stateDir = join(base, 'state');
  const driver = new LibvirtDriver({ stateDir, uri: daemon.uri, accel: 'tcg' });

  const spec = async (id: string, withDisk = false): Promise<VmSpec> => {
    const workdir = join(base, `work-${id}`);
    await mkdir(workdir);
    await chown(workdir, user.uid, user.gid);
    return {
      id, jobId: `${id}.ce.example.org`, image: testVmImage(image, withDisk), cpus: 1, memoryMB: 512,
      workdir: { hostPath: workdir, uid: user.uid, gid: user.gid }, hostname: `wn-${id}`, user,
      env: { WNOD_FROM_SPEC: 'spec' }, network: { mode: 'none' },
    };
  };

  t.test('libvirt accepts the golden domain XML (virsh define --validate = its own RNG schema)', async (t) => {
    const dir = join(root, 'test/golden/libvirt');
    for (const f of (await readdir(dir)).filter((x) => x.endsWith('.xml'))) {
      const r = await execa('virsh', ['-c', daemon.uri, 'define', '--validate', join(dir, f)], { reject: false, env: { LC_ALL: 'C' } });
      t.equal(r.exitCode, 0, `${f}: ${r.stderr.trim() || 'defined'}`);
      const name = /Domain '([^']+)' defined/.exec(r.stdout)?.[1];
      if (name) await execa('virsh', ['-c', daemon.uri, 'undefine', name]);
    }
  });

  t.test('a job VM: exec with exit code and output back, workdir shared, stop, destroy twice', async (t) => {
    const s = await spec('lv1');
    t0 = Date.now();
    let st = await driver.prepare(s);
    t.equal(await driver.status(st), 'prepared');
    const xml = await readFile(join(st.runDir, 'domain.xml'), 'utf8');
    t.match(xml, /<domain type="qemu">/, 'TCG: plain qemu domain type');
    t.match(xml, /machine="q35"/);
    st = await driver.start(st);
    const started = Date.now() - t0;
    await driver.grantAgentAccess(st, user.uid, user.gid);
    t.equal((await stat(st.sockets.control)).uid, user.uid, 'the job user owns the agent sockets');
    st = await driver.waitReady(st, 120_000);
    const ready = Date.now() - t0;
    t.equal(await driver.status(st), 'ready');

    const out = collect();
    const err = collect();
    const t1 = Date.now();
    const rc = await driver.exec(st, {
      argv: ['/bin/sh', '-c', 'echo "hello $WNOD_FROM_SPEC $JOBVAR"; echo oops >&2; id -u > from-guest.txt; pwd >> from-guest.txt; exit 7'],
      cwd: s.workdir!.hostPath, env: { JOBVAR: 'job' }, user, stdout: out.stream, stderr: err.stream, timeoutMs: 60_000,
    });
    const execMs = Date.now() - t1;
    t.equal(rc, 7, 'the guest command\'s exit code comes back');
    t.equal(out.text(), 'hello spec job\n', 'stdout, with spec and request environment');
    t.equal(err.text(), 'oops\n', 'stderr apart');
    const shared = join(s.workdir!.hostPath, 'from-guest.txt');
    t.equal(await readFile(shared, 'utf8'), `${user.uid}\n${s.workdir!.hostPath}\n`, 'ran as the job user in the shared workdir');
    t.equal((await stat(shared)).uid, user.uid, 'the file belongs to the job user on the host too');

    const t2 = Date.now();
    await driver.stop(st, 10_000);
    const stopMs = Date.now() - t2;
    t.equal(await driver.status(st), 'stopped', 'stopped: the transient domain is gone, the record remains');
    const t3 = Date.now();
    await driver.destroy(st);
    const destroyMs = Date.now() - t3;
    await driver.destroy(st);
    t.pass('destroy twice without error');
    t.equal(await driver.status(st), 'destroyed');
    t.notOk(existsSync(st.runDir), 'runtime dir removed');
    t.equal(await readRecord(stateDir, 'lv1'), undefined, 'record removed');
    t.comment(JSON.stringify({ figure: 'libvirt-job-vm', accel: 'tcg', startMs: started, readyMs: ready, execMs, stopMs, destroyMs }));
  });

  t.test('the epilogue path: destroy a running VM with a root-disk overlay and user network, then again; nothing left', async (t) => {
    let st = await driver.prepare({ ...(await spec('lv2', true)), network: { mode: 'user' } });
    t.ok(st.spec.overlay && existsSync(st.spec.overlay), 'per-job overlay created');
    t.match(await readFile(join(st.runDir, 'domain.xml'), 'utf8'), /type="qcow2"/);
    st = await driver.start(st);
    st = await driver.waitReady(st, 120_000);
    const out = collect();
    const rc = await driver.exec(st, { argv: ['/bin/sh', '-c', 'grep -c " / ext4 " /proc/mounts; cat /sys/class/net/eth0/address; ip -4 addr show dev eth0'],
      cwd: '/', env: {}, user: { name: 'root', uid: 0, gid: 0 }, stdout: out.stream, stderr: collect().stream, timeoutMs: 60_000 });
    t.equal(rc, 0);
    const [mounts, mac, ...addr] = out.text().split('\n');
    t.equal(mounts, '1', 'running on the root disk (switch_root onto the overlay)');
    t.equal(mac, '52:54:00:12:34:56', 'libvirt user network with the fixed MAC');
    t.match(addr.join('\n'), /inet 10\.0\.2\.15\/24/, 'the guest took the slirp address from its context');
    const t0 = Date.now();
    await driver.destroy(st);
    t.comment(JSON.stringify({ figure: 'libvirt-destroy-running', ms: Date.now() - t0 }));
    t.equal((await execa('virsh', ['-c', daemon.uri, 'domstate', domainName('lv2')], { reject: false })).exitCode, 1, 'libvirt no longer knows the domain');
    t.notOk(existsSync(st.spec.overlay!), 'overlay deleted');
    await driver.destroy(st);
    t.equal(await driver.status(st), 'destroyed');
  });

  t.test('a VM destroyed before it ever started, twice', async (t) => {
    const st = await driver.prepare(await spec('lv3'));
    await driver.destroy(st);
    await driver.destroy(st);
    t.equal(await driver.status(st), 'destroyed');
    t.notOk(existsSync(st.runDir));
  });

  t.test('a guest that dies before its agent answers is reported at once, not after the timeout', async (t) => {
    const broken = join(base, 'broken-initrd');
    await writeFile(broken, 'not a cpio archive');
    const s = await spec('lv4');
    s.image = { ...s.image, id: 'broken', files: { kernel: image.kernel, initrd: broken } };
    let st = await driver.prepare(s);
    st = await driver.start(st);
    // reason 'exited' (not 'timeout') is the proof that the dead domain was noticed before the bound
    const err = await driver.waitReady(st, 300_000).then(() => undefined, (e: unknown) => e);
    t.ok(err instanceof VmNotReadyError, 'VmNotReadyError');
    t.equal((err as VmNotReadyError).reason, 'exited', (err as Error).message);
    t.match((err as VmNotReadyError).consoleTail, /Kernel panic|VFS|Initramfs|init/i, 'the console tail travels with the error');
    await driver.destroy(st);
  });
});
