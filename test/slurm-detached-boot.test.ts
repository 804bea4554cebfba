// The Slurm Prolog boots a one-node job's VM detached (src/job/detachedBoot.ts), on a REAL Slurm: the batch step and
// its runner start while the VM is still booting, the runner waits for it and runs the job in it; a scancel while
// the VM boots leaves nothing (the Epilog stops the boot before the teardown). The boot is held back
// deterministically: the test holds the node's only boot slot (vm.max_booting: 1), so a boot waits for it.
// VMs booted: 1 (TCG or KVM, the minimal kernel).
import t, { type Test } from 'tap';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { release as hostRelease, tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { buildTestImage } from '../src/guest/testImage.js';
import { loadConfig } from '../src/config/load.js';
import { signTicket, newNonce } from '../src/ticket/index.js';
import { readRecords } from '../src/accounting/store.js';
import { takeBootSlot } from '../src/job/bootSlots.js';
import { bootFile } from '../src/job/detachedBoot.js';
import { isAlive, type ProcRef } from '../src/vm/proc.js';
import { ensureTestUser } from './kit/pbsmom.js';
import { ensureBuilt } from './kit/cli.js';
import { reachableRepo } from './kit/reachable.js';
import { userWorkdir } from './kit/userWork.js';
import { hypervisorsOf } from './kit/hypervisors.js';
import { slurmMissing } from './kit/slurm.js';
import { makeSlurmSite, type SlurmSite } from './kit/slurmSite.js';

const skip = await slurmMissing();
t.test('Slurm: the VM boots detached from the Prolog', { skip: skip ?? false }, async (t) => {
  await ensureBuilt();
  const repo = reachableRepo();
  const img = await buildTestImage({ kernel: 'mini' });
  const user = await ensureTestUser('sdbjob');
  const dir = await mkdtemp(join(tmpdir(), 'sdb-detach-'));
  let ss: SlurmSite | undefined;
  t.teardown(async () => {
    await ss?.stop();
    await rm(dir, { recursive: true, force: true });
  });
  ss = await makeSlurmSite({ dir, repo, img, basePort: Number(process.env.WNOD_TEST_SLURM_PORT ?? 17960), cluster: 'sdb', site: { vm: { max_booting: 1 } } });
  const { fx, site } = ss;
  const cfg = await loadConfig(site.configPath);
  const { dir: work, script } = await userWorkdir(t, user, 'sdb-w-');
  const ticket = (): string => {
    const image = cfg.images.find((i) => i.id === site.imageId)!;
    const now = Math.floor(Date.now() / 1000);
    return signTicket({ v: 1, image: image.id, digest: image.digest, account: user.name, dn: '/CN=Alice', fqan: '/testvo', vo: 'testvo', cpus: 1, memoryMB: 256, rule: 'testvo', ce: 'ce.test', iat: now, exp: now + 3600, nonce: newNonce() }, site.key);
  };
  /** the job's runner (the batch step, as the job user), once it runs: bounded look */
  const runnerUp = async (t: Test, jobId: string): Promise<boolean> => {
    const until = Date.now() + 120_000;
    while (Date.now() < until) {
      const r = await execa('pgrep', ['-u', user.name, '-f', 'slurm-hook\\.cjs --config .* runner'], { reject: false });
      if (r.stdout.trim() !== '') return true;
      if ((await fx.waitDone(jobId, 1).catch(() => undefined))?.state) break;
      await new Promise((r) => setTimeout(r, 300));
    }
    t.fail(`job ${jobId}: its runner never ran while the VM's boot was held back`);
    return false;
  };
  const accounted = async (jobId: string) => {
    const until = Date.now() + 60_000;
    let rec;
    while (Date.now() < until && !(rec = (await readRecords(cfg.accountingFile)).records.find((r) => r.jobId === jobId))) await new Promise((r) => setTimeout(r, 300));
    return rec;
  };

  await t.test('the runner starts while the VM still boots, waits for it, and runs the job in it', async (t) => {
    const slot = await takeBootSlot(site.stateDir, 1, Date.now() + 60_000);
    let held = true;
    t.teardown(async () => { if (held) await slot.release(); });
    const s = await script('wait.sh', 'echo "kernel=$(uname -r)"; exit 3');
    const id = await fx.sbatch(user.name, ['-p', 'wnod', `--comment=${ticket()}`, '-o', 'wait.out', '-e', 'wait.err', s], work);
    t.ok(await runnerUp(t, id), 'the batch step runs while the boot waits for its slot');
    t.notOk(await stat(bootFile(cfg, id, '.boot')).catch(() => undefined), 'no boot outcome yet');
    await slot.release();
    held = false;
    const done = await fx.waitDone(id);
    t.equal(done.state, 'FAILED');
    t.equal(done.exitCode, '3:0', 'the guest\'s status');
    const out = await readFile(join(work, 'wait.out'), 'utf8');
    t.match(out, /kernel=/);
    t.notMatch(out, new RegExp(`kernel=${hostRelease().replace(/[.+]/g, '\\$&')}`), 'in the VM, not on the host');
    t.equal((await accounted(id))?.exitStatus, 3, 'accounted with the guest\'s status');
    t.notOk(await stat(bootFile(cfg, id, '.boot.json')).catch(() => undefined), 'the Epilog cleared the boot files');
  });

  await t.test('scancel while the VM boots: the job ends CANCELLED, the boot is stopped, no VM is left', async (t) => {
    const slot = await takeBootSlot(site.stateDir, 1, Date.now() + 60_000);
    let held = true;
    t.teardown(async () => { if (held) await slot.release(); });
    const s = await script('cancel.sh', 'echo should-not-run');
    const id = await fx.sbatch(user.name, ['-p', 'wnod', `--comment=${ticket()}`, '-o', 'cancel.out', s], work);
    if (!(await runnerUp(t, id))) return;
    const boot = JSON.parse(await readFile(bootFile(cfg, id, '.boot.pid'), 'utf8')) as ProcRef;
    t.ok(await isAlive(boot), 'the boot process is waiting for its slot');
    await fx.asUser(user.name, 'scancel', [id]);
    const done = await fx.waitDone(id);
    t.equal(done.state, 'CANCELLED');
    t.ok(await accounted(id), 'the Epilog accounted the job');
    t.notOk(await isAlive(boot), 'the Epilog stopped the boot');
    await slot.release();
    held = false;
    t.same(await hypervisorsOf(site.stateDir), [], 'no QEMU or virtiofsd left');
    for (const ext of ['.boot', '.boot.json', '.boot.pid']) t.notOk(await stat(bootFile(cfg, id, ext)).catch(() => undefined), `no ${ext} left`);
    t.notMatch(await readFile(join(work, 'cancel.out'), 'utf8').catch(() => ''), /should-not-run/);
  });
});
