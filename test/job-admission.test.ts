// Admission's bounds (src/job/admit.ts), LRM-neutral: one admission per job id at a time (a second prologue for
// the same id leaves the first's VM alone), attempts counted when they start (an admission killed mid-way counts),
// staging bounded by the budget (real hooks under the pbs_mom harness, the detached boot's download stalled on a
// real HTTP server, cut, and its partial file removed by the epilogue), and a ticket bound to its job's shape.
// (The Range resume of a kept partial download: test/images-fetch.test.ts.)
import t from 'tap';
import http from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { parseDocument } from 'yaml';
import { admitJob } from '../src/job/admit.js';
import { hookLog, logTarget } from '../src/job/log.js';
import { readJobRecord, updateJobRecord, newJobRecord, ensureJobStateDir } from '../src/job/jobstate.js';
import type { JobStart, JobVmEngine } from '../src/job/contract.js';
import { TransientFault } from '../src/job/outcome.js';
import { loadConfig } from '../src/config/load.js';
import type { SiteConfig } from '../src/config/types.js';
import { signTicket, newNonce, type TicketClaims } from '../src/ticket/index.js';
import { PbsMom, ensureTestUser, type TestUser } from './kit/pbsmom.js';
import { run as installTorque } from '../src/cli/install-torque.js';
import { ensureBuilt } from './kit/cli.js';
import { reachable } from './kit/reachable.js';

const repo = reachable(join(import.meta.dirname, '..'));
const root = reachable(t.testdir({}));
const key = randomBytes(32);
const payload = randomBytes(6 << 20);
const payloadSha = createHash('sha256').update(payload).digest('hex');

// The image source stalls (a prologue killed by the alarm mid-download): a full request after 5 MiB, a Range
// request one byte before the end.
const ranges: string[] = [];
const server = http.createServer((req, res) => {
  ranges.push(req.headers.range ?? '');
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  if (m) {
    const from = Number(m[1]);
    res.writeHead(206, { 'content-length': payload.length - from, 'content-range': `bytes ${from}-${payload.length - 1}/${payload.length}` });
    res.write(payload.subarray(from, payload.length - 1)); // and nothing more
    return;
  }
  res.writeHead(200, { 'content-length': payload.length });
  res.write(payload.subarray(0, 5 << 20)); // and nothing more
});
let base = '';

