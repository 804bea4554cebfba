/** Accounting summaries (pure): jobs, wall and CPU time per VO, image or day. */
import type { AccountingRecord } from './record.js';

export type SummaryKey = 'vo' | 'image' | 'day' | 'all';

export interface SummaryRow {
  key: string;
  jobs: number;
  /** slot seconds: boot + run + teardown */
  wallS: number;
  /** VM CPU seconds */
  cpuS: number;
}

/** Group `records` by `by` (day = UTC date of the record's end), rows sorted by key. */
export function summarise(records: readonly AccountingRecord[], by: SummaryKey): SummaryRow[] {
  const rows = new Map<string, SummaryRow>();
  for (const r of records) {
    const key = by === 'all' ? 'all' : by === 'day' ? new Date(r.end).toISOString().slice(0, 10) : r[by];
    const row = rows.get(key) ?? { key, jobs: 0, wallS: 0, cpuS: 0 };
    row.jobs += 1;
    row.wallS += r.bootS + r.runS + r.teardownS;
    row.cpuS += r.vmCpuS;
    rows.set(key, row);
  }
  return [...rows.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** A fixed-width table for people. */
export function renderTable(rows: readonly SummaryRow[], by: SummaryKey): string {
  const head = [by === 'all' ? 'total' : by, 'jobs', 'wall_h', 'cpu_h'];
  const body = rows.map((r) => [r.key, String(r.jobs), (r.wallS / 3600).toFixed(2), (r.cpuS / 3600).toFixed(2)]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const fmt = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [fmt(head), ...body.map(fmt)].join('\n') + '\n';
}
