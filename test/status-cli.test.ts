// `wnod status` as a site runs it: a healthy node (OK, exit 0), a full image cache on a small tmpfs (CRITICAL, 2),
// no QEMU in PATH (CRITICAL), a stale snapshot template (WARNING, 1), a bad command line (UNKNOWN, 3); the JSON
// names; the Torque node check's output; and that looking changes nothing on the node.
import t from 'tap';
import { appendFile, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { wnod, ensureBuilt } from './kit/cli.js';
import { makeTestSite, type TestSiteOptions } from './kit/site.js';
import { imageDigest, loadConfig } from '../src/config/load.js';
import { ensureTestUser } from './kit/pbsmom.js';
import { acquireLock } from '../src/util/lock.js';
import { procRef } from '../src/vm/proc.js';
import { reachable } from './kit/reachable.js';
import { TEMPLATE_FORMAT } from '../src/vm/snapshot.js';

const root = t.testdir({});
const PATH = '/usr/local/bin:/usr/bin:/bin';
const qemuMissing = ['/usr/local/bin', '/usr/bin', '/bin'].every((d) => !existsSync(join(d, 'qemu-system-x86_64')));

t.before(ensureBuilt);

/** A site whose every path is inside `name`, with watermarks any test machine's /tmp can hold. */
async function site(name: string, over: { cache?: Record<string, unknown>; vm?: Record<string, unknown>; images?: TestSiteOptions['images'] } = {}) {
  const dir = join(root, name);
  return makeTestSite(dir, {
    ...(over.images ? { images: over.images, rules: [{ name: 'dteam', vo: 'dteam', images: ['*'], default: over.images[0]!.id }] } : {}),
    extra: {
      cache: { dir: join(dir, 'cache'), high_watermark_gb: 1, low_watermark_gb: 0, ...over.cache },
      vm: { state_dir: join(dir, 'state'), ...over.vm },
    },
  });
}

const status = (config: string, extra: string[] = [], env: Record<string, string> = { PATH }) => wnod(['status', '--config', config, ...extra], { env });

t.test('a healthy node: WNOD OK, exit 0; nothing created by looking', { skip: qemuMissing ? 'no qemu-system-x86_64 installed' : false }, async (t) => {
  const s = await site('healthy');
  const r = await status(s.configPath);
  t.equal(r.exitCode, 0, r.stdout + r.stderr);
  t.match(r.stdout.split('\n')[0], /^WNOD OK - 0 VMs running, (KVM|TCG|KVM not probed yet)/);
  t.match(r.stdout, /^boot slots: 0 of \d+ in use$/m);
  t.match(r.stdout, /^accelerator: /m);
  t.notOk(existsSync(join(s.dir, 'state')), 'the state dir is not created by looking');
  t.notOk(existsSync(join(s.dir, 'cache')), 'nor the cache dir');

  const j = await status(s.configPath, ['--json']);
  t.equal(j.exitCode, 0);
  const o = JSON.parse(j.stdout) as Record<string, any>;
  for (const k of ['health', 'problems', 'accel', 'vms', 'cache', 'templates']) t.ok(k in o, `JSON has "${k}"`);
  t.equal(o.health, 'ok');
  t.same(o.problems, []);
  t.ok(o.accel.kind === 'kvm' || o.accel.kind === 'tcg', 'accel.kind is always what jobs will get');
  t.type(o.accel.reason, 'string');
  t.same(o.vms.byState, { booting: 0, running: 0, stopping: 0, dead: 0 });
  t.same([o.cache.bytes, o.cache.entries, o.cache.inUse, o.cache.highWatermarkBytes], [0, 0, 0, 2 ** 30]);
  t.same(o.templates.list, []);

  const torque = await status(s.configPath, ['--for', 'torque']);
  t.equal(torque.stdout, '', 'a healthy node prints nothing for pbs_mom');
  t.equal(torque.exitCode, 0);
});

t.test('the image cache on a full tmpfs: CRITICAL cache-full, exit 2; freed: no longer broken', { skip: process.getuid?.() !== 0 ? 'mounting a tmpfs needs root' : false }, async (t) => {
  const s = await site('full');
  const cache = join(s.dir, 'cache');
  await mkdir(cache, { mode: 0o700 });
  await execa('mount', ['-t', 'tmpfs', '-o', 'size=16m,mode=0700', 'wst-cache', cache]);
  t.teardown(() => execa('umount', [cache]).then(() => undefined, () => undefined));
  const filler = join(cache, 'filler');
  const chunk = Buffer.alloc(1 << 20);
  for (;;) {
    try {
      await appendFile(filler, chunk);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
      throw err;
    }
  }
  const r = await status(s.configPath, ['--json']);
  t.equal(r.exitCode, 2, r.stdout);
  const o = JSON.parse(r.stdout) as { health: string; problems: { code: string; message: string }[] };
  t.equal(o.health, 'broken');
  t.ok(o.problems.some((p) => p.code === 'cache-full'), JSON.stringify(o.problems));
  const text = await status(s.configPath);
  t.match(text.stdout.split('\n')[0], /^WNOD CRITICAL - .*image cache .* is full/);
  const torque = await status(s.configPath, ['--for', 'torque']);
  t.match(torque.stdout, /^ERROR wnod: .*is full/);
  t.equal(torque.stdout.trim().split('\n').length, 1);

  await rm(filler);
  const fixed = await status(s.configPath, ['--json']);
  const f = JSON.parse(fixed.stdout) as { health: string; problems: { code: string }[] };
  t.not(f.health, 'broken', 'room again: no longer broken');
  // a 16 MiB file system cannot hold the 1 GiB watermark: that is a warning, not a fault
  t.same(f.problems.map((p) => p.code), ['cache-fs-small']);
  t.equal(fixed.exitCode, 1);
  t.equal((await status(s.configPath, ['--for', 'torque'])).stdout, '', 'pbs_mom would bring the node back');
});

t.test('no QEMU in PATH: CRITICAL no-qemu, exit 2', async (t) => {
  const s = await site('noqemu');
  const empty = join(s.dir, 'empty-bin');
  await mkdir(empty);
  const r = await status(s.configPath, [], { PATH: empty });
  t.equal(r.exitCode, 2, r.stdout + r.stderr);
  t.match(r.stdout.split('\n')[0], /^WNOD CRITICAL - qemu-system-x86_64 is not in PATH/);
  const j = JSON.parse((await status(s.configPath, ['--json'], { PATH: empty })).stdout) as { health: string; problems: { code: string }[] };
  t.equal(j.health, 'broken');
  t.same(j.problems.map((p) => p.code), ['no-qemu']);
});

t.test('a stale snapshot template: WARNING template-stale, exit 1; a fresh one is listed as fresh', { skip: qemuMissing ? 'no qemu-system-x86_64 installed' : false }, async (t) => {
  const kernel = (id: string, sha: string) => ({ id, kind: 'kernel' as const, kernel: { source: `/shared/${id}/vmlinuz`, sha256: sha.repeat(64) }, memoryMB: { default: 512, max: 1024 } });
  const s = await site('stale', { vm: { snapshots: true }, images: [kernel('vm_k', 'a'), kernel('vm_j', 'b')] });
  const cfg = await loadConfig(s.configPath);
  const templates = join(s.dir, 'state', 'templates');
  const put = async (key: string, imageId: string, digest: string) => {
    await mkdir(join(templates, key), { recursive: true, mode: 0o700 });
    await writeFile(join(templates, key, 'meta.json'), JSON.stringify({
      format: TEMPLATE_FORMAT, key, createdAt: '2026-12-01T00:00:00.000Z', imageId, digest, cpus: 1, memoryMB: 512, accel: 'tcg', network: 'none',
      caps: ['setup', 'lock', 'reseed'], snapshotBytes: 123456, ram: { bytes: 512 * 1024 * 1024, sha256: 'c'.repeat(64) }, buildS: 3, qemuVersion: 'QEMU emulator version 7.2.0',
    }));
  };
  // vm_k's template was built from an older image (another digest); vm_j's from the current one
  await put('a'.repeat(32), 'vm_k', 'f'.repeat(64));
  await put('b'.repeat(32), 'vm_j', imageDigest(cfg.images.find((i) => i.id === 'vm_j')!));
  const r = await status(s.configPath);
  t.equal(r.exitCode, 1, r.stdout + r.stderr);
  t.match(r.stdout.split('\n')[0], /^WNOD WARNING - the snapshot template of vm_k \(1 cpu, 512 MB\) is stale \(the image changed\)/);
  t.match(r.stdout, /^ {2}vm_j 1 cpu 512 MB none tcg: fresh$/m);
  const o = JSON.parse((await status(s.configPath, ['--json'])).stdout) as { health: string; problems: { code: string }[]; templates: { list: { image: string; fresh: boolean; stale: string | null }[] } };
  t.equal(o.health, 'degraded');
  t.same(o.problems.map((p) => p.code), ['template-stale']);
  t.same(o.templates.list.map((x) => [x.image, x.fresh, x.stale]), [['vm_k', false, 'the image changed'], ['vm_j', true, null]]);
  t.equal((await status(s.configPath, ['--for', 'torque'])).stdout, '', 'degraded: the node stays up');
  t.same(await readdir(templates), ['a'.repeat(32), 'b'.repeat(32)], 'looking removed nothing');
});

t.test('a bad command line or config: UNKNOWN is 3 (unlike other commands\' 2); an unreadable config is CRITICAL', async (t) => {
  for (const args of [['--nope'], ['--for', 'pbs'], ['--for', 'torque', '--json'], ['--node', 'n1'], ['extra']]) {
    const r = await wnod(['status', ...args], { env: { PATH } });
    t.equal(r.exitCode, 3, args.join(' '));
    t.match(r.stdout, /^WNOD UNKNOWN - bad command line/, args.join(' '));
  }
  const help = await wnod(['status', '--help']);
  t.equal(help.exitCode, 0);
  t.match(help.stdout, /^usage: wnod status \[--config FILE\] \[--json\] \[--for torque\|slurm/);
  const missing = await status(join(root, 'nonexistent.yaml'));
  t.equal(missing.exitCode, 2);
  t.match(missing.stdout, /^WNOD CRITICAL - the site config .*nonexistent.yaml cannot be used/);
});

t.test('not root: UNKNOWN (3) — the node is judged as the hooks (root) see it', { skip: process.getuid?.() !== 0 ? 'needs root to switch users' : false }, async (t) => {
  const user = await ensureTestUser('wststat');
  // env -i: tap's process tracker puts its loader into every child's NODE_OPTIONS, which the user may not reach
  const r = await execa('/usr/bin/env', ['-i', `PATH=${PATH}`, '/usr/sbin/runuser', '-u', user.name, '--', process.execPath,
    reachable(join(import.meta.dirname, '..', 'dist', 'cli', 'main.js')), 'status', '--config', '/nonexistent.yaml'], { reject: false, env: {}, extendEnv: false, cwd: '/' });
  t.equal(r.exitCode, 3, r.stderr);
  t.match(r.stdout, /^WNOD UNKNOWN - wnod status must run as root/);
});

t.test('a busy node: VMs by state and job, a boot slot held, failures by reason from the root log', { skip: qemuMissing ? 'no qemu-system-x86_64 installed' : false }, async (t) => {
  const s = await site('busy', { vm: { max_booting: 2 } });
  const state = join(s.dir, 'state');
  await mkdir(join(state, 'vms'), { recursive: true, mode: 0o700 });
  await mkdir(join(state, 'torque'), { recursive: true, mode: 0o755 });
  // a VM whose "QEMU" is this test process (alive), and one whose QEMU is gone (a process that exited)
  const gone = await execa(process.execPath, ['-e', 'console.log(process.pid)'], { env: {}, extendEnv: false });
  const record = async (id: string, ref: { pid: number; startTime: string }) => writeFile(join(state, 'vms', `${id}.json`), JSON.stringify({
    version: 1, id, jobId: `${id}.ce.test`, driver: 'qemu', stateDir: state, runDir: join(state, 'run', id),
    spec: { image: { id: 'vm_el9', digest: 'd' }, cpus: 1, memoryMB: 512 }, pids: { qemu: ref }, sockets: { control: 'c', stdout: 'o', stderr: 'e' },
    files: [], steps: { prepared: '2026-12-03T00:00:00Z', started: '2026-12-03T00:00:01Z', ready: '2026-12-03T00:00:02Z' }, owner: ref,
  }), { mode: 0o600 });
  await record('11', (await procRef(process.pid))!);
  await record('12', { pid: Number(gone.stdout.trim()), startTime: '1' });
  // a prologue booting a VM holds a boot slot (src/job/bootSlots.ts)
  const slot = await acquireLock(join(state, 'torque', 'boot-slot-1.lock'), 'exclusive');
  t.teardown(() => slot.release());
  const line = (time: string, event: string, code?: string) => JSON.stringify({ time, hook: 'prologue', job: '9.ce', pid: 1, event, ...(code ? { code } : {}) });
  const now = Date.now();
  const ago = (min: number) => new Date(now - min * 60_000).toISOString();
  await writeFile(s.configPath.replace(/wnod\.yaml$/, 'wnod.log'), [
    line(ago(90), 'vm-ready'), line(ago(60), 'refused', 'ticket-expired'), line(ago(50), 'refused', 'ticket-expired'), line(ago(40), 'requeue', 'vm-not-ready'),
  ].join('\n') + '\n', { mode: 0o600 });

  const r = await status(s.configPath, ['--json']);
  t.equal(r.exitCode, 1, r.stdout + r.stderr);
  const o = JSON.parse(r.stdout) as Record<string, any>;
  t.same(o.problems.map((p: { code: string }) => p.code), ['vms-dead']);
  t.same(o.vms.byState, { booting: 0, running: 1, stopping: 0, dead: 1 });
  t.same(o.vms.list.map((v: { id: string; jobId: string; state: string }) => [v.id, v.jobId, v.state]), [['11', '11.ce.test', 'running'], ['12', '12.ce.test', 'dead']]);
  t.same(o.bootSlots, { total: 2, inUse: 1 }, 'the held slot is seen (from /proc/locks), without taking any');
  t.same(o.failures.byReason, { 'refused:ticket-expired': 2, 'requeue:vm-not-ready': 1 });
  t.same([o.failures.bootsOk, o.failures.bootsFailed], [1, 1]);
  const text = (await status(s.configPath)).stdout;
  t.match(text, /^WNOD WARNING - 1 VM recorded but not running \(12\): run `wnod gc`$/m);
  t.match(text, /^ {2}11 job 11\.ce\.test image vm_el9: running$/m);
  t.match(text, /^boot slots: 1 of 2 in use$/m);
  t.match(text, /refused:ticket-expired ×2/);
});
