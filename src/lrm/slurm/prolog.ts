/** The root Prolog (slurm.conf `Prolog=`, `PrologFlags=Alloc`) for jobs of `lrm.partition` (the shim lets every
 * other job go at once): Slurm's environment into a JobStart for the core's admission (src/job/admit.ts), its
 * outcome into Slurm's protocol. A failing Prolog drains the node and holds the job, so only a node fault (no
 * config, no state dir, a mark that cannot be written) fails it; a refusal exits 0 and is marked, and the runner
 * tells the user in the job's stderr file and exits REFUSED_EXIT.
 *
 * Where the decision travels: the ticket in SLURM_JOB_COMMENT (the filter's `#SBATCH --comment=<ticket>`: no RPC),
 * else the script's header (`# wnod-ticket:`, `# wnod-deny:`, `# wnod-lease:`) fetched from slurmctld with
 * `scontrol write batch_script` — the script is not in slurmd's spool before the batch step starts. The owner can
 * change the comment of a pending job: the ticket is verified like any other (signature, account, nonce). */
import { Writable } from 'node:stream';
import type { SiteConfig } from '../../config/types.js';
import { describe } from '../../util/errors.js';
import { run } from '../../util/run.js';
import { admitJob } from '../../job/admit.js';
import { hookLog, logTarget } from '../../job/log.js';
import { readModeMarker } from '../../job/jobstate.js';
import { TransientFault } from '../../job/outcome.js';
import { ticketLine } from '../../header/scriptHeader.js';
import type { JobContext, JobHolds, JobNodes, JobStart, Outcome } from '../../job/contract.js';
import { Refusal } from '../../job/outcome.js';
import { BATCH_NODE_NAME } from '../../cluster/jobNetPlan.js';
import { parseHookEnv, parseSlurmMemoryMB, type SlurmHookJob } from './env.js';
import { markJob, type SlurmMark } from './marks.js';

export interface SlurmHookContext extends JobContext {
  configPath: string;
  loadConfig?: (path: string) => Promise<SiteConfig>;
  /** Slurm's clients (tests: the fixture's); default PATH */
  slurmBin?: string;
}

/** A ticket's shape (src/ticket: `<base64url payload>.<base64url mac>`); anything else in the comment is the user's. */
const TICKET_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/;

/** The script header the Prolog judges (pure over its inputs): the comment's ticket, else the script's own. */
export function headerSource(comment: string): 'comment' | 'script' {
  return TICKET_SHAPE.test(comment.trim()) ? 'comment' : 'script';
}

const SCRIPT_MAX = 4 << 20;

/** The job's script as slurmctld keeps it (root; argument array, bounded time and size). */
async function batchScript(jobId: string, bin: string | undefined): Promise<string> {
  const scontrol = bin ? `${bin}/scontrol` : 'scontrol';
  try {
    const r = await run(scontrol, ['write', 'batch_script', jobId, '-'], { timeoutMs: 20_000, maxBuffer: SCRIPT_MAX });
    return r.stdout;
  } catch (err) {
    throw new TransientFault('script-unavailable', `cannot read the job script from slurmctld: ${describe(err)}`, {}, { cause: err });
  }
}

/** `scontrol show hostnames` output: one node name per line, each once (pure, strict). */
export function parseHostnames(stdout: string): string[] {
  const names = stdout.split('\n').map((l) => l.trim()).filter(Boolean);
  for (const n of names) if (!BATCH_NODE_NAME.test(n)) throw new Error(`scontrol printed ${JSON.stringify(n.slice(0, 70))}, not a node name`);
  if (new Set(names).size !== names.length) throw new Error('scontrol listed a node twice');
  return names;
}

/** A multi-node job's nodes, in Slurm's order (the batch step runs on the first): the Prolog's node list from
 * slurmd (SLURM_NODELIST; never the job's own environment), expanded by Slurm itself (`scontrol show hostnames`, argument array), and
 * the cpus the job holds on each (SLURM_JOB_CPUS_PER_NODE). */
async function jobNodes(job: SlurmHookJob, bin: string | undefined): Promise<JobNodes> {
  if (!job.nodelist || !job.node) throw new TransientFault('bad-hook-env', 'slurmd gave no node list (SLURM_NODELIST) or SLURMD_NODENAME for a job on several nodes');
  let nodes: string[];
  try {
    nodes = parseHostnames((await run(bin ? `${bin}/scontrol` : 'scontrol', ['show', 'hostnames', job.nodelist], { timeoutMs: 20_000, maxBuffer: 4 << 20 })).stdout);
  } catch (err) {
    throw new TransientFault('nodelist', `cannot expand the job's node list ${job.nodelist.slice(0, 200)}: ${describe(err)}`, {}, { cause: err });
  }
  if (nodes.length !== job.numNodes) throw new TransientFault('nodelist', `the node list ${job.nodelist.slice(0, 200)} names ${nodes.length} nodes, SLURM_JOB_NUM_NODES says ${job.numNodes}`);
  const slots = job.cpusPerNode;
  if (!slots || slots.length !== nodes.length) throw new Refusal('cpus-per-node', 'the cpus the job holds on each node are not known (SLURM_JOB_CPUS_PER_NODE); the job was not started');
  return { nodes, self: job.node, slots };
}

