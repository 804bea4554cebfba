/** `wnod status`'s two printers (pure): the JSON object (top-level keys "health", "problems", "accel", "vms",
 * "cache", "templates" as issue 15 names them, plus the rest) and the Nagios plugin text (first line, then details). */
import { age, healthOf, nagiosLine, problemsOf, size, staleWithoutFresh, summaryOf, type Health, type Problem, type StatusFacts, type VmRunState } from './classify.js';

export interface StatusReport {
  health: Health;
  problems: Problem[];
  summary: string;
  facts: StatusFacts;
}

/** Judge the facts. Pure. */
export function reportOf(f: StatusFacts): StatusReport {
  const problems = problemsOf(f);
  return { health: healthOf(problems), problems, summary: summaryOf(f), facts: f };
}

const STATES: VmRunState[] = ['booting', 'running', 'stopping', 'dead'];

/** The JSON object. Sections that could not be looked at (the config did not load) are null. Pure. */
export function statusJson(r: StatusReport): Record<string, unknown> {
  const f = r.facts;
  const byState = Object.fromEntries(STATES.map((s) => [s, (f.vms ?? []).filter((v) => v.state === s).length]));
  return {
    health: r.health,
    problems: r.problems.map((p) => ({ code: p.code, message: p.message, severity: p.severity })),
    summary: r.summary,
    config: f.configPath,
    time: new Date(f.now).toISOString(),
    accel: f.accel ? {
      kind: f.accel.kind, reason: f.accel.reason, source: f.accel.source, mode: f.accel.mode, kvmUsable: f.accel.kvmUsable,
      probedAt: f.accel.probedAt ?? null, ageS: f.accel.probedAt ? Math.max(0, Math.round((f.now - Date.parse(f.accel.probedAt)) / 1000)) : null,
      probeMs: f.accel.probeMs ?? null,
    } : null,
    qemu: f.binary ? { driver: f.driver, binary: f.binary.name, path: f.binary.path ?? null } : null,
    vms: f.vms ? { total: f.vms.length, byState, list: f.vms, unreadable: f.badRecords ?? [] } : null,
    bootSlots: f.bootSlots ?? null,
    stateDir: f.stateDir ?? null,
    cache: f.cache ? {
      dir: f.cache.dir.path, bytes: f.cache.bytes, highWatermarkBytes: f.cache.highWatermarkBytes, lowWatermarkBytes: f.cache.lowWatermarkBytes,
      entries: f.cache.entries, inUse: f.cache.inUse, broken: f.cache.broken,
      fs: f.cache.dir.fs ? { totalBytes: f.cache.dir.fs.totalBytes, availBytes: f.cache.dir.fs.availBytes } : null,
    } : null,
    templates: f.templates ? {
      enabled: f.templates.enabled,
      list: f.templates.ready.map((t) => ({ ...t, fresh: !t.stale, stale: t.stale ?? null })),
      refused: f.templates.refused,
    } : null,
    failures: f.failures ?? null,
  };
}

/** The Nagios plugin output: the first line, then one line per part of the node. Pure. */
export function statusText(r: StatusReport): string {
  const f = r.facts;
  const out = [nagiosLine(r.health, r.problems, r.summary)];
  for (const p of r.problems) out.push(`${p.severity === 'broken' ? 'CRITICAL' : 'WARNING'} ${p.code}: ${p.message}`);
  if (f.configError !== undefined) return out.join('\n') + '\n';
  if (f.accel) {
    const a = f.accel;
    const what = `${a.kind === 'kvm' ? 'KVM' : 'TCG (software emulation)'}${a.source === 'pending' ? ', to be confirmed by the probe' : ''}`;
    out.push(`accelerator: ${what} — ${a.reason}${a.probedAt ? ` (probed ${a.probedAt}, ${age((f.now - Date.parse(a.probedAt)) / 1000)} ago)` : ''}`);
  }
  if (f.binary) out.push(`${f.binary.name}: ${f.binary.path ?? 'not found in PATH'}`);
  if (f.vms) {
    const counts = STATES.map((s) => [s, f.vms!.filter((v) => v.state === s).length] as const).filter(([, n]) => n > 0);
    out.push(`vms: ${f.vms.length ? counts.map(([s, n]) => `${n} ${s}`).join(', ') : 'none'}`);
    for (const v of f.vms) out.push(`  ${v.id} job ${v.jobId ?? '-'} image ${v.image}: ${v.state}`);
  }
  if (f.bootSlots) out.push(`boot slots: ${f.bootSlots.inUse} of ${f.bootSlots.total} in use`);
  if (f.cache) {
    const c = f.cache;
    out.push(`image cache ${c.dir.path}: ${size(c.bytes)} (watermarks ${size(c.lowWatermarkBytes)}/${size(c.highWatermarkBytes)}), ${c.entries} entr${c.entries === 1 ? 'y' : 'ies'}, ` +
      `${c.inUse} in use${c.dir.fs ? `; ${size(c.dir.fs.availBytes)} free on its file system` : ''}`);
  }
  if (f.templates) {
    const t = f.templates;
    if (!t.enabled && !t.ready.length) out.push('snapshot templates: off (vm.snapshots)');
    else {
      const stale = new Set(staleWithoutFresh(t));
      out.push(`snapshot templates: ${t.ready.filter((x) => !x.stale).length} fresh, ${t.ready.filter((x) => x.stale).length} stale, ${t.refused.length} refused`);
      for (const x of t.ready) {
        out.push(`  ${x.image} ${x.cpus} cpu ${x.memoryMB} MB ${x.network} ${x.accel}: ${x.stale ? `stale (${x.stale})${stale.has(x) ? '' : ', a fresh one exists'}` : 'fresh'}`);
      }
      for (const x of t.refused) out.push(`  ${x.key}: refused (${x.reason})`);
    }
  }
  if (f.failures) {
    const fl = f.failures;
    const reasons = Object.entries(fl.byReason).sort((a, b) => b[1] - a[1]);
    out.push(`last ${age(fl.windowS)}: ${fl.bootsOk} VM starts, ${fl.bootsFailed} failed; ${reasons.length ? reasons.map(([k, n]) => `${k} ×${n}`).join(', ') : 'no failures'}` +
      `${fl.logError ? ` (log unreadable: ${fl.logError})` : ''}`);
  }
  return out.join('\n') + '\n';
}
