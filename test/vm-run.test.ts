// Real VMs (TCG) from the builder's test image: what the job sees, what the host keeps, and what is left after
// crashes. Every VM here boots the Debian cloud kernel; the suite boots about a dozen.
import t from 'tap';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { chown, mkdir, readFile, stat, writeFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { PassThrough } from 'node:stream';
import { execa } from 'execa';
import { buildTestImage, testVmImage, type TestImage } from '../src/guest/testImage.js';
import { QemuDriver } from '../src/vm/qemu.js';
import { runOnce } from '../src/vm/session.js';
import { cpioArchive, type CpioEntry } from '../src/vm/cpio.js';
import { readRecord, listRecords } from '../src/vm/state.js';
import { isAlive } from '../src/vm/proc.js';
import { chooseAccel, readVerdict } from '../src/vm/accel.js';
import type { VmImage, VmSpec } from '../src/vm/driver.js';
import { wnod, wnodBin, repoRoot, ensureBuilt } from './kit/cli.js';
import { reachable } from './kit/reachable.js';
import { collect } from './kit/collect.js';
import { settles } from './kit/settles.js';

const NOBODY = { name: 'nobody', uid: 65534, gid: 65534 };
const READY_MS = 180_000; // generous: CI runners are slow and shared; the bound itself is tested below

let img: TestImage;
// a short path of its own (not tap's fixture dir under the repo): QEMU's Unix sockets live below it, < 108 bytes
const root = mkdtempSync(join(tmpdir(), 'wnod-vmtest-'));
chmodSync(root, 0o755); // the job user (nobody) reaches its workdir below
t.teardown(() => rmSync(root, { recursive: true, force: true }));
const stateDir = join(root, 'state');

t.before(async () => {
  await ensureBuilt();
  img = await buildTestImage();
});

function spec(id: string, image: VmImage, extra: Partial<VmSpec> = {}): VmSpec {
  return { id, image, cpus: 1, memoryMB: 256, hostname: `t-${id}`, user: NOBODY, env: { PATH: '/bin:/usr/bin' }, network: { mode: 'none' }, ...extra };
}

/** The test image's initramfs with some files replaced (the appended archive wins). */
async function variant(name: string, entries: CpioEntry[]): Promise<VmImage> {
  const p = join(root, `initrd-${name}.img`);
  await writeFile(p, Buffer.concat([await readFile(img.initrd), cpioArchive(entries)]));
  return { ...testVmImage(img), id: `test-${name}`, files: { kernel: img.kernel, initrd: p } };
}

const sha = async (p: string) => createHash('sha256').update(await readFile(p)).digest('hex');

t.test('one VM, three processes: exit code, stdout/stderr, workdir ownership, TERM, exec as the job user', async (t) => {
  const driver = new QemuDriver({ stateDir, accel: 'tcg' });
  const work = join(root, 'work1');
  await mkdir(work);
  await chown(work, NOBODY.uid, NOBODY.gid);
  let state = await driver.prepare(spec('one', testVmImage(img), { workdir: { hostPath: work, uid: NOBODY.uid, gid: NOBODY.gid }, env: { PATH: '/bin:/usr/bin', FROM_SPEC: 'spec' } }));
  try {
    state = await driver.start(state);
    state = await driver.waitReady(state, READY_MS);
    t.equal(await driver.status(state), 'ready');
    // QEMU dropped to the job user (-runas) after connecting to virtiofsd, which stays root (Debian 12's C virtiofsd)
    const uidOf = async (pid: number) => /^Uid:\t(\d+)\t/m.exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1];
    t.equal(await uidOf(state.pids.qemu!.pid), String(NOBODY.uid), 'QEMU runs as the job user');
    t.equal(await uidOf(state.pids.virtiofsd!.pid), '0', 'virtiofsd runs as root');

    const out = collect(); const err = collect();
    const rc = await driver.exec(state, { argv: ['/bin/sh', '-c', 'echo out; echo "to stderr" >&2; id -u; id -g; echo "$FROM_SPEC $FROM_REQ"; pwd; echo data > made-inside; exit 7'],
      cwd: work, env: { FROM_REQ: 'req' }, user: NOBODY, stdout: out, stderr: err });
    t.equal(rc, 7, 'the in-guest exit code comes back');
    t.equal(out.text(), `out\n65534\n65534\nspec req\n${work}\n`);
    t.equal(err.text(), 'to stderr\n');
    const st = await stat(join(work, 'made-inside'));
    t.equal(st.uid, NOBODY.uid, 'a file written inside is owned by the job user on the host');
    t.equal(st.gid, NOBODY.gid);
    t.equal(await readFile(join(work, 'made-inside'), 'utf8'), 'data\n');

    const big = collect();
    t.equal(await driver.exec(state, { argv: ['/bin/sh', '-c', 'head -c 3000000 /dev/zero | tr "\\0" x; exit 0'], cwd: '/', env: {}, user: NOBODY, stdout: big, stderr: collect() }), 0);
    t.equal(big.text().length, 3_000_000, 'large output arrives complete');

    const ac = new AbortController();
    const tout = new PassThrough();
    let seen = '';
    tout.on('data', (d: Buffer) => { seen += d.toString(); if (seen.includes('started')) ac.abort(); });
    const trc = await driver.exec(state, { argv: ['/bin/sh', '-c', 'trap "echo got-term; exit 42" TERM; echo started; while :; do sleep 0.1; done'],
      cwd: '/', env: {}, user: NOBODY, stdout: tout, stderr: collect(), signal: ac.signal });
    t.equal(trc, 42, 'TERM reached the guest command, which exited with its own status');
    t.match(seen, /got-term/);

    // the job starter: another process, as the job user, finds the VM by its record and execs through the sockets
    await driver.grantAgentAccess(state, NOBODY.uid, NOBODY.gid);
    const starter = `import { readRecord } from '${reachable(repoRoot)}/dist/vm/state.js'; import { execInVm } from '${reachable(repoRoot)}/dist/vm/qemu.js';
      await readRecord(process.argv[1], 'one').catch((e) => console.error('no record access: ' + e.code));
      process.exitCode = await execInVm(process.argv[1], 'one', { argv: ['/bin/sh', '-c', 'echo from-starter $(id -u); exit 3'], cwd: '/', env: {},
        user: { name: 'nobody', uid: 65534, gid: 65534 }, stdout: process.stdout, stderr: process.stderr });`;
      // without NODE_OPTIONS: tap adds its own loader there, from a path the job user may not reach
      const r = await execa('/usr/bin/env', ['-u', 'NODE_OPTIONS', process.execPath, '--input-type=module', '-e', starter, stateDir], { uid: NOBODY.uid, gid: NOBODY.gid, reject: false, timeout: 60_000,
      extendEnv: false, env: { PATH: '/usr/bin:/bin' } }); // not tap's NODE_OPTIONS hooks, which write where nobody may not
    t.equal(r.exitCode, 3, `exec from another process as uid 65534 (stderr: ${r.stderr})`);
    t.equal(r.stdout.trim(), 'from-starter 65534');
    t.match(r.stderr, /no record access/, 'the state record itself stays root-only');
  } finally {
    await driver.destroy(state);
  }
  t.equal(await readRecord(stateDir, 'one'), undefined, 'destroy removed the record');
  t.notOk(existsSync(state.runDir), 'and the runtime dir');
  t.notOk(await isAlive(state.pids.qemu), 'QEMU is gone');
  t.notOk(await isAlive(state.pids.virtiofsd), 'virtiofsd is gone');
  await driver.destroy(state); // idempotent
});

