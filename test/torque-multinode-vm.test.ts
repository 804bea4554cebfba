// Multi-node wnod jobs on a REAL Torque 6.1.3 whose three pbs_mom are separate hosts as far as the network goes
// (test/kit/torqueNodes.ts: each MOM in a network namespace of its own on a site network, the server on another).
// `qsub -l nodes=3` in the wnod queue: the mother superior's prologue and each sister's prologue.parallel boot that
// host's VM on the job's private network (VXLAN between the hosts' stacks); the script runs in vm0 with PBS_NODEFILE
// naming the VMs, runs a command on every VM by ssh (the job's own key) and sends data from vm0 to vm1 over the
// private network (checked on both ends); the epilogue and epilogue.parallel leave nothing on any host. qdel of a
// 2-node job leaves nothing either. VMs booted: 5 (TCG, the minimal kernel, 256 MB, 1 cpu).
import t, { type Test } from 'tap';
import { chown, chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { torqueUnavailable } from './kit/torque.js';
import { startTorqueNodes, type TorqueNodes } from './kit/torqueNodes.js';
import { nothingLeftOnNodes } from './kit/slurmNetnsNodes.js';
import { ensureTestUser } from './kit/pbsmom.js';
import { ensureBuilt } from './kit/cli.js';
import { reachableRepo } from './kit/reachable.js';
import { buildSshTestImage } from './kit/sshImage.js';
import { makeVmSite, type VmSite } from './kit/vmSite.js';
import { MOM_PRIV } from './kit/torqueRealSite.js';

const skip = torqueUnavailable() ?? ((await execa('/usr/sbin/nft', ['--version'], { reject: false })).exitCode !== 0 ? 'needs nft' : undefined);

t.test('multi-node wnod jobs on a real Torque with MOMs in their own network namespaces', { skip: skip ?? false }, async (t) => {
  await ensureBuilt();
  const repo = reachableRepo();
  const cli = join(repo, 'dist', 'cli', 'main.js');
  const img = await buildSshTestImage({ kernel: 'mini' });
  const user = await ensureTestUser('wtmjob');
  let site: VmSite | undefined;
  let installOutput = '';
  const c: TorqueNodes = await startTorqueNodes({
    tag: 'tmn', net: 13, moms: 3, np: 2,
    beforeMoms: async (c) => {
      const secret = join(c.shared, 'jobnet.secret');
      await writeFile(secret, randomBytes(32), { mode: 0o600 });
      site = await makeVmSite(join(c.shared, 'site'), img, {
        rules: [{ name: 'clusters', group: user.group, images: ['vm_test'], default: 'vm_test' }], policy: { no_ticket: 'group-default' },
        lrm: { mom_priv: MOM_PRIV },
        // every MOM's own state under the same path (its mount namespace), as on separate machines
        vm: { state_dir: join(c.sharedPath, 'state'), ready_timeout_s: 240 },
        sections: {
          job_network: {
            nodes: Object.fromEntries(c.moms.map((m, i) => [m.host, c.underlay[i]])), vni: { first: 7000, count: 500 }, private_range: '10.243.0.0/16',
            secret_file: secret, claim_dir: join(c.sharedPath, 'claims'),
          },
        },
      });
      // as the README says: on every worker node, then the qmgr lines it printed on the server
      for (const m of c.moms) installOutput = await m.must(['/usr/bin/env', '-u', 'NODE_OPTIONS', process.execPath, cli, 'install', 'torque', '--mom-priv', MOM_PRIV, '--config', site.configPath, '--prefix', repo, '--apply']);
      const lines = installOutput.split('\n');
      const from = lines.findIndex((l) => l.startsWith('on the Torque server, run with qmgr:')) + 1;
      for (const l of lines.slice(from)) if (l.startsWith('  ')) await c.server.qmgr(l.trim()); else break;
    },
  });
  t.teardown(async () => {
    for (const m of c.moms) await m.exec(['/usr/bin/env', '-u', 'NODE_OPTIONS', process.execPath, cli, 'kill-all', '--state-dir', join(c.sharedPath, 'state')]).catch(() => undefined);
    await c.stop();
  });
  const work = join(c.shared, 'work');
  await mkdir(work);
  await chown(work, user.uid, user.gid);
  await chmod(work, 0o755);
  const nothingLeft = (t: Test, what: string) => nothingLeftOnNodes(t, c, what);
  const script = (resources: string, body: string) => `#!/bin/sh\n#PBS -q wnod\n#PBS -T wnod\n#PBS -l ${resources}\n${body}\n`;
  const output = async (name: string, id: string) => {
    const seq = id.split('.')[0];
    const read = (ext: string) => readFile(join(work, `${name}.${ext}${seq}`), 'utf8').catch(() => '');
    for (let i = 0; i < 100 && !(await read('o')); i++) await new Promise((r) => setTimeout(r, 100));
    return { out: await read('o'), err: await read('e') };
  };

  t.match(installOutput, /mom_priv\/prologue\.parallel \(500, root\)/, 'wnod install torque installs prologue.parallel');
  t.match(installOutput, /mom_priv\/epilogue\.parallel \(500, root\)/, 'and epilogue.parallel');

  await t.test('a 3-node job: its script in vm0 runs a command on every VM by ssh and sends data to vm1 over the private network', async (t) => {
    const body = [
      'echo "nodefile=$(tr "\\n" " " < "$PBS_NODEFILE") list=$WNOD_JOB_NODELIST mpich=$(tr "\\n" " " < "$WNOD_HOSTFILE_MPICH")"',
      'for h in vm0 vm1 vm2; do ssh "$h" \'echo "ssh-ok host=$(hostname) user=$(id -un)"\' || echo "ssh-failed $h"; done',
      'head -c 1048576 /dev/urandom > /tmp/d',
      'echo "sent=$(md5sum < /tmp/d | cut -d" " -f1)"',
      'ssh vm1 \'cat > /tmp/r; echo "received=$(wc -c < /tmp/r) $(md5sum < /tmp/r | cut -d" " -f1) on $(hostname) from ${SSH_CLIENT%% *}"\' < /tmp/d',
      'ip -o -4 addr show | grep -o "inet 10\\.243[0-9./]*"',
    ].join('\n');
    const id = await c.server.qsub(user, script('nodes=3:ppn=1,walltime=00:20:00', body), { cwd: work, args: ['-N', 'cluster'] });
    const j = await c.server.waitJob(id, 'C', 900_000);
    const { out, err } = await output('cluster', id);
    t.equal(j.exit_status, '0', `the job succeeded (stderr: ${err.slice(0, 600)}; out: ${out.slice(0, 600)})`);
    t.equal(j.exec_host?.split('+').map((h) => h.split('/')[0]).sort().join(' '), 'tmnn1 tmnn2 tmnn3', 'Torque gave it the three hosts');
    t.match(out, /^nodefile=vm0 vm1 vm2  list=vm\[0-2\] mpich=vm0:1 vm1:1 vm2:1 $/m, 'the script sees its cluster of VMs (PBS_NODEFILE names them)');
    for (const h of ['vm0', 'vm1', 'vm2']) t.match(out, `ssh-ok host=${h} user=${user.name}`, `ssh to ${h}, no password, no prompt`);
    t.notMatch(out, /ssh-failed/);
    const sent = /sent=([0-9a-f]{32})/.exec(out)?.[1];
    t.ok(sent, 'vm0 made the data');
    const recv = /received=(\d+) ([0-9a-f]{32}) on (\S+) from (\S+)/.exec(out);
    t.same(recv?.slice(1, 4), ['1048576', sent, 'vm1'], 'vm1 received every byte, unchanged');
    const vm0Ip = /inet (10\.243\.[0-9.]+)\/24/.exec(out)?.[1];
    t.equal(recv?.[4], vm0Ip, 'over the private network, from vm0\'s address on it');
    await nothingLeft(t, 'after the job');
  });

  await t.test('qdel of a 2-node job once both VMs are up: the job ends, nothing is left on any host', async (t) => {
    const id = await c.server.qsub(user, script('nodes=2:ppn=1,walltime=00:20:00', 'cd "$PBS_O_WORKDIR"; ssh vm1 "echo peer-up" > long.up; while :; do sleep 1; done'), { cwd: work, args: ['-N', 'long'] });
    // the script writes into its submit dir (shared into vm0) once vm1 answered
    const until = Date.now() + 900_000;
    let up = false;
    while (Date.now() < until && !(up = (await readFile(join(work, 'long.up'), 'utf8').catch(() => '')).includes('peer-up'))) {
      if ((await c.server.job(id))?.job_state === 'C') break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    t.ok(up, 'both VMs were up');
    await c.server.must(['/usr/local/bin/qdel', id], { user });
    const j = await c.server.waitJob(id, 'C', 300_000);
    t.not(j.exit_status, '0', 'the job was ended');
    await nothingLeft(t, 'after qdel');
  });
});
