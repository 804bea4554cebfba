// Multi-node wnod jobs on a REAL Torque 6.1.3 whose three pbs_mom are separate hosts as far as the network goes
// (test/kit/torqueNodes.ts: each MOM in a network namespace of its own on a site network, the server on another).
// `qsub -l nodes=3` in the wnod queue: the mother superior's prologue and each sister's prologue.parallel boot that
// host's VM on the job's private network (VXLAN between the hosts' stacks); the script runs in vm0 with PBS_NODEFILE
// naming the VMs, runs a command on every VM by ssh (the job's own key) and sends data from vm0 to vm1 over the
// private network (checked on both ends); the epilogue and epilogue.parallel leave nothing on any host. qdel of a
// 2-node job leaves nothing either; a sister that cannot make its part fails the job with the reason in its .e.
// A group the site admits only with a ticket: its ticketed 2-node job runs in VMs on both hosts (the sister reads
// the ticket from the job's WNOD_TICKET variable), and the mother superior refuses a job whose variable carries
// another ticket than its script, or none (a qsub -v replaced the script's #PBS -v).
// VMs booted: 9 (TCG, the minimal kernel, 256 MB, 1 cpu).
// Another run of this file at the same time (another worktree): WNOD_TEST_TORQUE_NODES=<tag>:<net> (default tmn:13)
// names its hosts <tag>n1…, its users <tag>job and <tag>tkt, its site network 10.233.<net>.
import t, { type Test } from 'tap';
import { chown, chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { torqueUnavailable } from './kit/torque.js';
import { startTorqueNodes, type TorqueNodes } from './kit/torqueNodes.js';
import { checkClusterProbe, clusterProbeLines, nothingLeftOnNodes } from './kit/slurmNetnsNodes.js';
import { ensureTestUser } from './kit/pbsmom.js';
import { ensureBuilt } from './kit/cli.js';
import { reachableRepo } from './kit/reachable.js';
import { buildSshTestImage } from './kit/sshImage.js';
import { makeVmSite, type VmSite } from './kit/vmSite.js';
import { MOM_PRIV } from './kit/torqueRealSite.js';
import { inNode } from './kit/siteNodes.js';
import { jobSlot } from '../src/cluster/jobNetPlan.js';
import { NODE_FAULT_EXIT, REFUSED_EXIT } from '../src/job/outcome.js';
import { signTicket, newNonce } from '../src/ticket/index.js';
import { loadConfig } from '../src/config/load.js';
import type { TestUser } from './kit/pbsmom.js';

const [TAG, NET] = (process.env.WNOD_TEST_TORQUE_NODES ?? 'tmn:13').split(':') as [string, string];
const n = (i: number) => `${TAG}n${i}`;

const skip = torqueUnavailable() ?? ((await execa('/usr/sbin/nft', ['--version'], { reject: false })).exitCode !== 0 ? 'needs nft' : undefined);

t.test('multi-node wnod jobs on a real Torque with MOMs in their own network namespaces', { skip: skip ?? false }, async (t) => {
  await ensureBuilt();
  const repo = reachableRepo();
  const cli = join(repo, 'dist', 'cli', 'main.js');
  const img = await buildSshTestImage({ kernel: 'mini' });
  const user = await ensureTestUser(`${TAG}job`);
  // in a group without a rule: the site admits its jobs only with a ticket (policy group-default refuses the rest)
  const ticketUser = await ensureTestUser(`${TAG}tkt`);
  let site: VmSite | undefined;
  let installOutput = '';
  const c: TorqueNodes = await startTorqueNodes({
    tag: TAG, net: Number(NET), moms: 3, np: 2,
    beforeMoms: async (c) => {
      const secret = join(c.shared, 'jobnet.secret');
      await writeFile(secret, randomBytes(32), { mode: 0o600 });
      site = await makeVmSite(join(c.shared, 'site'), img, {
        rules: [{ name: 'clusters', group: user.group, images: ['vm_test'], default: 'vm_test' }], policy: { no_ticket: 'group-default' },
        // a budget that keeps the wait for a VM that never comes up short (the VMs boot in ~10 s here)
        lrm: { mom_priv: MOM_PRIV, prologue_budget_s: 150 },
        // every MOM's own state under the same path (its mount namespace), as on separate machines
        vm: { state_dir: join(c.sharedPath, 'state'), ready_timeout_s: 120 },
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
  const workOf = async (name: string, u: TestUser) => {
    const dir = join(c.shared, name);
    await mkdir(dir);
    await chown(dir, u.uid, u.gid);
    await chmod(dir, 0o755);
    return dir;
  };
  const work = await workOf('work', user);
  const ticketWork = await workOf('ticket-work', ticketUser);
  const nothingLeft = (t: Test, what: string) => nothingLeftOnNodes(t, c, what);
  const script = (resources: string, body: string) => `#!/bin/sh\n#PBS -q wnod\n#PBS -T wnod\n#PBS -l ${resources}\n${body}\n`;
  const output = async (name: string, id: string, dir = work) => {
    const seq = id.split('.')[0];
    const read = (ext: string) => readFile(join(dir, `${name}.${ext}${seq}`), 'utf8').catch(() => '');
    for (let i = 0; i < 100 && !(await read('o')); i++) await new Promise((r) => setTimeout(r, 100));
    return { out: await read('o'), err: await read('e') };
  };

  t.match(installOutput, /mom_priv\/prologue\.parallel \(500, root\)/, 'wnod install torque installs prologue.parallel');
  t.match(installOutput, /mom_priv\/epilogue\.parallel \(500, root\)/, 'and epilogue.parallel');

  await t.test('a 3-node job: its script in vm0 runs a command on every VM by ssh and sends data to vm1 over the private network', async (t) => {
    const body = [
      'echo "nodefile=$(tr "\\n" " " < "$PBS_NODEFILE") list=$WNOD_JOB_NODELIST mpich=$(tr "\\n" " " < "$WNOD_HOSTFILE_MPICH")"',
      ...clusterProbeLines(['vm0', 'vm1', 'vm2'], '10.243'),
    ].join('\n');
    const id = await c.server.qsub(user, script('nodes=3:ppn=1,walltime=00:20:00', body), { cwd: work, args: ['-N', 'cluster'] });
    const j = await c.server.waitJob(id, 'C', 900_000);
    const { out, err } = await output('cluster', id);
    t.equal(j.exit_status, '0', `the job succeeded (stderr: ${err.slice(0, 600)}; out: ${out.slice(0, 600)})`);
    t.equal(j.exec_host?.split('+').map((h) => h.split('/')[0]).sort().join(' '), [n(1), n(2), n(3)].join(' '), 'Torque gave it the three hosts');
    t.match(out, /^nodefile=vm0 vm1 vm2  list=vm\[0-2\] mpich=vm0:1 vm1:1 vm2:1 $/m, 'the script sees its cluster of VMs (PBS_NODEFILE names them)');
    checkClusterProbe(t, out, user.name, ['vm0', 'vm1', 'vm2'], '10.243');
    await nothingLeft(t, 'after the job');
  });

  await t.test('a sister whose part of the job fails: the job fails with the reason, its script never runs, nothing is left', async (t) => {
    // n2 holds an interface with the job's bridge name that no job claims: it refuses to reuse it (a collision the
    // host cannot resolve), its sister boot refuses the job; the mother superior boots vm0, the job finds vm1 missing
    const id = await c.server.qsub(user, script(`nodes=${n(1)}:ppn=1+${n(2)}:ppn=1,walltime=00:20:00`, 'echo should-not-run'), { cwd: work, args: ['-N', 'half', '-h'] });
    const { vni } = jobSlot({ vni: { first: 7000, count: 500 }, port: 4789, underlayMtu: 1500, privateRange: '10.243.0.0/16', subnetPrefix: 24 }, id);
    const stray = `wnb${vni.toString(16).padStart(6, '0')}`;
    t.equal((await inNode(c.namespaces[1]!, '/usr/sbin/ip', ['link', 'add', stray, 'type', 'bridge'])).exitCode, 0);
    await c.server.must(['/usr/local/bin/qrls', id], { user });
    const j = await c.server.waitJob(id, 'C', 900_000);
    const { out, err } = await output('half', id);
    t.equal(j.exec_host?.split('+')[0], `${n(1)}/0`, 'n1 is the mother superior, n2 a sister');
    t.equal(j.exit_status, String(NODE_FAULT_EXIT), 'the node-fault status: the job is not at fault');
    t.match(err, /^wnod: the job's virtual machine vm1 on its other node did not come up/m, 'the reason, in the job\'s .e');
    t.notMatch(out, /should-not-run/);
    const log = await readFile(join(site!.dir, 'wnod.log'), 'utf8');
    t.match(log, new RegExp(`"hook":"sister-boot","job":"${id.replace('.', '\\.')}".*"code":"jobnet-collision".*interfaces ${stray} exist on this node but no job claims`), 'n2 said why, in the site log');
    t.equal((await inNode(c.namespaces[1]!, '/usr/sbin/ip', ['link', 'del', stray])).exitCode, 0, 'the stray bridge was left alone');
    await nothingLeft(t, 'after the failed job');
  });

  // the filter's ticket for the ticket user, in the script's header and (as the filter prints it) in #PBS -v
  const image = (await loadConfig(site!.configPath)).images.find((i) => i.id === site!.imageId)!;
  const ticket = () => {
    const now = Math.floor(Date.now() / 1000);
    return signTicket({
      v: 1, image: image.id, digest: image.digest, account: ticketUser.name, dn: '/C=XX/O=wnod test/CN=Alice', fqan: '/testvo/Role=NULL/Capability=NULL',
      vo: 'testvo', cpus: 1, memoryMB: 256, rule: 'testvo', ce: 'ce.wnod.test', iat: now, exp: now + 3600, nonce: newNonce(),
    }, site!.key);
  };
  const ticketed = (header: string, variable: string, resources: string, body: string) =>
    `#!/bin/sh\n#PBS -q wnod\n#PBS -T wnod\n#PBS -l ${resources}\n#PBS -v WNOD_TICKET=${variable}\n# wnod-ticket: ${header}\n${body}\n`;
  // the site log's admission records of a job (the log also holds the users' lines, not JSON)
  const decisions = async (id: string) => (await readFile(join(site!.dir, 'wnod.log'), 'utf8')).split('\n').filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.job === id && e.event === 'accepted')
    .map((e) => `${String(e.hook)} ${String(e.mode)} ${String(e.vo)} ${String(e.rule)}`).sort();

  await t.test('a group admitted only with a ticket: its ticketed 2-node job runs in VMs on both hosts, each decided from the ticket', async (t) => {
    const tok = ticket();
    const id = await c.server.qsub(ticketUser, ticketed(tok, tok, 'nodes=2:ppn=1,walltime=00:20:00', 'ssh vm1 echo peer-up'), { cwd: ticketWork, args: ['-N', 'ticketed'] });
    const j = await c.server.waitJob(id, 'C', 900_000);
    const { out, err } = await output('ticketed', id, ticketWork);
    t.equal(j.exit_status, '0', `the job succeeded (stderr: ${err.slice(0, 600)}; out: ${out.slice(0, 600)})`);
    t.match(out, /^peer-up$/m, 'vm1 answered from vm0');
    t.same(await decisions(id), ['prologue vm testvo testvo', 'sister-boot vm testvo testvo'], 'the mother superior and the sister both decided from the ticket');
    await nothingLeft(t, 'after the ticketed job');
  });

  await t.test('the mother superior refuses a job on several hosts whose WNOD_TICKET is not its script\'s ticket', async (t) => {
    // another ticket of the same user for the sisters than the script's
    const other = await c.server.qsub(ticketUser, ticketed(ticket(), ticket(), 'nodes=2:ppn=1,walltime=00:20:00', 'echo should-not-run'), { cwd: ticketWork, args: ['-N', 'other'] });
    // qsub -v on the command line replaces the script's #PBS -v (observed): the ticket is left in the script only
    const tok = ticket();
    const dropped = await c.server.qsub(ticketUser, ticketed(tok, tok, 'nodes=2:ppn=1,walltime=00:20:00', 'echo should-not-run'), { cwd: ticketWork, args: ['-N', 'dropped', '-v', 'FOO=bar'] });
    for (const [id, name, reason] of [[other, 'other', /WNOD_TICKET variable carries another wnod ticket than its script/], [dropped, 'dropped', /carries its wnod ticket only in its script, not in its WNOD_TICKET variable/]] as const) {
      const j = await c.server.waitJob(id, 'C', 900_000);
      const { out, err } = await output(name, id, ticketWork);
      t.equal(j.exit_status, String(REFUSED_EXIT), `${name}: refused (stderr: ${err.slice(0, 400)})`);
      t.match(err, reason, `${name}: the reason, in the job's .e`);
      t.notMatch(out, /should-not-run/);
    }
    await nothingLeft(t, 'after the refused jobs');
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
