// A real Slurm for tests and benches: Debian's slurmctld + slurmd + munge started by scripts/slurm-local.sh in a
// private directory, on loopback ports of the caller's choosing, and helpers to submit and watch jobs as an
// unprivileged user. Each test file takes its own base port (no two files share a Slurm).
import { execa } from 'execa';
import { access, mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';

/** scripts/slurm-local.sh of `repo` (default: this checkout; the demo's bundle names its own) */
const scriptOf = (repo?: string) => join(repo ?? join(import.meta.dirname, '..', '..'), 'scripts', 'slurm-local.sh');

export interface SlurmFixture {
  dir: string;
  conf: string;
  env: { SLURM_CONF: string };
  /** start the daemons (after `wnod install slurm --apply` edited slurm.conf) and wait for idle nodes */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** run a Slurm client as `user` (runuser, a clean env with SLURM_CONF) */
  asUser(user: string, cmd: string, args: string[], opts?: { cwd?: string; timeoutMs?: number; env?: Record<string, string> }): Promise<{ stdout: string; stderr: string; exitCode: number }>;
  /** sbatch as `user`; resolves to the job id */
  sbatch(user: string, args: string[], cwd: string): Promise<string>;
  /** the job's JobState and ExitCode from `scontrol show job` once it left the running states (bounded wait) */
  waitDone(jobId: string, timeoutMs?: number): Promise<{ state: string; exitCode: string; fields: Record<string, string> }>;
  /** the node's state (sinfo), e.g. idle, mixed, drained */
  nodeState(node: string): Promise<string>;
  /** jobcomp/filetxt lines */
  jobcomp(): Promise<string>;
}

/** Skip reason when the Slurm packages are missing (tests then skip with it). */
export async function slurmMissing(): Promise<string | undefined> {
  for (const bin of ['/usr/sbin/slurmctld', '/usr/sbin/slurmd', '/usr/sbin/munged', '/usr/include/slurm/spank.h']) {
    if (!(await access(bin).then(() => true, () => false))) return `${bin} missing (apt-get install slurmctld slurmd slurm-client munge libslurm-dev)`;
  }
  if (process.getuid?.() !== 0) return 'needs root (starts slurmd and munged)';
  return undefined;
}

/** scontrol's `Key=Value` words of one job (-o: one line; values without spaces are what we read). */
export function parseScontrolJob(line: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of line.matchAll(/(?:^|\s)([A-Za-z/:_]+)=(\S*)/g)) if (!(m[1]! in out)) out[m[1]!] = m[2]!;
  return out;
}

/** Nodes with addresses of their own (slurm-local.sh's SLURM_LOCAL_CTLD_ADDR, _NODE_ADDRS, _NODE_WRAPPER). */
export interface SlurmNodeNet {
  ctldAddr: string;
  nodeAddrs: string[];
  /** started as `wrapper NODE slurmd …` (enters the node's namespaces) */
  wrapper: string;
}

export async function makeSlurm(opts: { nodes: number; basePort: number; cluster?: string; cpus?: number; killWaitS?: number; repo?: string; net?: SlurmNodeNet }): Promise<SlurmFixture> {
  const SCRIPT = scriptOf(opts.repo);
  const dir = await mkdtemp('/tmp/wsl-');
  const conf = join(dir, 'slurm.conf');
  const env = { SLURM_CONF: conf };
  const scriptEnv = {
    SLURM_LOCAL_CPUS: String(opts.cpus ?? 2), SLURM_LOCAL_KILLWAIT: String(opts.killWaitS ?? 5),
    ...(opts.net ? { SLURM_LOCAL_CTLD_ADDR: opts.net.ctldAddr, SLURM_LOCAL_NODE_ADDRS: opts.net.nodeAddrs.join(' '), SLURM_LOCAL_NODE_WRAPPER: opts.net.wrapper } : {}),
  };
  await execa('bash', [SCRIPT, 'conf', dir, String(opts.nodes), String(opts.basePort), opts.cluster ?? 'wsl'], { env: scriptEnv });
  const asUser: SlurmFixture['asUser'] = async (user, cmd, args, o = {}) => {
    const r = await execa('runuser', ['-u', user, '--', 'env', '-i', 'PATH=/usr/bin:/bin', `SLURM_CONF=${conf}`, 'LANG=C.UTF-8',
      ...Object.entries(o.env ?? {}).map(([k, v]) => `${k}=${v}`), cmd, ...args], { cwd: o.cwd ?? dir, reject: false, timeout: o.timeoutMs ?? 60_000 });
    return { stdout: String(r.stdout), stderr: String(r.stderr), exitCode: r.exitCode ?? -1 };
  };
  const scontrol = async (args: string[]) => (await execa('scontrol', args, { env, reject: false, timeout: 30_000 })).stdout;
  const fx: SlurmFixture = {
    dir, conf, env,
    async start() {
      await execa('bash', [SCRIPT, 'start', dir, String(opts.nodes), String(opts.basePort), opts.cluster ?? 'wsl'], { env: scriptEnv, timeout: 120_000 });
    },
    async stop() {
      await execa('bash', [SCRIPT, 'stop', dir], { reject: false, timeout: 120_000 });
      await rm(dir, { recursive: true, force: true });
    },
    asUser,
    async sbatch(user, args, cwd) {
      const r = await asUser(user, 'sbatch', ['--parsable', ...args], { cwd });
      if (r.exitCode !== 0) throw new Error(`sbatch failed (${r.exitCode}): ${r.stderr}`);
      return r.stdout.trim().split(';')[0]!;
    },
    async waitDone(jobId, timeoutMs = 240_000) {
      const until = Date.now() + timeoutMs;
      let fields: Record<string, string> = {};
      while (Date.now() < until) {
        fields = parseScontrolJob(await scontrol(['show', 'job', '-o', jobId]));
        const state = fields.JobState ?? '';
        if (state && !['PENDING', 'CONFIGURING', 'RUNNING', 'COMPLETING', 'SUSPENDED'].includes(state)) {
          return { state, exitCode: fields.ExitCode ?? '', fields };
        }
        await new Promise((r) => setTimeout(r, 200));
      }
      throw new Error(`job ${jobId} still ${fields.JobState ?? 'unknown'} after ${timeoutMs} ms`);
    },
    async nodeState(node) {
      return (await execa('sinfo', ['-h', '-n', node, '-o', '%T'], { env, reject: false })).stdout.trim().split('\n')[0] ?? '';
    },
    async jobcomp() {
      return readFile(join(dir, 'log', 'jobcomp.txt'), 'utf8').catch(() => '');
    },
  };
  return fx;
}
