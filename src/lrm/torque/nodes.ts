/** The nodes of a Torque job on several hosts, as pbs_mom knows them (Torque 6.1, observed with a real server and
 * three MOMs: test/torque-multinode-vm.test.ts). The mother superior writes the job's node file
 * (`<PBS_HOME>/aux/<id>`: one line per slot, its own host first) before its prologue; a sister's
 * `prologue.parallel` gets only its index (PBS_NODENUM) — the sister learns the job's hosts once pbs_mom has saved
 * the job (`<mom_priv>/jobs/<id>.JB`, XML with `<exec_host>`), right after that hook returns; the mother superior
 * has saved it before its prologue. The saved job also holds the job's Variable_List, as the mother superior's
 * does: the job's wnod ticket (jobTicket.ts). Both files are root's, found by paths built from the configured
 * mom_priv and a validated job id. */
import { lstat, readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { BATCH_NODE_NAME } from '../../cluster/jobNetPlan.js';
import { WnodError } from '../../util/errors.js';
import type { JobNodes } from '../../job/contract.js';
import { parseJobId } from './argv.js';

export class TorqueNodesError extends WnodError {
  constructor(message: string) {
    super('torque-nodes', message);
  }
}

const MAX_FILE = 1 << 20;

/** Hosts in first-seen order with the slots of each (pure, strict). */
function group(names: readonly string[], what: string): { nodes: string[]; slots: number[] } {
  const nodes: string[] = [];
  const slots: number[] = [];
  for (const n of names) {
    if (!BATCH_NODE_NAME.test(n)) throw new TorqueNodesError(`${what} names ${JSON.stringify(n.slice(0, 70))}, not a node name`);
    const i = nodes.indexOf(n);
    if (i < 0) { nodes.push(n); slots.push(1); } else slots[i]! += 1;
  }
  if (nodes.length === 0) throw new TorqueNodesError(`${what} names no node`);
  return { nodes, slots };
}

/** A PBS_NODEFILE (`host` per slot, per line) → the job's hosts in order and the slots on each (pure). */
export function parseNodefile(text: string): { nodes: string[]; slots: number[] } {
  return group(text.split('\n').map((l) => l.trim()).filter(Boolean), 'the node file');
}

/** exec_host (`n3/0+n2/0-1+n1/0,2`) → the job's hosts in order and the slots on each (pure). */
export function parseExecHost(value: string): { nodes: string[]; slots: number[] } {
  if (value.length > 65536 || !/^[A-Za-z0-9_.\/,+-]+$/.test(value)) throw new TorqueNodesError(`exec_host ${JSON.stringify(value.slice(0, 80))} has unexpected characters`);
  const names: string[] = [];
  for (const part of value.split('+')) {
    const m = /^([^/]+)\/([0-9,-]+)$/.exec(part);
    if (!m) throw new TorqueNodesError(`exec_host item ${JSON.stringify(part.slice(0, 80))} is not host/slots`);
    for (const range of m[2]!.split(',')) {
      const r = /^([0-9]{1,6})(?:-([0-9]{1,6}))?$/.exec(range);
      const count = r ? (r[2] === undefined ? 1 : Number(r[2]) - Number(r[1]) + 1) : 0;
      if (count < 1 || count > 4096) throw new TorqueNodesError(`exec_host item ${JSON.stringify(part.slice(0, 80))} has a bad slot range`);
      for (let i = 0; i < count; i++) names.push(m[1]!);
    }
  }
  return group(names, 'exec_host');
}

/** `<exec_host …>VALUE</exec_host>` of a saved job (Torque 6's XML job file; pure). */
export function execHostOfJobFile(xml: string): string | undefined {
  const m = /<exec_host(?:\s[^>]*)?>([^<]*)<\/exec_host>/.exec(xml);
  return m?.[1];
}

async function readRootFile(path: string, what: string): Promise<string | undefined> {
  const st = await lstat(path).catch(() => undefined);
  if (!st) return undefined;
  if (!st.isFile() || st.uid !== 0 || (st.mode & 0o022) !== 0 || st.size > MAX_FILE) throw new TorqueNodesError(`${what} ${path} is not a root-owned file`);
  return readFile(path, 'utf8');
}

/** The mother superior's view (prologue): its node file, itself first. Undefined when pbs_mom wrote none. */
export async function motherSuperiorNodes(momPriv: string, jobId: string): Promise<JobNodes | undefined> {
  const text = await readRootFile(join(dirname(resolve(momPriv)), 'aux', parseJobId(jobId)), 'the node file');
  if (text === undefined) return undefined;
  const { nodes, slots } = parseNodefile(text);
  return { nodes, slots, self: nodes[0]! };
}

function jobFilePath(momPriv: string, jobId: string): string {
  return join(resolve(momPriv), 'jobs', `${parseJobId(jobId)}.JB`);
}

/** The job as pbs_mom saved it on this host (its XML text); undefined when it saved none. */
export async function readJobFile(momPriv: string, jobId: string): Promise<string | undefined> {
  return readRootFile(jobFilePath(momPriv, jobId), 'the job file');
}

/** A sister's view (its boot, after prologue.parallel returned): the saved job's exec_host, itself the
 * `nodeNum`-th host, and the saved job's text. Waits (bounded) for pbs_mom to save the job. */
export async function sisterNodes(momPriv: string, jobId: string, nodeNum: number, deadline: number): Promise<{ nodes: JobNodes; jobFile: string }> {
  const path = jobFilePath(momPriv, jobId);
  for (let i = 0; ; i++) {
    const text = await readJobFile(momPriv, jobId);
    const exec = text === undefined ? undefined : execHostOfJobFile(text);
    if (exec !== undefined) {
      const { nodes, slots } = parseExecHost(exec);
      if (!Number.isInteger(nodeNum) || nodeNum < 1 || nodeNum >= nodes.length) throw new TorqueNodesError(`PBS_NODENUM ${nodeNum} is not a sister of the job's ${nodes.length} hosts`);
      return { nodes: { nodes, slots, self: nodes[nodeNum]! }, jobFile: text! };
    }
    if (Date.now() >= deadline) throw new TorqueNodesError(`pbs_mom did not save job ${jobId} with its hosts (${path}) in time`);
    await new Promise((r) => setTimeout(r, Math.min(100 + 50 * i, 500)));
  }
}
