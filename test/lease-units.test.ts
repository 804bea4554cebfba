// Leases without VMs: event replay, the registry on disk and its recovery against a stub batch system, the Torque
// adapter's parsers on real-format output, the pilot's header, key and policy checks, the QEMU forward.
import t from 'tap';
import { mkdtemp, rm, writeFile, readdir, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseEvent, replay, type LeaseEvent } from '../src/lease/events.js';
import { createLeaseDir, listLeases, readLease, recordEvent, newLeaseId, type LeaseRequest } from '../src/lease/registry.js';
import { reconcile, deleteLease, parsePublicKeys, authorise, LeaseDenied, createLease } from '../src/lease/service.js';
import { pilotScript } from '../src/lease/pilot.js';
import { leaseJson } from '../src/cli/lease.js';
import { findLeaseMarker, findTicketLine } from '../src/header/scriptHeader.js';
import { parseQsubOutput, parseQstatFull, isUnknownJob, qsubArgs, walltime, LrmError } from '../src/lrm/torque/adapter.js';
import { parseFakeQsubArgs } from './kit/fakeLrm.js';
import { hostfwd, qemuArgs } from '../src/vm/qemuArgs.js';
import { parseConfig } from '../src/config/parse.js';
import { makeTestSite } from './kit/site.js';
import { readFile } from 'node:fs/promises';
import type { LrmAdapter, PilotStatus, PilotSubmission } from '../src/lrm/adapter.js';

const ev = (event: LeaseEvent['event'], t: number, more: Partial<LeaseEvent> = {}): LeaseEvent => ({ event, t, by: 'cli', ...more });

t.test('replay: the furthest step wins, the first terminal event decides, a terminal lease has no address', async (t) => {
  t.equal(replay([]).state, 'requested');
  const ready = replay([ev('requested', 1), ev('queued', 2, { jobId: '7.srv' }), ev('running', 3, { by: 'pilot' }),
    ev('ready', 3, { by: 'pilot', address: '127.0.0.1:42001', hostKey: 'ssh-ed25519 AAAA' })]);
  t.match(ready, { state: 'ready', jobId: '7.srv', address: '127.0.0.1:42001', hostKey: 'ssh-ed25519 AAAA' });
  // the guest's second-resolution clock may put running before queued: the life cycle still only moves forward
  t.equal(replay([ev('running', 1000, { by: 'pilot' }), ev('queued', 1500)]).state, 'running');
  const failedFirst = replay([ev('ready', 1, { address: '127.0.0.1:1' }), ev('failed', 5, { by: 'recovery', reason: 'gone' }), ev('released', 9, { by: 'pilot' })]);
  t.match(failedFirst, { state: 'failed', reason: 'gone' });
  t.notOk(failedFirst.address, 'no address once terminal');
  // the files' mtimes order events of different clocks
  const bySeen = replay([ev('released', 1000, { by: 'pilot', seen: 2600 }), ev('failed', 2500, { by: 'recovery', seen: 2500 })]);
  t.equal(bySeen.state, 'failed', 'failed was written first (seen), although the guest stamped released earlier');
  t.equal(replay([ev('ready', 1), ev('terminating', 2, { reason: 'deleted by the user' })]).state, 'terminating');
});

t.test('parseEvent is strict', async (t) => {
  t.match(parseEvent('{"event":"ready","t":1,"by":"pilot","address":"127.0.0.1:42000","hostKey":"ssh-ed25519 AAAAC3Nz"}', 'f'), { event: 'ready', address: '127.0.0.1:42000' });
  t.throws(() => parseEvent('nope', 'f'), /f: not JSON/);
  t.throws(() => parseEvent('{"event":"exploded","t":1,"by":"cli"}', 'f'), /event must be one of/);
  t.throws(() => parseEvent('{"event":"ready","t":"x","by":"cli"}', 'f'), /t must be/);
  t.throws(() => parseEvent('{"event":"ready","t":1,"by":"root"}', 'f'), /by must be/);
  t.throws(() => parseEvent('{"event":"ready","t":1,"by":"pilot","address":"$(reboot)"}', 'f'), /address is malformed/);
  t.throws(() => parseEvent('{"event":"ready","t":1,"by":"pilot","hostKey":"ssh-ed25519 AA\\nxx"}', 'f'), /hostKey is malformed/);
});

