// wnod on a real Torque 6.1.3 (./torque.ts: one host, np slots), installed as the README says — `wnod install
// torque … --apply` as root on the node, then the qmgr lines it printed — with a VM site (./vmSite.ts) under the
// fixture's dir (the namespace's /tmp is private; that dir stays visible in it), a job user and a workdir of theirs.
// Shared by test/torque-real.test.ts and bench/torque.ts.
import { chmod, chown, mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { startTorque, type TorqueNode } from './torque.js';
import { ensureTestUser, type TestUser } from './pbsmom.js';
import { makeVmSite, type VmSite, type VmSiteOptions } from './vmSite.js';
import { ensureBuilt } from './cli.js';
import { reachableRepo } from './reachable.js';
import type { TestImage } from '../../src/guest/testImage.js';
import { loadConfig } from '../../src/config/load.js';
import { signTicket, newNonce, type TicketClaims } from '../../src/ticket/index.js';
import type { SiteConfig } from '../../src/config/types.js';

/** pbs_mom's mom_priv inside the fixture's namespace */
export const MOM_PRIV = '/var/spool/torque/mom_priv';

export interface RealTorqueSite {
  node: TorqueNode;
  site: VmSite;
  cfg: SiteConfig;
  user: TestUser;
  /** the job user's submit dir (0755, theirs) */
  work: string;
  /** what `wnod install torque` printed */
  installOutput: string;
  /** the qmgr lines it printed and that were applied */
  qmgr: string[];
  ticket(over?: Partial<TicketClaims>): string;
  /** a wnod job as the submit filter makes it: queue, job class, resources, the ticket in the leading block */
  wnodScript(ticket: string, body: string, resources?: string): string;
  /** qsub as the job user from the submit dir; resolves to the job id */
  submit(name: string, script: string, args?: string[]): Promise<string>;
  /** wait until the job is complete; its exit status and its .o/.e as delivered to the submit dir */
  finished(name: string, id: string, timeoutMs?: number): Promise<{ status: number; out: string; err: string }>;
  stop(): Promise<void>;
}

export async function makeRealTorqueSite(img: TestImage, o: { tag: string; userName: string; np?: number; site?: VmSiteOptions }): Promise<RealTorqueSite> {
  await ensureBuilt();
  const user = await ensureTestUser(o.userName);
  const repo = reachableRepo();
  const cli = join(repo, 'dist', 'cli', 'main.js');
  let site: VmSite | undefined;
  let cfg: SiteConfig | undefined;
  let installOutput = '';
  let qmgr: string[] = [];
  const node = await startTorque({
    tag: o.tag, np: o.np ?? 4,
    beforeMom: async (n) => {
      site = await makeVmSite(join(n.dir, 'site'), img, { ...o.site, lrm: { mom_priv: MOM_PRIV, ...o.site?.lrm } });
      cfg = await loadConfig(site.configPath);
      // (env -u NODE_OPTIONS: tap's coverage loader is put into every child's environment, and from a clone in a
      // private dir its path is not visible in the namespace)
      installOutput = await n.must(['/usr/bin/env', '-u', 'NODE_OPTIONS', process.execPath, cli, 'install', 'torque', '--mom-priv', MOM_PRIV, '--config', site.configPath, '--prefix', repo, '--apply']);
      const lines = installOutput.split('\n');
      const from = lines.findIndex((l) => l.startsWith('on the Torque server, run with qmgr:')) + 1;
      const to = lines.findIndex((l, i) => i >= from && !l.startsWith('  '));
      qmgr = from > 0 ? lines.slice(from, to < 0 ? undefined : to).map((l) => l.trim()) : [];
      for (const line of qmgr) await n.qmgr(line);
    },
  });
  const work = join(node.dir, 'work');
  await mkdir(work);
  await chown(work, user.uid, user.gid);
  await chmod(work, 0o755);
  const s = site!;
  const c = cfg!;

  const ticket = (over: Partial<TicketClaims> = {}): string => {
    const image = c.images.find((i) => i.id === (over.image ?? s.imageId))!;
    const now = Math.floor(Date.now() / 1000);
    return signTicket({
      v: 1, image: image.id, digest: image.digest, account: user.name, dn: '/C=XX/O=wnod test/CN=Alice', fqan: '/testvo/Role=NULL/Capability=NULL',
      vo: 'testvo', cpus: 1, memoryMB: 256, rule: 'testvo', ce: 'ce.wnod.test', iat: now, exp: now + 3600, nonce: newNonce(), ...over,
    }, s.key);
  };
  const wnodScript = (tok: string, body: string, resources = 'nodes=1:ppn=1,walltime=00:10:00') =>
    `#!/bin/bash\n#PBS -q wnod\n#PBS -T wnod\n#PBS -l ${resources}\n# wnod-ticket: ${tok}\ncd "$PBS_O_WORKDIR"\n${body}`;
  const submit = (name: string, script: string, args: string[] = []) => node.qsub(user, script, { cwd: work, args: ['-N', name, ...args] });

  async function finished(name: string, id: string, timeoutMs = 600_000): Promise<{ status: number; out: string; err: string }> {
    const j = await node.waitJob(id, 'C', timeoutMs);
    const seq = id.split('.')[0];
    const files = [join(work, `${name}.o${seq}`), join(work, `${name}.e${seq}`)];
    // Torque copies the output into the submit dir as the job ends: wait (bounded) until both are there
    for (let i = 0; i < 100 && !(await Promise.all(files.map((f) => stat(f).then(() => true, () => false)))).every(Boolean); i++) await new Promise((r) => setTimeout(r, 100));
    const [out, err] = await Promise.all(files.map((f) => readFile(f, 'utf8').catch(() => '')));
    return { status: Number(j.exit_status), out: out!, err: err! };
  }

  return { node, site: s, cfg: c, user, work, installOutput, qmgr, ticket, wnodScript, submit, finished, stop: () => node.stop() };
}
