// Hardening from the security review: templates only for default shapes and a bounded number kept; a template
// build that fails for a passing cause backs off instead of refusing forever; the CLI a root hook runs is pinned and
// owner-checked; the kernel cache must be root's alone; lease.json is readable by the job's group only.
import t from 'tap';
import { chmod, chown, mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { backoffMs, bootVerdict, buildNow, buildTemplate, lookupTemplate, templatesToPrune, BUILD_BACKOFF_MS, SHAPE_REPEAT_MS, type TemplateMeta } from '../src/vm/snapshot.js';
import { pinnedCli, wnodCli } from '../src/job/vmEngine.js';
import { assertTrustedPath, trustProblem } from '../src/util/trustedPath.js';
import { buildMiniKernel } from '../src/kernel/miniKernel.js';
import { leaseGuestEnv, writeLeaseInfo } from '../src/job/lease.js';
import { runDirOf, vmIdForJob } from '../src/vm/state.js';
import type { VmSpec } from '../src/vm/driver.js';
import { repoRoot } from './kit/cli.js';
import { reachable } from './kit/reachable.js';

const NOBODY = 65534;

t.test('templates: the default shape at once, another on its second job; at most MAX_TEMPLATES_PER_IMAGE kept per image', async (t) => {
  const defaults = { cpus: 1, memoryMB: 2048 };
  const now = 10 * SHAPE_REPEAT_MS;
  t.equal(buildNow({ cpus: 1, memoryMB: 2048 }, defaults, undefined, now), true, 'the default shape: at once');
  t.equal(buildNow({ cpus: 1, memoryMB: 2049 }, defaults, undefined, now), false, '1 MB more is another shape: not on its first job');
  t.equal(buildNow({ cpus: 2, memoryMB: 2048 }, defaults, now - 1000, now), true, 'on its second within the window');
  t.equal(buildNow({ cpus: 2, memoryMB: 2048 }, defaults, now - SHAPE_REPEAT_MS, now), false, 'not when the first was a window ago');
  t.equal(buildNow({ cpus: 2, memoryMB: 2048 }, defaults, now + 1000, now), false, 'nor on a marker from the future');

  const m = (key: string, o: Partial<TemplateMeta>): TemplateMeta => ({ format: 1, key, createdAt: '2026-01-01T00:00:00Z', imageId: 'img', digest: 'd',
    cpus: 1, memoryMB: 2048, accel: 'tcg', network: 'none', caps: [], snapshotBytes: 1, ram: { bytes: 1, sha256: 's' }, buildS: 1, qemuVersion: 'q', ...o });
  const fresh = m('fresh', { createdAt: '2026-01-05T00:00:00Z' });
  const others = [
    m('stale', { createdAt: '2026-01-01T00:00:00Z' }),                                  // same image and shape: an older build
    m('user-net', { network: 'user', createdAt: '2026-01-04T00:00:00Z' }),
    m('old-512', { memoryMB: 512, createdAt: '2026-01-02T00:00:00Z' }),                  // left from before the fix
    m('old-513', { memoryMB: 513, createdAt: '2026-01-03T00:00:00Z' }),
    m('other-image', { imageId: 'img2', memoryMB: 999 }),
  ];
  t.same(templatesToPrune(others, fresh).sort(), ['stale'], 'an older build of the same shape goes; up to MAX_TEMPLATES_PER_IMAGE stay');
  t.same(templatesToPrune(others, fresh, 2).sort(), ['old-512', 'old-513', 'stale'], 'the fresh one and the newest other of the image stay');
  t.same(templatesToPrune(others, fresh, 3).sort(), ['old-512', 'stale']);
  t.same(templatesToPrune([], fresh), []);
  // a job-network template is another network: building it never prunes the plain one of the same shape
  t.same(templatesToPrune([fresh], m('jobnet', { network: 'none+job', createdAt: '2026-01-06T00:00:00Z' })), []);
});

t.test('template builds: only a missing capability refuses for good; a VM that dies or is silent backs off', async (t) => {
  const base = { up: true, alive: true, console: '', timeoutMs: 120_000, lacking: [] as string[] };
  t.equal(bootVerdict(base), undefined);
  t.same(bootVerdict({ ...base, lacking: ['reseed'] }), { kind: 'refuse', reason: 'the guest cannot be restored safely: its agent lacks reseed' });
  t.match(bootVerdict({ ...base, up: false, alive: false, console: 'Out of memory' }), { kind: 'transient', reason: /stopped before its agent answered: Out of memory/ });
  t.match(bootVerdict({ ...base, up: false }), { kind: 'transient', reason: /did not answer within 120000 ms/ });
  t.equal(backoffMs(1), BUILD_BACKOFF_MS);
  t.equal(backoffMs(3), 4 * BUILD_BACKOFF_MS, 'doubles per consecutive failure');
  t.equal(backoffMs(30), 86_400_000, 'at most a day');

  // a real QEMU that dies before the guest runs (a kernel it cannot load): no refused file, a back-off marker
  const dir = t.testdir({ 'bad-vmlinux': 'not a kernel\n' });
  const tpl = join(dir, 'templates');
  const spec: VmSpec = { id: 'tpl', cpus: 1, memoryMB: 128, hostname: 'h', user: { name: 'nobody', uid: NOBODY, gid: NOBODY }, env: {},
    network: { mode: 'none' }, accel: 'tcg', image: { id: 'bad', digest: 'd'.repeat(64), kind: 'kernel', files: { kernel: join(dir, 'bad-vmlinux') } } };
  await t.rejects(buildTemplate({ dir: tpl, qemu: 'qemu-system-x86_64', spec, accel: 'tcg' }), { code: 'vm-restore' });
  const files = await readdir(tpl);
  t.notOk(files.some((f) => f.endsWith('.refused.json')), `no permanent refusal (${files.join(' ')})`);
  const failed = files.find((f) => f.endsWith('.failed.json'));
  t.ok(failed, 'a back-off marker');
  const key = failed!.slice(0, 32);
  const look = await lookupTemplate(tpl, key);
  t.match(look, { status: 'refused', reason: /the last build failed \(1x in a row: .*\); next try after/ }, 'jobs cold boot with the back-off as reason');
  t.match(await buildTemplate({ dir: tpl, qemu: 'qemu-system-x86_64', spec, accel: 'tcg' }), { status: 'refused', reason: /next try after/ }, 'no rebuild during the back-off');
  // the back-off over: it may be built again (a key with a marker older than its back-off is missing)
  const marker = join(tpl, failed!);
  const rec = JSON.parse(await readFile(marker, 'utf8')) as { failures: number };
  await writeFile(marker, JSON.stringify({ ...rec, at: new Date(Date.now() - BUILD_BACKOFF_MS - 1000).toISOString() }));
  t.same(await lookupTemplate(tpl, key), { status: 'missing' });
  await t.rejects(buildTemplate({ dir: tpl, qemu: 'qemu-system-x86_64', spec, accel: 'tcg' }));
  t.match(JSON.parse(await readFile(marker, 'utf8')), { failures: 2 }, 'consecutive failures are counted (longer back-off)');
});

t.test('the CLI a root hook runs: pinned beside the module, root-owned, writable by nobody else', async (t) => {
  t.equal(pinnedCli('/opt/wnod/dist/hot/hook.cjs'), '/opt/wnod/dist/cli/main.js');
  t.equal(pinnedCli('/opt/wnod/dist/hot/slurm-hook.cjs'), '/opt/wnod/dist/cli/main.js', 'the Slurm Prolog can ask for a template too');
  t.equal(pinnedCli('/opt/wnod/dist/job/vmEngine.js'), '/opt/wnod/dist/cli/main.js');
  t.equal(pinnedCli('/work/main/src/job/vmEngine.ts'), undefined, 'not from the sources');
  t.equal(pinnedCli('/tmp/x/hook.cjs'), undefined, 'not from anywhere a hook bundle was copied to');
  t.equal(pinnedCli('/tmp/x/torque/vmEngine.js'), undefined);
  t.equal(await wnodCli(join(repoRoot, 'dist/hot/hook.cjs')), join(repoRoot, 'dist/cli/main.js'), 'the build\'s own layout passes');
  await t.rejects(wnodCli('/work/main/src/job/vmEngine.ts'), { message: /no wnod CLI is pinned/ });

  const d = t.testdir({ dist: { hot: { 'hook.cjs': '' }, cli: { 'main.js': '' } } });
  const hook = join(d, 'dist/hot/hook.cjs');
  const cli = join(d, 'dist/cli/main.js');
  await chmod(cli, 0o644);
  t.equal(await wnodCli(hook), cli);
  await chmod(cli, 0o664);
  await t.rejects(wnodCli(hook), { code: 'untrusted-path', message: /main\.js is writable by its group \(mode 0664\)/ });
  await chmod(cli, 0o644);
  await chown(cli, NOBODY, 0);
  await t.rejects(wnodCli(hook), { message: /main\.js is owned by uid 65534, not by root/ });
  await chown(cli, 0, 0);
  await chmod(join(d, 'dist/cli'), 0o777);
  await t.rejects(wnodCli(hook), { message: new RegExp(`${join(d, 'dist/cli')} is writable by its group`) }, 'a writable directory on the way is refused too');
  await chmod(join(d, 'dist/cli'), 0o755);
});

t.test('trusted paths (kernel cache): owner and mode of the dir and every parent', async (t) => {
  const st = (uid: number, mode: number, isDir = true) => ({ uid, mode, isDir, isLink: false });
  const o = { leaf: true, owners: [0] };
  t.equal(trustProblem('/c', st(0, 0o40755), o), undefined);
  t.match(trustProblem('/c', st(0, 0o40757), o), /writable by others \(mode 0757\)/);
  t.match(trustProblem('/c', st(0, 0o41777), o), /writable/, 'a sticky world-writable leaf is not ours alone');
  t.equal(trustProblem('/tmp', st(0, 0o41777), { ...o, leaf: false }), undefined, 'a sticky parent (/tmp) is');
  t.match(trustProblem('/c', st(1000, 0o40755), o), /owned by uid 1000/);

  const d = t.testdir({ ok: {}, open: { sub: {} } });
  await assertTrustedPath(join(d, 'ok'), 'kernel cache directory');
  await chmod(join(d, 'open'), 0o777);
  await t.rejects(assertTrustedPath(join(d, 'open', 'sub'), 'kernel cache directory'),
    { code: 'untrusted-path', message: new RegExp(`kernel cache directory: refusing .*/open/sub: ${join(d, 'open')} is writable by its group`) });
  await chmod(join(d, 'open'), 0o1777);
  await assertTrustedPath(join(d, 'open', 'sub'), 'kernel cache directory');
  await chown(join(d, 'ok'), NOBODY, NOBODY);
  // the builder checks before anything is downloaded or built
  await t.rejects(buildMiniKernel({ cacheDir: join(d, 'ok') }), { code: 'untrusted-path', message: /ok is owned by uid 65534/ });
  await chmod(join(d, 'open', 'sub'), 0o775);
  await t.rejects(buildMiniKernel({ cacheDir: join(d, 'open', 'sub') }), { message: /sub is writable by its group/ });
});

t.test('lease.json: 0640 root:<job gid>; the job\'s group reads it, another does not', async (t) => {
  const stateDir = reachable(t.testdir({}));
  const vmId = vmIdForJob('77.wn1');
  await mkdir(runDirOf(stateDir, vmId), { recursive: true, mode: 0o711 });
  await chmod(join(stateDir, 'run'), 0o711);
  await writeLeaseInfo(stateDir, vmId, 'l0123456789', { hostAddr: '127.0.0.1', hostPort: 40022, guestPort: 22 }, NOBODY);
  const file = join(runDirOf(stateDir, vmId), 'lease.json');
  const s = await stat(file);
  t.equal(s.mode & 0o777, 0o640);
  t.equal(s.uid, 0);
  t.equal(s.gid, NOBODY);
  const readAs = (gid: number) => execa('env', ['-u', 'NODE_OPTIONS', process.execPath, '-e', `require('fs').readFileSync(${JSON.stringify(file)})`],
    { uid: NOBODY, gid, reject: false });
  t.equal((await readAs(NOBODY)).exitCode, 0, 'the job user (its group) reads it');
  t.not((await readAs(NOBODY - 1)).exitCode, 0, 'a user of another group does not');
  t.same(await leaseGuestEnv(stateDir, vmId), { WNOD_LEASE_ID: 'l0123456789', WNOD_LEASE_ADDRESS: '127.0.0.1:40022', WNOD_LEASE_GUEST_PORT: '22' });
});