t.test('a lease group\'s ready event lists every VM: parsed strictly, shown while ready, gone once terminal', async (t) => {
  const vm = (i: number) => ({ name: `vm${i}`, address: `10.247.61.${i + 1}:80${i}`, hostKey: `ssh-ed25519 AAAA${i}`, privateAddress: `10.243.0.${i + 2}` });
  const text = (nodes: unknown) => JSON.stringify({ event: 'ready', t: 1, by: 'pilot', address: '10.247.61.1:800', hostKey: 'ssh-ed25519 AAAA0', nodes });
  t.same(parseEvent(text([vm(0), vm(1)]), 'f').nodes, [vm(0), vm(1)]);
  t.throws(() => parseEvent(text([]), 'f'), /nodes must be a list of 1\.\.64 VMs/);
  t.throws(() => parseEvent(text([{ ...vm(1), address: '$(reboot):1' }]), 'f'), /nodes\[0\]\.address is malformed/);
  t.throws(() => parseEvent(text([{ ...vm(1), privateAddress: 'vm1' }]), 'f'), /nodes\[0\]\.privateAddress is malformed/);
  t.throws(() => parseEvent(text([{ ...vm(1), hostKey: 'ssh-ed25519 AA"x' }]), 'f'), /nodes\[0\]\.hostKey is malformed/);
  t.throws(() => parseEvent(text([{ ...vm(1), name: 'vm1;x' }]), 'f'), /nodes\[0\]\.name is malformed/);
  t.throws(() => parseEvent(text('vm0'), 'f'), /nodes must be/);
  const ready = [ev('queued', 1, { jobId: '7' }), ev('ready', 2, { by: 'pilot', address: vm(0).address, hostKey: vm(0).hostKey, nodes: [vm(0), vm(1), vm(2)] })];
  t.same(replay(ready).nodes, [vm(0), vm(1), vm(2)]);
  t.notOk(replay([...ready, ev('released', 3, { by: 'pilot' })]).nodes, 'no VM listed once released');
  // the CLI's JSON: every VM with its ssh line, the lease's own fields describe vm0; a single lease has no "nodes"
  const base = { id: 'l0123456789', dir: '/d', problems: [], history: [], request: { ...request('l0123456789'), nodes: 3 } };
  const j = leaseJson({ ...base, ...replay(ready) });
  t.same(j.nodes, [0, 1, 2].map((i) => ({ ...vm(i), ssh: `ssh -p 80${i} u@10.247.61.${i + 1}` })));
  t.match(j, { address: vm(0).address, ssh: 'ssh -p 800 u@10.247.61.1', hostKey: vm(0).hostKey });
  t.notOk('nodes' in leaseJson({ ...base, request: request('l0123456789'), ...replay([ev('ready', 2, { address: '127.0.0.1:800', hostKey: 'ssh-ed25519 AAAA' })]) }), 'a single lease\'s JSON is as before');
});

/** A batch system that answers what the test says. */
class StubLrm implements LrmAdapter {
  readonly name = 'stub';
  status_: Record<string, PilotStatus> = {};
  submitted: PilotSubmission[] = [];
  cancelled: string[] = [];
  async submit(j: PilotSubmission): Promise<string> { this.submitted.push(j); const id = `${100 + this.submitted.length}.stub`; this.status_[id] = 'queued'; return id; }
  async cancel(id: string): Promise<void> { this.cancelled.push(id); }
  async status(id: string): Promise<PilotStatus> { return this.status_[id] ?? 'unknown'; }
}

