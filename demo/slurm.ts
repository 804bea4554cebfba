/** The demo on a REAL Slurm (the default): Debian's slurmctld, slurmd and munge started privately on loopback
 * (scripts/slurm-local.sh), `wnod install slurm --apply`, then a grid job all the way: a real VOMS proxy, BLAH's
 * shim running the submit filter, the sbatch wrapper submitting as the unprivileged user, the Prolog booting the
 * VM, the runner running the job inside it, the Epilog destroying it, the accounting record; a refusal at the CE
 * and the same job refused on the node (reason in its stderr file, node not drained); a plain job in another
 * partition, untouched; a lease (create → ssh → delete); the site BDII publishing the image (a real slapd +
 * bdii-update) and `wnod find` reading it back. */
import { chown, mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { parseDocument } from 'yaml';
import { ensureTestUser, type TestUser } from '../test/kit/pbsmom.js';
import { buildSshTestImage } from '../test/kit/sshImage.js';
import { leaseUser } from '../test/kit/leaseSite.js';
import { makeSlurmSite, type SlurmSite } from '../test/kit/slurmSite.js';
import { startBdii, staticCeLdif, type RunningBdii } from '../test/kit/bdii.js';
import { vmHostname } from '../src/vm/qemu.js';
import { vmIdForJob } from '../src/vm/state.js';
import { blahSubmit, ceSide, ceSubmitSteps, check, cli, gridIdentity, hookLines, indent, out, repo, step, wnod, type DemoOptions } from './common.js';

const CE_HOST = 'ce.wnod.test'; // the sample site's ce_host (test/kit/site.ts)

/** BLAH's own first lines of a Slurm batch script (slurm_submit.sh): name and output files. */
const blahHead = (workdir: string, name: string) => `#!/bin/bash\n#SBATCH -J ${name}\n#SBATCH -o ${workdir}/${name}.out\n#SBATCH -e ${workdir}/${name}.err\n`;

const JOB_BODY = [
  'echo "running on kernel $(uname -r), hostname $(hostname), as $(id -un), in $(pwd)"',
  'echo "hello from Slurm job $SLURM_JOB_ID inside its VM" > demo-output.txt',
  'echo "this line goes to stderr" >&2',
  '',
].join('\n');

/** A Slurm client as the user (what BLAH runs as the pool account): a clean environment naming our slurm.conf. */
async function asUser(ss: SlurmSite, user: TestUser, file: string, args: string[], cwd: string) {
  const r = await execa(file, args, { env: { PATH: '/usr/bin:/bin', HOME: user.home, LANG: 'C.UTF-8', ...ss.fx.env }, extendEnv: false, uid: user.uid, gid: user.gid, cwd, reject: false, timeout: 120_000 });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

const submitted = (stdout: string) => /Submitted batch job (\d+)/.exec(stdout)?.[1];

export async function slurmDemo(o: DemoOptions): Promise<void> {
  const dir = o.dir;
  let ss: SlurmSite | undefined;
  let bdii: RunningBdii | undefined;
  let user: TestUser | undefined;
  try {
    step('Test image: Debian\'s cloud kernel, busybox, the wnod guest agent and dropbear (for the lease), built once and cached');
    const img = await buildSshTestImage({ log: (s) => out(`    ${s}`) });
    out(`    kernel ${img.kernel}\n    initrd ${img.initrd}\n    (${img.kernelPackage}, busybox ${img.busyboxVersion}, ${img.sshPackages[0]})`);

    step('A throwaway CA, a VOMS AA and a real VOMS proxy (voms-proxy-fake) for the grid user');
    user = await ensureTestUser(o.user);
    const { pki, proxy } = await gridIdentity(dir, user);
    out(indent((await wnod(['voms', 'inspect', '--proxy', proxy, '--vomsdir', pki.vomsdir, '--certdir', pki.certdir])).stdout));

    step('A real Slurm on this machine (Debian\'s slurmctld, slurmd, munge on 127.0.0.1) and the site config (lrm.type: slurm)');
    out('    catalog: vm_test (the test image) and vm_secret, which VO testvo may not use; testvo gets vm_test.');
    out(`    local group ${user.group} may lease vm_test (policy.no_ticket: group-default: no ticket key for users)`);
    ss = await makeSlurmSite({
      dir: join(dir, 'site'), repo, img, basePort: o.slurmPort, cluster: o.slurmCluster, nodes: 1, cpus: 4,
      site: {
        more: [{ id: 'vm_secret' }], vomsdir: pki.vomsdir, certdir: pki.certdir, vm: { accel: o.accel },
        rules: [{ name: 'testvo', vo: 'testvo', images: ['vm_test'], default: 'vm_test' }, { name: 'leasers', group: user.group, images: ['vm_test'], default: 'vm_test' }],
        policy: { no_ticket: 'group-default' },
      },
    });
    const { fx, site } = ss;
    out(`    slurm.conf ${fx.conf} (cluster ${o.slurmCluster}, slurmctld on port ${o.slurmPort}, node n1; partitions batch and wnod)`);
    out(`    site config ${site.configPath}`);
    out(indent((await wnod(['check', '--config', site.configPath])).stdout));

    step('Worker node: wnod install slurm --apply (Prolog/Epilog in slurm.conf, plugstack.conf, the SPANK plugin built with gcc)');
    out(indent(ss.installed));
    out(`    slurmctld and slurmd restarted; node n1: ${await fx.nodeState('n1')}`);

    const { ceDir, ceConfig } = await ceSide(dir, user, site);
    const { shim, wbin, workdir, batch } = await ceSubmitSteps(dir, user, ceDir, ceConfig, proxy,
      { blah: 'slurm', realSubmit: '/usr/bin/sbatch', wrapper: 'sbatch', head: blahHead }, JOB_BODY);

    step(`CE: the sbatch wrapper (slurm_binpath) submits it as ${user.name} with the real sbatch`);
    const sub = await asUser(ss, user, join(wbin, 'sbatch'), [batch.path], workdir);
    out(`    $ sbatch ${batch.path}   (cwd ${workdir})\n    → exit ${sub.exitCode}: ${sub.stdout.trim() || sub.stderr.trim()}`);
    const jobId = submitted(sub.stdout);
    check(sub.exitCode === 0 && jobId !== undefined, `the sbatch wrapper refused the ticketed job: ${sub.stderr}`);

    step(`Worker node: Prolog (verifies the ticket, starts the VM's boot, detached) → runner (waits for the VM, runs the job inside it) → Epilog (VM destroyed)`);
    const t0 = performance.now();
    const done = await fx.waitDone(jobId!);
    out(`    job ${jobId}: ${done.state}, ExitCode ${done.exitCode}, ${((performance.now() - t0) / 1000).toFixed(1)} s from sbatch to the end`);
    const stdoutText = await readFile(join(workdir, 'grid.out'), 'utf8').catch(() => '');
    const stderrText = await readFile(join(workdir, 'grid.err'), 'utf8').catch(() => '');
    out(`    the job's stdout file (${workdir}/grid.out):`);
    out(indent(stdoutText || '(empty)'));
    out(`    the job's stderr file (${workdir}/grid.err):`);
    out(indent(stderrText || '(empty)'));
    out(`    the node's root-only log (${site.dir}/wnod.log) for job ${jobId}:`);
    out(indent(await hookLines(join(site.dir, 'wnod.log'), jobId!)));
    check(done.state === 'COMPLETED', `the job did not complete (${done.state} ${done.exitCode}); see ${site.dir}/wnod.log and ${fx.dir}/log`);
    const host = (await execa('uname', ['-r'])).stdout.trim();
    check(stdoutText.includes('running on kernel ') && !stdoutText.includes(`kernel ${host},`), 'the job output does not show a guest kernel');

    step('The file the job wrote into its (shared) working directory');
    const f = join(workdir, 'demo-output.txt');
    const st = await stat(f);
    out(`    ${f}  owner uid ${st.uid} (${user.name} is ${user.uid})  mode ${(st.mode & 0o777).toString(8)}`);
    out(indent(await readFile(f, 'utf8')));
    check(st.uid === user.uid, 'the file is not owned by the job user');

    step('Accounting: the record the Epilog appended, wnod accounting, and Slurm\'s own job completion line');
    out(indent((await readFile(site.dir + '/accounting.jsonl', 'utf8')).trim()));
    out(indent((await wnod(['accounting', '--config', site.configPath, '--by', 'image'])).stdout));
    out(indent((await fx.jobcomp()).split('\n').find((l) => l.includes(`JobId=${jobId} `)) ?? '(no jobcomp line yet)'));
    const rows = (await wnod(['vms', '--state-dir', site.stateDir])).stdout.trim().split('\n').slice(1).filter(Boolean);
    out(`    VMs left on the node (wnod vms): ${rows.length ? rows.join('; ') : 'none'}`);
    check(rows.length === 0, 'a VM is left on the node');

    step('A refusal: the same user asks for vm_secret, which the policy does not allow for testvo');
    const denied = await blahSubmit(ceDir, user, 'vm_secret', proxy, shim, blahHead(workdir, 'denied'));
    await writeFile(denied.path, denied.text + JOB_BODY);
    out(indent(denied.text));
    const ds = await asUser(ss, user, join(wbin, 'sbatch'), [denied.path], workdir);
    out(`    sbatch wrapper → exit ${ds.exitCode}, stderr (what the CE reports as the failure reason):\n${indent(ds.stderr)}`);
    check(ds.exitCode === 1 && /refused by site policy/.test(ds.stderr) && !submitted(ds.stdout), 'the sbatch wrapper did not refuse the denied job');
    const dr = await asUser(ss, user, '/usr/bin/sbatch', ['-p', 'wnod', denied.path], workdir);
    const deniedId = submitted(dr.stdout);
    check(deniedId !== undefined, `the real sbatch did not take the job: ${dr.stderr}`);
    const dd = await fx.waitDone(deniedId!);
    const why = (await readFile(join(workdir, 'denied.err'), 'utf8').catch(() => '')).trim();
    out(`    had it reached the worker node anyway (the real sbatch, job ${deniedId}): ${dd.state}, ExitCode ${dd.exitCode}; its stderr file:`);
    out(indent(why || '(empty)'));
    const node = await fx.nodeState('n1');
    out(`    node n1 is ${node} (a refusal never drains the node)`);
    check(dd.exitCode === '77:0' && /^wnod: /m.test(why) && /^(idle|mixed)$/.test(node), 'the node did not refuse the denied job cleanly');

    step('A job of another partition (batch) on the same node runs natively, untouched by wnod');
    const plain = join(workdir, 'plain.sh');
    await writeFile(plain, '#!/bin/sh\necho "kernel $(uname -r) (the host\'s), WNOD_JOB_SCRIPT=${WNOD_JOB_SCRIPT:-unset}"\n', { mode: 0o755 });
    const pr = await asUser(ss, user, '/usr/bin/sbatch', ['-p', 'batch', '-o', join(workdir, 'plain.out'), plain], workdir);
    const plainId = submitted(pr.stdout);
    check(plainId !== undefined, `sbatch -p batch failed: ${pr.stderr}`);
    const pd = await fx.waitDone(plainId!);
    out(`    job ${plainId}: ${pd.state}; ${(await readFile(join(workdir, 'plain.out'), 'utf8').catch(() => '')).trim()}`);
    check(pd.state === 'COMPLETED', 'the plain job did not complete');

    step('A lease: wnod lease create as the demo user (a pilot job via sbatch) → ssh into its VM → wnod lease delete (scancel)');
    await mkdir(join(dir, 'lease'), { mode: 0o755 });
    const lu = await leaseUser({ dir: join(dir, 'lease'), user, cli, configPath: site.configPath, env: fx.env });
    const t1 = performance.now();
    const lc = await lu.lease(['create', '--image', 'vm_test', '--ssh-key', lu.pubKey, '--hours', '1', '--json']);
    check(lc.exitCode === 0, `wnod lease create exited ${lc.exitCode}: ${lc.stderr.trim()}`);
    const lease = JSON.parse(lc.stdout) as { id: string; state: string; jobId?: string; address?: string; hostKey?: string };
    out(`    $ wnod lease create --image vm_test --ssh-key ${lu.pubKey} --hours 1 --json   (as ${user.name}, ${((performance.now() - t1) / 1000).toFixed(1)} s)`);
    out(`    lease ${lease.id}: ${lease.state}, pilot job ${lease.jobId}, ssh at ${lease.address}, host key ${lease.hostKey?.slice(0, 40)}…`);
    check(lease.state === 'ready' && /^127\.0\.0\.1:\d+$/.test(lease.address ?? '') && /^ssh-ed25519 /.test(lease.hostKey ?? ''), 'the lease is not ready with an address and a host key');
    const port = /:(\d+)$/.exec(lease.address!)![1]!;
    const sh = await lu.ssh(lease.address!, lease.hostKey!, 'hostname; uname -r');
    out(`    $ ssh -p ${port} ${user.name}@127.0.0.1 'hostname; uname -r'   (host key pinned) → ${sh.stdout.trim().replace(/\n/g, ', ') || `exit ${sh.exitCode}`}`);
    check(sh.exitCode === 0 && sh.stdout.split('\n')[0] === vmHostname(vmIdForJob(lease.jobId!)), `ssh did not answer from inside the lease's VM: ${sh.stderr.trim()}`);
    out(indent((await lu.lease(['list'])).stdout));
    const ld = await lu.lease(['delete', lease.id, '--json']);
    check(ld.exitCode === 0, `wnod lease delete exited ${ld.exitCode}: ${ld.stderr.trim()}`);
    const gone = JSON.parse(ld.stdout) as { state: string };
    const pilot = await fx.waitDone(lease.jobId!);
    const vmsLeft = await readdir(join(site.stateDir, 'vms')).catch(() => [] as string[]);
    out(`    $ wnod lease delete ${lease.id} → ${gone.state}; pilot job ${lease.jobId} ${pilot.state}; VMs left: ${vmsLeft.length ? vmsLeft.join(', ') : 'none'}`);
    check(gone.state === 'released' && vmsLeft.length === 0, `the lease ended ${gone.state} with VMs left: ${vmsLeft.join(', ')}`);

    step('Site BDII: wnod install bdii into a real resource BDII (slapd + bdii-update), then wnod find');
    bdii = await startBdii({ staticLdif: staticCeLdif({ host: CE_HOST, queue: 'wnod', vos: ['testvo'] }), breatheS: 2 });
    out(`    BDII at ${bdii.url} (the CE's static GLUE entries for ${CE_HOST})`);
    // bdii-update runs the providers as openldap: the last good output goes where openldap may write
    const lastGood = join(dir, 'bdii-lastgood');
    await mkdir(lastGood, { mode: 0o755 });
    const ldap = (await execa('getent', ['passwd', 'openldap'])).stdout.split(':');
    await chown(lastGood, Number(ldap[2]), Number(ldap[3]));
    const doc = parseDocument(await readFile(site.configPath, 'utf8'));
    doc.setIn(['glue', 'last_good_file'], join(lastGood, 'glue.ldif'));
    await writeFile(site.configPath, doc.toString());
    out(indent((await wnod(['install', 'bdii', '--gip-dir', bdii.gipDir, '--config', site.configPath, '--prefix', repo])).stdout));
    const RTE = 'GlueHostApplicationSoftwareRunTimeEnvironment';
    const tags = await bdii.waitFor(async (c) => {
      const r = await c.search('o=grid', { filter: '(objectClass=GlueSubCluster)', attributes: [RTE] });
      const v = r.searchEntries[0]?.[RTE];
      const list = v === undefined ? [] : (Array.isArray(v) ? v : [v]).map(String);
      return list.includes('vm_test') ? list : undefined;
    }, 120_000, 'the image tags on the SubCluster');
    out(`    the SubCluster's ${RTE}: ${tags.join(', ')}`);
    const found = await wnod(['find', '--bdii', bdii.url, '--image', 'vm_test']);
    out(`    $ wnod find --bdii ${bdii.url} --image vm_test\n${indent(found.stdout)}`);
    check(found.stdout.includes(CE_HOST), 'wnod find did not find the CE');
  } finally {
    if (bdii) await bdii.stop();
    if (ss) await ss.stop();
    if (user) await rm(join(user.home, '.wnod'), { recursive: true, force: true });
  }
}
