// `wnod status`'s pure parts: the health classification, the Nagios line and exit codes, the hooks' decisions
// (Torque's node check output, Slurm's drain/resume), and the parsers of /proc/locks, the root log and templates.
import t from 'tap';
import {
  exitCodeOf, fsFull, healthOf, nagiosLine, oneLine, problemsOf, slurmAction, staleWithoutFresh, torqueCheckOutput,
  type DirFacts, type StatusFacts, type TemplateFacts,
} from '../src/status/classify.js';
import { failuresOf, lockedInodes, parseLogEvents, templateStaleness, vmRunState, type TemplateContext } from '../src/status/facts.js';
import { reportOf, statusJson } from '../src/status/report.js';
import { parseSinfoNode, slurmNodeName } from '../src/lrm/slurm/health.js';
import { foreignNodeCheck, nodeCheckLines } from '../src/lrm/torque/nodeCheck.js';

const GiB = 2 ** 30;
const roomy = { totalBytes: 100 * GiB, availBytes: 50 * GiB, totalInodes: 1e6, freeInodes: 5e5 };
const dir = (path: string, over: Partial<DirFacts> = {}): DirFacts => ({ path, kind: 'dir', uid: 0, writable: true, fs: roomy, ...over });

function healthy(): StatusFacts {
  return {
    now: Date.parse('2026-12-03T12:00:00Z'), configPath: '/etc/wnod/wnod.yaml', driver: 'qemu',
    binary: { name: 'qemu-system-x86_64', path: '/usr/bin/qemu-system-x86_64', pathVar: '/usr/bin:/bin' },
    accel: { kind: 'kvm', source: 'probe', reason: 'a test boot under KVM answered', mode: 'auto', kvmUsable: true, probedAt: '2026-12-03T09:00:00Z', probeMs: 1200 },
    stateDir: dir('/var/lib/wnod'), vms: [{ id: '1.ce', jobId: '1.ce', image: 'vm_el9', state: 'running' }], badRecords: [],
    bootSlots: { total: 2, inUse: 0 },
    cache: { dir: dir('/var/cache/wnod'), wantUid: 0, bytes: 3 * GiB, highWatermarkBytes: 20 * GiB, lowWatermarkBytes: 10 * GiB, entries: 2, inUse: 1, broken: 0 },
    templates: { enabled: true, ready: [], refused: [], wanted: [] },
    failures: { windowS: 86400, byReason: {}, bootsOk: 3, bootsFailed: 0, failingStreak: 0 },
  };
}
const codes = (f: StatusFacts) => problemsOf(f).map((p) => p.code);

t.test('a healthy node: OK, exit 0, the summary says what runs and the probe\'s age', async (t) => {
  const r = reportOf(healthy());
  t.equal(r.health, 'ok');
  t.equal(exitCodeOf(r.health), 0);
  t.equal(nagiosLine(r.health, r.problems, r.summary), 'WNOD OK - 1 VM running, KVM (probed 3 h ago), cache 3.0 GiB of 20.0 GiB, 0 failures in 24 h');
});

t.test('broken: whatever stops every VM boot; CRITICAL, exit 2, worst first', async (t) => {
  const noQemu = healthy();
  delete noQemu.binary!.path;
  t.same(codes(noQemu), ['no-qemu']);
  t.equal(healthOf(problemsOf(noQemu)), 'broken');
  t.equal(exitCodeOf('broken'), 2);
  const virsh = { ...healthy(), driver: 'libvirt' as const, binary: { name: 'virsh', pathVar: '/usr/bin' } };
  t.same(codes(virsh), ['no-virsh']);

  const forcedKvm = healthy();
  forcedKvm.accel = { ...forcedKvm.accel!, mode: 'kvm', source: 'config', kvmUsable: false };
  t.same(codes(forcedKvm), ['kvm-unusable']);

  const full = healthy();
  full.cache!.dir.fs = { ...roomy, availBytes: 10 * 2 ** 20 };
  t.same(codes(full), ['cache-full']);
  const noInodes = healthy();
  noInodes.cache!.dir.fs = { ...roomy, freeInodes: 0 };
  t.same(codes(noInodes), ['cache-full']);
  for (const [over, why] of [[{ writable: false }, /not writable/], [{ kind: 'other' as const }, /not a directory/], [{ kind: 'symlink' as const }, /symbolic link/],
    [{ uid: 1000 }, /owned by uid 1000/], [{ kind: 'missing' as const, writable: false }, /cannot be created/]] as const) {
    const f = healthy();
    f.cache!.dir = dir('/var/cache/wnod', over);
    t.same(codes(f), ['cache-dir'], JSON.stringify(over));
    t.match(problemsOf(f)[0]!.message, why);
  }
  const missing = healthy();
  missing.cache!.dir = dir('/var/cache/wnod', { kind: 'missing' });
  t.same(codes(missing), [], 'a cache dir not created yet is fine: the first job creates it');

  const state = healthy();
  state.stateDir = dir('/var/lib/wnod', { error: 'EACCES' });
  t.same(codes(state), ['state-dir']);
  const stateFull = healthy();
  stateFull.stateDir = dir('/var/lib/wnod', { fs: { ...roomy, availBytes: 0 } });
  t.same(codes(stateFull), ['state-dir-full']);

  const both = healthy();
  delete both.binary!.path;
  both.cache!.bytes = 25 * GiB; // degraded on its own
  t.same(problemsOf(both).map((p) => p.severity), ['broken', 'degraded']);
  const line = nagiosLine(healthOf(problemsOf(both)), problemsOf(both), '');
  t.match(line, /^WNOD CRITICAL - qemu-system-x86_64 is not in PATH/);

  t.same(codes({ now: 0, configPath: '/x.yaml', configError: '/x.yaml:0: (top level): cannot read: ENOENT\nmore' }), ['config-invalid']);
});