t.test('two VMs at once on one base disk do not see each other\'s writes; the base is never written', async (t) => {
  const driver = new QemuDriver({ stateDir, accel: 'tcg' });
  const before = await sha(img.rootDisk);
  const one = async (name: string) => {
    const out = collect();
    const r = await runOnce(driver, spec(`disk-${name}`, testVmImage(img, true), { user: { name: 'root', uid: 0, gid: 0 } }), {
      argv: ['/bin/sh', '-c', `mount | grep -q "/dev/vda on / " || echo NOT-ON-DISK; echo ${name} > /mark-${name}; sync; sleep 1; ls / | grep mark-`],
      stdout: out, stderr: collect(), readyTimeoutMs: READY_MS,
    });
    return { rc: r.exitCode, out: out.text() };
  };
  const [a, b] = await Promise.all([one('a'), one('b')]);
  t.same(a, { rc: 0, out: 'mark-a\n' });
  t.same(b, { rc: 0, out: 'mark-b\n' });
  t.equal(await sha(img.rootDisk), before, 'the base disk is unchanged');
  t.same(await listRecords(stateDir), [], 'both destroyed');
});

t.test('a guest that never becomes ready fails within its bound; a missing agent is reported as such', async (t) => {
  const driver = new QemuDriver({ stateDir, accel: 'tcg' });
  const hang = await variant('hang', [{ path: 'init', type: 'file', mode: 0o755, data: '#!/bin/sh\nexec /bin/sleep 100000\n' }]);
  await t.rejects(runOnce(driver, spec('hang', hang), { argv: ['/bin/true'], stdout: collect(), stderr: collect(), readyTimeoutMs: 4000 }),
    { code: 'vm-not-ready', reason: 'timeout', message: /did not answer within 4000 ms \(the guest never opened its agent port\)/ });
  t.equal(await readRecord(stateDir, 'hang'), undefined, 'the VM that never became ready is destroyed');

  const noAgent = await variant('noagent', [
    { path: 'usr', type: 'dir', mode: 0o755 }, { path: 'usr/lib', type: 'dir', mode: 0o755 }, { path: 'usr/lib/wnod', type: 'dir', mode: 0o755 },
    { path: 'usr/lib/wnod/wnod-agent', type: 'symlink', mode: 0o777, data: '/nonexistent' },
  ]);
  await t.rejects(runOnce(driver, spec('noagent', noAgent), { argv: ['/bin/true'], stdout: collect(), stderr: collect(), readyTimeoutMs: READY_MS }),
    { code: 'vm-no-agent', message: /without a wnod agent/ });
  t.same(await listRecords(stateDir), []);

  await t.rejects(driver.prepare(spec('notmine', testVmImage(img), { workdir: { hostPath: root, uid: NOBODY.uid, gid: NOBODY.gid } })),
    { code: 'vm-spec', message: /owned by uid 0, not by the job user \(uid 65534\)/ }, 'a workdir the job user does not own is refused');
  t.same(await listRecords(stateDir), [], 'nothing left by the refusal');
});

