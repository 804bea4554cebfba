/** pbs_mom's hook argv (DESIGN A2), parsed strictly. pbs_mom is trusted to call us, but the values inside the
 * argv (job name, account, Resource_List) come from the user's qsub: every field is validated before use. */
import { WnodError } from '../../util/errors.js';
import { JOB_ID_RE } from '../../job/jobId.js';

/** A hook argv that does not look like pbs_mom's: a bug or a hostile caller, never a user mistake. */
export class HookArgvError extends WnodError {
  constructor(message: string) {
    super('bad-hook-argv', message);
  }
}

export type TorqueVersion = '6' | '2.5';

/** Resource_List / resources_used, parsed: known keys typed, every key kept raw. */
export interface Resources {
  walltimeS?: number;
  cputS?: number;
  nodes?: string;
  ppn?: number;
  nodeCount?: number;
  memMB?: number;
  vmemMB?: number;
  raw: Record<string, string>;
}

export interface PrologueArgs {
  jobId: string;
  user: string;
  group: string;
  jobName: string;
  resourceList: Resources;
  queue: string;
  account: string;
  /** argv[8] on Torque 6.x; absent on 2.5 (the script is then looked up in mom_priv/jobs). */
  scriptPath?: string;
}

export interface EpilogueArgs {
  jobId: string;
  user: string;
  group: string;
  jobName: string;
  sessionId: number;
  resourceList: Resources;
  resourcesUsed: Resources;
  queue: string;
  account: string;
  /** job rc, 256+signal, or a negative JOB_EXEC code (-2 prologue abort, -11 walltime, -14 prologue retry …) */
  exitStatus: number;
  scriptPath?: string;
}

export { JOB_ID_RE };
// POSIX portable user/group names (plus the '$' of Samba machine accounts is NOT accepted: not a job user).
const NAME_RE = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/;
const QUEUE_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const MAX_FIELD = 4096;

/** Validate a Torque job id (`13.host`, `7[2].host`) and return it; throws naming the bad value. */
export function parseJobId(value: string | undefined, what = 'job id'): string {
  if (value === undefined || value.length > 255 || !JOB_ID_RE.test(value)) {
    throw new HookArgvError(`${what} ${JSON.stringify(value)} is not a Torque job id (expected e.g. 13.host or 7[2].host)`);
  }
  return value;
}

/** Validate a unix user or group name as pbs_mom passes it. */
export function parseUnixName(value: string | undefined, what: string): string {
  if (value === undefined || !NAME_RE.test(value)) throw new HookArgvError(`${what} ${JSON.stringify(value)} is not a valid unix name`);
  return value;
}

function parseQueue(value: string | undefined, what: string): string {
  if (value === undefined || !QUEUE_RE.test(value)) throw new HookArgvError(`${what} ${JSON.stringify(value)} is not a valid queue name`);
  return value;
}

/** Free text from the user (job name, account): bounded, no control characters, may be empty. */
function parseFreeText(value: string | undefined, what: string): string {
  if (value === undefined) throw new HookArgvError(`${what} is missing`);
  if (value.length > MAX_FIELD || /[\x00-\x1f\x7f]/.test(value)) {
    throw new HookArgvError(`${what} ${JSON.stringify(value.slice(0, 80))} has control characters or is longer than ${MAX_FIELD}`);
  }
  return value;
}

/** `[[HH:]MM:]SS` or plain seconds → seconds. */
export function parseDuration(value: string, what = 'duration'): number {
  const m = /^(?:(?:([0-9]{1,7}):)?([0-9]{1,2}):)?([0-9]{1,9})$/.exec(value);
  if (!m) throw new HookArgvError(`${what} ${JSON.stringify(value)} is not [[HH:]MM:]SS`);
  const [h, min, s] = [m[1], m[2], m[3]].map((x) => (x === undefined ? 0 : Number(x))) as [number, number, number];
  if ((m[2] !== undefined && s > 59) || (m[1] !== undefined && min > 59)) throw new HookArgvError(`${what} ${JSON.stringify(value)} has a field above 59`);
  return h * 3600 + min * 60 + s;
}

const SIZE_UNITS: Record<string, number> = { b: 1 / 1048576, w: 8 / 1048576, kb: 1 / 1024, kw: 8 / 1024, mb: 1, mw: 8, gb: 1024, gw: 8192, tb: 1048576, tw: 8388608 };

/** Torque size (`2gb`, `512mb`, `1048576kb`, `100`) → MiB (rounded up). Bare numbers are bytes, as in Torque. */
export function parseSizeMB(value: string, what = 'size'): number {
  const m = /^([0-9]{1,15})([kmgt]?[bw])?$/i.exec(value);
  if (!m) throw new HookArgvError(`${what} ${JSON.stringify(value)} is not a Torque size (e.g. 2gb, 512mb)`);
  const unit = SIZE_UNITS[(m[2] ?? 'b').toLowerCase()];
  if (unit === undefined) throw new HookArgvError(`${what} ${JSON.stringify(value)} has an unknown unit`);
  return Math.ceil(Number(m[1]) * unit);
}