t.test('fsFull: 64 MiB free on a big file system, 1% on a small one (a test tmpfs), or no inode', async (t) => {
  t.ok(fsFull({ totalBytes: 100 * GiB, availBytes: 60 * 2 ** 20, totalInodes: 10, freeInodes: 5 }));
  t.notOk(fsFull({ totalBytes: 100 * GiB, availBytes: 70 * 2 ** 20, totalInodes: 10, freeInodes: 5 }));
  t.notOk(fsFull({ totalBytes: 16 * 2 ** 20, availBytes: 8 * 2 ** 20, totalInodes: 10, freeInodes: 5 }), 'half of a 16 MiB tmpfs is not full');
  t.ok(fsFull({ totalBytes: 16 * 2 ** 20, availBytes: 0, totalInodes: 10, freeInodes: 5 }));
  t.ok(fsFull({ totalBytes: 100 * GiB, availBytes: 50 * GiB, totalInodes: 10, freeInodes: 0 }));
});

t.test('degraded: jobs run, worse than they should; WARNING, exit 1', async (t) => {
  const tcg = healthy();
  tcg.accel = { ...tcg.accel!, kind: 'tcg', reason: 'a test boot under KVM failed: no answer' };
  t.same(codes(tcg), ['kvm-probe-failed'], 'the KVM probe failed: VMs still boot, under TCG');
  t.equal(exitCodeOf(healthOf(problemsOf(tcg))), 1);
  const noKvm = healthy();
  noKvm.accel = { kind: 'tcg', source: 'no-kvm', reason: '/dev/kvm is missing', mode: 'auto', kvmUsable: false };
  t.same(codes(noKvm), [], 'no KVM on the host at all is how the node is, not a fault');
  const pending = healthy();
  pending.accel = { kind: 'kvm', source: 'pending', reason: 'not probed yet', mode: 'auto', kvmUsable: true };
  t.same(codes(pending), []);

  const over = healthy();
  over.cache!.bytes = 21 * GiB;
  t.same(codes(over), ['cache-over-watermark']);
  const small = healthy();
  small.cache!.dir.fs = { ...roomy, availBytes: 5 * GiB };
  t.same(codes(small), ['cache-fs-small']);
  const dead = healthy();
  dead.vms!.push({ id: '2.ce', jobId: '2.ce', image: 'vm_el9', state: 'dead' });
  t.same(codes(dead), ['vms-dead']);
  const failing = healthy();
  failing.failures!.failingStreak = 3;
  t.same(codes(failing), ['boots-failing']);
  failing.failures!.failingStreak = 2;
  t.same(codes(failing), []);
});