const request = (id: string): LeaseRequest => ({ v: 1, id, user: 'u', image: 'vm_test', cpus: 1, memoryMB: 256, hours: 1, created: new Date().toISOString(), rule: 'r', authorisedBy: 'local', ticket: false });

t.test('registry on disk: events replayed by a fresh reader; recovery of vanished pilots', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'wnod-lease-reg-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const lrm = new StubLrm();
  const mk = async (events: Array<Omit<LeaseEvent, 't'>>) => {
    const id = newLeaseId();
    const dir = await createLeaseDir(root, request(id), 'ssh-ed25519 AAAA k\n');
    for (const e of events) await recordEvent(dir, e);
    return id;
  };
  const a = await mk([{ event: 'requested', by: 'cli' }, { event: 'queued', by: 'cli', jobId: '1.stub' }, { event: 'ready', by: 'pilot', address: '127.0.0.1:42000' }]);
  lrm.status_['1.stub'] = 'running';
  t.match(await reconcile(lrm, root, await readLease(root, a)), { state: 'ready', address: '127.0.0.1:42000' }, 'a running pilot: unchanged');
  lrm.status_['1.stub'] = 'unknown';
  const lost = await reconcile(lrm, root, await readLease(root, a));
  t.match(lost, { state: 'failed', reason: /no longer knows pilot job 1\.stub/ }, 'vanished: failed');
  t.match(await readLease(root, a), { state: 'failed' }, 'and recorded: a fresh reader agrees');
  // ended without a terminal event, with the prologue's refusal in the pilot's output
  const b = await mk([{ event: 'requested', by: 'cli' }, { event: 'queued', by: 'cli', jobId: '2.stub' }]);
  await writeFile(join(root, b, 'pilot.out'), 'wnod: the site refused this job: no image for group x\n');
  lrm.status_['2.stub'] = 'done';
  t.match(await reconcile(lrm, root, await readLease(root, b)), { state: 'failed', reason: /ended without releasing the lease: wnod: the site refused this job/ });
  // deleted while queued: the LRM dropped it; released, not failed
  const c = await mk([{ event: 'requested', by: 'cli' }, { event: 'queued', by: 'cli', jobId: '3.stub' }]);
  lrm.status_['3.stub'] = 'queued';
  const del = deleteLease(lrm, root, c, 5000);
  await new Promise((r) => setTimeout(r, 300));
  lrm.status_['3.stub'] = 'unknown';
  t.match(await del, { state: 'released', reason: 'deleted before its VM started' });
  t.same(lrm.cancelled, ['3.stub'], 'qdel sent');
  // a failed lease whose pilot still runs is cancelled (cleaned)
  const d = await mk([{ event: 'queued', by: 'cli', jobId: '4.stub' }, { event: 'failed', by: 'pilot', reason: 'the ssh server stopped' }]);
  lrm.status_['4.stub'] = 'running';
  await reconcile(lrm, root, await readLease(root, d));
  t.same(lrm.cancelled, ['3.stub', '4.stub'], 'the failed lease\'s pilot is qdel\'ed');
  // an unreadable event file is named, not fatal; temp files of writes in progress are ignored
  await writeFile(join(root, d, 'events', '0000000000001-pilot-ready-x.json'), '{broken');
  await writeFile(join(root, d, 'events', '.0000000000002-pilot-ready-x.json'), '{half');
  const withBad = await readLease(root, d);
  t.equal(withBad.state, 'failed');
  t.match(withBad.problems, [/0000000000001-pilot-ready-x\.json: .*not JSON/]);
  t.equal((await listLeases(root)).length, 4, 'list finds them all');
  await t.rejects(readLease(root, '../etc'), { code: 'no-such-lease' });
});

