/** The end-to-end demo (`bash scripts/demo.sh` → `node demo/dist/demo.mjs`): on embedded defaults, in a temp dir,
 * a grid job goes CE → worker node: a real VOMS proxy, the submit filter run by BLAH's shim exactly as BLAH runs
 * it, the qsub wrapper, `wnod install torque`, then prologue → job starter → epilogue driven by the pbs_mom
 * harness, the job inside a fresh VM of the test image, and the accounting record. Also one refusal, and a lease
 * (create as the demo user through a fake Torque server → ssh into its VM → delete).
 * Exit 0 on success; non-zero with the failing step named. It cleans up its VMs and temp dirs. */
import { parseArgs } from 'node:util';
import { chmod, chown, copyFile, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { parseDocument } from 'yaml';
import { buildTestImage } from '../src/guest/testImage.js';
import { makeTestPki, makeProxy } from '../test/kit/pki.js';
import { PbsMom, ensureTestUser, type JobSpec, type TestUser } from '../test/kit/pbsmom.js';
import { buildSshTestImage } from '../test/kit/sshImage.js';
import { makeLeaseSiteIn, type BaseLeaseSite } from '../test/kit/leaseSite.js';
import { makeVmSite } from '../test/kit/vmSite.js';
import { reachableRepoAt } from '../test/kit/reachable.js';
import { vmHostname } from '../src/vm/qemu.js';
import { vmIdForJob } from '../src/vm/state.js';

// BLAH's pool account and the job user run the repo's shims and bundles: a clone in /root (0700) is bind-mounted
const repo = reachableRepoAt(resolve(dirname(fileURLToPath(import.meta.url)), '..', '..'));
const cli = join(repo, 'dist', 'cli', 'main.js');
const DEMO_USER = 'wnoddemo';

class DemoError extends Error {}

const out = (s = '') => process.stdout.write(s + '\n');
const indent = (text: string) => text.replace(/\n$/, '').split('\n').map((l) => `    ${l}`).join('\n');
let stepNo = 0;
let currentStep = '';
function step(title: string): void {
  stepNo++;
  currentStep = title;
  out(`\n== ${stepNo}. ${title}`);
}
function check(ok: boolean, what: string): void {
  if (!ok) throw new DemoError(what);
}

async function wnod(args: string[]): Promise<{ stdout: string; stderr: string }> {
  const r = await execa(process.execPath, [cli, ...args], { reject: false });
  if (r.exitCode !== 0) throw new DemoError(`wnod ${args.join(' ')} exited ${r.exitCode}: ${r.stderr.trim()}`);
  return { stdout: r.stdout, stderr: r.stderr };
}

/** BLAH's temp script for one job (DESIGN A1): shebang, the unwound -C lines, mpinodes, `source` of the shim. */
function blahTempScript(image: string, proxy: string, shim: string): string {
  return [
    '#!/bin/bash',
    `GlueHostApplicationSoftwareRunTimeEnvironment[0]='"${image}"'`,
    `GlueCEImplementationName='"CREAM"'`,
    `VirtualOrganisation='testvo'`,
    `x509UserProxyFQAN='"userFQAN=/testvo/Role=NULL/Capability=NULL"'`,
    `x509userproxy='${proxy}'`,
    'blah_opt_mpinodes=1',
    `source ${shim}`,
    '',
  ].join('\n');
}

/** Run the filter as BLAH does — as the mapped pool account, `tmpscript >> batch_script 2>/dev/null` — and return
 * the batch script's directives. */
async function blahSubmit(ceDir: string, user: TestUser, image: string, proxy: string, ceConfig: string, shim: string): Promise<string> {
  const tmp = join(ceDir, `blahtmp-${image}`);
  const batch = join(ceDir, `batch-${image}.sh`);
  await writeFile(tmp, blahTempScript(image, proxy, shim), { mode: 0o755 });
  await writeFile(batch, '#!/bin/bash\n#PBS -N wnod-demo\n', { mode: 0o644 });
  await chown(tmp, user.uid, user.gid);
  await chown(batch, user.uid, user.gid);
  const env = { PATH: `${dirname(process.execPath)}:/usr/bin:/bin`, HOME: user.home, WNOD_PREFIX: repo, WNOD_CONFIG: ceConfig };
  await execa('bash', ['-c', `"${tmp}" >> "${batch}" 2>/dev/null`], { env, extendEnv: false, uid: user.uid, gid: user.gid, cwd: ceDir });
  return readFile(batch, 'utf8');
}

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { accel: { type: 'string', default: 'tcg' }, keep: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    out('usage: node demo/dist/demo.mjs [--accel tcg|auto|kvm] [--keep]   (as root; --keep leaves the temp dir for a look)');
    return 0;
  }
  if (!['tcg', 'auto', 'kvm'].includes(values.accel!)) throw new DemoError(`--accel must be tcg, auto or kvm, got ${values.accel}`);
  if (process.getuid?.() !== 0) throw new DemoError('the demo must run as root (it installs hooks owned by root and starts VMs)');
  const dir = await mkdtemp(join(tmpdir(), 'wnod-demo-'));
  await chmod(dir, 0o755);
  let stateDir: string | undefined;
  let leaseSite: BaseLeaseSite | undefined;
  try {
    step('Test image: Debian cloud kernel + busybox + the wnod guest agent (built once, then reused)');
    // the lease step's ssh image: resolving its packages takes apt-cache ~25 times, so it overlaps the job's steps
    const sshLog: string[] = [];
    const sshImgP = buildSshTestImage({ log: (s) => sshLog.push(s) });
    sshImgP.catch(() => {}); // awaited in the lease step
    const img = await buildTestImage({ log: (s) => out(`    ${s}`) });
    out(`    kernel ${img.kernel}\n    initrd ${img.initrd}\n    (${img.kernelPackage}, busybox ${img.busyboxVersion})`);

    step('A throwaway CA, a VOMS AA and a real VOMS proxy (voms-proxy-fake)');
    const user = await ensureTestUser(DEMO_USER);
    const pki = await makeTestPki(join(dir, 'pki'), { vo: 'testvo' });
    const proxy = await makeProxy(pki, { vo: 'testvo', fqans: ['/testvo/Role=NULL/Capability=NULL'] });
    await chown(proxy, user.uid, user.gid);
    const info = await wnod(['voms', 'inspect', '--proxy', proxy, '--vomsdir', pki.vomsdir, '--certdir', pki.certdir]);
    out(indent(info.stdout));

    step('Site config: the catalog offers the test image as vm_test (kind: kernel) and vm_secret, which testvo may not use');
    const site = await makeVmSite(join(dir, 'site'), img, {
      more: [{ id: 'vm_secret' }], vomsdir: pki.vomsdir, certdir: pki.certdir, vm: { accel: values.accel },
      rules: [{ name: 'testvo', vo: 'testvo', images: ['vm_test'], default: 'vm_test' }],
    });
    stateDir = site.stateDir;
    // the CE's copy: the filter runs as the pool account and reads its own copy of the shared ticket key
    const ceDir = join(dir, 'ce');
    await mkdir(ceDir, { mode: 0o755 });
    await chown(ceDir, user.uid, user.gid);
    const ceKey = join(ceDir, 'ticket.key');
    await copyFile(site.keyPath, ceKey);
    await chown(ceKey, user.uid, user.gid);
    await chmod(ceKey, 0o600);
    const doc = parseDocument(await readFile(site.configPath, 'utf8'));
    doc.setIn(['ticket', 'key_file'], ceKey);
    const ceConfig = join(ceDir, 'wnod-ce.yaml');
    await writeFile(ceConfig, doc.toString(), { mode: 0o644 });
    out(`    worker-node config ${site.configPath}\n    CE config          ${ceConfig}`);
    out(indent((await wnod(['check', '--config', site.configPath])).stdout));

    step('CE: BLAH runs the submit filter (pbs_local_submit_attributes.sh) for a job asking for vm_test');
    const libexec = join(dir, 'libexec');
    await mkdir(libexec, { mode: 0o755 });
    const shim = join(libexec, 'pbs_local_submit_attributes.sh');
    await copyFile(join(repo, 'plugins', 'pbs_local_submit_attributes.sh'), shim);
    await chmod(shim, 0o644);
    out(`    BLAH's temp script (run with bash as ${user.name}, stdout >> batch script, stderr discarded):`);
    out(indent(blahTempScript('vm_test', proxy, shim)));
    const batch = await blahSubmit(ceDir, user, 'vm_test', proxy, ceConfig, shim);
    out('    the batch script\'s directives after the filter:');
    out(indent(batch.replace(/(# wnod-ticket: .{24}).*/, '$1… (signed ticket)')));
    check(/^# wnod-ticket: /m.test(batch), 'the filter printed no ticket for vm_test');

    step('CE: the qsub wrapper (pbs_binpath) passes the ticketed script on to the real qsub');
    const fakeQsub = join(dir, 'qsub.real');
    await writeFile(fakeQsub, '#!/bin/sh\necho 1.wn1.demo\n', { mode: 0o755 });
    const batchPath = join(ceDir, 'batch-vm_test.sh');
    const q = await execa(join(repo, 'plugins', 'qsub'), ['-q', 'wnod', batchPath], { env: { PATH: `${dirname(process.execPath)}:/usr/bin:/bin`, WNOD_PREFIX: repo, WNOD_REAL_QSUB: fakeQsub }, extendEnv: false, reject: false });
    out(`    qsub → exit ${q.exitCode}, job id ${q.stdout.trim()}`);
    check(q.exitCode === 0, `the qsub wrapper refused the ticketed job: ${q.stderr}`);

    step('Worker node: wnod install torque (shims root-owned with pbs_mom\'s modes, mom config written)');
    const mom = new PbsMom({ momPriv: site.momPriv, jobStarter: join(site.momPriv, 'wnod-starter'), killDelayMs: 30_000, requeueLimit: 3 });
    await mom.setup();
    const inst = await wnod(['install', 'torque', '--mom-priv', site.momPriv, '--config', site.configPath, '--prefix', repo, '--apply']);
    out(indent(inst.stdout));

    step('Worker node: pbs_mom runs prologue (boots the VM) → job starter (job in the VM) → epilogue (VM destroyed)');
    const workdir = join(dir, 'work');
    await mkdir(workdir, { mode: 0o755 });
    await chown(workdir, user.uid, user.gid);
    const body = [
      'cd "$PBS_O_WORKDIR"',
      'echo "running on kernel $(uname -r), hostname $(hostname), as $(id -un)"',
      'echo "hello from job $PBS_JOBID inside its VM" > demo-output.txt',
      '',
    ].join('\n');
    const job: JobSpec = { id: '1.wn1.demo', user, workdir, jobClass: 'wnod', queue: 'wnod', script: batch + body };
    const t0 = performance.now();
    const r = await mom.runJob(job);
    const a = r.attempts.at(-1)!;
    out(`    prologue exit ${a.prologue?.exitCode}, starter exit ${a.starter?.exitCode}, epilogue exit ${a.epilogue?.exitCode}; ` +
      `job exit status ${r.exitStatus}; ${((performance.now() - t0) / 1000).toFixed(1)} s in all`);
    out('    the job\'s output (.o file):');
    out(indent(r.stdout || '(empty)'));
    if (r.stderr.trim()) out(`    the job's error output (.e file):\n${indent(r.stderr)}`);
    check(r.exitStatus === 0, `the job did not complete (exit status ${r.exitStatus}); see the output above and ${site.dir}/wnod.log`);
    const host = (await execa('uname', ['-r'])).stdout.trim();
    check(r.stdout.includes('running on kernel ') && !r.stdout.includes(`kernel ${host},`), 'the job output does not show a guest kernel');

    step('The file the job wrote into its (shared) working directory');
    const f = join(workdir, 'demo-output.txt');
    const st = await stat(f);
    const owner = (await execa('getent', ['passwd', String(st.uid)])).stdout.split(':')[0];
    out(`    ${f}  owner ${owner} (uid ${st.uid})  mode ${(st.mode & 0o777).toString(8)}`);
    out(indent(await readFile(f, 'utf8')));
    check(st.uid === user.uid, 'the file is not owned by the job user');

    step('Accounting: the record the epilogue appended, and wnod accounting');
    out(indent((await readFile(join(site.dir, 'accounting.jsonl'), 'utf8')).trim()));
    out(indent((await wnod(['accounting', '--config', site.configPath, '--by', 'image'])).stdout));
    const left = await wnod(['vms', '--state-dir', site.stateDir]).catch(() => ({ stdout: '(wnod vms failed)' }));
    const rows = left.stdout.trim().split('\n').slice(1).filter(Boolean);
    out(`    VMs left on the node (wnod vms): ${rows.length ? rows.join('; ') : 'none'}`);

    step('A refusal: the same user asks for vm_secret, which the policy does not allow for testvo');
    const denied = await blahSubmit(ceDir, user, 'vm_secret', proxy, ceConfig, shim);
    out(indent(denied));
    const dq = await execa(join(repo, 'plugins', 'qsub'), ['-q', 'wnod', join(ceDir, 'batch-vm_secret.sh')], { env: { PATH: `${dirname(process.execPath)}:/usr/bin:/bin`, WNOD_PREFIX: repo, WNOD_REAL_QSUB: fakeQsub }, extendEnv: false, reject: false });
    out(`    qsub wrapper → exit ${dq.exitCode}, stderr (what CREAM reports as the failure reason):\n${indent(dq.stderr)}`);
    check(dq.exitCode === 1 && /refused by site policy/.test(dq.stderr), 'the qsub wrapper did not refuse the denied job');
    const rr = await mom.runJob({ ...job, id: '2.wn1.demo', script: denied + body });
    out(`    had it reached the worker node anyway, the prologue refuses it too: exit ${rr.attempts[0]!.prologue!.exitCode}, .o file:`);
    out(indent(rr.stdout));
    check(rr.outcome === 'aborted', 'the prologue did not refuse the denied job');

    step('A lease (the workspace pilot): wnod lease create as the demo user → ssh into the VM → wnod lease delete');
    const sshImg = await sshImgP.finally(() => sshLog.forEach((l) => out(`    ${l}`)));
    // kill_delay 3 s: the pilot ends within a second of qdel's SIGTERM, and the harness waits out kill_delay
    leaseSite = await makeLeaseSiteIn({ dir: join(dir, 'lease'), repo, img: sshImg, userName: DEMO_USER, killDelayMs: 3000, vm: { accel: values.accel } });
    const ls = leaseSite;
    out(`    ssh test image (${sshImg.sshPackages[0]}); the site lets group ${ls.user.group} lease vm_test (policy.no_ticket: group-default)`);
    const t1 = performance.now();
    const lc = await ls.lease(['create', '--image', ls.site.imageId, '--ssh-key', ls.pubKey, '--hours', '1', '--json']);
    check(lc.exitCode === 0, `wnod lease create exited ${lc.exitCode}: ${lc.stderr.trim()}`);
    const lease = JSON.parse(lc.stdout) as { id: string; state: string; jobId?: string; address?: string; hostKey?: string };
    out(`    $ wnod lease create --image ${ls.site.imageId} --ssh-key ${ls.pubKey} --json   (as ${ls.user.name}, ${((performance.now() - t1) / 1000).toFixed(1)} s)`);
    out(`    lease ${lease.id}: ${lease.state}, pilot job ${lease.jobId}, ssh at ${lease.address}, host key ${lease.hostKey?.slice(0, 40)}…`);
    check(lease.state === 'ready' && /^127\.0\.0\.1:\d+$/.test(lease.address ?? '') && /^ssh-ed25519 /.test(lease.hostKey ?? ''), 'the lease is not ready with an address and a host key');
    const port = /:(\d+)$/.exec(lease.address!)![1]!;
    const sh = await ls.ssh(lease.address!, lease.hostKey!, 'hostname');
    out(`    $ ssh -p ${port} ${ls.user.name}@127.0.0.1 hostname   (host key pinned) → ${sh.stdout.trim() || `exit ${sh.exitCode}`}`);
    check(sh.exitCode === 0 && sh.stdout.trim() === vmHostname(vmIdForJob(lease.jobId!)), `ssh did not answer from inside the lease's VM: ${sh.stderr.trim()}`);
    const ld = await ls.lease(['delete', lease.id, '--json']);
    check(ld.exitCode === 0, `wnod lease delete exited ${ld.exitCode}: ${ld.stderr.trim()}`);
    const gone = JSON.parse(ld.stdout) as { state: string };
    await ls.lrm.wait(lease.jobId!);
    const vmsLeft = await readdir(join(ls.site.stateDir, 'vms')).catch(() => [] as string[]);
    out(`    $ wnod lease delete ${lease.id} → ${gone.state}; VMs left: ${vmsLeft.length ? vmsLeft.join(', ') : 'none'}`);
    check(gone.state === 'released' && vmsLeft.length === 0, `the lease ended ${gone.state} with VMs left: ${vmsLeft.join(', ')}`);

    out('\nwnod demo: OK');
    return 0;
  } finally {
    if (leaseSite) {
      const ls = leaseSite;
      if (values.keep) {
        await ls.lrm.stop();
        await execa(process.execPath, [cli, 'kill-all', '--state-dir', ls.site.stateDir], { reject: false });
      } else await ls.close();
      await rm(ls.registry, { recursive: true, force: true });
    }
    if (stateDir) await execa(process.execPath, [cli, 'kill-all', '--state-dir', stateDir], { reject: false });
    if (values.keep) out(`(kept ${dir})`);
    else await rm(dir, { recursive: true, force: true });
  }
}

main().then((code) => {
  process.exitCode = code;
}, (err: unknown) => {
  process.stderr.write(`\nwnod demo FAILED${currentStep ? ` at step ${stepNo} (${currentStep})` : ''}: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
