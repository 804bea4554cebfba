// wnod on a real Torque 6.1.3 (test/kit/torque.ts: trqauthd, pbs_server, pbs_sched and one pbs_mom np=4 in private
// namespaces), installed as the README says — `wnod install torque … --apply`, then the printed qmgr lines — and
// driven with the real qsub/qdel as an unprivileged user: a job in its VM, qdel, walltime, a refused job (the reason
// in its .e file in the submit dir), a replayed ticket, 4 jobs at once, a plain job on the same node through the
// MOM-wide starter, a ppn=2 job. Works from a clone in a private dir (reachable.ts) and with or without KVM (TCG).
import t, { type Test } from 'tap';
import { chmod, chown, mkdir, readFile, readdir, stat } from 'node:fs/promises';
import { release as hostRelease } from 'node:os';
import { join } from 'node:path';
import { startTorque, torqueUnavailable, type TorqueNode } from './kit/torque.js';
import { ensureTestUser, type TestUser } from './kit/pbsmom.js';
import { makeVmSite, type VmSite } from './kit/vmSite.js';
import { hypervisorsOf } from './kit/hypervisors.js';
import { ensureBuilt } from './kit/cli.js';
import { reachableRepo } from './kit/reachable.js';
import { buildTestImage, type TestImage } from '../src/guest/testImage.js';
import { loadConfig } from '../src/config/load.js';
import { readRecords } from '../src/accounting/store.js';
import { signTicket, newNonce, type TicketClaims } from '../src/ticket/index.js';
import { REFUSED_EXIT } from '../src/job/outcome.js';
import type { SiteConfig } from '../src/config/types.js';

const MOM_PRIV = '/var/spool/torque/mom_priv'; // inside the fixture's namespace
const why = torqueUnavailable();