t.test('kill -9 of the host process at each lifecycle step leaves nothing `wnod gc` cannot clean', async (t) => {
  const sd = join(root, 'state-kill');
  const work = join(root, 'work-kill');
  await mkdir(work);
  const steps = ['prepared', 'started', 'ready', 'exited'] as const;
  const specFile = join(root, 'kill-spec.json');
  await writeFile(specFile, JSON.stringify(spec('x', testVmImage(img, true), { workdir: { hostPath: work, uid: 0, gid: 0 }, user: { name: 'root', uid: 0, gid: 0 } })));
  const victims = await Promise.all(steps.map(async (step) => {
    const id = `kill-${step}`;
    const child = execa(process.execPath, [join(repoRoot, 'test/kit/vm-hold.mjs'), sd, id, step, specFile], { reject: false, buffer: false });
    await new Promise<void>((resolve, reject) => {
      let text = '';
      child.stdout!.on('data', (d: Buffer) => { text += d.toString(); if (text.includes(`AT ${step}`)) resolve(); });
      child.once('exit', () => reject(new Error(`vm-hold ${step} exited early`)));
    });
    const rec = await readRecord(sd, id);
    child.kill('SIGKILL');
    await child;
    return { step, rec: rec! };
  }));
  for (const v of victims) t.ok(v.rec, `a record exists after kill -9 at ${v.step}`);
  t.ok(await isAlive(victims.find((v) => v.step === 'ready')!.rec.pids.qemu), 'the VM of the killed process still runs (detached)');
  const g = await wnod(['gc', '--state-dir', sd, '--json'], { timeoutMs: 60_000 });
  t.equal(g.exitCode, 0, g.stderr);
  const report = JSON.parse(g.stdout) as { destroyed: string[] };
  t.equal(report.destroyed.length, steps.length, `gc destroyed all four: ${report.destroyed.join('; ')}`);
  for (const v of victims) {
    t.notOk(await isAlive(v.rec.pids.qemu), `${v.step}: QEMU gone`);
    t.notOk(await isAlive(v.rec.pids.virtiofsd), `${v.step}: virtiofsd gone`);
    t.notOk(existsSync(v.rec.runDir), `${v.step}: runtime dir (overlay, sockets) gone`);
  }
  t.same(await readdir(join(sd, 'vms')), [], 'no records left');
  const again = await wnod(['gc', '--state-dir', sd], { timeoutMs: 60_000 });
  t.equal(again.stdout.trim(), 'nothing to clean', 'a second gc finds nothing');
});