/** What the job holds here: SLURM_JOB_CPUS_PER_NODE, and its memory (`squeue -o %m`, which slurmd does not pass). */
async function holds(job: SlurmHookJob, bin: string | undefined): Promise<JobHolds> {
  let memoryMB: number | undefined;
  try {
    const r = await run(bin ? `${bin}/squeue` : 'squeue', ['-h', '-j', job.jobId, '-o', '%m'], { timeoutMs: 20_000 });
    memoryMB = parseSlurmMemoryMB(r.stdout);
  } catch { /* unknown: the decision's memory stands */ }
  return { cpus: job.cpus, memoryMB, nodes: job.numNodes };
}

/** The core's view of the job slurmd is about to start. */
export function jobStart(job: SlurmHookJob, group: string, held: JobHolds, bin: string | undefined, nodes?: Promise<JobNodes>): JobStart {
  return {
    lrm: 'slurm', jobId: job.jobId, user: job.user, group, queue: job.partition,
    script: async () => (headerSource(job.comment) === 'comment' ? `${ticketLine(job.comment.trim())}\n` : batchScript(job.jobId, bin)),
    workdir: job.workdir,
    holds: held,
    // Slurm enforces the allocation: the VM gets what the job holds, within the image's and the rule's maxima
    sizeByHolds: true,
    ...(nodes ? { cluster: () => nodes } : {}),
  };
}

/** The group name of a gid (NSS: getent), or the number itself. */
async function groupName(gid: number): Promise<string> {
  try {
    const line = (await run('getent', ['group', String(gid)], { timeoutMs: 10_000 })).stdout.split('\n')[0] ?? '';
    const name = line.split(':')[0] ?? '';
    return /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/.test(name) ? name : String(gid);
  } catch {
    return String(gid);
  }
}

/** The mark for an outcome: go → the decision (vm → mark, bare → none); refuse or retry → refuse with the reason. */
async function markFor(cfg: SiteConfig, jobId: string, outcome: Outcome, said: string[]): Promise<SlurmMark | undefined> {
  if (outcome.kind === 'go') return (await readModeMarker(cfg.vm.stateDir, jobId)) === 'vm' ? { kind: 'vm' } : undefined;
  const reason = outcome.kind === 'refuse' ? outcome.reason : said.at(-1) ?? `a problem on this worker node stopped the job (${outcome.code})`;
  return { kind: 'refuse', reason };
}

/** Run the Prolog; returns its exit code for slurmd (0 unless the node itself is at fault). */
export async function main(env: NodeJS.ProcessEnv, ctx: SlurmHookContext): Promise<number> {
  const fault = (text: string) => { process.stderr.write(`wnod prolog: ${text}\n`); return 1; };
  let cfg: SiteConfig;
  try {
    cfg = await (ctx.loadConfig ?? (await import('../../config/load.js')).loadConfig)(ctx.configPath);
  } catch (err) {
    return fault(`the site config cannot be read: ${describe(err)}`);
  }
  if (cfg.lrm.type !== 'slurm' || env.SLURM_JOB_PARTITION !== cfg.lrm.partition) return 0; // not a wnod job: untouched
  let job: SlurmHookJob;
  try {
    job = parseHookEnv(env);
  } catch (err) {
    await hookLog(logTarget(cfg), 'prolog', undefined).detail('bad-env', { error: describe(err) });
    return fault(describe(err));
  }
  // the user's lines (slurmd discards the Prolog's output): kept for the mark, the runner prints them
  const said: string[] = [];
  const sink = new Writable({ write(chunk, _enc, cb) { said.push(...String(chunk).split('\n').filter(Boolean)); cb(); } });
  const log = hookLog(logTarget(cfg), 'prolog', job.jobId, sink);
  const bin = ctx.slurmBin ?? cfg.lrm.binDir;
  // two programs (squeue asks slurmctld): at once, not one after the other
  const [held, group] = await Promise.all([holds(job, bin), groupName(job.gid)]);
  let nodes: Promise<JobNodes> | undefined;
  if (job.numNodes > 1) {
    // a multi-node job: its nodes now (a failure reaches admission through the promise), and the cpus on this one
    nodes = jobNodes(job, bin);
    nodes.catch(() => {});
    const n = await nodes.catch(() => undefined);
    held.cpus = n ? n.slots[n.nodes.indexOf(n.self)] : undefined;
  }
  const outcome = await admitJob(cfg, jobStart(job, group, held, bin, nodes), ctx, log);
  try {
    const mark = await markFor(cfg, job.jobId, outcome, said);
    if (mark) await markJob(cfg.vm.stateDir, job.jobId, { uid: job.uid, gid: job.gid }, mark);
    await log.detail('marked', { outcome: outcome.kind, mark: mark?.kind ?? 'none (native)' });
  } catch (err) {
    // without its mark a wnod job would run natively: this is a node fault (drain, the job is held)
    await log.detail('mark-failed', { error: describe(err) });
    return fault(`cannot mark job ${job.jobId}: ${describe(err)}`);
  }
  return 0;
}