/** `walltime=00:05:00,nodes=1:ppn=2,mem=2gb` → Resources. Empty string = no resources. Unknown keys kept raw. */
export function parseResourceList(text: string, what = 'Resource_List'): Resources {
  if (text.length > MAX_FIELD || /[\x00-\x1f\x7f\s]/.test(text)) throw new HookArgvError(`${what} ${JSON.stringify(text.slice(0, 80))} has whitespace or control characters`);
  const out: Resources = { raw: {} };
  if (text === '') return out;
  // `nodes=2:ppn=4+1:ppn=2` has no comma inside one value; split on commas, then on the first '='.
  for (const [i, item] of text.split(',').entries()) {
    const eq = item.indexOf('=');
    const key = eq > 0 ? item.slice(0, eq) : '';
    const value = item.slice(eq + 1);
    if (!/^[a-z_][a-z0-9_]*$/i.test(key) || value === '') throw new HookArgvError(`${what} item ${i + 1} ${JSON.stringify(item)} is not key=value`);
    if (key in out.raw) throw new HookArgvError(`${what} key ${key} appears twice`);
    out.raw[key] = value;
    const w = `${what} ${key}`;
    switch (key) {
      case 'walltime': out.walltimeS = parseDuration(value, w); break;
      case 'cput': out.cputS = parseDuration(value, w); break;
      case 'mem': out.memMB = parseSizeMB(value, w); break;
      case 'vmem': out.vmemMB = parseSizeMB(value, w); break;
      case 'nodes': Object.assign(out, parseNodes(value, w)); break;
      default: break;
    }
  }
  return out;
}

/** `nodes=N[:ppn=P][:prop…][+…]` → the spec, the node count and the ppn of the first chunk. */
function parseNodes(value: string, what: string): Pick<Resources, 'nodes' | 'ppn' | 'nodeCount'> {
  if (!/^[A-Za-z0-9_.:=+-]+$/.test(value)) throw new HookArgvError(`${what} ${JSON.stringify(value)} has characters outside [A-Za-z0-9_.:=+-]`);
  let nodeCount = 0;
  let ppn: number | undefined;
  for (const chunk of value.split('+')) {
    const [head, ...props] = chunk.split(':');
    nodeCount += head && /^[0-9]+$/.test(head) ? Number(head) : 1; // a host name counts as one node
    for (const p of props) {
      const m = /^ppn=([0-9]{1,6})$/.exec(p);
      if (m && ppn === undefined) ppn = Number(m[1]);
    }
  }
  return { nodes: value, nodeCount, ppn: ppn ?? 1 };
}

function parseAbsPath(value: string | undefined, what: string): string {
  if (value === undefined || !value.startsWith('/') || value.length > MAX_FIELD || /[\x00-\x1f]/.test(value)) {
    throw new HookArgvError(`${what} ${JSON.stringify(value)} is not an absolute path`);
  }
  return value;
}

function parseInteger(value: string | undefined, what: string): number {
  if (value === undefined || !/^-?[0-9]{1,10}$/.test(value)) throw new HookArgvError(`${what} ${JSON.stringify(value)} is not an integer`);
  return Number(value);
}

/** Parse the prologue's argv (without node/script): 8 items on Torque 6.x, 7 on 2.5; `auto` accepts both. */
export function parsePrologueArgv(argv: readonly string[], version: TorqueVersion | 'auto' = 'auto'): PrologueArgs {
  const want = version === '6' ? [8] : version === '2.5' ? [7] : [7, 8];
  if (!want.includes(argv.length)) throw new HookArgvError(`prologue: expected ${want.join(' or ')} arguments (Torque ${version}), got ${argv.length}`);
  return {
    jobId: parseJobId(argv[0], 'prologue argv[1] job id'),
    user: parseUnixName(argv[1], 'prologue argv[2] user'),
    group: parseUnixName(argv[2], 'prologue argv[3] group'),
    jobName: parseFreeText(argv[3], 'prologue argv[4] job name'),
    resourceList: parseResourceList(argv[4] ?? '', 'prologue argv[5] Resource_List'),
    queue: parseQueue(argv[5], 'prologue argv[6] queue'),
    account: parseFreeText(argv[6], 'prologue argv[7] account'),
    ...(argv.length === 8 ? { scriptPath: parseAbsPath(argv[7], 'prologue argv[8] job script') } : {}),
  };
}

/** Parse the epilogue's argv: 11 items on Torque 6.x, 10 on 2.5; `auto` accepts both. */
export function parseEpilogueArgv(argv: readonly string[], version: TorqueVersion | 'auto' = 'auto'): EpilogueArgs {
  const want = version === '6' ? [11] : version === '2.5' ? [10] : [10, 11];
  if (!want.includes(argv.length)) throw new HookArgvError(`epilogue: expected ${want.join(' or ')} arguments (Torque ${version}), got ${argv.length}`);
  return {
    jobId: parseJobId(argv[0], 'epilogue argv[1] job id'),
    user: parseUnixName(argv[1], 'epilogue argv[2] user'),
    group: parseUnixName(argv[2], 'epilogue argv[3] group'),
    jobName: parseFreeText(argv[3], 'epilogue argv[4] job name'),
    sessionId: parseInteger(argv[4], 'epilogue argv[5] session id'),
    resourceList: parseResourceList(argv[5] ?? '', 'epilogue argv[6] Resource_List'),
    resourcesUsed: parseResourceList(argv[6] ?? '', 'epilogue argv[7] resources_used'),
    queue: parseQueue(argv[7], 'epilogue argv[8] queue'),
    account: parseFreeText(argv[8], 'epilogue argv[9] account'),
    exitStatus: parseInteger(argv[9], 'epilogue argv[10] exit status'),
    ...(argv.length === 11 ? { scriptPath: parseAbsPath(argv[10], 'epilogue argv[11] job script') } : {}),
  };
}

/** pbs_mom's JOB_EXEC codes that reach the epilogue as a negative exit status. */
export const JOB_EXEC = { ok: 0, fail1: -1, prologueAbort: -2, retry: -3, overLimit: -11, retryPrologue: -14 } as const;

/** True when the exit status says pbs_mom will run the job again (the per-job attempt counter must survive). */
export function isRetryStatus(exitStatus: number): boolean {
  return exitStatus === JOB_EXEC.retry || exitStatus === JOB_EXEC.retryPrologue;
}
