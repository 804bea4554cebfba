/** A sister MOM's part of a multi-node job (`mom_priv/prologue.parallel`, root; Torque runs it on every host of the
 * job but the mother superior, while the mother superior joins its sisters — before its own prologue). The hook
 * cannot know the job's other hosts yet (pbs_mom saves them only once it returned: nodes.ts), so it records the
 * request and returns at once; a detached process (`sister-boot`, its own session, stopped by the epilogue like the
 * mother superior's boot) waits for the job's hosts, admits the job on this node through the core — its share of
 * the job's private network and its VM, vm<PBS_NODENUM> — and logs the outcome. A sister that cannot boot its VM
 * fails the job on the mother superior: the job's script waits for every VM (starter.ts) and says which did not
 * come up. A sister has no job script (pbs_mom keeps it on the mother superior): it admits the job with the ticket
 * the job carries in its variables (jobTicket.ts), as the mother superior does with its script's — a job without
 * that variable (submitted before the filter set it) is decided as one without a ticket (the group's policy). */
import type { SiteConfig } from '../../config/types.js';
import { describe } from '../../util/errors.js';
import { readFile, lstat } from 'node:fs/promises';
import { writeFileAtomic } from '../../util/atomic.js';
import { admitJob } from '../../job/admit.js';
import { ensureJobStateDir } from '../../job/jobstate.js';
import { hookLog, logTarget } from '../../job/log.js';
import type { JobVmEngine } from '../../job/contract.js';
import { parseJobId, parsePrologueArgv, parseResourceList, parseUnixName, type PrologueArgs } from './argv.js';
import { bootFile, spawnDetached } from '../../job/detachedBoot.js';
import { sisterNodes } from './nodes.js';
import { jobTicketForAdmission } from './jobTicket.js';
import { ticketLine } from '../../header/scriptHeader.js';
import { fallbackLog, type HookContext } from './prologue.js';

/** a sister's admission request in the job state dir (root 0600; the epilogue removes it with the boot's files) */
export const SISTER_REQUEST = '.sister.json';

interface SisterRequest { jobId: string; user: string; group: string; queue: string; resources: string; nodeNum: number; workdir?: string }

/** PBS_NODENUM of a sister (pbs_mom sets it: this host's index in the job's hosts, 0 = mother superior). */
export function parseNodeNum(value: string | undefined): number {
  if (value === undefined || !/^[1-9][0-9]{0,4}$/.test(value)) throw new Error(`PBS_NODENUM ${JSON.stringify((value ?? '').slice(0, 20))} is not a sister's index`);
  return Number(value);
}

/** Is the job wnod's? A sister sees no job class: the job's queue, when the site names one (lrm.queue). */
export function isWnodJob(cfg: Pick<SiteConfig, 'lrm'>, args: Pick<PrologueArgs, 'queue'>): boolean {
  return !cfg.lrm.queue || args.queue === cfg.lrm.queue;
}

/** prologue.parallel: record the job and start its sister boot; 0 unless the hook itself cannot work (1: the
 * mother superior's join fails and pbs_mom does not start the job). */
export async function main(argv: string[], env: NodeJS.ProcessEnv, ctx: HookContext): Promise<number> {
  let cfg: SiteConfig;
  try {
    cfg = await (ctx.loadConfig ?? (await import('../../config/load.js')).loadConfig)(ctx.configPath);
  } catch (err) {
    await fallbackLog(ctx, 'prologue.parallel', argv[0], { event: 'config-unreadable', error: describe(err) });
    return 1;
  }
  let args: PrologueArgs;
  let nodeNum: number;
  try {
    args = parsePrologueArgv(argv, ctx.torqueVersion ?? 'auto');
    if (!isWnodJob(cfg, args)) return 0;
    nodeNum = parseNodeNum(env.PBS_NODENUM);
  } catch (err) {
    await hookLog(logTarget(cfg), 'prologue.parallel', undefined).detail('bad-argv', { error: describe(err), argv });
    return 1;
  }
  const log = hookLog(logTarget(cfg), 'prologue.parallel', args.jobId);
  try {
    await ensureJobStateDir(cfg.vm.stateDir);
    const req: SisterRequest = {
      jobId: args.jobId, user: args.user, group: args.group, queue: args.queue, resources: argv[4] ?? '', nodeNum,
      ...(env.PBS_O_WORKDIR ? { workdir: env.PBS_O_WORKDIR } : {}),
    };
    await writeFileAtomic(bootFile(cfg, args.jobId, SISTER_REQUEST), JSON.stringify(req) + '\n', 0o600);
    await spawnDetached(cfg, ctx.configPath, 'torque', 'sister-boot', args.jobId);
    await log.detail('sister-boot-started', { nodeNum });
    return 0;
  } catch (err) {
    await log.detail('sister-boot-failed', { error: describe(err) });
    return 1;
  }
}

async function readRequest(cfg: SiteConfig, jobId: string): Promise<SisterRequest> {
  const p = bootFile(cfg, jobId, SISTER_REQUEST);
  const st = await lstat(p);
  if (!st.isFile() || st.uid !== 0 || (st.mode & 0o077) !== 0) throw new Error(`${p} is not a root-only file`);
  const r = JSON.parse(await readFile(p, 'utf8')) as SisterRequest;
  if (r.jobId !== jobId || !Number.isInteger(r.nodeNum) || typeof r.resources !== 'string' || typeof r.queue !== 'string') throw new Error(`${p} is not a sister request for ${jobId}`);
  parseUnixName(r.user, 'user');
  parseUnixName(r.group, 'group');
  return r;
}

/** The sister boot (root, detached): the job's hosts, then admission with this node's VM on the job network. */
export async function sisterBootMain(rest: string[], ctx: { configPath: string; vm: JobVmEngine; loadConfig?: (p: string) => Promise<SiteConfig> }): Promise<number> {
  const cfg = await (ctx.loadConfig ?? (await import('../../config/load.js')).loadConfig)(ctx.configPath);
  const jobId = parseJobId(rest[0], 'sister-boot job id');
  const log = hookLog(logTarget(cfg), 'sister-boot', jobId);
  try {
    const req = await readRequest(cfg, jobId);
    const { nodes, jobFile } = await sisterNodes(cfg.lrm.momPriv, jobId, req.nodeNum, Date.now() + cfg.lrm.prologueBudgetS * 1000);
    const resources = parseResourceList(req.resources);
    const outcome = await admitJob(cfg, {
      lrm: 'torque', jobId, user: req.user, group: req.group, queue: req.queue,
      // the header the job's script carries on the mother superior, from the job's variables (the core verifies it)
      script: async () => {
        const ticket = jobTicketForAdmission(jobFile);
        return ticket === undefined ? '' : `${ticketLine(ticket)}\n`;
      },
      workdir: req.workdir,
      holds: { cpus: nodes.slots[nodes.nodes.indexOf(nodes.self)], memoryMB: resources.memMB, nodes: nodes.nodes.length },
      sizeByHolds: true,
      cluster: async () => nodes,
    }, { vm: ctx.vm, configPath: ctx.configPath }, log);
    await log.detail('sister-outcome', { outcome: outcome.kind, ...(outcome.kind === 'refuse' ? { reason: outcome.reason } : outcome.kind === 'retry' ? { code: outcome.code } : {}) });
    return outcome.kind === 'go' ? 0 : 1;
  } catch (err) {
    await log.detail('sister-boot-failed', { error: describe(err) });
    return 1;
  }
}
