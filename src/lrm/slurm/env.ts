/** What slurmd tells its root hooks about a job (the Prolog/Epilog environment, Slurm 22.05, observed), parsed
 * strictly (pure). slurmd sets these from the job credential; the user sets only SLURM_JOB_COMMENT, which is
 * data to verify, never a path or a command. */
import { WnodError } from '../../util/errors.js';
import { parseSlurmJobId } from './jobId.js';

export class SlurmEnvError extends WnodError {
  constructor(message: string) {
    super('bad-hook-env', message);
  }
}

const USER = /^[a-z_][a-z0-9_.-]{0,31}\$?$/i;
const ID = /^(0|[1-9][0-9]{0,9})$/;

export interface SlurmHookJob {
  jobId: string;
  user: string;
  uid: number;
  gid: number;
  partition: string;
  /** SLURM_JOB_COMMENT: the owner may change it while the job is pending */
  comment: string;
  /** SLURM_JOB_CPUS_PER_NODE on this node (first entry of `N(xM),…`) */
  cpus?: number | undefined;
  workdir?: string | undefined;
  node?: string | undefined;
  /** SLURM_JOB_NUM_NODES (1 when unset) and SLURM_JOB_NODELIST, compressed as slurmd gives it */
  numNodes: number;
  nodelist?: string | undefined;
  /** SLURM_JOB_CPUS_PER_NODE expanded: one count per node, in node order (undefined when unset or malformed) */
  cpusPerNode?: number[] | undefined;
}

function num(v: string | undefined, name: string): number {
  if (v === undefined || !ID.test(v)) throw new SlurmEnvError(`${name} ${JSON.stringify((v ?? '').slice(0, 20))} is not a number`);
  return Number(v);
}

/** `2`, `2(x3)`, `4,2(x2)`: the count of the first node group (a wnod job has one node). */
export function parseCpusPerNode(v: string | undefined): number | undefined {
  if (v === undefined || v === '') return undefined;
  const m = /^([1-9][0-9]{0,5})(\(x[1-9][0-9]*\))?(,.*)?$/.exec(v);
  return m ? Number(m[1]) : undefined;
}

/** `2`, `2(x3)`, `4,2(x2)` → one count per node (pure); undefined when malformed or longer than `max` nodes. */
export function expandCpusPerNode(v: string | undefined, max = 65536): number[] | undefined {
  if (v === undefined || v === '') return undefined;
  const out: number[] = [];
  for (const part of v.split(',')) {
    const m = /^([1-9][0-9]{0,5})(?:\(x([1-9][0-9]{0,5})\))?$/.exec(part);
    if (!m) return undefined;
    const times = m[2] ? Number(m[2]) : 1;
    if (out.length + times > max) return undefined;
    for (let i = 0; i < times; i++) out.push(Number(m[1]));
  }
  return out;
}

/** A compressed Slurm host list as slurmd passes it (`n[1-3,5],gpu01`): only the characters of that syntax. */
const NODELIST = /^[A-Za-z0-9_.,[\]-]{1,65536}$/;

/** The Prolog's node list: slurmd sets SLURM_NODELIST (22.05, observed) and, in some versions, SLURM_JOB_NODELIST. */
function nodelistOf(v: string | undefined): string | undefined {
  return v !== undefined && NODELIST.test(v) ? v : undefined;
}

/** Slurm's memory spelling (`squeue -o %m`: `300M`, `2G`, `4000M`, a bare number = MB) in MB; undefined when unset (`0`). */
export function parseSlurmMemoryMB(v: string): number | undefined {
  const m = /^([0-9]{1,9})([KMGT]?)$/.exec(v.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const mb = { K: n / 1024, '': n, M: n, G: n * 1024, T: n * 1024 * 1024 }[m[2] as 'K' | '' | 'M' | 'G' | 'T'];
  return mb > 0 ? Math.floor(mb) : undefined;
}

export function parseHookEnv(env: NodeJS.ProcessEnv): SlurmHookJob {
  const jobId = parseSlurmJobId(env.SLURM_JOB_ID);
  const user = env.SLURM_JOB_USER;
  if (!user || !USER.test(user)) throw new SlurmEnvError(`SLURM_JOB_USER ${JSON.stringify((user ?? '').slice(0, 40))} is not a user name`);
  const workdir = env.SLURM_JOB_WORK_DIR;
  return {
    jobId, user,
    uid: num(env.SLURM_JOB_UID, 'SLURM_JOB_UID'),
    gid: num(env.SLURM_JOB_GID, 'SLURM_JOB_GID'),
    partition: env.SLURM_JOB_PARTITION ?? '',
    comment: (env.SLURM_JOB_COMMENT ?? '').slice(0, 16 * 1024),
    cpus: parseCpusPerNode(env.SLURM_JOB_CPUS_PER_NODE),
    workdir: workdir && workdir.startsWith('/') && !workdir.includes('\0') ? workdir : undefined,
    node: env.SLURMD_NODENAME,
    numNodes: env.SLURM_JOB_NUM_NODES === undefined || env.SLURM_JOB_NUM_NODES === '' ? 1 : num(env.SLURM_JOB_NUM_NODES, 'SLURM_JOB_NUM_NODES'),
    nodelist: nodelistOf(env.SLURM_JOB_NODELIST || env.SLURM_NODELIST),
    cpusPerNode: expandCpusPerNode(env.SLURM_JOB_CPUS_PER_NODE),
  };
}

/** The Epilog gets no SLURM_JOB_GID in 22.05: only what it needs. */
export function parseEpilogEnv(env: NodeJS.ProcessEnv): Omit<SlurmHookJob, 'gid' | 'cpus' | 'workdir' | 'comment' | 'numNodes' | 'nodelist' | 'cpusPerNode'> & { exitCode: number | undefined } {
  const jobId = parseSlurmJobId(env.SLURM_JOB_ID);
  const user = env.SLURM_JOB_USER;
  if (!user || !USER.test(user)) throw new SlurmEnvError(`SLURM_JOB_USER ${JSON.stringify((user ?? '').slice(0, 40))} is not a user name`);
  const ec = env.SLURM_JOB_EXIT_CODE;
  return {
    jobId, user, uid: num(env.SLURM_JOB_UID, 'SLURM_JOB_UID'), partition: env.SLURM_JOB_PARTITION ?? '', node: env.SLURMD_NODENAME,
    exitCode: ec !== undefined && ID.test(ec) ? waitStatusToExit(Number(ec)) : undefined,
  };
}

/** A wait status (SLURM_JOB_EXIT_CODE, e.g. 768) as a shell exit status: the code, or 128 + the signal. */
export function waitStatusToExit(ws: number): number {
  const sig = ws & 0x7f;
  return sig === 0 ? (ws >> 8) & 0xff : 128 + sig;
}