if (why) {
  t.skip(`a real Torque cannot run here: ${why}`, () => {});
} else {
  let node: TorqueNode;
  let site: VmSite;
  let cfg: SiteConfig;
  let user: TestUser;
  let img: TestImage;
  let work: string;

  t.before(async () => {
    await ensureBuilt();
    img = await buildTestImage();
    user = await ensureTestUser('wtqjob');
    const repo = reachableRepo();
    const cli = join(repo, 'dist', 'cli', 'main.js');
    node = await startTorque({
      tag: 'wtq', np: 4,
      beforeMom: async (n) => {
        // the site lives under the fixture's dir: the namespace's /tmp is private, that dir stays visible in it
        site = await makeVmSite(join(n.dir, 'site'), img, { lrm: { mom_priv: MOM_PRIV } });
        cfg = await loadConfig(site.configPath);
        // exactly as the README says, as root on the node
        const out = await n.must([process.execPath, cli, 'install', 'torque', '--mom-priv', MOM_PRIV, '--config', site.configPath, '--prefix', repo, '--apply']);
        // then the qmgr lines it printed, one qmgr call each
        const lines = out.split('\n');
        const from = lines.findIndex((l) => l.startsWith('on the Torque server, run with qmgr:')) + 1;
        const to = lines.findIndex((l, i) => i >= from && !l.startsWith('  '));
        const qmgr = lines.slice(from, to).map((l) => l.trim());
        t.ok(qmgr.length > 0, 'install printed qmgr lines');
        for (const line of qmgr) await n.qmgr(line);
      },
    });
    work = join(node.dir, 'work');
    await mkdir(work);
    await chown(work, user.uid, user.gid);
    await chmod(work, 0o755);
  });

  t.teardown(async () => { await node?.stop(); });

  const ticket = (over: Partial<TicketClaims> = {}): string => {
    const image = cfg.images.find((i) => i.id === site.imageId)!;
    const now = Math.floor(Date.now() / 1000);
    return signTicket({
      v: 1, image: image.id, digest: image.digest, account: user.name, dn: '/C=XX/O=wnod test/CN=Alice', fqan: '/testvo/Role=NULL/Capability=NULL',
      vo: 'testvo', cpus: 1, memoryMB: 256, rule: 'testvo', ce: 'ce.wnod.test', iat: now, exp: now + 3600, nonce: newNonce(), ...over,
    }, site.key);
  };

  /** A wnod job as the submit filter makes it: queue, job class, resources, the ticket in the leading block. */
  const wnodScript = (tok: string, body: string, resources = 'nodes=1:ppn=1,walltime=00:10:00') =>
    `#!/bin/bash\n#PBS -q wnod\n#PBS -T wnod\n#PBS -l ${resources}\n# wnod-ticket: ${tok}\ncd "$PBS_O_WORKDIR"\n${body}`;

  const submit = (name: string, script: string, args: string[] = []) => node.qsub(user, script, { cwd: work, args: ['-N', name, ...args] });

  /** The job's .o/.e in the submit dir (Torque copies them there when the job ends). */
  async function output(name: string, id: string): Promise<{ out: string; err: string }> {
    const seq = id.split('.')[0];
    const files = [join(work, `${name}.o${seq}`), join(work, `${name}.e${seq}`)];
    for (let i = 0; i < 100 && !(await Promise.all(files.map((f) => stat(f).then(() => true, () => false)))).every(Boolean); i++) await new Promise((r) => setTimeout(r, 100));
    const [out, err] = await Promise.all(files.map((f) => readFile(f, 'utf8').catch(() => '')));
    return { out: out!, err: err! };
  }

  async function finished(name: string, id: string): Promise<{ status: number; out: string; err: string }> {
    const j = await node.waitJob(id, 'C', 600_000);
    return { status: Number(j.exit_status), ...(await output(name, id)) };
  }

  /** Nothing of any job is left on the node: VM records, runtime dirs, hypervisors, job markers. */
  async function nothingLeft(t: Test, what: string): Promise<void> {
    t.same(await readdir(join(site.stateDir, 'vms')).catch(() => []), [], `${what}: no VM record`);
    t.same(await readdir(join(site.stateDir, 'run')).catch(() => []), [], `${what}: no runtime dir`);
    t.same(await hypervisorsOf(site.stateDir), [], `${what}: no QEMU or virtiofsd`);
    t.same((await readdir(join(site.stateDir, 'torque')).catch(() => [] as string[])).filter((f) => /\.(mode|json)$/.test(f)), [], `${what}: no job record or marker`);
  }

  let firstTicket = '';

  t.test('a job in its VM: guest kernel, exit status, a file of the user\'s in the workdir, the accounting line', async (t) => {
    firstTicket = ticket();
    const id = await submit('vmjob', wnodScript(firstTicket, 'echo "kernel=$(uname -r)"\necho "uid=$(id -u)"\necho from-the-vm > result.txt\nexit 7\n'));
    const r = await finished('vmjob', id);
    t.equal(r.status, 7, 'the in-VM exit status is the job\'s');
    const kver = img.kernelPackage.replace(/^linux-image-/, '').replace(/=.*$/, '');
    t.match(r.out, `kernel=${kver}\n`, 'the guest kernel answered');
    t.not(kver, hostRelease(), 'not the host\'s kernel');
    t.match(r.out, `uid=${user.uid}\n`);
    const st = await stat(join(work, 'result.txt'));
    t.equal(st.uid, user.uid, 'the file in the workdir is the user\'s');
    t.equal(await readFile(join(work, 'result.txt'), 'utf8'), 'from-the-vm\n');
    const rec = (await readRecords(cfg.accountingFile)).records.find((x) => x.jobId === id);
    t.match(rec, { user: user.name, image: site.imageId, vo: 'testvo', exitStatus: 7, mode: 'vm', cpus: 1, memoryMB: 256 }, 'accounted');
    await nothingLeft(t, 'after the job');
  });

  t.test('a refused job: the reason in its .e file in the submit dir, exit 77, nothing booted; a replayed ticket too', async (t) => {
    const id = await submit('refused', wnodScript(ticket({ account: 'someoneelse' }), 'echo must-not-run\n'));
    const r = await finished('refused', id);
    t.equal(r.status, REFUSED_EXIT);
    t.match(r.err, /^wnod: the wnod ticket was issued to another account than wtqjob$/m, 'the one-line reason where a Torque user looks');
    t.notMatch(r.out + r.err, /must-not-run|wnod\.yaml|\/site\//, 'the job did not run; no config detail');
    const replay = await submit('replay', wnodScript(firstTicket, 'echo must-not-run\n'));
    const rr = await finished('replay', replay);
    t.equal(rr.status, REFUSED_EXIT);
    t.match(rr.err, /already used on this node/);
    await nothingLeft(t, 'after the refusals');
  });

  t.test('a plain job on the same node runs unchanged through the MOM-wide starter', async (t) => {
    const id = await node.qsub(user, '#!/bin/bash\necho "plain parent=$(cat /proc/$PPID/comm)"\nexit 3\n', { cwd: work, args: ['-N', 'plain', '-q', 'batch'] });
    const r = await finished('plain', id);
    t.equal(r.status, 3);
    t.match(r.out, /^plain parent=bash$/m, 'the starter shim exec\'d the shell: no node in between');
    t.equal(r.err, '');
  });

  t.test('a ppn=2 job gets a 2-cpu VM (what it holds, within the image\'s maximum)', async (t) => {
    const id = await submit('ppn2', wnodScript(ticket(), 'echo "cpus=$(grep -c ^processor /proc/cpuinfo)"\n', 'nodes=1:ppn=2,walltime=00:10:00'));
    const r = await finished('ppn2', id);
    t.equal(r.status, 0, r.err);
    t.match(r.out, /^cpus=2$/m);
    t.match((await readRecords(cfg.accountingFile)).records.find((x) => x.jobId === id), { cpus: 2 });
    await nothingLeft(t, 'after the ppn=2 job');
  });

  t.test('4 jobs at once, each in its own VM', async (t) => {
    const ids = await Promise.all([0, 1, 2, 3].map((i) => submit(`four${i}`, wnodScript(ticket(), `echo "host=$(hostname)"\nexit ${i}\n`))));
    const rs = await Promise.all(ids.map((id, i) => finished(`four${i}`, id)));
    t.same(rs.map((r) => r.status), [0, 1, 2, 3]);
    const hosts = rs.map((r) => /host=(\S+)/.exec(r.out)?.[1]);
    t.equal(new Set(hosts).size, 4, `four VMs: ${hosts.join(' ')}`);
    await nothingLeft(t, 'after 4 jobs');
  });

  t.test('qdel: TERM reaches the job in its VM, nothing left', async (t) => {
    const id = await submit('qdeljob', wnodScript(ticket(), 'trap \'echo got-term > term.txt; exit 3\' TERM\necho started > started.txt\nsleep 300 &\nwait\n'));
    const startedFile = join(work, 'started.txt');
    for (let i = 0; i < 3000 && !(await stat(startedFile).then(() => true, () => false)); i++) await new Promise((r) => setTimeout(r, 200));
    await node.must(['/usr/local/bin/qdel', id], { user });
    const r = await finished('qdeljob', id);
    t.equal(await readFile(join(work, 'term.txt'), 'utf8').catch(() => ''), 'got-term\n', 'the guest job got TERM');
    t.equal(r.status, 3, 'the job\'s own status after its trap');
    await nothingLeft(t, 'after qdel');
  });

  t.test('walltime: the job in its VM is ended, nothing left', async (t) => {
    const id = await submit('wall', wnodScript(ticket(), 'echo started\nsleep 600\necho not-reached\n', 'nodes=1:ppn=1,walltime=00:00:15'));
    const r = await finished('wall', id);
    t.not(r.status, 0, `ended by the walltime (exit_status ${r.status})`);
    t.match(r.out, /started/);
    t.notMatch(r.out, /not-reached/);
    await nothingLeft(t, 'after the walltime kill');
  });
}