t.before(async () => {
  await ensureBuilt();
  await chmod(root, 0o755);
  await writeFile(join(root, 'ticket.key'), key, { mode: 0o600 });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
t.teardown(() => { server.closeAllConnections(); return new Promise<void>((r) => server.close(() => r())); });

/** A site config from etc/wnod.yaml with its paths in the test dir; vm_sl6's disk comes from the test server. */
async function siteConfig(name: string, edits: [string[], unknown][] = []): Promise<{ cfg: SiteConfig; path: string; dir: string }> {
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  const doc = parseDocument(await readFile(join(repo, 'etc', 'wnod.yaml'), 'utf8'));
  const base0: [string[], unknown][] = [
    [['lrm', 'mom_priv'], join(dir, 'pbs', 'mom_priv')], [['lrm', 'max_requeues'], 1], [['lrm', 'job_class'], 'wnod'],
    [['vm', 'state_dir'], join(dir, 'state')], [['log_file'], join(dir, 'log', 'wnod.log')],
    [['accounting_file'], join(dir, 'acct', 'accounting.jsonl')], [['ticket', 'key_file'], join(root, 'ticket.key')],
    [['cache', 'dir'], join(dir, 'cache')],
    [['images', 0, 'disk'], { source: `${base}/sl6.img`, sha256: payloadSha, format: 'raw' }],
  ] as [string[], unknown][];
  for (const [p, v] of [...base0, ...edits]) doc.setIn(p, v);
  const path = join(dir, 'wnod.yaml');
  await writeFile(path, doc.toString(), { mode: 0o644 });
  return { cfg: await loadConfig(path), path, dir };
}

function ticket(cfg: SiteConfig, account: string, over: Partial<TicketClaims> = {}): string {
  const img = cfg.images.find((i) => i.id === 'vm_sl6')!;
  const now = Math.floor(Date.now() / 1000);
  return signTicket({
    v: 1, image: img.id, digest: img.digest, account, dn: '/DC=org/CN=Test', fqan: '/dteam/Role=NULL/Capability=NULL', vo: 'dteam',
    cpus: 1, memoryMB: 2048, rule: 'dteam', ce: 'ce.example.org', iat: now, exp: now + 3600, nonce: newNonce(), ...over,
  }, key);
}

const quiet = () => new Writable({ write(_c, _e, cb) { cb(); } });

function jobStart(id: string, script: string, over: Partial<JobStart> = {}): JobStart {
  return { lrm: 'test', jobId: id, user: 'wrsnobody', group: 'wrsnobody', script: async () => script, holds: {}, ...over };
}

t.test('two admissions of one job id at once: the second neither replaces nor kills the first\'s VM', async (t) => {
  const { cfg } = await siteConfig('claim');
  const script = `#!/bin/sh\n# wnod-ticket: ${ticket(cfg, 'wrsnobody')}\n`;
  let starts = 0;
  let destroys = 0;
  let up = false;
  let letBoot!: () => void;
  const booting = new Promise<void>((r) => { letBoot = r; });
  let startedFirst!: () => void;
  const firstStarted = new Promise<void>((r) => { startedFirst = r; });
  const vm: JobVmEngine = {
    async start() { starts++; startedFirst(); await booting; up = true; return { vmId: 'vm-700', bootS: 1 }; },
    async runJob() { return 0; },
    async destroy() { destroys++; up = false; return {}; },
    async running() { return up; },
  };
  const log = (n: string) => hookLog(logTarget(cfg), `prologue-${n}`, '700.wn1', quiet());
  const first = admitJob(cfg, jobStart('700.wn1', script), { vm }, log('a'));
  await firstStarted; // the first is booting its VM (it holds the job's claim)
  const second = admitJob(cfg, jobStart('700.wn1', script), { vm }, log('b'));
  await new Promise((r) => setTimeout(r, 300)); // give the second the chance to (wrongly) go ahead
  t.equal(starts, 1, 'the second waits while the first boots');
  letBoot();
  t.same(await first, { kind: 'go' });
  t.same(await second, { kind: 'go' }, 'the second finds the job admitted');
  t.equal(starts, 1, 'one VM was booted');
  t.equal(destroys, 0, 'and nobody destroyed it');
  t.match(await readFile(cfg.logFile, 'utf8'), /"hook":"prologue-b".*"event":"already-admitted"/);
  t.match(await readJobRecord(cfg.vm.stateDir, '700.wn1'), { attempts: 1, vmId: 'vm-700' }, 'the duplicate is not counted');
  // a job whose earlier VM is gone (its attempt failed, the epilogue destroyed it) is admitted anew
  up = false;
  const again = await admitJob(cfg, jobStart('700.wn1', script), { vm }, log('c'));
  t.same(again, { kind: 'go' });
  t.equal(starts, 2);
});

t.test('Torque\'s detached boot: a second prologue of the job id while its boot is under way starts no second boot', async (t) => {
  const { detachedBoot, bootUnderWay } = await import('../src/job/detachedBoot.js');
  const { procRef } = await import('../src/vm/proc.js');
  const { cfg } = await siteConfig('boot-claim');
  const script = `#!/bin/sh\n# wnod-ticket: ${ticket(cfg, 'wrsnobody')}\n`;
  let realStarts = 0;
  const real: JobVmEngine = {
    async start() { realStarts++; return { vmId: 'x', bootS: 0 }; },
    async runJob() { return 0; }, async destroy() { return {}; }, async running() { return false; },
  };
  // no hook entry beside this path: a boot the engine tried to start would fail the admission ('retry')
  const engine = detachedBoot(real, '/nonexistent/wnod.yaml', 'torque', '/nonexistent/boot.mjs');
  const log = (n: string) => hookLog(logTarget(cfg), `prologue-${n}`, '730.wn1', quiet());
  const tdir = join(cfg.vm.stateDir, 'torque');
  // what the first prologue left: the job admitted, its boot requested and running (this process stands for it)
  await ensureJobStateDir(cfg.vm.stateDir);
  await updateJobRecord(cfg.vm.stateDir, '730.wn1', () => ({ ...newJobRecord('730.wn1', 'wrsnobody'), mode: 'vm', vmId: '730.wn1' }));
  await writeFile(join(tdir, '730.wn1.boot.json'), '{}\n', { mode: 0o600 });
  await writeFile(join(tdir, '730.wn1.boot.pid'), JSON.stringify(await procRef(process.pid)) + '\n', { mode: 0o600 });
  t.ok(await bootUnderWay(cfg, '730.wn1'));
  t.same(await admitJob(cfg, jobStart('730.wn1', script), { vm: engine }, log('b')), { kind: 'go' }, 'the second finds the boot under way');
  t.match(await readFile(cfg.logFile, 'utf8'), /"hook":"prologue-b".*"event":"already-admitted"/);
  t.equal(realStarts, 0);
  // a boot that ended (its outcome written) or whose process is gone is not under way
  await writeFile(join(tdir, '730.wn1.boot.pid'), JSON.stringify({ pid: 2 ** 22 + 1, startTime: '1' }) + '\n', { mode: 0o600 });
  t.notOk(await bootUnderWay(cfg, '730.wn1'), 'its process is gone');
  await writeFile(join(tdir, '730.wn1.boot.pid'), JSON.stringify(await procRef(process.pid)) + '\n', { mode: 0o600 });
  await writeFile(join(tdir, '730.wn1.boot'), 'ready\n', { mode: 0o640 });
  t.notOk(await bootUnderWay(cfg, '730.wn1'), 'its outcome is written');
});

t.test('Torque\'s detached boot is on record before the prologue returns: a qdel right after it stops the boot', async (t) => {
  const { spawnDetached, stopBoot, bootFile } = await import('../src/job/detachedBoot.js');
  const { isAlive } = await import('../src/vm/proc.js');
  const { execFileSync } = await import('node:child_process');
  await ensureBuilt();
  const { cfg } = await siteConfig('boot-pid');
  await ensureJobStateDir(cfg.vm.stateDir);
  // a config nobody writes: the boot blocks opening it, before it could record anything of its own
  const fifo = join(t.testdir({}), 'wnod.yaml');
  execFileSync('mkfifo', [fifo]);
  await spawnDetached(cfg, fifo, 'torque', 'boot', '732.wn1', join(repo, 'dist', 'job', 'detachedBoot.js'));
  const ref = JSON.parse(await readFile(bootFile(cfg, '732.wn1', '.boot.pid'), 'utf8')) as { pid: number; startTime: string };
  t.teardown(() => { try { process.kill(ref.pid, 'SIGKILL'); } catch { /* stopped */ } });
  t.match(await readFile(`/proc/${ref.pid}/cmdline`, 'utf8'), /boot\x00732\.wn1\x00$/, 'the record names the boot process');
  t.ok(await isAlive(ref), 'still starting');
  await stopBoot(cfg, '732.wn1');
  t.notOk(await isAlive(ref), 'the epilogue stopped it');
});

t.test('attempts are counted when they start: a failed admission counts once, an exhausted job is refused before trying', async (t) => {
  const { cfg } = await siteConfig('count');
  const script = `#!/bin/sh\n# wnod-ticket: ${ticket(cfg, 'wrsnobody')}\n`;
  let starts = 0;
  const vm: JobVmEngine = {
    async start(): Promise<never> { starts++; throw new TransientFault('vm-boot', 'boot timed out (test)'); },
    async runJob() { return 0; },
    async destroy() { return {}; },
  };
  const log = hookLog(logTarget(cfg), 'prologue', '701.wn1', quiet());
  const kinds = [];
  for (let i = 0; i < 3; i++) kinds.push((await admitJob(cfg, jobStart('701.wn1', script), { vm }, log)).kind);
  t.same(kinds, ['retry', 'refuse', 'refuse'], 'max_requeues 1: one requeue, then a refusal');
  t.equal(starts, 2, 'the third admission never tried: the count said it was over');
  t.match(await readJobRecord(cfg.vm.stateDir, '701.wn1'), { attempts: 3 });
});

t.test('a ticket admits a job of its own shape: a job holding fewer cpus or less memory than the ticket is refused', async (t) => {
  const { cfg } = await siteConfig('shape');
  const vm: JobVmEngine = { async start() { return { vmId: 'x', bootS: 0 }; }, async runJob() { return 0; }, async destroy() { return {}; } };
  const log = hookLog(logTarget(cfg), 'prologue', undefined, quiet());
  const tk = (cpus: number) => `#!/bin/sh\n# wnod-ticket: ${ticket(cfg, 'wrsnobody', { cpus })}\n`;
  t.match(await admitJob(cfg, jobStart('710.wn1', tk(2), { holds: { cpus: 1 } }), { vm }, log), { kind: 'refuse', code: 'ticket-shape', reason: /issued for 2 cpus and this job holds 1/ });
  t.match(await admitJob(cfg, jobStart('711.wn1', tk(1), { holds: { cpus: 1, memoryMB: 1024 } }), { vm }, log), { kind: 'refuse', code: 'ticket-shape', reason: /2048 MB/ });
  t.same(await admitJob(cfg, jobStart('712.wn1', tk(2), { holds: { cpus: 2, memoryMB: 4096 } }), { vm }, log), { kind: 'go' }, 'the filter\'s own shape (or more)');
  t.same(await admitJob(cfg, jobStart('713.wn1', tk(2), {}), { vm }, log), { kind: 'go' }, 'an LRM that says nothing: not checked');
  t.same(await admitJob(cfg, jobStart('714.wn1', tk(2), { holds: { cpus: 1 }, sizeByHolds: true }), { vm }, log), { kind: 'go' }, 'Slurm: the VM is sized by the allocation anyway');
});

t.test('pbs_mom harness: staging stalled in the detached boot is cut at lrm.prologue_budget_s; the job ends (75), nothing is left', async (t) => {
  const user: TestUser = await ensureTestUser('wrsjob');
  const { cfg, path, dir } = await siteConfig('alarm', [[['lrm', 'prologue_budget_s'], 10]]);
  const workdir = join(dir, 'work');
  await mkdir(workdir, { recursive: true });
  await chown(workdir, user.uid, user.gid); // the VM engine shares only a workdir of the job's own user
  // the prologue returns at once (the boot is detached, off pbs_server's dispatch path): $prologalarm has nothing
  // to cut; the boot's own deadline (the budget) must stop the stalled download
  const mom = new PbsMom({ momPriv: cfg.lrm.momPriv, jobStarter: join(cfg.lrm.momPriv, 'wnod-starter'), requeueLimit: 5 });
  await mom.setup();
  const saved = process.stdout.write;
  process.stdout.write = (() => true) as typeof process.stdout.write;
  let installed;
  try {
    installed = await installTorque(['--mom-priv', cfg.lrm.momPriv, '--config', path, '--prefix', repo, '--apply']);
  } finally {
    process.stdout.write = saved;
  }
  t.equal(installed, 0, 'wnod install torque');
  ranges.length = 0;
  const r = await mom.runJob({
    id: '720.wn1', user, workdir, jobClass: 'wnod', queue: 'wnod',
    script: `#!/bin/bash\n#PBS -q wnod\n# wnod-ticket: ${ticket(cfg, user.name)}\necho should-not-run\n`,
  });
  t.same(r.attempts.map((a) => a.prologue!.timedOut ? 'killed' : a.prologue!.exitCode), [0], 'one attempt: the prologue admitted the job and returned');
  t.equal(r.exitStatus, 75, 'the VM did not come up: the node\'s fault, told with 75');
  t.match(r.stderr, /wnod: a problem on this worker node stopped the job's virtual machine/);
  t.notMatch(r.stdout + r.stderr, /should-not-run/);
  t.same(ranges, [''], 'one download, from the start, cut by the deadline');
  t.same(await readdir(join(cfg.cache.dir, 'tmp')), [], 'the last epilogue removed the partial download');
  t.same(await readdir(join(cfg.cache.dir, 'images')), [], 'and no empty entry stays');
  t.equal(await readJobRecord(cfg.vm.stateDir, '720.wn1'), undefined, 'the job record is gone');
});
