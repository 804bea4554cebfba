/** The node's metrics: counters from the root log (decisions), the accounting file and the template builder's
 * record, gauges from the VM records and the image cache. `nodeFamilies` is pure; `gatherNode` reads the files. */
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import type { SiteConfig } from '../config/types.js';
import { BUILDS_LOG, parseLogLines, readLogEvents, type LogEvent } from '../job/log.js';
import { readRecords } from '../accounting/store.js';
import type { AccountingRecord } from '../accounting/record.js';
import { listRecords } from '../vm/state.js';
import { isAlive } from '../vm/proc.js';
import { ImageCache } from '../images/cache.js';
import { histogram, type Family, type Sample } from './exposition.js';

/** Boot time buckets (s): a restore under KVM is well under a second, a cold boot under TCG tens of seconds. */
export const BOOT_BUCKETS_S = [0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300] as const;
const GiB = 1024 ** 3;

export interface NodeInput {
  /** root log events, oldest first (current file and its rotations) */
  events: readonly LogEvent[];
  accounting: readonly AccountingRecord[];
  /** `wnod snapshot build` results (templates/builds.jsonl) */
  builds: readonly LogEvent[];
  vms: { recorded: number; running: number };
  cache: { bytes: number; entries: number; highWatermarkBytes: number; lowWatermarkBytes: number };
  /** lines of the files above that did not parse (log, accounting) */
  corrupt: { log: number; accounting: number };
}

