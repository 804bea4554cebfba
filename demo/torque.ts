/** The demo on Torque (`--lrm torque`): a grid job CE → worker node with the submit filter run by BLAH's shim,
 * the qsub wrapper, `wnod install torque`, then prologue → job starter → epilogue driven by the pbs_mom harness
 * (test/kit/pbsmom.ts, which plays pbs_mom exactly: Torque is not packaged in Debian 12), the job inside a fresh VM
 * of the test image, and the accounting record. Also one refusal, and a lease (create as the demo user through a
 * fake Torque server → ssh into its VM → delete). */
import { chown, mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { buildTestImage } from '../src/guest/testImage.js';
import { PbsMom, ensureTestUser, type JobSpec } from '../test/kit/pbsmom.js';
import { buildSshTestImage } from '../test/kit/sshImage.js';
import { makeLeaseSiteIn, type BaseLeaseSite } from '../test/kit/leaseSite.js';
import { makeVmSite } from '../test/kit/vmSite.js';
import { vmHostname } from '../src/vm/qemu.js';
import { vmIdForJob } from '../src/vm/state.js';
import { blahSubmit, blahTempScript, ceSide, check, cli, gridIdentity, indent, out, repo, step, wnod, type DemoOptions } from './common.js';

const BLAH_HEAD = '#!/bin/bash\n#PBS -N wnod-demo\n';

export async function torqueDemo(o: DemoOptions): Promise<void> {
  const dir = o.dir;
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
    const user = await ensureTestUser(o.user);
    const { pki, proxy } = await gridIdentity(dir, user);
    const info = await wnod(['voms', 'inspect', '--proxy', proxy, '--vomsdir', pki.vomsdir, '--certdir', pki.certdir]);
    out(indent(info.stdout));

    step('Site config: the catalog offers the test image as vm_test (kind: kernel) and vm_secret, which testvo may not use');
    const site = await makeVmSite(join(dir, 'site'), img, {
      more: [{ id: 'vm_secret' }], vomsdir: pki.vomsdir, certdir: pki.certdir, vm: { accel: o.accel },
      rules: [{ name: 'testvo', vo: 'testvo', images: ['vm_test'], default: 'vm_test' }],
    });
    stateDir = site.stateDir;
    const { ceDir, ceConfig } = await ceSide(dir, user, site);
    out(`    worker-node config ${site.configPath}\n    CE config          ${ceConfig}`);
    out(indent((await wnod(['check', '--config', site.configPath])).stdout));

    step('CE: wnod install blah (the filter shim for BLAH\'s libexec dir, the qsub wrapper for pbs_binpath)');
    const libexec = join(dir, 'libexec');
    const wbin = join(dir, 'wbin');
    await mkdir(libexec, { mode: 0o755 });
    await mkdir(wbin, { mode: 0o755 });
    const fakeQsub = join(dir, 'lrm', 'qsub');
    await mkdir(join(dir, 'lrm'), { mode: 0o755 });
    await writeFile(fakeQsub, '#!/bin/sh\necho 1.wn1.demo\n', { mode: 0o755 });
    out(indent((await wnod(['install', 'blah', '--config', ceConfig, '--blah-dir', libexec, '--bin-dir', wbin, '--real', fakeQsub, '--prefix', repo])).stdout));
    const shim = join(libexec, 'pbs_local_submit_attributes.sh');

    step('CE: BLAH runs the submit filter (pbs_local_submit_attributes.sh) for a job asking for vm_test');
    out(`    BLAH's temp script (run with bash as ${user.name}, stdout >> batch script, stderr discarded):`);
    out(indent(blahTempScript('vm_test', proxy, shim)));
    const { text: batch } = await blahSubmit(ceDir, user, 'vm_test', proxy, shim, BLAH_HEAD);
    out('    the batch script\'s directives after the filter:');
    out(indent(batch.replace(/(# wnod-ticket: .{24}).*/, '$1… (signed ticket)')));
    check(/^# wnod-ticket: /m.test(batch), 'the filter printed no ticket for vm_test');

    step('CE: the qsub wrapper (pbs_binpath) passes the ticketed script on to the real qsub');
    const batchPath = join(ceDir, 'batch-vm_test.sh');
    const q = await execa(join(wbin, 'qsub'), [batchPath], { env: { PATH: '/usr/bin:/bin' }, extendEnv: false, reject: false });
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
    const { text: denied } = await blahSubmit(ceDir, user, 'vm_secret', proxy, shim, BLAH_HEAD);
    out(indent(denied));
    const dq = await execa(join(wbin, 'qsub'), [join(ceDir, 'batch-vm_secret.sh')], { env: { PATH: '/usr/bin:/bin' }, extendEnv: false, reject: false });
    out(`    qsub wrapper → exit ${dq.exitCode}, stderr (what CREAM reports as the failure reason):\n${indent(dq.stderr)}`);
    check(dq.exitCode === 1 && /refused by site policy/.test(dq.stderr), 'the qsub wrapper did not refuse the denied job');
    const rr = await mom.runJob({ ...job, id: '2.wn1.demo', script: denied + body });
    out(`    had it reached the worker node anyway, the prologue refuses it too: exit ${rr.attempts[0]!.prologue!.exitCode}, .o file:`);
    out(indent(rr.stdout));
    check(rr.outcome === 'aborted', 'the prologue did not refuse the denied job');

    step('A lease (the workspace pilot): wnod lease create as the demo user → ssh into the VM → wnod lease delete');
    const sshImg = await sshImgP.finally(() => sshLog.forEach((l) => out(`    ${l}`)));
    // kill_delay 3 s: the pilot ends within a second of qdel's SIGTERM, and the harness waits out kill_delay
    leaseSite = await makeLeaseSiteIn({ dir: join(dir, 'lease'), repo, img: sshImg, userName: o.user, killDelayMs: 3000, vm: { accel: o.accel } });
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
  } finally {
    if (leaseSite) {
      const ls = leaseSite;
      if (o.keep) {
        await ls.lrm.stop();
        await execa(process.execPath, [cli, 'kill-all', '--state-dir', ls.site.stateDir], { reject: false });
      } else await ls.close();
      // the demo user's whole wnod dir (~/.wnod: the lease registry lives in it)
      await rm(join(ls.user.home, '.wnod'), { recursive: true, force: true });
    }
    if (stateDir) await execa(process.execPath, [cli, 'kill-all', '--state-dir', stateDir], { reject: false });
  }
}