t.test('templates: a stale one matters only when its image and shape has no fresh one', async (t) => {
  const tpl = (over: Partial<TemplateFacts>): TemplateFacts => ({ image: 'vm_k', cpus: 1, memoryMB: 512, network: 'none', accel: 'tcg', createdAt: 'x', bytes: 1, ...over });
  const f = healthy();
  f.templates!.ready = [tpl({ stale: 'the image changed' }), tpl({ image: 'vm_j' })];
  t.same(codes(f), ['template-stale']);
  t.match(problemsOf(f)[0]!.message, /template of vm_k \(1 cpu, 512 MB\) is stale \(the image changed\)/);
  f.templates!.ready.push(tpl({}));
  t.same(staleWithoutFresh(f.templates), [], 'a fresh one of the same image and shape exists');

  const ctx: TemplateContext = { images: new Map([['vm_k', { digest: 'd1', cpus: 1, memoryMB: 512 }]]), accel: 'tcg', qemu: { changed: false, version: 'QEMU 7.2' } };
  const m = { imageId: 'vm_k', digest: 'd1', cpus: 1, memoryMB: 512, accel: 'tcg' as const, qemuVersion: 'QEMU 7.2' };
  t.equal(templateStaleness(m, ctx), undefined);
  t.match(templateStaleness({ ...m, imageId: 'gone' }, ctx), /no longer in the site config/);
  t.match(templateStaleness({ ...m, digest: 'd0' }, ctx), /image changed/);
  t.match(templateStaleness({ ...m, cpus: 2 }, ctx), /default shape/);
  t.match(templateStaleness({ ...m, accel: 'kvm' }, ctx), /built under KVM, jobs now get TCG/);
  t.equal(templateStaleness({ ...m, accel: 'kvm' }, { ...ctx, accel: null }), undefined, 'accelerator not decided yet: not judged');
  t.match(templateStaleness(m, { ...ctx, qemu: { changed: true } }), /QEMU binary changed/);
  t.match(templateStaleness({ ...m, qemuVersion: 'QEMU 7.1' }, ctx), /built by QEMU 7.1/);
});

t.test('torque: only a broken node prints ERROR (one line, bounded); others print nothing', async (t) => {
  const f = healthy();
  delete f.binary!.path;
  const r = reportOf(f);
  const out = torqueCheckOutput(r.health, r.problems);
  t.match(out, /^ERROR wnod: qemu-system-x86_64 is not in PATH/);
  t.equal(out.split('\n').length, 2, 'one line');
  t.equal(torqueCheckOutput('degraded', []), '');
  t.equal(torqueCheckOutput('ok', []), '');
  t.equal(torqueCheckOutput('unknown', []), '', 'a status that failed must not take the node down');
  t.ok(torqueCheckOutput('broken', [{ code: 'x', message: 'y'.repeat(5000), severity: 'broken' }]).length < 1000);
});