function countBy(items: readonly LogEvent[], key: (e: LogEvent) => string | undefined): Map<string, number> {
  const m = new Map<string, number>();
  for (const e of items) {
    const k = key(e);
    if (k !== undefined) m.set(k, (m.get(k) ?? 0) + 1);
  }
  return m;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

function labelled(m: Map<string, number>, label: string): Sample[] {
  return [...m.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([k, value]) => ({ labels: { [label]: k }, value }));
}

/** The metric families of one node from its records. Pure. */
export function nodeFamilies(n: NodeInput): Family[] {
  const ev = (name: string) => n.events.filter((e) => e.event === name);
  const started = countBy(ev('accepted'), (e) => str(e.mode) ?? 'unknown');
  for (const m of ['vm', 'bare']) if (!started.has(m)) started.set(m, 0);
  const refused = countBy(ev('refused'), (e) => str(e.code) ?? 'unknown');
  // a fault of the node that stopped a job (it was requeued, or refused once the requeues were spent, or Torque's
  // detached boot failed: the job ends with 75)
  const failed = countBy(n.events.filter((e) => e.event === 'requeue' || e.event === 'requeue-exhausted' || e.event === 'boot-failed'), (e) => str(e.code) ?? 'unknown');
  const boots: Record<string, number[]> = { cold: [], restore: [] };
  const lookups = new Map([['hit', 0], ['miss', 0]]);
  for (const e of ev('vm-ready')) {
    const mode = str((e.boot as { mode?: unknown } | undefined)?.mode) ?? 'cold';
    if (typeof e.bootS === 'number' && Number.isFinite(e.bootS) && e.bootS >= 0) (boots[mode] ??= []).push(e.bootS);
    if (e.cache === 'hit' || e.cache === 'miss') lookups.set(e.cache, lookups.get(e.cache)! + 1);
  }
  const finished = new Map([['vm', 0], ['bare', 0]]);
  let wallS = 0;
  let cpuS = 0;
  for (const r of n.accounting) {
    finished.set(r.mode, (finished.get(r.mode) ?? 0) + 1);
    wallS += r.runS;
    cpuS += r.vmCpuS;
  }
  const builds = countBy(n.builds, (e) => str(e.status) ?? 'unknown');
  return [
    { name: 'wnod_jobs_started_total', type: 'counter', help: 'Jobs admitted on this node, by mode (vm: in its VM, bare: as before wnod).', samples: labelled(started, 'mode') },
    { name: 'wnod_jobs_refused_total', type: 'counter', help: 'Jobs refused at admission, by reason code (the job can never run here).', samples: labelled(refused, 'reason') },
    { name: 'wnod_jobs_failed_total', type: 'counter', help: 'Jobs stopped by a fault of this node (requeued, refused after the last requeue, or a failed detached boot), by reason code.', samples: labelled(failed, 'reason') },
    { name: 'wnod_jobs_finished_total', type: 'counter', help: 'Jobs accounted at their end, by mode.', samples: labelled(finished, 'mode') },
    { name: 'wnod_jobs_wall_seconds_total', type: 'counter', help: 'Run time of the accounted jobs.', samples: [{ value: round(wallS) }] },
    { name: 'wnod_jobs_cpu_seconds_total', type: 'counter', help: 'CPU time of the accounted jobs (their VMs\' QEMU processes).', samples: [{ value: round(cpuS) }] },
    histogram('wnod_boot_seconds', 'Time from admission to the job\'s VM answering, by boot mode (cold boot or snapshot restore).', 'mode', boots, BOOT_BUCKETS_S),
    { name: 'wnod_vms', type: 'gauge', help: 'VM records on this node (running or not yet cleaned up).', samples: [{ value: n.vms.recorded }] },
    { name: 'wnod_vms_running', type: 'gauge', help: 'VMs whose QEMU process is alive.', samples: [{ value: n.vms.running }] },
    { name: 'wnod_cache_bytes', type: 'gauge', help: 'Bytes in the node\'s image cache.', samples: [{ value: n.cache.bytes }] },
    { name: 'wnod_cache_entries', type: 'gauge', help: 'Images (by digest) in the node\'s image cache.', samples: [{ value: n.cache.entries }] },
    { name: 'wnod_cache_high_watermark_bytes', type: 'gauge', help: 'Cache size above which least recently used images are evicted.', samples: [{ value: n.cache.highWatermarkBytes }] },
    { name: 'wnod_cache_low_watermark_bytes', type: 'gauge', help: 'Cache size eviction brings the cache down to.', samples: [{ value: n.cache.lowWatermarkBytes }] },
    { name: 'wnod_cache_hits_total', type: 'counter', help: 'Job VMs whose image was in the cache.', samples: [{ value: lookups.get('hit')! }] },
    { name: 'wnod_cache_misses_total', type: 'counter', help: 'Job VMs whose image (or part of it) was fetched into the cache.', samples: [{ value: lookups.get('miss')! }] },
    { name: 'wnod_template_builds_total', type: 'counter', help: 'Snapshot template builds, by result (built, exists, busy, refused, failed).', samples: labelled(builds, 'result') },
    { name: 'wnod_log_corrupt_lines', type: 'gauge', help: 'Lines of the root log and the accounting file that did not parse.', samples: [
      { labels: { file: 'log' }, value: n.corrupt.log }, { labels: { file: 'accounting' }, value: n.corrupt.accounting }] },
  ];
}

const round = (v: number) => Math.round(v * 1000) / 1000;

/** Read everything `nodeFamilies` needs from this node's files (root: the log and the state are root-only). */
export async function gatherNode(cfg: SiteConfig): Promise<NodeInput> {
  const log = await readLogEvents(cfg.logFile, cfg.log.keep);
  const acc = await readRecords(cfg.accountingFile);
  const buildsText = await readFile(join(cfg.vm.stateDir, 'templates', BUILDS_LOG), 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return '';
    throw err;
  });
  const records = await listRecords(cfg.vm.stateDir);
  let running = 0;
  for (const r of records) if (await isAlive(r.pids.qemu)) running++;
  const entries = await new ImageCache(cfg.cache).list().catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [];
    throw err;
  });
  return {
    events: log.events, accounting: acc.records, builds: parseLogLines(buildsText).events,
    vms: { recorded: records.length, running },
    cache: { bytes: entries.reduce((a, e) => a + e.size, 0), entries: entries.length,
      highWatermarkBytes: Math.floor(cfg.cache.highWatermarkGB * GiB), lowWatermarkBytes: Math.floor(cfg.cache.lowWatermarkGB * GiB) },
    corrupt: { log: log.corrupt, accounting: acc.corrupt.length },
  };
}
