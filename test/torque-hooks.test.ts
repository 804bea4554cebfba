// The real wnod Torque hooks, installed by `wnod install torque` into a mom_priv and driven by the pbs_mom harness
// (umask 077, no output after a prologue abort, the starter for every job): ticket checks, refusals (recorded by
// the prologue, told by the starter in the job's .e with exit 77), bounded requeues, bare runs, plain jobs
// untouched, accounting.
import t from 'tap';
import { mkdir, readFile, readdir, writeFile, chmod, chown, stat, access, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { execFileSync } from 'node:child_process';
import { PbsMom, ensureTestUser, type TestUser, type JobSpec } from './kit/pbsmom.js';
import { run as installTorque } from '../src/cli/install-torque.js';
import { loadConfig } from '../src/config/load.js';
import { signTicket, newNonce, type TicketClaims } from '../src/ticket/index.js';
import { readRecords } from '../src/accounting/store.js';
import { main as prologueMain } from '../src/lrm/torque/prologue.js';
import { readJobRecord, readJobMarker } from '../src/job/jobstate.js';
import { TransientFault, REFUSED_EXIT, NODE_FAULT_EXIT } from '../src/job/outcome.js';
import type { SiteConfig } from '../src/config/types.js';
import { ensureBuilt } from './kit/cli.js';
import { reachable } from './kit/reachable.js';

const repo = reachable(join(import.meta.dirname, '..'));
const root = reachable(t.testdir({}));
let user: TestUser;
let key: Buffer;
let workdir: string;

t.before(async () => {
  await ensureBuilt();
  user = await ensureTestUser('wnodjob');
  await chmod(root, 0o755);
  workdir = join(root, 'work');
  await mkdir(workdir, { recursive: true });
  await chmod(workdir, 0o777);
  await chown(workdir, user.uid, user.gid); // the VM engine shares only a workdir of the job's own user
  key = randomBytes(32);
  await writeFile(join(root, 'ticket.key'), key, { mode: 0o600 });
});

interface Site { cfg: SiteConfig; mom: PbsMom; dir: string }

/** A site config (from etc/wnod.yaml, paths moved into the test dir) with the hooks installed into a new mom_priv. */
async function site(name: string, edits: [string[], unknown][] = []): Promise<Site> {
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  const doc = parseDocument(await readFile(join(repo, 'etc', 'wnod.yaml'), 'utf8'));
  const base: [string[], unknown][] = [
    [['lrm', 'mom_priv'], join(dir, 'pbs', 'mom_priv')], [['lrm', 'max_requeues'], 2], [['lrm', 'job_class'], 'wnod'],
    [['vm', 'state_dir'], join(dir, 'state')], [['log_file'], join(dir, 'log', 'wnod.log')],
    [['accounting_file'], join(dir, 'acct', 'accounting.jsonl')], [['ticket', 'key_file'], join(root, 'ticket.key')],
    [['cache', 'dir'], join(dir, 'cache')],
  ];
  for (const [path, value] of [...base, ...edits]) doc.setIn(path, value);
  const cfgPath = join(dir, 'wnod.yaml');
  await writeFile(cfgPath, doc.toString(), { mode: 0o644 });
  const cfg = await loadConfig(cfgPath);
  const mom = new PbsMom({ momPriv: cfg.lrm.momPriv, jobStarter: join(cfg.lrm.momPriv, 'wnod-starter'), requeueLimit: 10 });
  await mom.setup();
  const saved = process.stdout.write;
  let printed = '';
  process.stdout.write = ((s: string) => { printed += s; return true; }) as typeof process.stdout.write;
  try {
    t.equal(await installTorque(['--mom-priv', cfg.lrm.momPriv, '--config', cfgPath, '--prefix', repo, '--apply']), 0);
  } finally {
    process.stdout.write = saved;
  }
  t.match(printed, /kill_delay = 30/);
  return { cfg, mom, dir };
}

function ticket(cfg: SiteConfig, over: Partial<TicketClaims> = {}): string {
  const img = cfg.images.find((i) => i.id === 'vm_el9')!;
  const now = Math.floor(Date.now() / 1000);
  const claims: TicketClaims = {
    v: 1, image: img.id, digest: img.digest, account: user.name, dn: '/DC=org/CN=Test User', fqan: '/dteam/Role=NULL/Capability=NULL',
    vo: 'dteam', cpus: 1, memoryMB: 2048, rule: 'dteam', ce: 'ce.example.org', iat: now, exp: now + 3600, nonce: newNonce(), ...over,
  };
  return signTicket(claims, key);
}

const job = (id: string, header: string, body = 'echo hello-from-job\n'): JobSpec => ({
  id, user, workdir, jobClass: 'wnod', queue: 'wnod', script: `#!/bin/bash\n#PBS -q wnod\n${header}\n${body}`,
});

t.test('install: shims in mom_priv, root-owned with pbs_mom\'s modes, mom config written', async (t) => {
  const s = await site('install');
  for (const [f, mode] of [['prologue.wnod', 0o500], ['epilogue.wnod', 0o500], ['prologue.parallel', 0o500], ['epilogue.parallel', 0o500], ['wnod-starter', 0o555]] as const) {
    const st = await stat(join(s.cfg.lrm.momPriv, f));
    t.equal(st.uid, 0, `${f} owner`);
    t.equal(st.mode & 0o777, mode, `${f} mode`);
  }
  const conf = await readFile(join(s.cfg.lrm.momPriv, 'config'), 'utf8');
  t.match(conf, /^\$prologalarm 300$/m);
  t.match(conf, new RegExp(`^\\$job_starter ${s.cfg.lrm.momPriv}/wnod-starter$`, 'm'));
  const shim = await readFile(join(s.cfg.lrm.momPriv, 'prologue.wnod'), 'utf8');
  t.match(shim, new RegExp(`--config ${s.dir}/wnod.yaml --log ${s.cfg.logFile} prologue "\\$@"`));
  t.match(shim, /^exec \/usr\/bin\/env -i PATH=\/usr\/sbin:\/usr\/bin:\/sbin:\/bin /m, 'root shims start from a clean environment');
  // the sister hosts' hooks of a multi-node job: of pbs_mom's environment only the host's index and the workdir
  const sister = await readFile(join(s.cfg.lrm.momPriv, 'prologue.parallel'), 'utf8');
  t.match(sister, /^exec \/usr\/bin\/env -i PATH=\/usr\/sbin:\/usr\/bin:\/sbin:\/bin LANG=C\.UTF-8 "PBS_NODENUM=\$\{PBS_NODENUM-\}" "PBS_O_WORKDIR=\$\{PBS_O_WORKDIR-\}" \\$/m);
  t.match(sister, new RegExp(`--config ${s.dir}/wnod.yaml --log ${s.cfg.logFile} sister "\\$@"`));
  t.match(await readFile(join(s.cfg.lrm.momPriv, 'epilogue.parallel'), 'utf8'), new RegExp(`--config ${s.dir}/wnod.yaml --log ${s.cfg.logFile} sister-epilogue "\\$@"`));
});

t.test('valid ticket: admitted at once, the VM boots detached; an image this node cannot stage: the starter says the node failed (75)', async (t) => {
  // the VM engine is wired (entry.ts); etc/wnod.yaml's images point at /shared storage this machine lacks.
  // Jobs that really run in a VM: test/torque-vm.test.ts.
  const s = await site('valid');
  const r = await s.mom.runJob(job('100.wn1', `# wnod-ticket: ${ticket(s.cfg)}`));
  t.same(r.attempts.map((a) => a.prologue!.exitCode), [0], 'the prologue admits and returns: staging and boot are off pbs_server\'s dispatch path');
  t.equal(r.outcome, 'completed');
  t.equal(r.exitStatus, NODE_FAULT_EXIT, 'the starter waited for the boot, tells the user and exits 75');
  t.notMatch(r.stdout, /hello-from-job/, 'the job itself never ran');
  t.match(r.stderr, /^wnod: a problem on this worker node stopped the job's virtual machine \(image-staging\); the job did not run, resubmit it$/m);
  t.notMatch(r.stdout + r.stderr, /\/shared\/|qemu|ENOENT/i, 'the staging detail stays in the root log');
  t.ok(r.attempts.every((a) => a.epilogue!.exitCode === 0), 'every epilogue ran and succeeded');
  const { records, corrupt } = await readRecords(s.cfg.accountingFile);
  t.equal(corrupt.length, 0);
  t.equal(records.length, 1, 'accounted once');
  t.match(records[0], { jobId: '100.wn1', user: user.name, vo: 'dteam', image: 'vm_el9', fqan: '/dteam/Role=NULL/Capability=NULL', dn: '/DC=org/CN=Test User', exitStatus: NODE_FAULT_EXIT, mode: 'vm', cpus: 1, memoryMB: 2048 });
  t.equal((await stat(s.cfg.accountingFile)).mode & 0o777, 0o600);
  t.equal(await readJobRecord(s.cfg.vm.stateDir, '100.wn1'), undefined, 'the epilogue cleaned the job record');
  t.equal(await readJobMarker(s.cfg.vm.stateDir, '100.wn1'), undefined, 'and the refusal record');
  // created by the hooks under pbs_mom's umask 077: the modes are set explicitly
  t.equal((await stat(s.cfg.vm.stateDir)).mode & 0o777, 0o711, 'state dir traversable');
  t.equal((await stat(join(s.cfg.vm.stateDir, 'torque'))).mode & 0o777, 0o755, 'markers readable');
  const log = await readFile(s.cfg.logFile, 'utf8');
  t.match(log, /"event":"accepted"/);
  t.match(log, /"hook":"boot".*"event":"boot-failed".*"code":"image-staging".*\/shared\/wnod\/images/);
  t.same((await readdir(join(s.cfg.vm.stateDir, 'torque'))).filter((f) => f.startsWith('100.wn1')), [], 'the epilogue removed the boot files');
  t.equal((await stat(s.cfg.logFile)).mode & 0o777, 0o600);
});

t.test('refusals: recorded by the prologue (exit 0), one clear line in the job\'s .e, exit 77, the job never runs, nothing accounted', async (t) => {
  const s = await site('refuse');
  const other = ticket(s.cfg, { account: 'someoneelse' });
  const good = ticket(s.cfg);
  const tampered = good.slice(0, 10) + (good[10] === 'A' ? 'B' : 'A') + good.slice(11);
  const expired = ticket(s.cfg, { iat: 1000, exp: 2000 });
  const stale = ticket(s.cfg, { digest: 'f'.repeat(64) });
  const cases: [string, string, RegExp][] = [
    ['200.wn1', '', /no wnod ticket/],
    ['201.wn1', '# wnod-deny: image vm_x is not allowed for /dteam', /the site refused this job: image vm_x is not allowed/],
    ['202.wn1', `# wnod-ticket: ${tampered}`, /ticket is not valid/],
    ['203.wn1', `# wnod-ticket: ${other}`, /issued to another account/],
    ['204.wn1', `# wnod-ticket: ${expired}`, /expired/],
    ['205.wn1', `# wnod-ticket: ${stale}`, /changed since the job was submitted/],
  ];
  for (const [id, header, re] of cases) {
    const r = await s.mom.runJob(job(id, header));
    t.equal(r.attempts[0]!.prologue!.exitCode, 0, `${id}: the prologue lets the job run, only to tell the user`);
    t.equal(r.delivered, true, id);
    t.equal(r.exitStatus, REFUSED_EXIT, id);
    t.equal(r.requeues, 0, id);
    t.match(r.stderr, re, id);
    t.equal(r.stderr.trim().split('\n').length, 1, `${id}: one line`);
    t.match(r.stderr, /^wnod: /, id);
    t.equal(r.stdout, '', `${id}: nothing in the .o file`);
    t.equal(r.attempts[0]!.epilogue!.exitCode, 0, `${id}: epilogue ran`);
    t.notMatch(r.stdout + r.stderr, /hello-from-job/, `${id}: the job itself never ran`);
  }
  t.equal(await readJobMarker(s.cfg.vm.stateDir, '205.wn1'), undefined, 'the epilogue removed the refusal record');
  t.equal((await readRecords(s.cfg.accountingFile)).records.length, 0);
});

t.test('replay: a ticket already used on this node is refused for another job', async (t) => {
  const s = await site('replay');
  const tok = ticket(s.cfg);
  const r1 = await s.mom.runJob(job('300.wn1', `# wnod-ticket: ${tok}`));
  t.notMatch(r1.stdout, /not valid/, 'first use (and its requeues): the ticket is accepted');
  const r2 = await s.mom.runJob(job('301.wn1', `# wnod-ticket: ${tok}`));
  t.equal(r2.exitStatus, REFUSED_EXIT);
  t.match(r2.stderr, /already used on this node/);
});

t.test('transient fault (ticket key missing): requeued max_requeues times, then aborted', async (t) => {
  const s = await site('transient', [[['ticket', 'key_file'], '/nonexistent/wnod-ticket.key']]);
  const r = await s.mom.runJob(job('400.wn1', `# wnod-ticket: ${ticket(s.cfg)}`));
  t.same(r.attempts.map((a) => a.prologue!.exitCode), [2, 2, 0], 'max_requeues 2: two requeues, then a recorded refusal');
  t.equal(r.exitStatus, REFUSED_EXIT);
  t.match(r.stderr, /giving up/);
  t.notMatch(r.stdout + r.stderr, /nonexistent/, 'the hypervisor/host detail stays in the root log');
  t.match(await readFile(s.cfg.logFile, 'utf8'), /nonexistent\/wnod-ticket.key/);
});

t.test('policy no_ticket: bare — the starter runs the job on the host as the user; accounted as bare', async (t) => {
  const s = await site('bare', [[['policy', 'no_ticket'], 'bare']]);
  const r = await s.mom.runJob(job('500.wn1', '', 'echo hello-from-job; id -u; pwd; echo "jobid=$PBS_JOBID"\nexit 7\n'));
  t.equal(r.outcome, 'completed');
  t.equal(r.exitStatus, 7);
  t.match(r.stdout, new RegExp(`hello-from-job\\n${user.uid}\\n${workdir}\\njobid=500.wn1`));
  const { records } = await readRecords(s.cfg.accountingFile);
  t.match(records, [{ jobId: '500.wn1', mode: 'bare', exitStatus: 7, image: '' }]);
  // qdel through the real starter: the job dies of SIGTERM and so does the starter: 256+15, as without a starter
  const q = await s.mom.runJob({ ...job('501.wn1', '', 'echo started; sleep 60\n'), qdelAfterMs: 1500 });
  t.equal(q.exitStatus, 271);
  t.match(q.stdout, /started/);
  // Torque 2.5 argv (7 and 10 items, no script path): the hooks find the script in mom_priv/jobs themselves
  const old = new PbsMom({ ...s.mom.opts, version: '2.5' });
  const r25 = await old.runJob(job('502.wn1', '', 'echo from-2.5\n'));
  t.equal(r25.exitStatus, 0);
  t.match(r25.stdout, /from-2\.5/);
  t.equal(r25.attempts[0]!.epilogue!.exitCode, 0);
  t.equal((await readRecords(s.cfg.accountingFile)).records.length, 3);
});

t.test('requeue of one job: its own nonce is accepted again, the counter turns into exit 1 (in-process, stub VM engine)', async (t) => {
  const s = await site('nonce');
  const id = '600.wn1';
  await writeFile(join(s.cfg.lrm.momPriv, 'jobs', `${id}.SC`), `#!/bin/bash\n# wnod-ticket: ${ticket(s.cfg)}\necho x\n`, { mode: 0o500 });
  const argv = [id, user.name, user.group, 'STDIN', 'walltime=00:05:00', 'wnod', '', join(s.cfg.lrm.momPriv, 'jobs', `${id}.SC`)];
  let starts = 0;
  const vm = {
    async start() { starts++; if (starts < 3) throw new TransientFault('vm-boot', 'boot timed out (test)'); return { vmId: 'vm-600', bootS: 1.5 }; },
    async runJob() { return 0; },
    async destroy() { return {}; },
  };
  const out: string[] = [];
  const sink = { write: (s: string) => { out.push(s); return true; } } as unknown as NodeJS.WritableStream;
  const ctx = { configPath: join(s.dir, 'wnod.yaml'), vm, stdout: sink as never };
  t.equal(await prologueMain(argv, {}, ctx), 2, 'attempt 1: requeue');
  t.equal(await prologueMain(argv, {}, ctx), 2, 'attempt 2: requeue — the same job may present its nonce again');
  t.equal(await prologueMain(argv, {}, ctx), 0, 'attempt 3: the VM is up');
  const rec = await readJobRecord(s.cfg.vm.stateDir, id);
  t.match(rec, { attempts: 3, mode: 'vm', vmId: 'vm-600', bootS: 1.5 }, 'three admissions started (counted when each starts)');
  // a fresh job with exhausted budget: max_requeues 2 → the third transient failure aborts
  const id2 = '601.wn1';
  await writeFile(join(s.cfg.lrm.momPriv, 'jobs', `${id2}.SC`), `#!/bin/bash\n# wnod-ticket: ${ticket(s.cfg)}\n`, { mode: 0o500 });
  const argv2 = [id2, ...argv.slice(1, 7), join(s.cfg.lrm.momPriv, 'jobs', `${id2}.SC`)];
  const failing = { ...vm, async start(): Promise<never> { throw new TransientFault('vm-boot', 'boot timed out (test)'); } };
  const codes = [];
  for (let i = 0; i < 3; i++) codes.push(await prologueMain(argv2, {}, { ...ctx, vm: failing }));
  t.same(codes, [2, 2, 0], 'the third failure: a refusal, recorded');
  t.match(await readJobMarker(s.cfg.vm.stateDir, id2), { mode: 'refuse', reason: /giving up/ });
  await rm(join(s.cfg.lrm.momPriv, 'jobs', `${id}.SC`));
});

t.test('a plain job on a wnod node runs unchanged: the starter shim execs its login shell, no wnod code', async (t) => {
  const s = await site('plain');
  // no job class: pbs_mom has no prologue for it (only prologue.wnod exists), so wnod leaves no marker
  const body = 'echo "parent=$(cat /proc/$PPID/comm) argv0=$(tr \'\\0\' \' \' < /proc/$PPID/cmdline)"; echo "id=$(id -u) pwd=$(pwd)"; exit 5\n';
  const r = await s.mom.runJob({ id: '700.wn1', user, workdir, script: `#!/bin/bash\n${body}` });
  t.equal(r.exitStatus, 5);
  t.equal(r.attempts[0]!.starter!.path, join(s.cfg.lrm.momPriv, 'wnod-starter'), 'through the MOM-wide starter');
  t.match(r.stdout, /^parent=bash argv0=-bash $/m, 'the script\'s parent is the login shell the shim became (exec), not node');
  t.match(r.stdout, new RegExp(`^id=${user.uid} pwd=${workdir}$`, 'm'));
  t.equal(r.stderr, '');
  t.notMatch(await readFile(s.cfg.logFile, 'utf8').catch(() => ''), /700\.wn1/, 'no wnod hook saw the job');
  // a TM task (pbsdsh) of a plain job: its own argv, exec'd
  const shim = join(s.cfg.lrm.momPriv, 'wnod-starter');
  const asUser = { uid: user.uid, gid: user.gid, env: { PATH: '/usr/bin:/bin', PBS_JOBID: '701.wn1' }, reject: false };
  const { execa } = await import('execa');
  t.match(await execa(shim, ['/bin/echo', 'tm-task'], asUser), { exitCode: 0, stdout: 'tm-task' });
  // a state dir the user cannot search would hide a wnod job's marker: the shim hands over to wnod, which says why
  await mkdir(s.cfg.vm.stateDir, { mode: 0o700 });
  await chmod(s.cfg.vm.stateDir, 0o700);
  const hidden = await execa(shim, ['/bin/echo', 'tm-task'], asUser);
  t.equal(hidden.exitCode, 75, 'not run bare');
  t.match(hidden.stderr, /must be traversable by job users/);
  await rm(s.cfg.vm.stateDir, { recursive: true });
  // as root ($job_starter_run_privileged): no job runs, whatever it is
  const rooted = await execa(shim, ['/bin/echo', 'as-root'], { env: { PATH: '/usr/bin:/bin', PBS_JOBID: '702.wn1' }, reject: false });
  t.equal(rooted.exitCode, 75);
  t.equal(rooted.stdout, '');
  t.match(rooted.stderr, /job starter runs as root/);
});

t.test('$job_starter_run_privileged: the prologue aborts every wnod job (the starter never runs as root)', async (t) => {
  const s = await site('privileged');
  const conf = join(s.cfg.lrm.momPriv, 'config');
  await writeFile(conf, (await readFile(conf, 'utf8')) + '$job_starter_run_privileged true\n');
  const r = await s.mom.runJob(job('710.wn1', `# wnod-ticket: ${ticket(s.cfg)}`));
  t.equal(r.attempts[0]!.prologue!.exitCode, 1);
  t.equal(r.outcome, 'aborted');
  t.notOk(r.attempts[0]!.starter, 'the starter never ran');
  t.match(await readFile(s.cfg.logFile, 'utf8'), /"event":"starter-privileged"/);
  // wnod install refuses such a config
  const saved = process.stdout.write;
  process.stdout.write = (() => true) as typeof process.stdout.write; // (tap's own output goes there too: assert after)
  let refused: unknown;
  try {
    await installTorque(['--mom-priv', s.cfg.lrm.momPriv, '--config', join(s.dir, 'wnod.yaml'), '--prefix', repo]);
  } catch (err) {
    refused = err;
  } finally {
    process.stdout.write = saved;
  }
  t.match(refused, { code: 'install', message: /job_starter_run_privileged/ }, 'wnod install torque refuses such a config');
});

t.test('a config error never reaches the job\'s files: one line for the user, the detail in the install-time log', async (t) => {
  const s = await site('badconfig');
  const cfgPath = join(s.dir, 'wnod.yaml');
  await writeFile(cfgPath, (await readFile(cfgPath, 'utf8')) + 'images: [oops\n');
  const r = await s.mom.runJob(job('720.wn1', `# wnod-ticket: ${ticket(s.cfg)}`));
  t.equal(r.outcome, 'aborted');
  const all = r.spool.stdout + r.spool.stderr;
  t.match(r.spool.stdout, /^wnod: this worker node is misconfigured \(wnod site config\); the job was not started$/m);
  t.notMatch(all, /wnod\.yaml|oops|line \d/i, 'neither the config path nor YAML in the job\'s output');
  t.match(await readFile(s.cfg.logFile, 'utf8'), /"event":"config-unreadable"/);
});

t.test('the VM gets what the job holds (ppn, mem), within the image\'s maxima (in-process, stub VM engine)', async (t) => {
  const s = await site('holds');
  const shapes: { cpus: number; memoryMB: number }[] = [];
  const vm = {
    async start(j: { cpus: number; memoryMB: number }) { shapes.push({ cpus: j.cpus, memoryMB: j.memoryMB }); return { vmId: 'vm-h', bootS: 1 }; },
    async runJob() { return 0; },
    async destroy() { return {}; },
  };
  const sink = { write: () => true } as unknown as NodeJS.WritableStream;
  const cases: [string, string, { cpus: number; memoryMB: number }][] = [
    ['800.wn1', 'nodes=1:ppn=2,mem=512mb,walltime=00:05:00', { cpus: 2, memoryMB: 512 }],
    ['801.wn1', 'nodes=1:ppn=16,mem=64gb,walltime=00:05:00', { cpus: 8, memoryMB: 16384 }], // vm_el9: max 8 cpus, 16 GiB
    ['802.wn1', 'walltime=00:05:00', { cpus: 1, memoryMB: 2048 }], // holds nothing said: the ticket's shape
  ];
  for (const [id, rl] of cases) {
    const script = join(s.cfg.lrm.momPriv, 'jobs', `${id}.SC`);
    await writeFile(script, `#!/bin/bash\n# wnod-ticket: ${ticket(s.cfg)}\n`, { mode: 0o500 });
    t.equal(await prologueMain([id, user.name, user.group, 'STDIN', rl, 'wnod', '', script], {}, { configPath: join(s.dir, 'wnod.yaml'), vm, stdout: sink as never }), 0, id);
    await rm(script);
  }
  t.same(shapes, cases.map((c) => c[2]), 'a 1-cpu / 2 GiB ticket: the VM is sized by Resource_List, capped by the image');
});