t.test('CLI: vm run --config --image, through the image cache, with the catalog\'s bounds', async (t) => {
  const sd = join(root, 'state-config');
  const art = async (p: string) => `{ source: ${p}, sha256: ${await sha(p)} }`;
  const cfg = join(root, 'site.yaml');
  await writeFile(cfg, `site: { name: TEST, ce_host: ce.test.org }
images:
  - id: test_kernel
    title: wnod test image
    os: { family: linux, name: Busybox, version: "1" }
    arch: x86_64
    kind: kernel
    kernel: ${await art(img.kernel)}
    initrd: ${await art(img.initrd)}
    disk: { source: file://${img.rootDisk}, sha256: ${await sha(img.rootDisk)}, format: raw }
    cmdline: "wnod.root=/dev/vda"
    cpus: { default: 1, max: 2 }
    memory_mb: { default: 256, max: 512 }
    disk_gb: { default: 1, max: 1 }
policy:
  rules:
    - { name: all, vo: dteam, images: ["*"] }
cache: { dir: ${join(root, 'cache')} }
vm: { state_dir: ${sd}, accel: tcg, ready_timeout_s: 300 }
glue:
  subcluster_dn: GlueSubClusterUniqueID=ce.test.org,GlueClusterUniqueID=ce.test.org,mds-vo-name=resource,o=grid
  computing_service_id: ce.test.org_ComputingElement
  computing_manager_id: ce.test.org_ComputingElement_Manager
`);
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  const r = await wnod(['vm', 'run', '--config', cfg, '--image', 'test_kernel', '--cpus', '2', '--memory', '512', '--',
    '/bin/sh', '-c', 'nproc; mount | grep -c "^/dev/vda on / type ext4"; echo bye >&2; exit 4'], { timeoutMs: 300_000, env });
  t.equal(r.exitCode, 4, r.stderr);
  t.equal(r.stdout.trim(), '2\n1', '2 cpus as asked, root on the per-job overlay of the cached disk');
  t.match(r.stderr, /bye/);
  const over = await wnod(['vm', 'run', '--config', cfg, '--image', 'test_kernel', '--memory', '1024', '--', 'true'], { env });
  t.equal(over.exitCode, 2);
  t.match(over.stderr, /--memory 1024 is outside 64\.\.512/, 'the catalog maximum bounds the request');
  const unknown = await wnod(['vm', 'run', '--config', cfg, '--image', 'nope', '--', 'true'], { env });
  t.equal(unknown.exitCode, 2);
  t.match(unknown.stderr, /image 'nope' is not in the catalog/);
  const list = await wnod(['cache', 'list', '--config', cfg, '--json'], { env });
  t.equal(list.exitCode, 0, list.stderr);
  t.notMatch(list.stdout, /run-/, 'the VM released its cache reference');
  t.same(await listRecords(sd), [], 'and was destroyed');
});

