/** A lease site (docs/leases.md): a VM site of the ssh test image, a fake Torque server (its qsub/qdel/qstat in
 * lrm.bin_dir) running pilots through the pbs_mom harness with the installed hooks, a lease user with a fresh
 * ed25519 key pair, and `wnod lease` / `ssh` run as that user in a clean environment (env -u NODE_OPTIONS).
 * Shared by the demo, the lease tests and bench/lease.ts. Test support only. */
import { chmod, chown, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { PbsMom, ensureTestUser, type TestUser } from './pbsmom.js';
import { FakeLrm } from './fakeLrm.js';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import type { TestImage } from '../../src/guest/testImage.js';
import { makeVmSite, type VmSite } from './vmSite.js';
import { buildSshTestImage } from './sshImage.js';
import { ensureBuilt } from './cli.js';
import { reachable } from './reachable.js';
import { hypervisorsOf } from './hypervisors.js';

type Ran = { exitCode: number; stdout: string; stderr: string };

export interface BaseLeaseSite {
  dir: string;
  site: VmSite;
  user: TestUser;
  lrm: FakeLrm;
  mom: PbsMom;
  key: string;       // the user's private key
  pubKey: string;    // and its public key
  registry: string;  // the user's lease registry
  cli: string;
  /** `wnod lease ARGS…` as the lease user */
  lease(args: string[], timeoutMs?: number): Promise<Ran>;
  /** `ssh … user@host CMD` as the lease user, the host key pinned to `hostKey` */
  ssh(address: string, hostKey: string, cmd: string): Promise<Ran>;
  /** run a program as the lease user (clean environment) */
  asUser(file: string, args: string[], timeoutMs?: number, cwd?: string): Promise<Ran>;
  /** stop the fake server (qdel of every pilot), kill what is left, remove `dir` */
  close(): Promise<void>;
}

export interface LeaseSiteOptions {
  /** made (0755) and owned by the site; removed by close() */
  dir: string;
  /** the wnod tree the lease user can reach (dist/, the hooks' bundle) */
  repo: string;
  /** an ssh test image (buildSshTestImage) */
  img: TestImage;
  userName?: string;
  killDelayMs?: number;
  rules?: (group: string) => Record<string, unknown>[];
  vomsdir?: string;
  certdir?: string;
  /** merged into the `vm` section */
  vm?: Record<string, unknown>;
}

/** Runs `file args…` as the lease user in a clean environment (e.g. inside a real Torque's namespaces). */
export type RunAs = (file: string, args: string[], timeoutMs?: number, cwd?: string) => Promise<Ran>;

/** The lease user's side, whatever the batch system: a fresh ed25519 key pair in `dir`/keys, and `wnod lease` /
 * `ssh` / any program run as the user in a clean environment (`env` adds to it, e.g. Slurm's SLURM_CONF; `run`
 * replaces how, e.g. inside a real Torque's namespaces where its qsub and the lease's forwarded port are). */
export async function leaseUser(o: { dir: string; user: TestUser; cli: string; configPath: string; env?: Record<string, string>; run?: RunAs }): Promise<Pick<BaseLeaseSite, 'key' | 'pubKey' | 'registry' | 'cli' | 'asUser' | 'lease' | 'ssh'>> {
  const { dir, user, cli } = o;
  const keys = join(dir, 'keys');
  await mkdir(keys, { mode: 0o700 });
  await chown(keys, user.uid, user.gid);
  const asUser = o.run ?? ((file: string, args: string[], timeoutMs = 120_000, cwd = '/') => execa('setpriv', ['--reuid', String(user.uid), '--regid', String(user.gid), '--init-groups', 'env', '-u', 'NODE_OPTIONS', file, ...args], {
    reject: false, timeout: timeoutMs, extendEnv: false, env: { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: user.home, LANG: 'C.UTF-8', USER: user.name, ...o.env }, cwd,
  }).then((r) => ({ exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) })));
  const key = join(keys, 'id_ed25519');
  await asUser('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'lease-test', '-f', key]);
  const registry = join(user.home, '.wnod', 'leases');
  return {
    key, pubKey: `${key}.pub`, registry, cli, asUser,
    lease: (args, timeoutMs = 600_000) => asUser(process.execPath, [cli, 'lease', ...args, ...(args.includes('--config') ? [] : ['--config', o.configPath])], timeoutMs),
    ssh: async (address, hostKey, cmd) => {
      const [host, port] = [address.replace(/:\d+$/, ''), /:(\d+)$/.exec(address)![1]!];
      const known = join(keys, `known_hosts.${port}`);
      await asUser('/bin/sh', ['-c', 'printf "%s\\n" "$1" > "$2"', 'sh', `[${host}]:${port} ${hostKey}`, known]);
      return asUser('ssh', ['-i', key, '-p', port, '-o', `UserKnownHostsFile=${known}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes',
        '-o', 'ConnectTimeout=20', `${user.name}@${host}`, cmd], 60_000);
    },
  };
}

/** A lease site in `opts.dir` of the given image and repo (the demo's). */
export async function makeLeaseSiteIn(opts: LeaseSiteOptions): Promise<BaseLeaseSite> {
  const { dir, repo, img } = opts;
  const cli = join(repo, 'dist', 'cli', 'main.js');
  const user = await ensureTestUser(opts.userName ?? 'wnodlease');
  await mkdir(dir, { recursive: true });
  await chmod(dir, 0o755);
  const lrmDir = join(dir, 'lrm');
  const site = await makeVmSite(dir, img, {
    more: [{ id: 'vm_other' }],
    // the user's group may lease vm_test only; no ticket key for users: the node's group-default decides
    rules: opts.rules?.(user.group) ?? [{ name: 'leasers', group: user.group, images: ['vm_test'], default: 'vm_test' }],
    ...(opts.vomsdir ? { vomsdir: opts.vomsdir } : {}), ...(opts.certdir ? { certdir: opts.certdir } : {}),
    policy: { no_ticket: 'group-default' },
    lrm: { bin_dir: join(lrmDir, 'bin') },
    ...(opts.vm ? { vm: opts.vm } : {}),
  });
  const mom = new PbsMom({ momPriv: site.momPriv, jobStarter: join(site.momPriv, 'wnod-starter'), killDelayMs: opts.killDelayMs ?? 12_000, requeueLimit: 0, checkPollMs: 12_000 });
  await mom.setup();
  await execa(process.execPath, [cli, 'install', 'torque', '--mom-priv', site.momPriv, '--config', site.configPath, '--prefix', repo, '--apply']);
  const lrm = new FakeLrm({ dir: lrmDir, mom });
  await lrm.start();
  const lu = await leaseUser({ dir, user, cli, configPath: site.configPath });
  return {
    dir, site, user, lrm, mom, ...lu,
    close: async () => {
      await lrm.stop();
      await execa(process.execPath, [cli, 'kill-all', '--state-dir', site.stateDir], { reject: false });
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface LeaseSite extends BaseLeaseSite {
  /** hypervisor processes of this site's state dir */
  hypervisors(): Promise<number[]>;
}

/** The tests' lease site: the ssh test image, a fresh temp dir, the repo reached through a path the lease user can
 * traverse. Lease VMs boot wnod's minimal kernel unless `kernel: 'debian'`. */
export async function makeLeaseSite(opts: { kernel?: 'debian' | 'mini'; userName?: string; killDelayMs?: number; rules?: (group: string) => Record<string, unknown>[]; vomsdir?: string; certdir?: string; vm?: Record<string, unknown> } = {}): Promise<LeaseSite> {
  await ensureBuilt();
  const repo = reachable(join(import.meta.dirname, '..', '..'));
  const img = await buildSshTestImage({ kernel: opts.kernel ?? 'mini' });
  const dir = await mkdtemp(join(tmpdir(), 'wnod-lease-'));
  const { kernel: _kernel, ...rest } = opts;
  const s = await makeLeaseSiteIn({ ...rest, dir, repo, img });
  return { ...s, hypervisors: () => hypervisorsOf(s.site.stateDir) };
}
