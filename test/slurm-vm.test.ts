// wnod on a REAL Slurm (Debian's slurmctld/slurmd/munge, scripts/slurm-local.sh): `wnod install slurm --apply`,
// then jobs submitted with sbatch by an unprivileged user: a grid job with a ticket in its comment (as the filter
// prints it) runs in its VM; a refused job gets the reason in its stderr file and the node stays up; a job of
// another partition runs natively on the same node.
import { reachableRepo } from './kit/reachable.js';
import t from 'tap';
import { readFile, stat } from 'node:fs/promises';
import { userWorkdir } from './kit/userWork.js';
import { release as hostRelease } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { buildTestImage } from '../src/guest/testImage.js';
import { readRecords } from '../src/accounting/store.js';
import { makeVmSite } from './kit/vmSite.js';
import { loadConfig } from '../src/config/load.js';
import { signTicket, newNonce } from '../src/ticket/index.js';
import { ensureTestUser } from './kit/pbsmom.js';
import { ensureBuilt } from './kit/cli.js';
import { makeSlurm, slurmMissing } from './kit/slurm.js';
import { REFUSED_EXIT } from '../src/lrm/slurm/marks.js';

const skip = await slurmMissing();
t.test('wnod on a real Slurm', { skip: skip ?? false }, async (t) => {
  await ensureBuilt();
  const img = await buildTestImage({ kernel: 'mini' });
  const repo = join(import.meta.dirname, '..');
  const user = await ensureTestUser('wsljob');
  const fx = await makeSlurm({ nodes: 2, basePort: 17020 });
  const dir = fx.dir;
  t.teardown(async () => {
    await fx.stop();
    await execa(process.execPath, [join(repo, 'dist', 'cli', 'main.js'), 'kill-all', '--state-dir', join(dir, 'site', 'state')], { reject: false });
  });
  const site = await makeVmSite(join(dir, 'site'), img, { lrmSection: { type: 'slurm', partition: 'wnod', hook_dir: join(dir, 'hooks') } });
  const cfg = await loadConfig(site.configPath);

  const confBefore = await readFile(fx.conf, 'utf8');
  const dry = await execa(process.execPath, [join(reachableRepo(), 'dist', 'cli', 'main.js'), 'install', 'slurm', '--config', site.configPath, '--slurm-conf', fx.conf]);
  t.match(dry.stdout, /add PrologFlags=Alloc/);
  t.match(dry.stdout, /required .*wnod_spank\.so runner=.* marks=/);
  t.equal(await readFile(fx.conf, 'utf8'), confBefore, 'without --apply nothing changes');
  await execa(process.execPath, [join(reachableRepo(), 'dist', 'cli', 'main.js'), 'install', 'slurm', '--config', site.configPath, '--slurm-conf', fx.conf, '--apply']);
  for (const [f, mode] of [['prolog', 0o500], ['epilog', 0o500], ['runner', 0o555], ['wnod_spank.so', 0o755]] as const) {
    const st = await stat(join(dir, 'hooks', f));
    t.same([st.uid, st.mode & 0o777], [0, mode], `${f} root-owned ${mode.toString(8)}`);
  }
  t.match(await readFile(fx.conf, 'utf8'), /^PrologFlags=Alloc$/m);
  await fx.start();

  const { dir: work, script } = await userWorkdir(t, user, 'wsl-w-');
  const ticket = (): string => {
    const image = cfg.images.find((i) => i.id === site.imageId)!;
    const now = Math.floor(Date.now() / 1000);
    return signTicket({ v: 1, image: image.id, digest: image.digest, account: user.name, dn: '/CN=Alice', fqan: '/testvo', vo: 'testvo', cpus: 1, memoryMB: 256, rule: 'testvo', ce: 'ce.test', iat: now, exp: now + 3600, nonce: newNonce() }, site.key);
  };

  await t.test('a grid job runs in its VM: guest kernel, exit status, stdout and stderr apart, a file of the user, accounting', async (t) => {
    const s = await script('grid.sh', 'echo "kernel=$(uname -r) args=$*"; echo to-stderr >&2; echo hello > made-in-vm.txt; exit 3');
    const id = await fx.sbatch(user.name, ['-p', 'wnod', `--comment=${ticket()}`, '-o', 'grid.out', '-e', 'grid.err', s, 'a1', 'two words'], work);
    const done = await fx.waitDone(id);
    t.equal(done.state, 'FAILED');
    t.equal(done.exitCode, '3:0', 'the guest\'s exit status');
    const out = await readFile(join(work, 'grid.out'), 'utf8');
    const kernel = /kernel=(\S+)/.exec(out)?.[1];
    t.ok(kernel && kernel !== hostRelease(), `guest kernel ${kernel} is not the host's ${hostRelease()}`);
    t.match(out, /args=a1 two words/);
    t.notMatch(out, /to-stderr/);
    t.match(await readFile(join(work, 'grid.err'), 'utf8'), /to-stderr/);
    const f = await stat(join(work, 'made-in-vm.txt'));
    t.equal(f.uid, user.uid, 'the file the job wrote is the user\'s');
    const rec = (await readRecords(cfg.accountingFile)).records.find((r) => r.jobId === id);
    t.equal(rec?.exitStatus, 3, 'accounted with the runner\'s status');
    t.equal(rec?.mode, 'vm');
    const left = await execa('pgrep', ['-f', `${join(dir, 'site', 'state')}`], { reject: false });
    t.equal(left.stdout.trim(), '', 'no VM process left');
  });

  await t.test('a job without a ticket is refused: reason in its stderr file, distinct status, node not drained', async (t) => {
    const s = await script('noticket.sh', 'echo should-not-run');
    const id = await fx.sbatch(user.name, ['-p', 'wnod', '-w', 'n1', '-o', 'nt.out', '-e', 'nt.err', s], work);
    const done = await fx.waitDone(id);
    t.equal(done.exitCode, `${REFUSED_EXIT}:0`);
    t.match(await readFile(join(work, 'nt.err'), 'utf8'), /^wnod: .*no wnod ticket/m);
    t.notMatch(await readFile(join(work, 'nt.out'), 'utf8').catch(() => ''), /should-not-run/);
    t.match(await fx.nodeState('n1'), /^(idle|mixed|allocated)$/, 'n1 not drained');
  });

  await t.test('a job of another partition runs natively on the same node', async (t) => {
    const s = await script('plain.sh', 'echo "kernel=$(uname -r) wnod=${WNOD_JOB_SCRIPT:-none}"');
    const id = await fx.sbatch(user.name, ['-p', 'batch', '-w', 'n1', '-o', 'plain.out', s], work);
    const done = await fx.waitDone(id);
    t.equal(done.state, 'COMPLETED');
    t.match(await readFile(join(work, 'plain.out'), 'utf8'), new RegExp(`kernel=${hostRelease().replace(/[.+]/g, '\\$&')} wnod=none`));
  });

  await t.test('scancel: the guest gets TERM, the job ends CANCELLED, the VM is destroyed and accounted', async (t) => {
    const s = await script('long.sh', 'trap "echo got-term; exit 143" TERM; echo started; while :; do sleep 1; done');
    const id = await fx.sbatch(user.name, ['-p', 'wnod', `--comment=${ticket()}`, '-o', 'long.out', s], work);
    const until = Date.now() + 120_000;
    while (Date.now() < until && !(await readFile(join(work, 'long.out'), 'utf8').catch(() => '')).includes('started')) await new Promise((r) => setTimeout(r, 300));
    await fx.asUser(user.name, 'scancel', [id]);
    const done = await fx.waitDone(id);
    t.equal(done.state, 'CANCELLED');
    t.match(await readFile(join(work, 'long.out'), 'utf8'), /got-term/, 'TERM reached the job in the guest');
    const until2 = Date.now() + 60_000;
    let rec;
    while (Date.now() < until2 && !(rec = (await readRecords(cfg.accountingFile)).records.find((r) => r.jobId === id))) await new Promise((r) => setTimeout(r, 300));
    t.equal(rec?.exitStatus, 143, 'accounted with the guest\'s status, not Slurm\'s 0:0');
  });

  await t.test('4 jobs at once, each in its own VM', async (t) => {
    const s = await script('four.sh', 'echo "kernel=$(uname -r) host=$(hostname)"');
    const ids = await Promise.all([0, 1, 2, 3].map((i) => fx.sbatch(user.name, ['-p', 'wnod', `--comment=${ticket()}`, '-o', `four-${i}.out`, s], work)));
    const done = await Promise.all(ids.map((id) => fx.waitDone(id)));
    t.same(done.map((d) => d.state), ['COMPLETED', 'COMPLETED', 'COMPLETED', 'COMPLETED']);
    const outs = await Promise.all([0, 1, 2, 3].map((i) => readFile(join(work, `four-${i}.out`), 'utf8')));
    for (const o of outs) t.notMatch(o, new RegExp(`kernel=${hostRelease().replace(/[.+]/g, '\\$&')}`), 'in a VM');
    t.equal(new Set(outs.map((o) => /host=(\S+)/.exec(o)?.[1])).size, 4, 'four different VMs');
  });

  await t.test('a time limit ends the job in its VM: TIMEOUT, VM destroyed, accounted', async (t) => {
    const s = await script('tl.sh', 'trap "echo got-term; exit 143" TERM; while :; do sleep 1; done');
    const id = await fx.sbatch(user.name, ['-p', 'wnod', '--time=1', `--comment=${ticket()}`, '-o', 'tl.out', s], work);
    const done = await fx.waitDone(id, 240_000);
    t.equal(done.state, 'TIMEOUT');
    t.match(await readFile(join(work, 'tl.out'), 'utf8'), /got-term/);
    const until = Date.now() + 60_000;
    let rec;
    while (Date.now() < until && !(rec = (await readRecords(cfg.accountingFile)).records.find((r) => r.jobId === id))) await new Promise((r) => setTimeout(r, 300));
    t.equal(rec?.exitStatus, 143);
    t.equal((await execa('pgrep', ['-f', join(dir, 'site', 'state')], { reject: false })).stdout.trim(), '', 'no VM left');
  });
});

