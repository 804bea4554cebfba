/** The demo on a REAL Torque 6.1.3 (`--lrm torque` where the prebuilt Torque of test/kit/torque.ts is at hand:
 * pbs_server, pbs_sched and pbs_mom in private namespaces on loopback): a grid job through BLAH's filter and the
 * qsub wrapper into the real qsub, pbs_mom running wnod's prologue (VM boot), job starter (the job in the VM) and
 * epilogue (VM destroyed), the accounting record; a refusal at the CE and the same job refused by the prologue.
 * Leases on Torque are shown by the harness flow (`--torque-harness`): their pilots need `wnod lease` inside the
 * namespace. */
import { chown, mkdir, readFile, readdir, stat, writeFile, appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { buildTestImage } from '../src/guest/testImage.js';
import { ensureTestUser } from '../test/kit/pbsmom.js';
import { makeVmSite } from '../test/kit/vmSite.js';
import { startTorque, type TorqueNode } from '../test/kit/torque.js';
import { blahSubmit, ceSide, ceSubmitSteps, check, cli, gridIdentity, hookLines, indent, out, repo, step, wnod, type DemoOptions } from './common.js';

const MOM_PRIV = '/var/spool/torque/mom_priv'; // inside the namespace (the fixture binds its own PBS_HOME there)

const blahHead = (workdir: string, name: string) => `#!/bin/bash\n#PBS -N ${name}\n#PBS -o ${workdir}/${name}.out\n#PBS -e ${workdir}/${name}.err\n`;

const JOB_BODY = [
  'cd "$PBS_O_WORKDIR"',
  'echo "running on kernel $(uname -r), hostname $(hostname), as $(id -un), in $(pwd)"',
  'echo "hello from Torque job $PBS_JOBID inside its VM" > demo-output.txt',
  '',
].join('\n');

export async function torqueRealDemo(o: DemoOptions & { torqueTag: string }): Promise<void> {
  let node: TorqueNode | undefined;
  let stateDir: string | undefined;
  try {
    step('Test image: Debian cloud kernel + busybox + the wnod guest agent (built once, then reused)');
    const img = await buildTestImage({ log: (s) => out(`    ${s}`) });
    out(`    kernel ${img.kernel}\n    initrd ${img.initrd}\n    (${img.kernelPackage}, busybox ${img.busyboxVersion})`);

    step('A real Torque 6.1.3 (pbs_server, pbs_sched, pbs_mom) in private namespaces on loopback, with a wnod queue');
    node = await startTorque({
      tag: o.torqueTag, np: 2, repo,
      qmgr: ['create queue wnod queue_type = execution', 'set queue wnod enabled = true', 'set queue wnod started = true', 'set queue wnod kill_delay = 30'],
    });
    // everything the namespace must see lives under the fixture's dir (its /tmp is private)
    const dir = node.dir;
    out(`    node ${node.host}: ${(await node.nodeState()).split('\n')[0]}; its private dir ${dir}`);

    step('A throwaway CA, a VOMS AA and a real VOMS proxy (voms-proxy-fake)');
    const user = await ensureTestUser(o.user);
    const { pki, proxy } = await gridIdentity(dir, user);
    out(indent((await wnod(['voms', 'inspect', '--proxy', proxy, '--vomsdir', pki.vomsdir, '--certdir', pki.certdir])).stdout));

    step('Site config: the catalog offers the test image as vm_test and vm_secret, which testvo may not use');
    const site = await makeVmSite(join(dir, 'site'), img, {
      more: [{ id: 'vm_secret' }], vomsdir: pki.vomsdir, certdir: pki.certdir, vm: { accel: o.accel },
      rules: [{ name: 'testvo', vo: 'testvo', images: ['vm_test'], default: 'vm_test' }],
      lrm: { mom_priv: MOM_PRIV },
    });
    stateDir = site.stateDir;
    const { ceDir, ceConfig } = await ceSide(dir, user, site);
    out(`    worker-node config ${site.configPath}\n    CE config          ${ceConfig}`);
    out(indent((await wnod(['check', '--config', site.configPath])).stdout));

    step('Worker node: wnod install torque --apply into pbs_mom\'s mom_priv, then pbs_mom restarted');
    out(indent(await node.must([process.execPath, cli, 'install', 'torque', '--mom-priv', MOM_PRIV, '--config', site.configPath, '--prefix', repo, '--apply'])));
    // one host: pbs_mom delivers the job's .o/.e files with cp, not scp
    await appendFile(join(dir, 'spool', 'mom_priv', 'config'), '$usecp *:/tmp /tmp\n');
    await node.restartMom();
    await node.waitFree();

    const { shim, wbin, workdir, batch } = await ceSubmitSteps(dir, user, ceDir, ceConfig, proxy,
      { blah: 'pbs', realSubmit: '/usr/local/bin/qsub', wrapper: 'qsub', head: blahHead }, JOB_BODY);

    step(`CE: the qsub wrapper (pbs_binpath) submits it as ${user.name} with the real qsub`);
    const q = await node.exec([join(wbin, 'qsub'), batch.path], { user, cwd: workdir });
    const jobId = q.stdout.trim();
    out(`    $ qsub ${batch.path} → exit ${q.exitCode}: ${jobId || q.stderr.trim()}`);
    check(q.exitCode === 0 && /^\d+\./.test(jobId), `the qsub wrapper refused the ticketed job: ${q.stderr}`);

    step('Worker node: pbs_mom runs the prologue (admits the job, starts its VM\'s boot detached) → job starter (waits for the VM, runs the job in it) → epilogue (VM destroyed)');
    const t0 = performance.now();
    const done = await node.waitJob(jobId);
    out(`    job ${jobId}: job_state ${done.job_state}, exit_status ${done.exit_status}, queue ${done.queue}, ${((performance.now() - t0) / 1000).toFixed(1)} s from qsub to the end`);
    const o1 = await readFile(join(workdir, 'grid.out'), 'utf8').catch(() => '');
    const e1 = await readFile(join(workdir, 'grid.err'), 'utf8').catch(() => '');
    out(`    the job's output (${workdir}/grid.out):\n${indent(o1 || '(empty)')}`);
    if (e1.trim()) out(`    the job's error output (${workdir}/grid.err):\n${indent(e1)}`);
    out(`    the node's root-only log (${site.dir}/wnod.log) for job ${jobId}:\n${indent(await hookLines(join(site.dir, 'wnod.log'), jobId))}`);
    if (done.exit_status !== '0') out(indent((await readFile(join(dir, 'spool', 'mom_logs', (await readdir(join(dir, 'spool', 'mom_logs')))[0] ?? 'none'), 'utf8').catch(() => '')).split('\n').filter((l) => l.includes(jobId.split('.')[0]!)).slice(-25).join('\n')));
    check(done.exit_status === '0', `the job did not complete (exit_status ${done.exit_status}); see ${site.dir}/wnod.log and ${dir}/spool/mom_logs`);
    const host = (await execa('uname', ['-r'])).stdout.trim();
    check(o1.includes('running on kernel ') && !o1.includes(`kernel ${host},`), 'the job output does not show a guest kernel');

    step('The file the job wrote into its (shared) working directory, and the accounting record');
    const f = join(workdir, 'demo-output.txt');
    const st = await stat(f);
    out(`    ${f}  owner uid ${st.uid} (${user.name} is ${user.uid})  mode ${(st.mode & 0o777).toString(8)}`);
    out(indent(await readFile(f, 'utf8')));
    check(st.uid === user.uid, 'the file is not owned by the job user');
    out(indent((await readFile(join(site.dir, 'accounting.jsonl'), 'utf8')).trim()));
    out(indent((await wnod(['accounting', '--config', site.configPath, '--by', 'image'])).stdout));

    step('A refusal: the same user asks for vm_secret, which the policy does not allow for testvo');
    const denied = await blahSubmit(ceDir, user, 'vm_secret', proxy, shim, blahHead(workdir, 'denied'));
    await writeFile(denied.path, denied.text + JOB_BODY);
    out(indent(denied.text));
    const dq = await node.exec([join(wbin, 'qsub'), denied.path], { user, cwd: workdir });
    out(`    qsub wrapper → exit ${dq.exitCode}, stderr (what CREAM reports as the failure reason):\n${indent(dq.stderr)}`);
    check(dq.exitCode === 1 && /refused by site policy/.test(dq.stderr), 'the qsub wrapper did not refuse the denied job');
    const rq = await node.exec(['/usr/local/bin/qsub', '-q', 'wnod', '-T', 'wnod', denied.path], { user, cwd: workdir });
    const rid = rq.stdout.trim();
    check(rq.exitCode === 0 && /^\d+\./.test(rid), `the real qsub did not take the job: ${rq.stderr}`);
    const rd = await node.waitJob(rid);
    out(`    had it reached the worker node anyway (the real qsub, job ${rid}): the prologue refused it, exit_status ${rd.exit_status}` +
      ' (Torque does not deliver the output of a job aborted in its prologue; the reason is in the node\'s root log):');
    out(indent(await hookLines(join(site.dir, 'wnod.log'), rid)));
    check(rd.exit_status !== '0', 'the prologue did not refuse the denied job');
  } finally {
    if (stateDir) await execa(process.execPath, [cli, 'kill-all', '--state-dir', stateDir], { reject: false });
    if (node) await node.stop();
  }
}
