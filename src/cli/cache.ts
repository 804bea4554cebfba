// `wnod cache list | verify [ID…] | prefetch [ID…] | prune` — the node-local image cache for an admin.
import { parseCommandLine } from './args.js';
import { DEFAULT_CONFIG_PATH, loadConfig } from '../config/load.js';
import type { Image } from '../config/types.js';
import { describe, UsageError } from '../util/errors.js';
import { ImageCache, type CacheEntry, type PrefetchProgress } from '../images/cache.js';

export const summary = 'the node-local image cache: list, verify [ID…], prefetch [ID…], prune';

export const subcommands = ['list', 'verify', 'prefetch', 'prune'] as const;

const USAGE = `usage: wnod cache <list|verify|prefetch|prune> [ID…] [--config FILE] [--json]
  list            cached entries (digest, images, size, last use, holders)
  verify [ID…]    re-hash cached files (by image id or digest; all when none given); bad files are removed
  prefetch [ID…]  fetch catalog images into the cache (all when none given)
  prune           evict least recently used entries above the high watermark, down to the low one
exit 0 on success, 1 when something failed or did not verify, 2 on a usage error`;

/** Human size with binary units. Pure. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

/** One progress-bar line (no newline) for a terminal of `width` columns. Pure. */
export function renderProgressBar(p: PrefetchProgress, width: number): string {
  const label = `${p.imageId} ${p.role}`;
  const amount = p.total !== undefined ? `${formatBytes(p.bytes)}/${formatBytes(p.total)}` : formatBytes(p.bytes);
  if (p.total === undefined || p.total === 0) return `${label} ${amount}`.slice(0, width);
  const frac = Math.min(1, p.bytes / p.total);
  const pct = `${Math.floor(frac * 100)}%`.padStart(4);
  const barWidth = Math.max(10, width - label.length - amount.length - pct.length - 6);
  const filled = Math.round(frac * barWidth);
  return `${label} [${'#'.repeat(filled)}${'.'.repeat(barWidth - filled)}] ${pct} ${amount}`.slice(0, width);
}

