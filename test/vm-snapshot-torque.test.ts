// Warm snapshots through the Torque hooks (vm.snapshots: true): the first job of an image and shape cold boots and
// starts a detached template build; the next goes prologue → starter → epilogue on a restored clone, its workdir
// over 9p (the mini kernel has it), and the prologue's root log says how each VM came up.
import t from 'tap';
import { chmod, chown, mkdir, mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { PbsMom, ensureTestUser, type TestUser, type JobSpec } from '../src/testkit/pbsmom.js';
import { buildTestImage, type TestImage } from '../src/testkit/testImage.js';
import { makeVmSite, type VmSite } from '../src/demo/vmSite.js';
import { loadConfig } from '../src/config/load.js';
import { signTicket, newNonce } from '../src/ticket/index.js';
import { lookupTemplate } from '../src/vm/snapshot.js';
import type { SiteConfig } from '../src/config/types.js';
import { ensureBuilt } from './lib/cli.js';
import { reachable } from './lib/reachable.js';

const repo = reachable(join(import.meta.dirname, '..'));
const cli = join(repo, 'dist', 'cli', 'main.js');
let dir: string;
let img: TestImage;
let user: TestUser;
let site: VmSite;
let cfg: SiteConfig;
let mom: PbsMom;
let workdir: string;

t.before(async () => {
  await ensureBuilt();
  img = await buildTestImage({ kernel: 'mini' });
  user = await ensureTestUser('wnodvm');
  dir = await mkdtemp(join(tmpdir(), 'wnod-snap-torque-'));
  site = await makeVmSite(dir, img, { vm: { snapshots: true } });
  cfg = await loadConfig(site.configPath);
  mom = new PbsMom({ momPriv: site.momPriv, jobStarter: join(site.momPriv, 'wnod-starter'), killDelayMs: 12_000, requeueLimit: 0 });
  await mom.setup();
  await execa(process.execPath, [cli, 'install', 'torque', '--mom-priv', site.momPriv, '--config', site.configPath, '--prefix', repo, '--apply']);
  workdir = join(dir, 'work');
  await mkdir(workdir);
  await chown(workdir, user.uid, user.gid);
  await chmod(workdir, 0o755);
});

t.teardown(async () => {
  if (dir) {
    await execa(process.execPath, [cli, 'kill-all', '--state-dir', site.stateDir], { reject: false });
    await rm(dir, { recursive: true, force: true });
  }
});

function ticket(): string {
  const image = cfg.images.find((i) => i.id === site.imageId)!;
  const now = Math.floor(Date.now() / 1000);
  return signTicket({
    v: 1, image: image.id, digest: image.digest, account: user.name, dn: '/C=XX/O=wnod test/CN=Alice', fqan: '/testvo/Role=NULL/Capability=NULL',
    vo: 'testvo', cpus: 1, memoryMB: 256, rule: 'testvo', ce: 'ce.wnod.test', iat: now, exp: now + 3600, nonce: newNonce(),
  }, site.key);
}

const job = (id: string, body: string): JobSpec => ({
  id, user, workdir, jobClass: 'wnod', queue: 'wnod', script: `#!/bin/bash\n#PBS -q wnod\n# wnod-ticket: ${ticket()}\ncd "$PBS_O_WORKDIR"\n${body}`,
});

/** The prologue's vm-ready events in the root log, by job. */
async function bootOf(jobId: string): Promise<{ mode?: string; coldReason?: string } | undefined> {
  const lines = (await readFile(cfg.logFile, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  return lines.find((l) => l.job === jobId && l.event === 'vm-ready')?.boot as { mode?: string; coldReason?: string } | undefined;
}

t.test('first job cold boots and asks for a template; the next runs on a restored clone through all three hooks', async (t) => {
  const r1 = await mom.runJob(job('900.wn1', 'echo first > first.txt; exit 0\n'));
  t.equal(r1.exitStatus, 0, `first job ran (stderr: ${r1.stderr})`);
  t.match(await bootOf('900.wn1'), { mode: 'cold', coldReason: /no snapshot template yet/ }, 'the root log says cold, and why');

  const tdir = join(site.stateDir, 'templates');
  let key: string | undefined;
  for (let i = 0; i < 600 && !key; i++) {
    for (const n of await readdir(tdir).catch(() => [] as string[])) {
      if (/^[0-9a-f]{32}$/.test(n) && (await lookupTemplate(tdir, n)).status === 'ready') key = n;
    }
    if (!key) await new Promise((r) => setTimeout(r, 200));
  }
  t.ok(key, `the detached build saved a template (log: ${await readFile(join(tdir, 'build.log'), 'utf8').catch(() => '')})`);
  t.equal((await stat(tdir)).mode & 0o077, 0, 'templates are root-only');
  const list = await execa(process.execPath, [cli, 'snapshot', 'list', '--state-dir', site.stateDir]);
  t.match(list.stdout, new RegExp(`^${key} ready ${site.imageId} 1cpu 256MB none `, 'm'), 'wnod snapshot list shows it');

  const body = ['echo "uid=$(id -u) host=$(hostname) var=$MY_VAR"', 'echo from-the-clone > result.txt', 'exit 6'].join('\n') + '\n';
  const r2 = await mom.runJob({ ...job('901.wn1', body), vars: { MY_VAR: 'warm' } });
  t.equal(r2.attempts[0]!.prologue!.exitCode, 0, 'prologue: VM ready');
  t.match(await bootOf('901.wn1'), { mode: 'restore' }, 'restored from the template');
  t.equal(r2.exitStatus, 6, 'the in-VM exit status is the job\'s');
  t.match(r2.stdout, `uid=${user.uid} `, 'runs as the job user');
  t.match(r2.stdout, 'var=warm', 'with the job\'s environment');
  const st = await stat(join(workdir, 'result.txt'));
  t.equal(await readFile(join(workdir, 'result.txt'), 'utf8'), 'from-the-clone\n', 'the workdir is the job\'s (9p)');
  t.equal(st.uid, user.uid, 'a file written inside is owned by the job user on the host');
  t.equal(st.mode & 0o6000, 0, 'no setuid/setgid bits');
  t.same(await readdir(join(site.stateDir, 'vms')).catch(() => []), [], 'the epilogue removed the VM');
  t.same(await readdir(join(site.stateDir, 'run')).catch(() => []), [], 'and its runtime dir');
});
