// A Torque VM test site: a VM site (outside the repo: the job user must traverse every parent of the state dir and
// the workdir) with `wnod install torque --apply` into the pbs_mom harness's mom_priv, a job user and a workdir of
// theirs, and a ticket signer. Shared by the Torque VM tests and bench/torque-vm.ts.
import { chmod, chown, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { PbsMom, ensureTestUser, type TestUser } from './pbsmom.js';
import type { TestImage } from '../../src/guest/testImage.js';
import { makeVmSite, type VmSite, type VmSiteOptions } from './vmSite.js';
import { loadConfig } from '../../src/config/load.js';
import { signTicket, newNonce, type TicketClaims } from '../../src/ticket/index.js';
import type { SiteConfig } from '../../src/config/types.js';
import { ensureBuilt } from './cli.js';
import { reachable } from './reachable.js';

export interface TorqueVmSite {
  dir: string;
  site: VmSite;
  cfg: SiteConfig;
  user: TestUser;
  mom: PbsMom;
  /** owned by the job user, 0755 */
  workdir: string;
  /** dist/cli/main.js as the job user reaches it */
  cli: string;
  /** a fresh ticket as a CE would issue it (the job user, the main image, one core, 256 MB); `over` replaces claims */
  ticket(over?: Partial<TicketClaims>): string;
  /** kill every VM of the site, remove the directory */
  close(): Promise<void>;
}

export async function makeTorqueVmSite(img: TestImage, opts: { tmpPrefix: string; userName?: string; site?: VmSiteOptions }): Promise<TorqueVmSite> {
  await ensureBuilt();
  const repo = reachable(join(import.meta.dirname, '..', '..'));
  const cli = join(repo, 'dist', 'cli', 'main.js');
  const user = await ensureTestUser(opts.userName ?? 'wnodvm');
  const dir = await mkdtemp(join(tmpdir(), opts.tmpPrefix));
  let site: VmSite | undefined;
  const close = async (): Promise<void> => {
    if (site) await execa(process.execPath, [cli, 'kill-all', '--state-dir', site.stateDir], { reject: false });
    await rm(dir, { recursive: true, force: true });
  };
  try {
    site = await makeVmSite(dir, img, opts.site);
    const cfg = await loadConfig(site.configPath);
    const mom = new PbsMom({ momPriv: site.momPriv, jobStarter: join(site.momPriv, 'wnod-starter'), killDelayMs: 12_000, requeueLimit: 0 });
    await mom.setup();
    await execa(process.execPath, [cli, 'install', 'torque', '--mom-priv', site.momPriv, '--config', site.configPath, '--prefix', repo, '--apply']);
    const workdir = join(dir, 'work');
    await mkdir(workdir);
    await chown(workdir, user.uid, user.gid);
    await chmod(workdir, 0o755);
    const { imageId, key } = site;
    const ticket = (over: Partial<TicketClaims> = {}): string => {
      const id = over.image ?? imageId;
      const image = cfg.images.find((i) => i.id === id);
      if (!image) throw new Error(`no image ${id} in the site catalog`);
      const now = Math.floor(Date.now() / 1000);
      return signTicket({
        v: 1, image: image.id, digest: image.digest, account: user.name, dn: '/C=XX/O=wnod test/CN=Alice', fqan: '/testvo/Role=NULL/Capability=NULL',
        vo: 'testvo', cpus: 1, memoryMB: 256, rule: 'testvo', ce: 'ce.wnod.test', iat: now, exp: now + 3600, nonce: newNonce(), ...over,
      }, key);
    };
    return { dir, site, cfg, user, mom, workdir, cli, ticket, close };
  } catch (e) {
    await close();
    throw e;
  }
}
