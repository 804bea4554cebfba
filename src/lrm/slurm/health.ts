/** `wnod status --for slurm`, run by slurmd as HealthCheckProgram (root): Slurm does not act on the program's exit
 * status or output, so the program drains the node itself (`scontrol update nodename=N state=drain reason="wnod: …"`)
 * and resumes it once fixed — only a drain whose reason is wnod's (classify.ts slurmAction decides). */
import { hostname } from 'node:os';
import { run } from '../../util/run.js';
import { WnodError } from '../../util/errors.js';
import type { SlurmAction } from '../../status/classify.js';

const NODE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const TIMEOUT_MS = 20_000;

export class SlurmHealthError extends WnodError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('slurm-health', message, options);
  }
}

/** The node's name as Slurm knows it: --node, else slurmd's SLURMD_NODENAME, else the short host name (Slurm's
 * default NodeName). Checked: it becomes an argument of scontrol. */
export function slurmNodeName(explicit: string | undefined, env: NodeJS.ProcessEnv = process.env, host = hostname()): string {
  const name = explicit ?? (env.SLURMD_NODENAME || host.split('.')[0]!);
  if (!NODE_NAME.test(name)) throw new SlurmHealthError(`not a Slurm node name: ${JSON.stringify(name)}`);
  return name;
}

/** Slurm clients with a clean environment: only SLURM_CONF (a private slurm.conf) is passed on. */
function clientEnv(): Record<string, string> {
  return { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C', ...(process.env.SLURM_CONF ? { SLURM_CONF: process.env.SLURM_CONF } : {}) };
}

/** sinfo's state (e.g. idle, drained, draining, mixed) and drain reason ('' when none) of one node. Pure. */
export function parseSinfoNode(stdout: string): { state: string; reason: string } {
  const line = stdout.split('\n').find((l) => l.includes('|')) ?? '';
  const i = line.indexOf('|');
  const reason = line.slice(i + 1).trim();
  return { state: line.slice(0, i).trim(), reason: reason === 'none' ? '' : reason };
}

export async function slurmNodeState(node: string): Promise<{ state: string; reason: string }> {
  const r = await run('sinfo', ['--noheader', '--Node', `--nodes=${node}`, '--format=%T|%E'], { timeoutMs: TIMEOUT_MS, env: clientEnv(), extendEnv: false })
    .catch((err: unknown) => { throw new SlurmHealthError(`cannot read node ${node}'s state: ${(err as Error).message}`, { cause: err }); });
  const s = parseSinfoNode(r.stdout);
  if (!s.state) throw new SlurmHealthError(`sinfo does not know node ${node} (set --node, or check SLURMD_NODENAME)`);
  return s;
}

/** Carry out the decision with scontrol (an argument array: the reason is one argument, never parsed by a shell). */
export async function applySlurmAction(node: string, action: SlurmAction): Promise<void> {
  if (action.kind === 'none') return;
  const args = action.kind === 'drain'
    ? ['update', `nodename=${node}`, 'state=drain', `reason=${action.reason}`]
    : ['update', `nodename=${node}`, 'state=resume'];
  await run('scontrol', args, { timeoutMs: TIMEOUT_MS, env: clientEnv(), extendEnv: false }).catch((err: unknown) => {
    throw new SlurmHealthError(`scontrol ${action.kind} of node ${node} failed: ${(err as Error).message}`, { cause: err });
  });
}
