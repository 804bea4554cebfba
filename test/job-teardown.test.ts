// What belongs to a job id is destroyed even when things go wrong (issue 16 item 3): the epilogue tears the job's
// VM down without a readable config (the state dir from admission's pointer), and `wnod gc` treats a VM whose
// job is gone from the node as an orphan although its hypervisor runs. A VM here is a real detached process in
// its own session (as QEMU is) behind a real VM record. Also `wnod check` and a privileged job starter.
import t from 'tap';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, readFile, writeFile, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { PbsMom, ensureTestUser, type TestUser } from './kit/pbsmom.js';
import { run as installTorque } from '../src/cli/install-torque.js';
import { loadConfig } from '../src/config/load.js';
import type { SiteConfig } from '../src/config/types.js';
import { writeRecord, readRecord, runDirOf, vmIdForJob, vmSockets } from '../src/vm/state.js';
import { procRef, isAlive, type ProcRef } from '../src/vm/proc.js';
import type { VmState } from '../src/vm/driver.js';
import { updateJobRecord, newJobRecord } from '../src/job/jobstate.js';
import { pointerPath } from '../src/job/pointer.js';
import { momConfigRunsPrivileged as privilegedStarter } from '../src/lrm/torque/install.js';
import { main as slurmEpilog } from '../src/lrm/slurm/epilog.js';
import { rememberStateDir } from '../src/job/pointer.js';
import { ensureBuilt, wnod } from './kit/cli.js';
import { reachable } from './kit/reachable.js';

const repo = reachable(join(import.meta.dirname, '..'));
const root = reachable(t.testdir({}));
const started: number[] = [];
let user: TestUser;

t.before(async () => {
  await ensureBuilt();
  await chmod(root, 0o755);
  await writeFile(join(root, 'ticket.key'), randomBytes(32), { mode: 0o600 });
  user = await ensureTestUser('wrsjob');
});
t.teardown(() => { for (const pid of started) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } });

async function siteConfig(name: string, edits: [string[], unknown][] = []): Promise<{ cfg: SiteConfig; path: string; dir: string }> {
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  const doc = parseDocument(await readFile(join(repo, 'etc', 'wnod.yaml'), 'utf8'));
  for (const [p, v] of [
    [['lrm', 'mom_priv'], join(dir, 'pbs', 'mom_priv')], [['lrm', 'job_class'], 'wnod'], [['vm', 'state_dir'], join(dir, 'state')],
    [['log_file'], join(dir, 'log', 'wnod.log')], [['accounting_file'], join(dir, 'acct', 'accounting.jsonl')],
    [['ticket', 'key_file'], join(root, 'ticket.key')], [['cache', 'dir'], join(dir, 'cache')], ...edits,
  ] as [string[], unknown][]) doc.setIn(p, v);
  const path = join(dir, 'wnod.yaml');
  await writeFile(path, doc.toString(), { mode: 0o644 });
  return { cfg: await loadConfig(path), path, dir };
}

/** A stand-in for a job's QEMU: a detached process in its own session, named by a handed-over VM record. */
async function fakeVm(stateDir: string, jobId: string): Promise<{ id: string; ref: ProcRef }> {
  const child = spawn('/bin/sleep', ['600'], { detached: true, stdio: 'ignore' });
  child.unref();
  started.push(child.pid!);
  const ref = (await procRef(child.pid!))!;
  const id = vmIdForJob(jobId);
  const runDir = runDirOf(stateDir, id);
  await mkdir(join(runDir, 'agent'), { recursive: true });
  await writeFile(join(runDir, 'console.log'), 'booted\n');
  const state = {
    version: 1, id, jobId, driver: 'qemu', stateDir, runDir, pids: { qemu: ref }, sockets: vmSockets(stateDir, id), files: [],
    steps: { prepared: new Date().toISOString(), started: new Date().toISOString(), ready: new Date().toISOString() },
    owner: ref, handedOver: true,
    spec: { id, jobId, cpus: 1, memoryMB: 512, hostname: id, user: { name: user.name, uid: user.uid, gid: user.gid }, env: {}, network: { mode: 'none' },
      image: { id: 'vm_el9', digest: 'a'.repeat(64), kind: 'kernel', files: {} } },
  } as unknown as VmState;
  await writeRecord(stateDir, state);
  return { id, ref };
}