t.test('slurm: drain a broken node with wnod\'s reason, resume only wnod\'s drains, never touch others\'', async (t) => {
  const f = healthy();
  delete f.binary!.path;
  const broken = reportOf(f);
  const drain = slurmAction('broken', broken.problems, { state: 'idle', reason: '' });
  t.equal(drain.kind, 'drain');
  t.match(drain.kind === 'drain' ? drain.reason : '', /^wnod: qemu-system-x86_64 is not in PATH/);
  t.notMatch(drain.kind === 'drain' ? drain.reason : '', /"/, 'no quotes in a reason');
  t.same(slurmAction('broken', broken.problems, { state: 'drained', reason: 'disk swap by admin' }).kind, 'none', 'an admin\'s drain keeps its reason');
  t.same(slurmAction('broken', broken.problems, { state: 'drained', reason: drain.kind === 'drain' ? drain.reason : '' }).kind, 'none', 'already drained for this');
  t.same(slurmAction('broken', broken.problems, { state: 'draining', reason: 'wnod: older reason' }).kind, 'drain', 'wnod\'s own reason is updated');
  t.same(slurmAction('ok', [], { state: 'drained', reason: 'wnod: no QEMU' }), { kind: 'resume' });
  t.same(slurmAction('degraded', [], { state: 'mixed+drain', reason: 'wnod: no QEMU' }), { kind: 'resume' }, 'degraded still runs jobs');
  t.same(slurmAction('ok', [], { state: 'drained', reason: 'Prolog error' }).kind, 'none');
  t.same(slurmAction('ok', [], { state: 'idle', reason: '' }).kind, 'none');
  t.same(slurmAction('unknown', [], { state: 'drained', reason: 'wnod: x' }).kind, 'none');
  t.same(parseSinfoNode('drained|wnod: no QEMU\ndrained|wnod: no QEMU\n'), { state: 'drained', reason: 'wnod: no QEMU' });
  t.same(parseSinfoNode('idle|none\n'), { state: 'idle', reason: '' });
  t.equal(slurmNodeName(undefined, { SLURMD_NODENAME: 'n1' }, 'host.example'), 'n1');
  t.equal(slurmNodeName(undefined, {}, 'wn042.example.org'), 'wn042');
  t.equal(slurmNodeName('n7', { SLURMD_NODENAME: 'n1' }), 'n7');
  t.throws(() => slurmNodeName('n1 state=resume', {}), { code: 'slurm-health' });
});

t.test('torque install: the node check lines, unless the site runs its own script', async (t) => {
  t.same(nodeCheckLines('/m/wnod-node-check', undefined).lines, ['$node_check_script /m/wnod-node-check', '$node_check_interval 1']);
  const foreign = foreignNodeCheck('$pbsserver s\n$node_check_script /usr/local/sbin/nhc\n', '/m/wnod-node-check');
  t.equal(foreign, '/usr/local/sbin/nhc');
  t.same(nodeCheckLines('/m/wnod-node-check', foreign).lines, []);
  t.equal(foreignNodeCheck('$node_check_script /m/wnod-node-check\n', '/m/wnod-node-check'), undefined, 'ours is replaced in place');
});

t.test('parsers: /proc/locks holders, VM states, the root log\'s failures', async (t) => {
  const locks = '1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF\n2: -> FLOCK  ADVISORY  WRITE 4243 fd:01:999 0 EOF\n3: POSIX  ADVISORY  READ 77 00:1a:55 0 EOF\n';
  t.same([...lockedInodes(locks)].sort(), [1234, 55], 'waiters (->) hold nothing');
  t.equal(vmRunState({ prepared: 'x', started: 'x' }, true), 'booting');
  t.equal(vmRunState({ prepared: 'x', started: 'x', ready: 'x' }, true), 'running');
  t.equal(vmRunState({ ready: 'x', stopping: 'x' }, true), 'stopping');
  t.equal(vmRunState({ ready: 'x' }, false), 'dead');
  t.equal(vmRunState({ prepared: 'x' }, undefined), 'booting', 'nothing started yet, or libvirt: not judged dead');

  const now = Date.parse('2026-12-03T12:00:00Z');
  const line = (time: string, event: string, code?: string) => JSON.stringify({ time, hook: 'prologue', job: '1.ce', pid: 1, event, ...(code ? { code } : {}) });
  const log = [
    line('2026-12-01T12:00:00Z', 'requeue', 'vm-start'), // outside the window
    line('2026-12-03T08:00:00Z', 'vm-ready'),
    line('2026-12-03T09:00:00Z', 'refused', 'ticket-expired'),
    line('2026-12-03T10:00:00Z', 'requeue', 'vm-not-ready'),
    'not json', '{"broken',
    line('2026-12-03T10:30:00Z', 'requeue-exhausted', 'vm-start'),
    line('2026-12-03T11:00:00Z', 'requeue', 'node-busy'),
    line('2026-12-03T11:30:00Z', 'done'),
  ].join('\n');
  const f = failuresOf(parseLogEvents(log), now, 86400);
  t.same(f.byReason, { 'refused:ticket-expired': 1, 'requeue:vm-not-ready': 1, 'requeue-exhausted:vm-start': 1, 'requeue:node-busy': 1 });
  t.equal(f.bootsOk, 1);
  t.equal(f.bootsFailed, 2);
  t.equal(f.failingStreak, 2, 'a busy node is not a failed boot');
  // Torque's detached boot: the prologue's boot-started is no failure, the boot's own boot-failed is a failed boot
  const detached = [
    line('2026-12-03T11:40:00Z', 'boot-started'), line('2026-12-03T11:41:00Z', 'boot-failed', 'vm-start'),
    line('2026-12-03T11:42:00Z', 'refusal-recorded'), line('2026-12-03T11:43:00Z', 'already-admitted'),
  ].join('\n');
  const g = failuresOf(parseLogEvents(log + '\n' + detached), now, 86400);
  t.same(g.byReason, { ...f.byReason, 'boot-failed:vm-start': 1 });
  t.equal(g.bootsFailed, 3);
  t.equal(g.failingStreak, 3);
});

t.test('JSON: the issue\'s top-level names, always present (null when the config did not load)', async (t) => {
  const j = statusJson(reportOf(healthy()));
  for (const k of ['health', 'problems', 'accel', 'vms', 'cache', 'templates']) t.ok(k in j, k);
  t.same(j.accel && { kind: (j.accel as { kind: string }).kind, ageS: (j.accel as { ageS: number }).ageS }, { kind: 'kvm', ageS: 10800 });
  const bad = statusJson(reportOf({ now: 0, configPath: '/x', configError: 'nope' }));
  t.equal(bad.health, 'broken');
  t.same([bad.accel, bad.vms, bad.cache, bad.templates], [null, null, null, null]);
  t.same(bad.problems, [{ code: 'config-invalid', message: 'the site config /x cannot be used: nope', severity: 'broken' }]);
  t.equal(oneLine('a\n"b"\tc', 100), 'a b c');
});