/** Table of entries for `list`. Pure. */
export function formatEntries(entries: CacheEntry[]): string {
  if (entries.length === 0) return 'cache is empty\n';
  const rows = [['DIGEST', 'IMAGES', 'SIZE', 'LAST USED', 'HOLDERS', 'STATE']];
  for (const e of entries) {
    rows.push([
      e.digest.slice(0, 16), e.imageIds.join(',') || '-', formatBytes(e.size), e.lastUsed.replace(/\.\d+Z$/, 'Z'),
      e.holders.length ? e.holders.join(',') : '-', e.metaError ? `broken (${e.metaError})` : e.complete ? 'complete' : 'partial',
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

function selectImages(images: Image[], ids: string[]): Image[] {
  if (ids.length === 0) return images;
  const unknown = ids.filter((id) => !images.some((i) => i.id === id));
  if (unknown.length) throw new UsageError(`not in the catalog: ${unknown.join(', ')} (known: ${images.map((i) => i.id).join(', ') || 'none'})`);
  return ids.map((id) => images.find((i) => i.id === id)!);
}

/** Progress on stderr: a redrawn bar on a terminal, a line per 25 % (and per artifact) otherwise. */
function progressReporter(): { update(p: PrefetchProgress): void; end(): void } {
  const tty = process.stderr.isTTY === true;
  let lastDraw = 0;
  let lastKey = '';
  let lastQuarter = -1;
  let drawn = false;
  return {
    update(p) {
      const key = `${p.imageId} ${p.role}`;
      if (tty) {
        const now = Date.now();
        const finished = p.total !== undefined && p.bytes >= p.total;
        if (key === lastKey && now - lastDraw < 100 && !finished) return;
        lastDraw = now;
        lastKey = key;
        process.stderr.write(`\r${renderProgressBar(p, process.stderr.columns || 80)}\x1b[K`);
        drawn = true;
        return;
      }
      if (key !== lastKey) { lastKey = key; lastQuarter = -1; }
      const quarter = p.total ? Math.floor((4 * p.bytes) / p.total) : -1;
      if (quarter > lastQuarter) {
        lastQuarter = quarter;
        const pct = p.total ? ` ${Math.floor((100 * p.bytes) / p.total)}%` : '';
        process.stderr.write(`${key}:${pct} ${formatBytes(p.bytes)}${p.total !== undefined ? ` of ${formatBytes(p.total)}` : ''}\n`);
      }
    },
    end() {
      if (tty && drawn) process.stderr.write('\n');
    },
  };
}

export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommandLine({
    args: argv, strict: true, allowPositionals: true,
    options: { config: { type: 'string' }, json: { type: 'boolean' } },
  }, USAGE);
  const { values, positionals } = parsed;
  const [sub, ...ids] = positionals;
  if (!sub) throw new UsageError(`missing subcommand\n${USAGE}`);
  if (!(subcommands as readonly string[]).includes(sub)) throw new UsageError(`unknown subcommand '${sub}'\n${USAGE}`);
  if ((sub === 'list' || sub === 'prune') && ids.length) throw new UsageError(`'cache ${sub}' takes no arguments (got ${ids.join(' ')})`);
  const cfg = await loadConfig(values.config ?? DEFAULT_CONFIG_PATH);
  const cache = new ImageCache(cfg.cache);
  const out = (s: string) => process.stdout.write(s);

  if (sub === 'list') {
    const entries = await cache.list();
    out(values.json ? JSON.stringify(entries, null, 2) + '\n' : formatEntries(entries));
    return 0;
  }

  if (sub === 'verify') {
    const reports = await cache.verify(ids);
    const covered = new Set(reports.flatMap((r) => [r.digest, ...r.imageIds]));
    const notCached = ids.filter((id) => !covered.has(id));
    if (values.json) out(JSON.stringify({ reports, notCached }, null, 2) + '\n');
    else {
      for (const r of reports) {
        if (r.error) out(`BAD   ${r.digest.slice(0, 16)} ${r.imageIds.join(',') || '-'}: ${r.error} (an unfinished entry; prune removes it)\n`);
        for (const f of r.files) {
          const name = `${r.digest.slice(0, 16)} ${r.imageIds.join(',') || '-'} ${f.role}`;
          if (f.ok) out(`OK    ${name}\n`);
          else out(`BAD   ${name}: ${f.error ?? `sha256 ${f.actual}, expected ${f.expected}`}${f.removed ? ' — removed, the next use fetches it again' : ''}\n`);
        }
      }
      for (const id of notCached) out(`MISS  ${id}: not in the cache\n`);
      if (reports.length === 0 && ids.length === 0) out('cache is empty\n');
    }
    return reports.every((r) => r.ok) && notCached.length === 0 ? 0 : 1;
  }

  if (sub === 'prefetch') {
    const images = selectImages(cfg.images, ids);
    const progress = progressReporter();
    const results = await cache.prefetch(images, (p) => progress.update(p));
    progress.end();
    if (values.json) {
      out(JSON.stringify(results.map((r) => ({ ...r, error: r.error ? { code: (r.error as { code?: string }).code, message: r.error.message } : undefined })), null, 2) + '\n');
    } else {
      for (const r of results) {
        if (r.status === 'failed') out(`FAILED  ${r.imageId}: ${describe(r.error)}\n`);
        else out(`${r.status === 'fetched' ? 'FETCHED' : 'CACHED '} ${r.imageId} ${r.digest!.slice(0, 16)}${r.status === 'fetched' ? ` (${formatBytes(r.bytes)})` : ''}\n`);
      }
    }
    return results.every((r) => r.status !== 'failed') ? 0 : 1;
  }

  // prune
  const r = await cache.evict();
  if (values.json) out(JSON.stringify(r, null, 2) + '\n');
  else {
    out(`cache: ${formatBytes(r.totalBefore)} before, ${formatBytes(r.totalAfter)} after (high ${formatBytes(r.highBytes)}, low ${formatBytes(r.lowBytes)})\n`);
    for (const e of r.evicted) out(`evicted ${e.digest.slice(0, 16)} ${e.imageIds.join(',') || '-'} ${formatBytes(e.size)} (last used ${e.lastUsed})\n`);
    for (const k of r.kept) out(`kept    ${k.digest.slice(0, 16)} (${k.reason})\n`);
  }
  return 0;
}
