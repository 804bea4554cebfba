/** A wnod site on a real Slurm (test/kit/slurm.ts): a VM site of the given image with `lrm.type: slurm` (partition
 * `wnod`, hooks in `<dir>/hooks`), `wnod install slurm --apply` run from `repo` (a path the job user and slurmd's
 * hooks can reach), then the daemons started. Shared by the Slurm tests, the demo and bench/slurm.ts. */
import { execa } from 'execa';
import { join } from 'node:path';
import type { TestImage } from '../../src/guest/testImage.js';
import { makeSlurm, type SlurmFixture, type SlurmNodeNet } from './slurm.js';
import { makeVmSite, type VmSite, type VmSiteOptions } from './vmSite.js';

export interface SlurmSite {
  fx: SlurmFixture;
  site: VmSite;
  /** what `wnod install slurm --apply` printed */
  installed: string;
  /** stop Slurm (its jobs cancelled, Epilogs done), destroy any VM left, remove Slurm's dir (not `dir`) */
  stop(): Promise<void>;
}

export async function makeSlurmSite(o: {
  dir: string; repo: string; img: TestImage; basePort: number; cluster: string; nodes?: number; cpus?: number; net?: SlurmNodeNet;
  site?: Omit<VmSiteOptions, 'lrmSection'>;
}): Promise<SlurmSite> {
  const cli = join(o.repo, 'dist', 'cli', 'main.js');
  const fx = await makeSlurm({ nodes: o.nodes ?? 1, basePort: o.basePort, cluster: o.cluster, cpus: o.cpus ?? 4, repo: o.repo, ...(o.net ? { net: o.net } : {}) });
  const site = await makeVmSite(o.dir, o.img, { ...o.site, lrmSection: { type: 'slurm', partition: 'wnod', hook_dir: join(o.dir, 'hooks') } });
  const stop = async () => {
    await fx.stop();
    await execa(process.execPath, [cli, 'kill-all', '--state-dir', site.stateDir], { reject: false });
  };
  try {
    const inst = await execa(process.execPath, [cli, 'install', 'slurm', '--config', site.configPath, '--slurm-conf', fx.conf, '--apply']);
    await fx.start();
    return { fx, site, installed: inst.stdout, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
