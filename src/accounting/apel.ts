/** APEL messages from wnod's accounting records (pure): individual job records (`APEL-individual-job-message: v0.3`)
 * for batch jobs, cloud records (`APEL-cloud-message: v0.4`) for lease pilots. Field names, order and units are
 * apel's own (apel/db/records/job.py and cloud.py, `get_msg` in record.py): one `Key: value` line per field with a
 * value, records separated by `%%`, times as Unix epoch seconds (UTC), durations in whole seconds, the job's
 * MemoryReal in kB, the cloud VM's Memory in MB. A record apel would reject is left out with the reason. */
import { WnodError } from '../util/errors.js';
import type { AccountingRecord } from './record.js';

export const JOB_MSG_HEADER = 'APEL-individual-job-message: v0.3';
export const CLOUD_MSG_HEADER = 'APEL-cloud-message: v0.4';

/** Field order of apel's JobRecord._msg_fields. */
export const JOB_FIELDS = ['Site', 'SubmitHost', 'MachineName', 'Queue', 'LocalJobId', 'LocalUserId', 'GlobalUserName', 'FQAN', 'VO',
  'VOGroup', 'VORole', 'WallDuration', 'CpuDuration', 'Processors', 'NodeCount', 'StartTime', 'EndTime', 'InfrastructureDescription',
  'InfrastructureType', 'MemoryReal', 'MemoryVirtual', 'ServiceLevelType', 'ServiceLevel'] as const;
/** Field order of apel's CloudRecord._msg_fields (v0.4). */
export const CLOUD_FIELDS = ['RecordCreateTime', 'VMUUID', 'SiteName', 'CloudComputeService', 'MachineName', 'LocalUserId', 'LocalGroupId',
  'GlobalUserName', 'FQAN', 'Status', 'StartTime', 'EndTime', 'SuspendDuration', 'WallDuration', 'CpuDuration', 'CpuCount', 'NetworkType',
  'NetworkInbound', 'NetworkOutbound', 'PublicIPCount', 'Memory', 'Disk', 'BenchmarkType', 'Benchmark', 'StorageRecordId', 'ImageId',
  'CloudType'] as const;

type Fields<K extends string> = Partial<Record<K, string | number>>;

/** The site as APEL names it. */
export interface ApelSite {
  /** GOCDB site name (site.name) */
  name: string;
  /** the CE the jobs came through (site.ce_host) */
  ceHost: string;
  /** batch system, for InfrastructureDescription */
  lrm: string;
}

export class ApelRecordError extends WnodError {
  constructor(readonly jobId: string, message: string) {
    super('apel-record', `job ${jobId}: ${message}`);
  }
}

/** apel's parse_fqan (apel/common/parsing_utils.py): VO, group (everything before Role=) and role of the first FQAN. */
export function parseFqan(fqan: string): { vo: string; group?: string; role?: string } {
  const first = fqan.split(';')[0]!;
  if (!first.startsWith('/')) return { vo: first };
  const pieces = first.split('/');
  let group = '';
  let role: string | undefined;
  for (const p of pieces) {
    if (p === '') continue;
    if (p.toLowerCase().startsWith('role=')) { role = p; break; }
    group += `/${p}`;
  }
  return { vo: pieces[1]!, group, ...(role ? { role } : {}) };
}

const epoch = (ms: number): number => Math.floor(ms / 1000);
const secs = (s: number): number => Math.max(0, Math.round(s));

/** One record's lines in apel's field order; fields without a value are left out, as apel's get_msg does. */
function lines<K extends string>(order: readonly K[], f: Fields<K>, jobId: string): string {
  let out = '';
  for (const k of order) {
    const v = f[k];
    if (v === undefined || v === '') continue;
    const s = String(v);
    // a line break or control character would end the value early and forge fields or records
    if (/[\u0000-\u001f\u007f]/.test(s)) throw new ApelRecordError(jobId, `${k} contains a control character`);
    out += `${k}: ${s}\n`;
  }
  return out;
}