t.test('pbs_mom harness: the epilogue destroys the job\'s VM although the config has become unreadable', async (t) => {
  const { cfg, path, dir } = await siteConfig('noconfig', [[['policy', 'no_ticket'], 'bare']]);
  const workdir = join(dir, 'work');
  await mkdir(workdir, { recursive: true });
  await chown(workdir, user.uid, user.gid);
  const mom = new PbsMom({ momPriv: cfg.lrm.momPriv, jobStarter: join(cfg.lrm.momPriv, 'wnod-starter'), requeueLimit: 2 });
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
  const job = (id: string) => ({ id, user, workdir, jobClass: 'wnod', queue: 'wnod', script: '#!/bin/bash\n#PBS -q wnod\necho ran\n' });
  // a first job: its admission points the config at its state dir
  t.equal((await mom.runJob(job('800.wn1'))).exitStatus, 0);
  t.equal(await readFile(pointerPath(path), 'utf8'), `${cfg.vm.stateDir}\n`, 'the state-dir pointer beside the config');
  t.equal((await stat(pointerPath(path))).uid, 0);
  // job 801's VM is running when the config breaks (an edit with a YAML error)
  const vm = await fakeVm(cfg.vm.stateDir, '801.wn1');
  await updateJobRecord(cfg.vm.stateDir, '801.wn1', () => ({ ...newJobRecord('801.wn1', user.name), mode: 'vm', vmId: vm.id }));
  await writeFile(path, 'vm: [\n', { mode: 0o644 });
  const r = await mom.runJob(job('801.wn1'));
  t.equal(r.outcome, 'aborted', 'the prologue cannot read the config: the job is aborted');
  t.equal(r.attempts[0]!.epilogue!.exitCode, 1, 'the epilogue reports the config fault');
  t.notOk(await isAlive(vm.ref), 'and still killed the job\'s hypervisor');
  t.equal(await readRecord(cfg.vm.stateDir, vm.id), undefined, 'its VM record is gone');
  t.notOk(await stat(runDirOf(cfg.vm.stateDir, vm.id)).then(() => true, () => false), 'its runtime dir is gone');
  t.notOk(await stat(join(cfg.vm.stateDir, 'torque', '801.wn1.json')).then(() => true, () => false), 'its job record is gone');
  t.notMatch(r.stderr + r.stdout, /not accounted|vm: \[|YAML/, 'nothing of the config fault in the job\'s files');
  t.match(await readFile(cfg.logFile, 'utf8'), /"event":"teardown-without-config","note":"job 801\.wn1: destroyed its VM 801\.wn1 in .* \(named by the state-dir pointer\); not accounted"/, 'the admin reads it in the install-time log');
});

t.test('Slurm Epilog: the same teardown without a config (in-process, a real process as the hypervisor)', async (t) => {
  const { cfg, path } = await siteConfig('slurm-noconfig');
  await rememberStateDir(path, cfg.vm.stateDir); // what the Prolog's admission does
  const vm = await fakeVm(cfg.vm.stateDir, '4242');
  await writeFile(path, 'lrm: {\n', { mode: 0o644 });
  const said: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((s: string) => { said.push(String(s)); return true; }) as typeof process.stderr.write;
  let code;
  try {
    code = await slurmEpilog({ SLURM_JOB_ID: '4242', SLURM_JOB_USER: user.name, SLURM_JOB_UID: String(user.uid), SLURM_JOB_PARTITION: 'wnod' }, { configPath: path });
  } finally {
    process.stderr.write = write;
  }
  t.equal(code, 1, 'the Epilog reports the config fault');
  t.notOk(await isAlive(vm.ref), 'the job\'s hypervisor is gone');
  t.equal(await readRecord(cfg.vm.stateDir, vm.id), undefined);
  t.match(said.join(''), /wnod epilog: job 4242: destroyed its VM 4242/);
});

t.test('wnod gc: a VM whose job is gone from the node is an orphan although its hypervisor runs', async (t) => {
  const { cfg, path } = await siteConfig('gc');
  const alive = await fakeVm(cfg.vm.stateDir, '900.wn1');
  const gone = await fakeVm(cfg.vm.stateDir, '901.wn1');
  await updateJobRecord(cfg.vm.stateDir, '900.wn1', () => newJobRecord('900.wn1', user.name));
  let g = await wnod(['gc', '--state-dir', cfg.vm.stateDir], { timeoutMs: 60_000 });
  t.equal(g.exitCode, 0, g.stderr);
  t.match(g.stdout, /destroyed 901\.wn1 \(its batch job is gone\)/);
  t.notOk(await isAlive(gone.ref), 'the orphan\'s hypervisor was killed');
  t.ok(await isAlive(alive.ref), 'the VM of a job the node still has is kept');
  // Torque (with the config): pbs_mom's own job file decides — the record alone is not enough
  await mkdir(join(cfg.lrm.momPriv, 'jobs'), { recursive: true });
  await writeFile(join(cfg.lrm.momPriv, 'jobs', '900.wn1.JB'), '');
  g = await wnod(['gc', '--config', path], { timeoutMs: 60_000 });
  t.equal(g.exitCode, 0, g.stderr);
  t.ok(await isAlive(alive.ref), 'kept while pbs_mom has the job');
  await unlink(join(cfg.lrm.momPriv, 'jobs', '900.wn1.JB'));
  g = await wnod(['gc', '--config', path], { timeoutMs: 60_000 });
  t.match(g.stdout, /destroyed 900\.wn1 \(its batch job is gone\)/, 'pbs_mom purged the job: its VM goes');
  t.notOk(await isAlive(alive.ref));
});

t.test('wnod check: a privileged job starter in the mom config is an error; the accelerator is reported', async (t) => {
  const { cfg, path } = await siteConfig('check');
  await mkdir(cfg.lrm.momPriv, { recursive: true });
  await writeFile(join(cfg.lrm.momPriv, 'config'), '$prologalarm 300\n$job_starter /x/wnod-starter\n');
  let c = await wnod(['check', '--config', path], { timeoutMs: 60_000 });
  t.equal(c.exitCode, 0, c.stderr);
  t.match(c.stdout, /^accelerator: jobs on this node get .* — /m);
  await writeFile(join(cfg.lrm.momPriv, 'config'), '$prologalarm 300\n$job_starter /x/wnod-starter\n$job_starter_run_privileged true\n');
  c = await wnod(['check', '--config', path], { timeoutMs: 60_000 });
  t.equal(c.exitCode, 1);
  t.match(c.stdout, /^error: .*mom_priv\/config: \$job_starter_run_privileged is on/m);
  // --mom-priv names another one (the default is lrm.mom_priv, else /var/spool/torque/mom_priv)
  const other = join(root, 'other-mom-priv');
  await mkdir(other, { recursive: true });
  await writeFile(join(other, 'config'), '$job_starter_run_privileged false\n');
  c = await wnod(['check', '--config', path, '--mom-priv', other], { timeoutMs: 60_000 });
  t.equal(c.exitCode, 0);
  c = await wnod(['check', '--config', path, '--json'], { timeoutMs: 60_000 });
  t.match(JSON.parse(c.stdout), { ok: false, errors: [/job_starter_run_privileged/], accel: { accel: String } });
  // pbs_mom's booleans: t…, y…, 1…, on; the last line wins
  for (const v of ['true', 'TRUE', 'yes', '1', 'on']) t.ok(privilegedStarter(`$job_starter_run_privileged ${v}\n`), v);
  for (const v of ['false', '0', 'no', 'off']) t.notOk(privilegedStarter(`$job_starter_run_privileged ${v}\n`), v);
  t.notOk(privilegedStarter('$job_starter_run_privileged true\n$job_starter_run_privileged false\n'));
  t.notOk(privilegedStarter('# $job_starter_run_privileged true\n'));
});