t.test('CLI: vm run --test-image, vms, kill-all; and a bounded accel probe whose verdict is cached', async (t) => {
  const sd = join(root, 'state-cli');
  const r = await wnod(['vm', 'run', '--test-image', '--state-dir', sd, '--', '/bin/sh', '-c', 'echo hello; echo oops >&2; exit 5'], { timeoutMs: 300_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
  t.equal(r.exitCode, 5, r.stderr);
  t.equal(r.stdout.trim(), 'hello');
  t.match(r.stderr, /oops/);
  // the first run of an image and shape builds its template after the command; the next one restores from it
  t.match(r.stderr, /snapshot template [0-9a-f]{32} saved/, 'the first run built a template');
  const again = await wnod(['vm', 'run', '--test-image', '--state-dir', sd, '--snapshot', '--', '/bin/sh', '-c', 'echo again'], { timeoutMs: 300_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
  t.same([again.exitCode, again.stdout], [0, 'again'], again.stderr);
  t.match(again.stderr, /restored from a snapshot/, 'the second run is restored');
  const cold = await wnod(['vm', 'run', '--test-image', '--state-dir', sd, '--cold', '--', 'true'], { timeoutMs: 300_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
  t.same([cold.exitCode, cold.stderr], [0, ''], '--cold boots, builds nothing, says nothing');
  t.equal((await wnod(['vm', 'run', '--test-image', '--snapshot', '--cold', '--', 'true'])).exitCode, 2, '--snapshot and --cold exclude each other');
  const bad = await wnod(['vm', 'run', '--test-image', '--cpus', '99', '--', 'true']);
  t.equal(bad.exitCode, 2);
  t.match(bad.stderr, /--cpus 99 is outside 1\.\.16/);

  // a VM left running by someone: vms lists it, kill-all destroys it
  const driver = new QemuDriver({ stateDir: sd, accel: 'tcg' });
  const s = await driver.start(await driver.prepare(spec('left', testVmImage(img, true))));
  const list = await wnod(['vms', '--json', '--state-dir', sd]);
  const rows = JSON.parse(list.stdout) as Array<{ id: string; running: boolean }>;
  t.same(rows.map((x) => [x.id, x.running]), [['left', true]]);
  const k = await wnod(['kill-all', '--state-dir', sd]);
  t.equal(k.exitCode, 0, k.stderr);
  t.match(k.stdout, /destroyed left/);
  t.notOk(await isAlive(s.pids.qemu));
  t.notOk(existsSync(s.spec.overlay!), 'its overlay is deleted');

  // auto: KVM only if a test boot answers within the bound; the verdict is cached for the next caller
  const probeDir = join(root, 'state-probe');
  await mkdir(probeDir);
  const accel = await chooseAccel({ stateDir: probeDir, mode: 'auto', probeImage: { id: `test-${img.key}`, kernel: img.kernel, initrd: img.initrd }, timeoutMs: 20_000 });
  t.ok(accel === 'kvm' || accel === 'tcg');
  if (existsSync('/dev/kvm')) {
    const v = await readVerdict(probeDir);
    t.equal(v?.accel, accel, `verdict cached: ${v?.reason}`);
    t.equal(await chooseAccel({ stateDir: probeDir, mode: 'auto', probeImage: { id: `test-${img.key}`, kernel: img.kernel, initrd: img.initrd } }), accel);
    t.equal((await readVerdict(probeDir))?.at, v?.at, 'the second call reused the verdict without probing');
  }
  t.same(await listRecords(probeDir), [], 'the probe VM is gone');
});

t.test('exec liveness: a long-ish command outlives several heartbeat bounds; a stopped (wedged) QEMU ends the wait', async (t) => {
  const driver = new QemuDriver({ stateDir, accel: 'tcg' });
  let state = await driver.prepare(spec('wedge', testVmImage(img)));
  // short for the test (the default gives up after minutes): the sleep below spans two and a half silence bounds
  const heartbeat = { everyMs: 1000, silenceMs: 10_000 };
  try {
    state = await driver.start(state);
    state = await driver.waitReady(state, READY_MS);
    const out = collect();
    const rc = await settles(driver.exec(state, { argv: ['/bin/sh', '-c', 'sleep 25; echo done'], cwd: '/', env: {}, user: NOBODY, stdout: out, stderr: collect(), heartbeat }), 300_000);
    t.same([rc, out.text()], [0, 'done\n'], 'the agent answered the heartbeat while the command ran');

    const qemu = state.pids.qemu!;
    const started = new PassThrough();
    let seen = '';
    started.on('data', (d: Buffer) => { seen += d.toString(); if (seen.includes('started')) process.kill(qemu.pid, 'SIGSTOP'); });
    const err = await settles(driver.exec(state, { argv: ['/bin/sh', '-c', 'echo started; exec sleep 600'], cwd: '/', env: {}, user: NOBODY, stdout: started, stderr: collect(), heartbeat }), 300_000)
      .then(() => undefined, (e: Error & { code?: string }) => e);
    t.equal(err?.code, 'vm-agent-unresponsive', `the wait ended: ${err?.message}`);
    t.match(err?.message, /\(QEMU: unknown \([^)]*\); console: .+\)$/, 'the error carries what the host still saw: no QMP answer (QEMU is stopped), the console\'s last lines');
    t.ok(await isAlive(qemu), 'QEMU itself is still there, stopped: neither its pid nor its sockets tell');
  } finally {
    try { process.kill(state.pids.qemu!.pid, 'SIGCONT'); } catch { /* gone already */ }
    await driver.destroy(state);
  }
});

t.test('CLI: vm run whose QEMU is killed during a long command exits 125 with vm-gone, and leaves nothing', async (t) => {
  const sd = join(root, 'state-gone');
  const child = execa(process.execPath, [wnodBin, 'vm', 'run', '--test-image', '--cold', '--state-dir', sd, '--', '/bin/sh', '-c', 'echo started; exec sleep 600'],
    { reject: false, timeout: 300_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
  await new Promise<void>((resolve, reject) => {
    let text = '';
    child.stdout!.on('data', (d: Buffer) => { text += d.toString(); if (text.includes('started')) resolve(); });
    child.once('exit', () => reject(new Error('vm run ended before its command started')));
  });
  const [rec] = await listRecords(sd);
  process.kill(rec!.pids.qemu!.pid, 'SIGKILL');
  const r = await child;
  t.equal(r.exitCode, 125, 'the VM failed, not the command');
  t.match(String(r.stderr), /^wnod vm run: vm-gone: exec: the VM's hypervisor exited while the command ran/m);
  t.same(await listRecords(sd), [], 'the VM was destroyed');
});

t.test('the agent waits for its ports: a guest whose virtio-serial ports show up late still serves its job', async (t) => {
  // the ports appear, and get their names, asynchronously after virtio_console loads; here they stay hidden for 2 s
  const late = await variant('lateports', [
    { path: 'usr', type: 'dir', mode: 0o755 }, { path: 'usr/lib', type: 'dir', mode: 0o755 }, { path: 'usr/lib/wnod', type: 'dir', mode: 0o755 },
    { path: 'usr/lib/wnod/agent-under-test', type: 'file', mode: 0o755, data: await readFile(join(repoRoot, 'guest/wnod-agent')) },
    { path: 'usr/lib/wnod/wnod-agent', type: 'file', mode: 0o755,
      data: '#!/bin/sh\nmount -t tmpfs none /sys/class/virtio-ports\n(sleep 2; umount /sys/class/virtio-ports) &\nexec /usr/lib/wnod/agent-under-test\n' },
  ]);
  const driver = new QemuDriver({ stateDir, accel: 'tcg' });
  const out = collect();
  const r = await runOnce(driver, spec('lateports', late), { argv: ['/bin/sh', '-c', 'echo up'], stdout: out, stderr: collect(), readyTimeoutMs: READY_MS });
  t.same([r.exitCode, out.text()], [0, 'up\n'], 'the agent found its ports once they appeared');
  t.same(await listRecords(stateDir), []);
});