t.test('Torque adapter parsers on real-format output', async (t) => {
  t.equal(parseQsubOutput('1234.torque-server.example.org\n'), '1234.torque-server.example.org');
  t.equal(parseQsubOutput('17[].srv\n'), '17[].srv');
  t.throws(() => parseQsubOutput(''), LrmError);
  t.throws(() => parseQsubOutput('qsub: submit error (Unauthorized Request  MSG=...)\n1.x\n'), /2 lines/);
  t.throws(() => parseQsubOutput('qsub: submit error\n'), /not a Torque job id/);
  const full = [
    'Job Id: 1234.torque-server.example.org',
    '    Job_Name = wnod-l0123456789',
    '    Job_Owner = alice@ce.example.org',
    '    job_state = R',
    '    queue = wnod',
    '    server = torque-server.example.org',
    '    Resource_List.walltime = 01:00:00',
    '',
  ].join('\n');
  t.equal(parseQstatFull(full, '1234.torque-server.example.org'), 'running');
  t.equal(parseQstatFull(full, '1234'), 'running', 'short id matches the long form');
  t.equal(parseQstatFull(full.replace('job_state = R', 'job_state = Q'), '1234.torque-server.example.org'), 'queued');
  t.equal(parseQstatFull(full.replace('job_state = R', 'job_state = C'), '1234.torque-server.example.org'), 'done');
  t.equal(parseQstatFull(full.replace('job_state = R', 'job_state = H'), '1234.torque-server.example.org'), 'queued');
  t.throws(() => parseQstatFull(full, '99.other'), /no job_state for 99\.other/);
  t.throws(() => parseQstatFull(full.replace('job_state = R', 'job_state = Z'), '1234'), /unknown job_state Z/);
  t.ok(isUnknownJob('qstat: Unknown Job Id Error 1234.torque-server.example.org\n'));
  t.ok(isUnknownJob('qdel: Unknown Job Id 1234.torque-server.example.org\n'));
  t.notOk(isUnknownJob('qstat: cannot connect to server torque-server (errno=111) Connection refused\n'));
  t.equal(walltime(3600), '01:00:00');
  t.equal(walltime(100 * 3600 + 61), '100:01:01');
  const args = qsubArgs({ script: '', workdir: '/h/l', name: 'wnod-l0123456789', walltimeS: 5400, cpus: 2, memoryMB: 512, queue: 'wnod', jobClass: 'wnod', stdoutPath: '/h/l/o', stderrPath: '/h/l/e' }, '/tmp/p.sh');
  t.same(args, ['-N', 'wnod-l012345678', '-l', 'walltime=01:30:00,nodes=1:ppn=2,mem=512mb', '-o', '/h/l/o', '-e', '/h/l/e', '-q', 'wnod', '-T', 'wnod', '/tmp/p.sh']);
  t.same(parseFakeQsubArgs(args.slice(0, -1)), { name: 'wnod-l012345678', resources: 'walltime=01:30:00,nodes=1:ppn=2,mem=512mb', out: '/h/l/o', err: '/h/l/e', queue: 'wnod', jobClass: 'wnod' });
});

t.test('pilot script: marker and ticket in the header; the marker is found only there', async (t) => {
  const s = pilotScript({ leaseId: 'l0123456789', ticket: 'abc.def' });
  t.equal(findLeaseMarker(s), 'l0123456789');
  t.same(findTicketLine(s), { ticket: 'abc.def' }, 'the prologue finds the ticket as for grid jobs');
  t.equal(findLeaseMarker('#!/bin/sh\necho hi\n# wnod-lease: l0123456789\n'), undefined, 'not after the header');
  t.equal(findLeaseMarker('#!/bin/sh\n# wnod-lease: ../../x\n'), undefined, 'malformed id');
  t.throws(() => pilotScript({ leaseId: 'x; reboot' }));
  t.throws(() => pilotScript({ leaseId: 'l0123456789', ticket: 'a\nrm -rf /' }));
});