function times(r: AccountingRecord): { endMs: number; runEndMs: number } {
  const endMs = Date.parse(r.end);
  return { endMs, runEndMs: endMs - r.teardownS * 1000 };
}

/** A batch job's individual job record: the job ran from (end of teardown - teardown - run) for its run time. */
export function jobFields(r: AccountingRecord, site: ApelSite): Fields<typeof JOB_FIELDS[number]> {
  const { runEndMs } = times(r);
  const f = r.fqan ? parseFqan(r.fqan) : undefined;
  const start = epoch(runEndMs - r.runS * 1000);
  const end = Math.max(start, epoch(runEndMs));
  return {
    Site: site.name, SubmitHost: site.ceHost, MachineName: r.node, LocalJobId: r.jobId, LocalUserId: r.user,
    GlobalUserName: r.dn, FQAN: r.fqan, VO: f?.vo || r.vo, VOGroup: f?.group, VORole: f?.role,
    WallDuration: secs(r.runS), CpuDuration: secs(r.vmCpuS), Processors: r.cpus, NodeCount: 1, StartTime: start, EndTime: end,
    InfrastructureDescription: `wnod-${site.lrm}`, InfrastructureType: r.dn ? 'grid' : 'local',
    // what the job held: its VM's memory (a bare job: what the batch system gave it, when known)
    ...(r.memoryMB > 0 ? { MemoryReal: r.memoryMB * 1024 } : {}),
  };
}

/** A lease's cloud record: the VM existed from its boot to the end of its teardown. */
export function cloudFields(r: AccountingRecord, site: ApelSite, createdAt: Date): Fields<typeof CLOUD_FIELDS[number]> {
  const { endMs } = times(r);
  const wallS = r.bootS + r.runS + r.teardownS;
  return {
    RecordCreateTime: epoch(createdAt.getTime()), VMUUID: `${r.lease} ${r.node} ${r.jobId}`, SiteName: site.name,
    CloudComputeService: site.ceHost, MachineName: r.lease, LocalUserId: r.user, GlobalUserName: r.dn, FQAN: r.fqan,
    Status: 'completed', StartTime: epoch(endMs - wallS * 1000), EndTime: epoch(endMs), SuspendDuration: 0,
    WallDuration: secs(wallS), CpuDuration: secs(r.vmCpuS), CpuCount: r.cpus, PublicIPCount: 0, Memory: r.memoryMB,
    ImageId: r.image, CloudType: 'wnod',
  };
}

export interface ApelMessage {
  /** the message, or '' when no record is left */
  text: string;
  records: number;
  /** records left out, with the reason */
  skipped: ApelRecordError[];
}

function message(header: string, bodies: string[], skipped: ApelRecordError[]): ApelMessage {
  // apel's unloader: header line, records joined by "%%\n", a final "%%\n"
  return { text: bodies.length ? `${header}\n${bodies.join('%%\n')}%%\n` : '', records: bodies.length, skipped };
}

function build(recs: readonly AccountingRecord[], header: string, body: (r: AccountingRecord) => string): ApelMessage {
  const bodies: string[] = [];
  const skipped: ApelRecordError[] = [];
  for (const r of recs) {
    try {
      if (!(Date.parse(r.end) > 0)) throw new ApelRecordError(r.jobId, 'no end time');
      bodies.push(body(r));
    } catch (err) {
      if (!(err instanceof ApelRecordError)) throw err;
      skipped.push(err);
    }
  }
  return message(header, bodies, skipped);
}

/** The individual job message for every record that is not a lease pilot. */
export function apelJobMessage(recs: readonly AccountingRecord[], site: ApelSite): ApelMessage {
  return build(recs.filter((r) => !r.lease), JOB_MSG_HEADER, (r) => lines(JOB_FIELDS, jobFields(r, site), r.jobId));
}

/** The cloud message for every lease pilot. */
export function apelCloudMessage(recs: readonly AccountingRecord[], site: ApelSite, createdAt: Date): ApelMessage {
  return build(recs.filter((r) => r.lease), CLOUD_MSG_HEADER, (r) => lines(CLOUD_FIELDS, cloudFields(r, site, createdAt), r.jobId));
}
