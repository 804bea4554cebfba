// Warm snapshots on a REAL Slurm: the first wnod job of an image and shape cold boots and its Prolog asks for a
// template (a detached `wnod snapshot build`); once it exists, the next job's VM is restored from it — the job's
// output, its exit status and a file in its (9p-shared) working directory owned by the user, as with a cold boot.
import t from 'tap';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { release as hostRelease, tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildTestImage } from '../src/guest/testImage.js';
import { loadConfig } from '../src/config/load.js';
import { signTicket, newNonce } from '../src/ticket/index.js';
import { ensureTestUser } from './kit/pbsmom.js';
import { ensureBuilt } from './kit/cli.js';
import { reachableRepo } from './kit/reachable.js';
import { slurmMissing } from './kit/slurm.js';
import { hypervisorsOf } from './kit/hypervisors.js';
import { makeSlurmSite, type SlurmSite } from './kit/slurmSite.js';

const skip = await slurmMissing();
t.test('a Slurm job restored from a warm snapshot', { skip: skip ?? false }, async (t) => {
  await ensureBuilt();
  const img = await buildTestImage({ kernel: 'mini' });
  const user = await ensureTestUser('wdmsnap');
  const dir = await mkdtemp(join(tmpdir(), 'wdm-snap-'));
  await chmod(dir, 0o755);
  let ss: SlurmSite | undefined;
  t.teardown(async () => {
    await ss?.stop();
    await rm(dir, { recursive: true, force: true });
  });
  ss = await makeSlurmSite({ dir: join(dir, 'site'), repo: reachableRepo(), img, basePort: 17530, cluster: 'wdm', site: { vm: { snapshots: true } } });
  const { fx, site } = ss;
  const cfg = await loadConfig(site.configPath);
  const work = join(dir, 'work');
  await mkdir(work, { mode: 0o755 });
  await chown(work, user.uid, user.gid);
  const script = join(work, 'job.sh');
  await writeFile(script, '#!/bin/sh\necho "kernel=$(uname -r)"; echo "$SLURM_JOB_ID" > "made-by-$SLURM_JOB_ID"; exit 5\n', { mode: 0o755 });
  const ticket = (): string => {
    const image = cfg.images.find((i) => i.id === site.imageId)!;
    const now = Math.floor(Date.now() / 1000);
    return signTicket({ v: 1, image: image.id, digest: image.digest, account: user.name, dn: '/CN=Alice', fqan: '/testvo', vo: 'testvo', cpus: 1, memoryMB: 256, rule: 'testvo', ce: 'ce.test', iat: now, exp: now + 3600, nonce: newNonce() }, site.key);
  };
  const boots = async () => new Map((await readFile(cfg.logFile, 'utf8')).split('\n').filter((l) => l.includes('"vm-ready"'))
    .map((l) => JSON.parse(l) as { job: string; boot?: { mode: string; coldReason?: string } }).map((o) => [o.job, o.boot] as const));
  const job = async () => {
    const id = await fx.sbatch(user.name, ['-p', 'wnod', '-c', '1', '--mem=256M', `--comment=${ticket()}`, '-o', 'out-%j', script], work);
    return { id, done: await fx.waitDone(id) };
  };

  const first = await job();
  t.equal(first.done.exitCode, '5:0', 'the first job ran');
  t.match((await boots()).get(first.id), { mode: 'cold', coldReason: /no snapshot template yet/ }, 'the first job cold booted for want of a template');
  // the template is built in the background; later jobs restore once it is there (bounded: a loaded TCG machine)
  let restored: string | undefined;
  const until = Date.now() + 600_000;
  while (!restored && Date.now() < until) {
    const j = await job();
    t.equal(j.done.exitCode, '5:0', `job ${j.id}: the guest's exit status`);
    if ((await boots()).get(j.id)?.mode === 'restore') restored = j.id;
    else await new Promise((r) => setTimeout(r, 3000));
  }
  t.ok(restored, `a job was restored from the template (build log: ${await readFile(join(site.stateDir, 'templates', 'build.log'), 'utf8').catch(() => 'none')})`);
  if (!restored) return;
  const out = await readFile(join(work, `out-${restored}`), 'utf8');
  t.notMatch(out, new RegExp(`kernel=${hostRelease().replace(/[.+]/g, '\\$&')}\\n`), 'in a VM');
  t.match(out, /^kernel=\S+$/m);
  const f = await stat(join(work, `made-by-${restored}`));
  t.equal(f.uid, user.uid, 'the file the restored job wrote through 9p is the user\'s');
  t.equal((await readFile(join(work, `made-by-${restored}`), 'utf8')).trim(), restored);
  t.same(await hypervisorsOf(site.stateDir), [], 'no VM left once the jobs ended');
  t.match(await fx.nodeState('n1'), /^(idle|mixed)$/, 'the node is not drained');
});