t.test('ssh public keys: plain keys only', async (t) => {
  t.equal(parsePublicKeys('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB alice@x\n\n# c\n', 'k'), 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB alice@x\n');
  t.throws(() => parsePublicKeys('-----BEGIN OPENSSH PRIVATE KEY-----\n', 'k'), /private key/);
  t.throws(() => parsePublicKeys('command="/bin/sh" ssh-ed25519 AAAA x\n', 'k'), /not an ssh public key/);
  t.throws(() => parsePublicKeys('', 'k'), /no ssh public key/);
});

t.test('authorisation: the grid policy with local groups; bounds; nothing submitted when refused', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wnod-lease-pol-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const site = await makeTestSite(dir, { rules: [{ name: 'g', group: 'physics', images: ['vm_sl6'], default: 'vm_sl6', max_cpus: 2 }], extra: { policy: { rules: [{ name: 'g', group: 'physics', images: ['vm_sl6'], default: 'vm_sl6', max_cpus: 2 }], no_ticket: 'group-default' } } });
  const cfg = parseConfig(await readFile(site.configPath, 'utf8'), site.configPath);
  const who = (groups: string[]) => ({ user: 'alice', uid: 1000, primaryGroup: groups[0] ?? 'nobody', identity: { fqans: [], groups, source: 'local' as const } });
  t.match(authorise(cfg, who(['physics']), { image: 'vm_sl6' }), { allow: true, cpus: 1, hours: 8, rule: 'g' });
  t.throws(() => authorise(cfg, who(['physics']), { image: 'vm_el9' }), /not authorised for image vm_el9 \(rule g allows: vm_sl6\)/);
  t.throws(() => authorise(cfg, who(['chemistry']), { image: 'vm_sl6' }), /no rule of this site authorises group chemistry/);
  t.throws(() => authorise(cfg, who(['physics']), { image: 'vm_sl6', cpus: 3 }), /allows 1 to 2/);
  t.throws(() => authorise(cfg, who(['physics']), { image: 'vm_sl6', hours: 1000 }), /1 minute to 72 hours/);
  const lrm = new StubLrm();
  const root = join(dir, 'leases');
  // no ticket key readable: the node's group default must give exactly what was asked
  await chmod(site.keyPath, 0o644); // loadTicketKey refuses an other-readable key: the group path is taken
  await t.rejects(createLease(cfg, lrm, root, who(['physics']), { image: 'vm_sl6', cpus: 2, authorizedKeys: 'ssh-ed25519 AAAA\n' }), LeaseDenied);
  await t.rejects(createLease(cfg, lrm, root, who(['physics']), { image: 'vm_el9', authorizedKeys: 'ssh-ed25519 AAAA\n' }), /not authorised/);
  t.same(lrm.submitted, [], 'refusals submit nothing');
  t.same(await readdir(root).catch(() => []), [], 'and record nothing');
  const ok = await createLease(cfg, lrm, root, who(['physics']), { image: 'vm_sl6', authorizedKeys: 'ssh-ed25519 AAAA\n' });
  t.match(ok, { state: 'queued', jobId: '101.stub', request: { image: 'vm_sl6', ticket: false } });
  t.match(lrm.submitted[0], { walltimeS: 8 * 3600, cpus: 1, jobClass: 'wnod', workdir: ok.dir });
  t.equal(findLeaseMarker(lrm.submitted[0]!.script), ok.id);
  // with a readable key (root, a submit group) the pilot carries a ticket for exactly this decision
  await chmod(site.keyPath, 0o600);
  const signed = await createLease(cfg, lrm, root, who(['physics']), { image: 'vm_sl6', cpus: 2, authorizedKeys: 'ssh-ed25519 AAAA\n' });
  t.match(signed.request, { ticket: true, cpus: 2 });
  t.ok(findTicketLine(lrm.submitted[1]!.script).ticket, 'ticket line in the pilot');
  // a lease group: a multi-node pilot, only on Slurm, only with a job network; refused before anything is recorded
  const before = lrm.submitted.length;
  const leases = (await readdir(root)).length;
  await t.rejects(createLease(cfg, lrm, root, who(['physics']), { image: 'vm_sl6', nodes: 3, authorizedKeys: 'ssh-ed25519 AAAA\n' }),
    /lease groups \(--nodes 3\) need a Slurm site; this site's batch system is stub/);
  const slurm = Object.assign(new StubLrm(), { name: 'slurm' });
  await t.rejects(createLease(cfg, slurm, root, who(['physics']), { image: 'vm_sl6', nodes: 3, authorizedKeys: 'ssh-ed25519 AAAA\n' }), /need the site's job network/);
  t.equal(lrm.submitted.length + slurm.submitted.length, before, 'refused groups submit nothing');
  t.equal((await readdir(root)).length, leases, 'and record nothing');
  const net = { ...cfg, jobNetwork: {} as NonNullable<typeof cfg.jobNetwork> };
  const group = await createLease(net, slurm, root, who(['physics']), { image: 'vm_sl6', nodes: 3, authorizedKeys: 'ssh-ed25519 AAAA\n' });
  t.match(group.request, { nodes: 3 });
  t.match(slurm.submitted[0], { nodes: 3, cpus: 1 });
  t.equal((await readLease(root, group.id)).request.nodes, 3, 'the registry keeps the group size');
  const single = await createLease(net, slurm, root, who(['physics']), { image: 'vm_sl6', nodes: 1, authorizedKeys: 'ssh-ed25519 AAAA\n' });
  t.notOk('nodes' in single.request, 'a lease of one is the plain lease');
  t.notOk('nodes' in slurm.submitted[1]!);
});

t.test('QEMU: a lease forward on user-mode networking keeps restrict=on', async (t) => {
  t.equal(hostfwd({ hostAddr: '127.0.0.1', hostPort: 42000, guestPort: 2222 }), 'hostfwd=tcp:127.0.0.1:42000-:2222');
  t.throws(() => hostfwd({ hostAddr: '127.0.0.1,guestfwd=x', hostPort: 1, guestPort: 2 }));
  t.throws(() => hostfwd({ hostAddr: '127.0.0.1', hostPort: 0, guestPort: 2 }));
  const a = qemuArgs({ machine: 'microvm', accel: 'tcg', cpus: 1, memoryMB: 256, kernel: '/k', sockets: { control: '/c', stdout: '/o', stderr: '/e', qmp: '/q' },
    console: '/con', pidfile: '/p', network: { mode: 'user', forwards: [{ hostAddr: '127.0.0.1', hostPort: 42000, guestPort: 2222 }] } });
  t.equal(a[a.indexOf('-netdev') + 1], 'user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:42000-:2222');
});

// ports of this engineer's test range (privileged: the lease range must be below 1024)
const TEST_PORTS = { min: 700, max: 799 };

t.test('lease ports: one per lease, busy ports skipped, the lock keeps racing prologues apart', async (t) => {
  const { allocatePort, NoFreePort, canBind } = await import('../src/job/leasePorts.js');
  const { createServer } = await import('node:net');
  const dir = await mkdtemp(join(tmpdir(), 'wnod-lease-ports-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // two adjacent free ports of the range; occupy the first with a listener
  let p = -1;
  for (let q = TEST_PORTS.min; q < TEST_PORTS.max && p < 0; q++) if (await canBind('127.0.0.1', q) && await canBind('127.0.0.1', q + 1)) p = q;
  if (p < 0) { t.comment('no two adjacent free ports in the test range: skipped'); return; }
  const busy = createServer();
  await new Promise<void>((r) => busy.listen({ host: '127.0.0.1', port: p }, () => r()));
  t.teardown(() => { busy.close(); });
  const a = await allocatePort(dir, '127.0.0.1', p, p + 1);
  t.equal(a.port, p + 1, 'the port something listens on is skipped');
  const err = await allocatePort(dir, '127.0.0.1', p + 1, p + 1).catch((e: Error) => e);
  t.type(err, NoFreePort, 'a locked port is not handed out twice');
  t.match((err as InstanceType<typeof NoFreePort>).reason, /this worker node has no free lease port: all 1 of 127\.0\.0\.1:\d+-\d+ are held/, 'the reason the user reads');
  await a.lock.release();
  const b = await allocatePort(dir, '127.0.0.1', p + 1, p + 1);
  t.equal(b.port, p + 1, 'free again once released');
  await b.lock.release();
});

t.test('lease ports are privileged: the config refuses a range ordinary users could bind, the node refuses to lease when they could', async (t) => {
  const { parseConfig } = await import('../src/config/parse.js');
  const { readFile } = await import('node:fs/promises');
  const { allocatePort, LeasePortsUnprotected } = await import('../src/job/leasePorts.js');
  const sample = await readFile(new URL('../etc/wnod.yaml', import.meta.url), 'utf8');
  const unprivileged = sample.replace(/port_min: \d+/, 'port_min: 42000').replace(/port_max: \d+/, 'port_max: 42999');
  t.throws(() => parseConfig(unprivileged, 'w.yaml'), /port_min[^\n]*1023/, 'ports above 1023 are a config error');
  const ok = parseConfig(sample.replace(/\n  port_min: \d+[^\n]*\n  port_max: \d+[^\n]*\n/, '\n'), 'w.yaml');
  t.ok(ok.lease.portMax < 1024 && ok.lease.portMin <= ok.lease.portMax, `the default range is privileged (${ok.lease.portMin}-${ok.lease.portMax})`);
  const dir = await mkdtemp(join(tmpdir(), 'wnod-lease-ports-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await t.rejects(allocatePort(dir, '127.0.0.1', TEST_PORTS.min, TEST_PORTS.max, { unprivilegedStart: 0 }), LeasePortsUnprotected,
    'a node whose net.ipv4.ip_unprivileged_port_start was lowered refuses leases rather than hand out ports anyone can take');
});

t.test('an ordinary user of the node cannot bind the lease range first (the denial of every lease)', async (t) => {
  const { ensureTestUser } = await import('./kit/pbsmom.js');
  const { unprivilegedPortStart, canBind } = await import('../src/job/leasePorts.js');
  const { execa } = await import('execa');
  if ((await unprivilegedPortStart()) <= TEST_PORTS.max) { t.comment('this host lets users bind low ports: nothing to show'); return; }
  const u = await ensureTestUser('wrtports');
  let port = -1;
  for (let q = TEST_PORTS.min; q <= TEST_PORTS.max && port < 0; q++) if (await canBind('127.0.0.1', q)) port = q;
  // env -i: tap's process tracker puts its loader into every child's NODE_OPTIONS, which the user may not reach
  const r = await execa('/usr/bin/env', ['-i', '/usr/bin/setpriv', `--reuid=${u.uid}`, `--regid=${u.gid}`, '--clear-groups', process.execPath, '-e',
    `require('node:net').createServer().once('error', (e) => { console.log(e.code); process.exit(0); }).listen(${port}, '127.0.0.1', () => { console.log('BOUND'); process.exit(0); })`],
  { reject: false, env: {}, extendEnv: false });
  t.equal(r.stdout.trim(), 'EACCES', `the user's bind of 127.0.0.1:${port} is refused (${r.stderr.slice(0, 200)})`);
});

t.test('ssh image builder parsers', async (t) => {
  const { parseDepends, parseNeeded } = await import('./kit/sshImage.js');
  t.same(parseDepends('dropbear-bin\n  Depends: libc6\n  Depends: libcrypt1\n  Depends: <debconf-2.0>\n |Depends: a\n  Breaks: dropbear\n  Suggests: openssh-client\n'), ['libc6', 'libcrypt1']);
  t.same(parseNeeded(' 0x0000000000000001 (NEEDED)             Shared library: [libtomcrypt.so.1]\n 0x0000000000000001 (NEEDED)             Shared library: [libc.so.6]\n 0x000000000000000c (INIT) 0x4000\n'), ['libtomcrypt.so.1', 'libc.so.6']);
});
