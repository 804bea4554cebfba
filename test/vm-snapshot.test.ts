// Warm snapshots with real QEMU (TCG): a template per image and shape, clones restored from it that get their own
// entropy, clock and user, the fallbacks to a cold boot (stale, corrupted, refused), and the agent's one-way LOCK.
import t from 'tap';
import { chown, cp, mkdir, open, readFile, readdir, readlink, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { connect, createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { buildTestImage, testVmImage, type TestImage } from '../src/guest/testImage.js';
import { QemuDriver } from '../src/vm/qemu.js';
import { runOnce } from '../src/vm/session.js';
import { buildTemplate, lookupTemplate, templateKey, maskedArgs, restoreBlocker, restoreTimeoutMs, snapshotPlan, templateLacks, templateNetwork, templateSpec, TEMPLATE_JOB_MAC } from '../src/vm/snapshot.js';
import { qemuArgs } from '../src/vm/qemuArgs.js';
import { agentCaps, agentExec, agentSetup, lockAgent, EXIT_LOCKED } from '../src/vm/agent.js';
import { cpioArchive } from '../src/vm/cpio.js';
import { listRecords } from '../src/vm/state.js';
import { QmpClient } from '../src/vm/qmp.js';
import { ramDigest } from '../src/vm/templateRam.js';
import { isAlive } from '../src/vm/proc.js';
import { killStragglers } from '../src/job/vmEngine.js';
import type { VmImage, VmSpec, VmState } from '../src/vm/driver.js';
import { collect } from './kit/collect.js';

const NOBODY = { name: 'nobody', uid: 65534, gid: 65534 };
const QEMU = 'qemu-system-x86_64';

let img: TestImage;
// a short path of its own (not tap's fixture dir under the repo): QEMU's Unix sockets live below it, < 108 bytes
const root = mkdtempSync(join(tmpdir(), 'wnod-snap-'));
chmodSync(root, 0o755); // the job user (nobody) reaches its workdir below
t.teardown(() => rmSync(root, { recursive: true, force: true }));
const stateDir = join(root, 'st');
const tpl = join(stateDir, 'templates');

t.before(async () => {
  img = await buildTestImage();
});

function spec(id: string, extra: Partial<VmSpec> = {}): VmSpec {
  return { id, image: testVmImage(img), cpus: 1, memoryMB: 256, hostname: `h-${id}`, user: NOBODY, env: { PATH: '/bin:/usr/bin', FROM_SPEC: 'spec' },
    network: { mode: 'none' }, accel: 'tcg', ...extra };
}

/** Run one job through the driver; the boot mode and cold reason the state record carried. */
async function job(driver: QemuDriver, s: VmSpec, argv: string[]) {
  const out = collect();
  const err = collect();
  let extra: VmState['extra'];
  const r = await runOnce(driver, s, { argv, stdout: out, stderr: err, readyTimeoutMs: 120_000, onStep: (step, st) => { if (step === 'ready') extra = { ...st.extra }; } });
  return { rc: r.exitCode, out: out.text(), err: err.text(), boot: extra?.boot, reason: extra?.coldReason, template: extra?.template, timings: r.timings };
}

t.test('pure: the key covers shape and image; per-VM paths are masked; what cannot be snapshotted', async (t) => {
  const base = { digest: 'd1', files: { kernel: '1:2:3' }, qemu: 'q', args: maskedArgs(spec('a'), 'tcg', 2000000) };
  t.equal(templateKey(base), templateKey({ ...base, args: maskedArgs(spec('other-id', { hostname: 'x' }), 'tcg', 2000000) }), 'id and hostname are not part of it');
  t.not(templateKey(base), templateKey({ ...base, args: maskedArgs(spec('a', { memoryMB: 512 }), 'tcg', 2000000) }), 'memory is');
  t.not(templateKey(base), templateKey({ ...base, args: maskedArgs(spec('a', { cpus: 2 }), 'tcg', 2000000) }), 'cpus are');
  t.not(templateKey(base), templateKey({ ...base, args: maskedArgs(spec('a', { network: { mode: 'user' } }), 'tcg', 2000000) }), 'the network is');
  t.not(templateKey(base), templateKey({ ...base, digest: 'd2' }), 'the image digest is');
  t.not(templateKey(base), templateKey({ ...base, qemu: 'q2' }), 'the QEMU binary is');
  t.notMatch(maskedArgs(spec('a'), 'tcg', 1).join(' '), /-incoming|h-a|\/st\//, 'no per-VM value in the masked args');
  t.match(restoreBlocker(spec('a', { image: testVmImage(img, true) })), /root disk/);
  t.equal(restoreBlocker(spec('a')), undefined);

  // a job NIC: part of the key, but not the job's tap, MAC or addresses; its template sits on no host network
  const nic = (tap: string, mac: string, ip: string) => ({ mode: 'none' as const, job: { tap, mac, ip, mtu: 1450, hosts: [{ name: 'vm0', ip: ip.split('/')[0]! }] } });
  const j1 = spec('a', { network: nic('wnt001', '02:00:1e:de:00:00', '10.9.0.1/24') });
  const j2 = spec('b', { network: nic('wnt002', '02:00:1e:df:00:01', '10.9.1.2/24') });
  t.equal(restoreBlocker(j1), undefined, 'a VM on a job network can be restored');
  t.equal(templateKey({ ...base, args: maskedArgs(j1, 'tcg', 2000000) }), templateKey({ ...base, args: maskedArgs(j2, 'tcg', 2000000) }), 'every job network shares one template');
  t.not(templateKey(base), templateKey({ ...base, args: maskedArgs(j1, 'tcg', 2000000) }), 'a job NIC is part of the key');
  const masked = maskedArgs(j1, 'tcg', 1).join(' ');
  t.match(masked, `hubport,id=net1,hubid=1 -device virtio-net-device,netdev=net1,mac=${TEMPLATE_JOB_MAC},id=jobnic`, 'the template\'s NIC: no host side, the template MAC');
  t.notMatch(masked, /wnt001|02:00:1e|10\.9\./, 'nothing of the job in the template');
  const clone = qemuArgs(snapshotPlan({ spec: j1, accel: 'tcg', khz: 1, runDir: '/R', initrd: '/T/i', ninep: '/W', incoming: 'defer', ram: { path: '/T/ram', share: false } })).join(' ');
  t.match(clone, 'tap,id=net1,ifname=wnt001,script=no,downscript=no -device virtio-net-device,netdev=net1,mac=02:00:1e:de:00:00,id=jobnic', 'the clone: the job\'s tap and MAC on the same device');
  t.equal(templateNetwork(j1), 'none+job');
  const req = templateSpec(j1);
  t.equal(req.network.job?.mac, TEMPLATE_JOB_MAC, 'a build request carries no job MAC');
  t.same(req.network.job?.hosts, [], 'nor the job\'s hosts');
  t.equal(templateLacks(j1, ['setup', 'lock', 'reseed']), 'the snapshot template\'s guest agent cannot set up a job network');
  t.equal(templateLacks(j1, ['setup', 'lock', 'reseed', 'jobnet']), undefined);
  t.ok(restoreTimeoutMs(j1) > restoreTimeoutMs(spec('a')), 'a job NIC\'s SETUP (the job\'s ssh server) gets longer before a cold fallback');
});

t.test('restored clones: the job runs as its user with its env and exit code; fresh entropy and clock per clone', async (t) => {
  const b = await buildTemplate({ dir: tpl, qemu: QEMU, spec: spec('tpl'), accel: 'tcg' });
  t.equal(b.status, 'built', JSON.stringify(b));
  const again = await buildTemplate({ dir: tpl, qemu: QEMU, spec: spec('tpl'), accel: 'tcg' });
  t.equal(again.status, 'exists', 'a second build finds the template');
  const found = await lookupTemplate(tpl, b.key);
  t.equal(found.status, 'ready');
  if (found.status === 'ready') t.ok(found.meta.caps.includes('reseed') && found.meta.caps.includes('lock'), `caps ${found.meta.caps.join(' ')}`);
  t.equal((await stat(join(tpl, b.key))).mode & 0o077, 0, 'the template is root-only');

  const driver = new QemuDriver({ stateDir, accel: 'tcg', snapshots: { dir: tpl } });
  const argv = ['/bin/sh', '-c', 'id -u; id -g; hostname; echo "$FROM_SPEC"; date +%s; head -c 32 /dev/urandom | od -An -tx1 | tr -d " \\n"; echo; ls -l /proc/$$/fd | grep -c vport; exit 7'];
  const before = Date.now() / 1000;
  const [a, c] = await Promise.all([job(driver, spec('c1'), argv), job(driver, spec('c2'), argv)]);
  const now = Date.now() / 1000;
  for (const [name, r] of [['c1', a], ['c2', c]] as const) {
    t.equal(r.boot, 'restore', `${name} was restored (${r.reason ?? ''})`);
    t.equal(r.rc, 7, `${name}: the exit code comes back`);
    const [uid, gid, host, env, clock] = r.out.split('\n');
    t.same([uid, gid, host, env], ['65534', '65534', `h-${name}`, 'spec'], `${name}: user, group, hostname, environment`);
    // the guest read its clock while the job ran: between the host's clock before the start and after the end (±2 s),
    // not the template's frozen time — a bound on order, not on how fast the machine is
    const g = Number(clock);
    t.ok(g >= before - 2 && g <= now + 2, `${name}: guest clock ${clock} within [${before.toFixed(0)}, ${now.toFixed(0)}] ± 2 s`);
  }
  const rnd = (r: typeof a) => r.out.split('\n')[5]!;
  t.match(rnd(a), /^[0-9a-f]{64}$/);
  t.not(rnd(a), rnd(c), 'two clones of one template read different /dev/urandom bytes');
  t.equal(a.out.split('\n')[6], '2', 'the job holds its stdout and stderr ports only, not the agent\'s control port');
  t.same(await listRecords(stateDir), [], 'both destroyed');
  t.equal(found.status === 'ready' && (await stat(join(tpl, b.key, 'snapshot'))).size, found.status === 'ready' && found.meta.snapshotBytes, 'the template is never written to');
});

t.test('no template, a stale template, a changed shape: cold boot with the reason, a build request, never the old one', async (t) => {
  const asked: Array<{ key: string; memoryMB: number }> = [];
  const driver = new QemuDriver({ stateDir, accel: 'tcg', snapshots: { dir: tpl, onMissing: (s, key) => { asked.push({ key, memoryMB: s.memoryMB }); } } });
  const first = (await readdir(tpl)).filter((n) => /^[0-9a-f]{32}$/.test(n));
  t.equal(first.length, 1);
  const r = await job(driver, spec('shape', { memoryMB: 320 }), ['/bin/sh', '-c', 'exit 3']);
  t.same([r.boot, r.rc], ['cold', 3]);
  t.match(r.reason, /no snapshot template yet/);
  t.equal(asked.length, 1, 'a build was requested');
  t.not(asked[0]!.key, first[0], 'for another key than the 256 MB template');

  // a new image (digest) of the same id and shape: the old template is not used, and a new build replaces it
  const newer: VmImage = { ...testVmImage(img), digest: `${img.key}-v2` };
  const r2 = await job(driver, spec('stale', { image: newer }), ['/bin/true']);
  t.same([r2.boot, r2.rc], ['cold', 0], 'the stale template is not used');
  const b = await buildTemplate({ dir: tpl, qemu: QEMU, spec: spec('tpl2', { image: newer }), accel: 'tcg' });
  t.equal(b.status, 'built');
  t.equal(b.key, r2.template, 'the rebuilt template has the key the job asked for');
  t.notOk(existsSync(join(tpl, first[0]!)), 'the old template of the same image id and shape is gone');
  const r3 = await job(driver, spec('fresh', { image: newer }), ['/bin/true']);
  t.same([r3.boot, r3.rc], ['restore', 0], 'the next job restores from the rebuilt template');
});

t.test('a corrupted or truncated snapshot: the job still runs, by cold boot, and the reason is recorded', async (t) => {
  const dir2 = join(stateDir, 'templates-broken');
  await mkdir(dir2, { mode: 0o700 });
  const key = (await readdir(tpl)).find((n) => /^[0-9a-f]{32}$/.test(n))!;
  await cp(join(tpl, key), join(dir2, key), { recursive: true });
  await cp(join(tpl, 'qemu-version.json'), join(dir2, 'qemu-version.json'));
  const snap = join(dir2, key, 'snapshot');
  const fh = await open(snap, 'r+');
  await fh.write(Buffer.alloc(4096, 0x5a), 0); // the stream header and the first section: QEMU refuses the stream
  await fh.close();
  const driver = new QemuDriver({ stateDir, accel: 'tcg', snapshots: { dir: dir2 } });
  const newer: VmImage = { ...testVmImage(img), digest: `${img.key}-v2` };
  const r = await job(driver, spec('broken', { image: newer }), ['/bin/sh', '-c', 'echo ran; exit 5']);
  t.same([r.boot, r.rc, r.out], ['cold', 5, 'ran\n'], 'cold boot after the failed restore');
  t.match(r.reason, /^restore failed: /, `reason: ${r.reason}`);

  const { size } = await stat(snap);
  await truncate(snap, size - 1000);
  const r2 = await job(driver, spec('trunc', { image: newer }), ['/bin/true']);
  t.same([r2.boot, r2.rc], ['cold', 0]);
  t.match(r2.reason, /restore failed: snapshot size/);
  t.same(await listRecords(stateDir), [], 'nothing left behind');
});

t.test('a guest that cannot reseed is refused at build time and remembered; jobs cold boot with that reason', async (t) => {
  const p = join(root, 'initrd-noreseed.img');
  // the appended archive wins: the helper becomes a non-executable file
  await writeFile(p, Buffer.concat([await readFile(img.initrd), cpioArchive([
    { path: 'usr', type: 'dir', mode: 0o755 }, { path: 'usr/lib', type: 'dir', mode: 0o755 }, { path: 'usr/lib/wnod', type: 'dir', mode: 0o755 },
    { path: 'usr/lib/wnod/wnod-reseed', type: 'file', mode: 0o644, data: 'not a program\n' }])]));
  const noReseed: VmImage = { ...testVmImage(img), id: 'noreseed', digest: 'noreseed', files: { kernel: img.kernel, initrd: p } };
  const b = await buildTemplate({ dir: tpl, qemu: QEMU, spec: spec('nr', { image: noReseed }), accel: 'tcg' });
  t.equal(b.status, 'refused');
  t.match(b.status === 'refused' && b.reason, /lacks reseed/);
  t.ok(existsSync(join(tpl, `${b.key}.refused.json`)), 'remembered');
  const t0 = Date.now();
  const again = await buildTemplate({ dir: tpl, qemu: QEMU, spec: spec('nr', { image: noReseed }), accel: 'tcg' });
  t.equal(again.status, 'refused', 'not retried');
  t.ok(Date.now() - t0 < 3000, 'without booting a VM');
  let asked = 0;
  const driver = new QemuDriver({ stateDir, accel: 'tcg', snapshots: { dir: tpl, onMissing: () => { asked++; } } });
  const r = await job(driver, spec('nrjob', { image: noReseed }), ['/bin/true']);
  t.same([r.boot, r.rc], ['cold', 0]);
  t.match(r.reason, /snapshot template refused: .*lacks reseed/);
  t.equal(asked, 0, 'no new build request for a refused key');
});

t.test('the agent\'s one-way LOCK: no EXEC as another uid, no SETUP or LOCK after it; the workdir without 9p cold boots', async (t) => {
  const work = join(root, 'work-lock');
  await mkdir(work);
  await chown(work, NOBODY.uid, NOBODY.gid);
  const driver = new QemuDriver({ stateDir, accel: 'tcg', snapshots: { dir: tpl } });
  const newer: VmImage = { ...testVmImage(img), digest: `${img.key}-v2` };
  // restored VM (no workdir) and a cold one (the Debian test kernel has no 9p: the workdir needs a cold boot)
  for (const [id, extra] of [['lock-r', {}], ['lock-c', { workdir: { hostPath: work, uid: NOBODY.uid, gid: NOBODY.gid } }]] as const) {
    let state = await driver.prepare(spec(id, { image: newer, ...extra }));
    try {
      state = await driver.start(state);
      state = await driver.waitReady(state, 120_000);
      if (id === 'lock-r') t.equal(state.extra?.boot, 'restore');
      else {
        t.equal(state.extra?.boot, 'cold');
        t.match(state.extra?.coldReason, /no 9p/);
      }
      t.ok((await agentCaps(state.sockets.control, 5000)).includes('lock'));
      await driver.grantAgentAccess(state, NOBODY.uid, NOBODY.gid); // sends LOCK 65534 65534
      const out = collect(); const err = collect();
      const rc = await agentExec(state.sockets, { argv: ['/bin/sh', '-c', 'id -u'], cwd: '/', env: {}, uid: 0, gid: 0, stdout: out, stderr: err });
      t.equal(rc, EXIT_LOCKED, `${id}: EXEC as uid 0 is refused with ${EXIT_LOCKED}`);
      t.match(err.text(), /locked to uid 65534 gid 65534; refusing to run as uid 0/);
      t.equal(out.text(), '', 'nothing ran');
      const rc2 = await agentExec(state.sockets, { argv: ['/bin/sh', '-c', 'id -u'], cwd: '/', env: {}, uid: 65534, gid: 0, stdout: collect(), stderr: collect() });
      t.equal(rc2, EXIT_LOCKED, 'the gid must match too');
      const ok = collect();
      t.equal(await agentExec(state.sockets, { argv: ['/bin/sh', '-c', 'id -u'], cwd: '/', env: {}, uid: 65534, gid: 65534, stdout: ok, stderr: collect() }), 0);
      t.equal(ok.text(), '65534\n', 'the locked uid runs');
      await t.rejects(lockAgent(state.sockets.control, 0, 0), { message: /refused/ }, 'a second LOCK is refused');
      await t.rejects(agentSetup(state.sockets.control, () => "WNOD_HOSTNAME='x'\n", 5000), { message: /refused/ }, 'SETUP after LOCK is refused');
    } finally {
      await driver.destroy(state);
    }
  }
});

t.test('mini kernel: a restored clone mounts the job\'s workdir over 9p (pinned fd), files land owned by the user', async (t) => {
  const mini = await buildTestImage({ kernel: 'mini' });
  const image = testVmImage(mini);
  const b = await buildTemplate({ dir: tpl, qemu: QEMU, spec: spec('tpl-mini', { image }), accel: 'tcg' });
  t.equal(b.status, 'built', JSON.stringify(b));
  const found = await lookupTemplate(tpl, b.key);
  t.ok(found.status === 'ready' && found.meta.caps.includes('9p'), 'the mini guest offers 9p');
  const work = join(root, 'work-9p');
  await mkdir(work);
  await chown(work, NOBODY.uid, NOBODY.gid);
  const driver = new QemuDriver({ stateDir, accel: 'tcg', snapshots: { dir: tpl } });
  const r = await job(driver, spec('ninep', { image, workdir: { hostPath: work, uid: NOBODY.uid, gid: NOBODY.gid } }),
    ['/bin/sh', '-c', `cd ${work} && pwd && id -u && echo data > made-inside && grep " ${work} " /proc/mounts; exit 4`]);
  t.equal(r.boot, 'restore', `restored (${r.reason ?? ''})`);
  t.equal(r.rc, 4);
  const [pwd, uid, mount] = r.out.split('\n');
  t.same([pwd, uid], [work, '65534'], 'the job ran in its workdir as its user');
  t.match(mount, /^wnodwork \S+ 9p .*nosuid,nodev/, `mounted 9p nosuid,nodev: ${mount}`);
  const st = await stat(join(work, 'made-inside'));
  t.same([st.uid, st.gid], [NOBODY.uid, NOBODY.gid], 'the file is the job user\'s on the host');
  t.equal(await readFile(join(work, 'made-inside'), 'utf8'), 'data\n');
  t.same(await listRecords(stateDir), []);
});

t.test('a restored clone\'s QEMU runs as the job user: guest root cannot make root files in the 9p workdir', async (t) => {
  const image = testVmImage(await buildTestImage({ kernel: 'mini' }));
  const b = await buildTemplate({ dir: tpl, qemu: QEMU, spec: spec('tpl-mini', { image }), accel: 'tcg' });
  t.ok(b.status === 'built' || b.status === 'exists', JSON.stringify(b));
  const work = join(root, 'work-runas');
  await mkdir(work);
  await chown(work, NOBODY.uid, NOBODY.gid);
  const driver = new QemuDriver({ stateDir, accel: 'tcg', snapshots: { dir: tpl } });
  let state = await driver.prepare(spec('runas', { image, workdir: { hostPath: work, uid: NOBODY.uid, gid: NOBODY.gid } }));
  try {
    state = await driver.start(state);
    state = await driver.waitReady(state, 120_000);
    t.equal(state.extra?.boot, 'restore', `restored (${state.extra?.coldReason ?? ''})`);
    const status = await readFile(`/proc/${state.pids.qemu!.pid}/status`, 'utf8');
    t.match(status, /^Uid:\t65534\t65534\t65534\t65534$/m, 'QEMU runs as the job user (real, effective, saved, fs)');
    t.match(status, /^Gid:\t65534\t65534\t65534\t65534$/m, 'and its group');
    t.match(status, /^Groups:\t65534\s*$/m, 'with no supplementary group of root\'s');
    t.equal((await readFile(join(state.runDir, 'qemu.pid'), 'utf8')).trim(), String(state.pids.qemu!.pid), 'the pidfile (written before the drop) names it');
    const qmp = await QmpClient.connect(state.sockets.qmp!, 5000);
    try {
      t.match(await qmp.execute('query-status'), { status: 'running' }, 'root still talks QMP to it');
    } finally {
      qmp.close();
    }
    const own = collect();
    t.equal(await driver.exec(state, { argv: ['/bin/sh', '-c', `cd ${work} && echo mine > by-user && mkdir sub && echo z > sub/f && chmod 640 by-user`],
      cwd: '/', env: {}, user: NOBODY, stdout: own, stderr: own }), 0, `the job user\'s own files work (${own.text().trim()})`);
    const mine = await stat(join(work, 'sub', 'f'));
    t.same([mine.uid, mine.gid], [NOBODY.uid, NOBODY.gid]);
    t.equal((await stat(join(work, 'by-user'))).mode & 0o777, 0o640);
    // before the handover the agent runs commands as any uid: this is guest root, as after a guest kernel exploit
    const out = collect();
    const rc = await driver.exec(state, { argv: ['/bin/sh', '-c', `cd ${work} || exit 9; id -u; echo x > by-root; echo "file $?"; ` +
      `mknod dev c 1 3; echo "mknod $?"; mkdir dir-root; echo "mkdir $?"; chown 0:0 by-user; echo "chown $?"; exit 0`],
    cwd: '/', env: {}, user: { name: 'root', uid: 0, gid: 0 }, stdout: out, stderr: collect() });
    t.equal(rc, 0);
    const lines = out.text().split('\n');
    t.equal(lines[0], '0', 'the command ran as root in the guest');
    t.same(lines.slice(1, 5).map((l) => l.replace(/ [1-9]\d*$/, ' failed')), ['file failed', 'mknod failed', 'mkdir failed', 'chown failed'],
      `guest root's creations and chown fail: ${lines.slice(1, 5).join(', ')}`);
    for (const f of ['by-root', 'dev', 'dir-root', 'by-user']) {
      const st = await stat(join(work, f)).catch(() => undefined);
      t.ok(st === undefined || (st.uid === NOBODY.uid && !st.isCharacterDevice()), `${f}: ${st ? `uid ${st.uid} mode ${st.mode.toString(8)}` : 'not created'} — never root's, never a device`);
    }
    t.ok(existsSync(join(work, 'by-user')), 'the user\'s file is still there');
    // a QEMU the record no longer names (a killed prologue): still found and killed as ours
    t.same(await killStragglers(state.runDir, NOBODY.uid), [state.pids.qemu!.pid], 'killStragglers finds the user-owned QEMU by its runtime dir');
    t.notOk(await isAlive(state.pids.qemu), 'and it is gone');
  } finally {
    await driver.destroy(state);
  }
  t.same(await listRecords(stateDir), []);
});

t.test('template memory: clones share one sealed copy of the template\'s RAM; none can write it, none holds the saved file', async (t) => {
  const image = testVmImage(await buildTestImage({ kernel: 'mini' }));
  // a template of its own (an earlier test's would already have its holder): built here, in a fresh directory
  const tplRam = join(root, 'templates-ram');
  const b = await buildTemplate({ dir: tplRam, qemu: QEMU, spec: spec('tpl-mini', { image }), accel: 'tcg' });
  t.equal(b.status, 'built', JSON.stringify(b));
  const found = await lookupTemplate(tplRam, b.key);
  if (found.status !== 'ready') return t.fail(`template ${found.status}`);
  const early = JSON.parse(await readFile(join(found.dir, 'holder.json'), 'utf8').catch(() => 'null')) as { pid: number; startTime: string } | null;
  t.ok(early && await isAlive(early), 'the build started the holder of the sealed copy: no clone pays for it');
  const saved = await stat(join(found.dir, 'ram'));
  t.equal(saved.mode & 0o777, 0o600, 'the saved RAM is root-only');
  t.equal(found.meta.snapshotBytes < 4 * 1024 * 1024, true, `the migration stream holds device state only (${found.meta.snapshotBytes} bytes)`);
  const driver = new QemuDriver({ stateDir, accel: 'tcg', snapshots: { dir: tplRam } });
  const memfd = new RegExp(`^/memfd:wnod-tmpl-${b.key} \\(deleted\\)$`);
  /** The clone's fds: the one on the sealed copy, and whether any is the saved file. */
  const fdsOf = async (pid: number) => {
    let sealed: string | undefined;
    let onSaved = false;
    for (const fd of await readdir(`/proc/${pid}/fd`)) {
      const p = `/proc/${pid}/fd/${fd}`;
      if (memfd.test(await readlink(p).catch(() => ''))) sealed = p;
      const st = await stat(p).catch(() => undefined);
      if (st && st.dev === saved.dev && st.ino === saved.ino) onSaved = true;
    }
    return { sealed, onSaved };
  };
  const clones: VmState[] = [];
  try {
    for (const id of ['share1', 'share2']) {
      let s = await driver.prepare(spec(id, { image }));
      clones.push(s);
      s = await driver.start(s);
      s = await driver.waitReady(s, 120_000);
      clones[clones.length - 1] = s;
      t.equal(s.extra?.boot, 'restore', `${id} restored (${s.extra?.coldReason ?? ''})`);
    }
    const [c1, c2] = clones as [VmState, VmState];
    const f1 = await fdsOf(c1.pids.qemu!.pid);
    const f2 = await fdsOf(c2.pids.qemu!.pid);
    t.notOk(f1.onSaved || f2.onSaved, 'no clone holds an fd on the saved RAM file');
    t.ok(f1.sealed && f2.sealed, 'each clone maps the sealed copy');
    t.equal((await stat(f1.sealed!)).ino, (await stat(f2.sealed!)).ino, 'both map the same copy');
    t.match(await readFile(`/proc/${c1.pids.qemu!.pid}/maps`, 'utf8'), new RegExp(`rw-p 00000000 \\S+ \\d+ +/memfd:wnod-tmpl-${b.key}`), 'mapped private, copy-on-write');
    // the clone's own fd is read-write (QEMU 7.2 opens it so): the seals must refuse writes through it, even root's
    const fh = await open(f1.sealed!, 'r+');
    try {
      await t.rejects(fh.write(Buffer.from('poison'), 0, 6, 0), { code: 'EPERM' }, 'a write to the template memory is refused');
      await t.rejects(fh.truncate(0), { code: 'EPERM' }, 'so is a truncate');
    } finally {
      await fh.close();
    }
    // a clone writing its whole RAM changes its own pages only
    const out = collect();
    t.equal(await driver.exec(c1, { argv: ['/bin/sh', '-c', 'head -c 64000000 /dev/zero | tr "\\0" x > /dev/shm/fill 2>/dev/null || head -c 64000000 /dev/zero | tr "\\0" x > /tmp/fill; echo done'],
      cwd: '/', env: {}, user: { name: 'root', uid: 0, gid: 0 }, stdout: out, stderr: collect() }), 0);
    t.equal(out.text(), 'done\n');
    t.equal(await ramDigest(f2.sealed!), found.meta.ram.sha256, 'the template memory is what was saved, after a clone wrote 64 MB of its RAM');
  } finally {
    for (const s of clones) await driver.destroy(s);
  }
  // the holder goes with its template
  const holder = JSON.parse(await readFile(join(found.dir, 'holder.json'), 'utf8')) as { pid: number; startTime: string };
  t.ok(await isAlive(holder), 'a holder keeps the copy between clones');
  t.equal(holder.pid, early?.pid, 'the clones used the holder the build started');
  await rm(join(tplRam, b.key), { recursive: true, force: true });
  let gone = false;
  for (let i = 0; i < 150 && !gone; i++) {
    gone = !(await isAlive(holder));
    if (!gone) await new Promise((r) => setTimeout(r, 100));
  }
  t.ok(gone, 'a removed template takes its holder with it');
  t.same(await listRecords(stateDir), []);
});

t.test('a port forward (a lease\'s ssh): the clone listens on it, the template never did; one template with plain user networking', async (t) => {
  const image = testVmImage(await buildTestImage({ kernel: 'mini' }));
  // the port is taken while the template is built: a template that tried to listen on it would fail to start
  const busy = createServer(() => {});
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
  const port = (busy.address() as AddressInfo).port;
  const lease = (id: string) => spec(id, { image, network: { mode: 'user', forwards: [{ hostAddr: '127.0.0.1', hostPort: port, guestPort: 7777 }] } });
  let b;
  try {
    b = await buildTemplate({ dir: tpl, qemu: QEMU, spec: lease('tpl-fwd'), accel: 'tcg' });
  } finally {
    await new Promise((r) => busy.close(r));
  }
  t.ok(b.status === 'built' || b.status === 'exists', JSON.stringify(b));
  const plain = await buildTemplate({ dir: tpl, qemu: QEMU, spec: spec('tpl-user', { image, network: { mode: 'user' } }), accel: 'tcg' });
  t.same([plain.status, plain.key], ['exists', b.key], 'a plain user-network job has the same template');

  const driver = new QemuDriver({ stateDir, accel: 'tcg', snapshots: { dir: tpl } });
  let s = await driver.prepare(lease('fwd'));
  try {
    s = await driver.start(s);
    s = await driver.waitReady(s, 120_000);
    t.equal(s.extra?.boot, 'restore', `restored (${s.extra?.coldReason ?? ''})`);
    t.equal(await driver.exec(s, { argv: ['/bin/sh', '-c', '(busybox nc -l -p 7777 -e /bin/echo hello-from-the-clone </dev/null >/dev/null 2>&1 &) ; sleep 0.5'],
      cwd: '/', env: {}, user: NOBODY, stdout: collect(), stderr: collect() }), 0);
    const got = await new Promise<string>((resolve, reject) => {
      const c = connect(port, '127.0.0.1');
      let text = '';
      c.on('data', (d) => { text += d.toString(); });
      c.on('end', () => resolve(text));
      c.on('error', reject);
      c.setTimeout(20_000, () => { c.destroy(); reject(new Error('no answer through the forward')); });
    });
    t.equal(got, 'hello-from-the-clone\n', 'the host port reaches the clone\'s guest port');
  } finally {
    await driver.destroy(s);
  }
});
