// `wnod metrics`: Prometheus text exposition from the node's log, accounting, VM records, cache and template builds;
// checked by a strict parser of the format here, and by `promtool check metrics` where Debian's prometheus is installed.
import t from 'tap';
import { mkdtemp, readdir, rm, stat, readFile, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { renderExposition, histogram } from '../src/metrics/exposition.js';
import { nodeFamilies, BOOT_BUCKETS_S, type NodeInput } from '../src/metrics/node.js';
import { hookLog, type LogEvent } from '../src/job/log.js';
import { appendRecord } from '../src/accounting/store.js';
import { makeTestSite } from './kit/site.js';
import { wnod, ensureBuilt } from './kit/cli.js';

type Series = { name: string; labels: Record<string, string>; value: number };

/** A strict reader of the text format (0.0.4): HELP/TYPE before samples, one TYPE per family, names and label
 * syntax, no duplicate series, counters named _total, histogram buckets cumulative with +Inf = _count. */
function parseStrict(text: string): Series[] {
  if (!text.endsWith('\n')) throw new Error('no final newline');
  const types = new Map<string, string>();
  const seen = new Set<string>();
  const out: Series[] = [];
  for (const [i, line] of text.slice(0, -1).split('\n').entries()) {
    const where = `line ${i + 1}: ${line}`;
    let m: RegExpExecArray | null;
    if ((m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line))) continue;
    if ((m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line))) {
      if (types.has(m[1]!)) throw new Error(`second TYPE: ${where}`);
      if (m[2] === 'counter' && !m[1]!.endsWith('_total')) throw new Error(`counter not named _total: ${where}`);
      types.set(m[1]!, m[2]!);
      continue;
    }
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample: ${where}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!.replace(/\\n/g, '\n').replace(/\\(.)/g, '$1');
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    if (Number.isNaN(value) && m[3] !== 'NaN') throw new Error(`bad value: ${where}`);
    const family = [m[1]!, m[1]!.replace(/_(bucket|sum|count)$/, '')].find((n) => types.has(n));
    if (!family) throw new Error(`sample before its TYPE: ${where}`);
    if (family !== m[1] && types.get(family) !== 'histogram') throw new Error(`suffix on a ${types.get(family)}: ${where}`);
    const key = `${m[1]}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seen.has(key)) throw new Error(`duplicate series: ${where}`);
    seen.add(key);
    out.push({ name: m[1]!, labels, value });
  }
  for (const [name, type] of types) {
    if (type !== 'histogram') continue;
    const groups = new Map<string, Series[]>();
    for (const s of out.filter((x) => x.name === `${name}_bucket`)) {
      const { le, ...rest } = s.labels;
      const g = JSON.stringify(Object.entries(rest).sort());
      groups.set(g, [...(groups.get(g) ?? []), s]);
      if (le === undefined) throw new Error(`${name}_bucket without le`);
    }
    for (const [g, buckets] of groups) {
      let prev = -1;
      for (const b of buckets) { if (b.value < prev) throw new Error(`${name} ${g}: buckets not cumulative`); prev = b.value; }
      const inf = buckets.find((b) => b.labels.le === '+Inf');
      const count = out.find((s) => s.name === `${name}_count` && JSON.stringify(Object.entries(s.labels).sort()) === g);
      if (!inf || !count || inf.value !== count.value) throw new Error(`${name} ${g}: +Inf bucket != _count`);
    }
  }
  return out;
}

const val = (s: Series[], name: string, labels: Record<string, string> = {}) =>
  s.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v))?.value;

async function promtool(): Promise<string | undefined> {
  const r = await execa('promtool', ['--version'], { reject: false });
  return r.exitCode === 0 ? 'promtool' : undefined;
}

const ev = (event: string, fields: Record<string, unknown> = {}): LogEvent => ({ time: '2026-12-03T07:00:00.000Z', event, ...fields });

t.test('nodeFamilies: counts decisions by reason, boots by mode, cache hits and misses (pure)', async (t) => {
  const input: NodeInput = {
    events: [ev('accepted', { mode: 'vm' }), ev('accepted', { mode: 'vm' }), ev('accepted', { mode: 'bare' }), ev('refused', { code: 'denied' }),
      ev('refused', { code: 'image-not-allowed' }), ev('refused', { code: 'denied' }), ev('requeue', { code: 'boot-failed' }),
      ev('requeue-exhausted', { code: 'boot-failed' }), ev('vm-ready', { bootS: 0.4, boot: { mode: 'restore' }, cache: 'hit' }),
      ev('vm-ready', { bootS: 12.5, boot: { mode: 'cold', coldReason: 'no template' }, cache: 'miss' }), ev('vm-ready', { bootS: 3 }),
      ev('boot-started', { vmId: 'x' }), ev('boot-failed', { code: 'vm-start' })], // Torque's detached boot
    accounting: [], builds: [ev('build', { status: 'built' }), ev('build', { status: 'exists' })],
    vms: { recorded: 3, running: 2 }, cache: { bytes: 1234, entries: 1, highWatermarkBytes: 20 * 2 ** 30, lowWatermarkBytes: 10 * 2 ** 30 },
    corrupt: { log: 1, accounting: 0 },
  };
  const text = renderExposition(nodeFamilies(input));
  const s = parseStrict(text);
  t.equal(val(s, 'wnod_jobs_started_total', { mode: 'vm' }), 2);
  t.equal(val(s, 'wnod_jobs_started_total', { mode: 'bare' }), 1);
  t.equal(val(s, 'wnod_jobs_refused_total', { reason: 'denied' }), 2);
  t.equal(val(s, 'wnod_jobs_refused_total', { reason: 'image-not-allowed' }), 1);
  t.equal(val(s, 'wnod_jobs_failed_total', { reason: 'boot-failed' }), 2);
  t.equal(val(s, 'wnod_jobs_failed_total', { reason: 'vm-start' }), 1, 'a failed detached boot is a node fault too');
  t.equal(val(s, 'wnod_boot_seconds_count', { mode: 'restore' }), 1);
  t.equal(val(s, 'wnod_boot_seconds_count', { mode: 'cold' }), 2, 'a boot without a mode is a cold boot');
  t.equal(val(s, 'wnod_boot_seconds_sum', { mode: 'cold' }), 15.5);
  t.equal(val(s, 'wnod_boot_seconds_bucket', { mode: 'cold', le: '5' }), 1);
  t.equal(val(s, 'wnod_boot_seconds_bucket', { mode: 'restore', le: '0.5' }), 1);
  t.equal(s.filter((x) => x.name === 'wnod_boot_seconds_bucket' && x.labels.mode === 'cold').length, BOOT_BUCKETS_S.length + 1);
  t.equal(val(s, 'wnod_cache_hits_total'), 1);
  t.equal(val(s, 'wnod_cache_misses_total'), 1);
  t.equal(val(s, 'wnod_vms_running'), 2);
  t.equal(val(s, 'wnod_cache_bytes'), 1234);
  t.equal(val(s, 'wnod_template_builds_total', { result: 'built' }), 1);
  t.equal(val(s, 'wnod_log_corrupt_lines', { file: 'log' }), 1);
});

t.test('label values are escaped; a bad metric name is refused', async (t) => {
  const text = renderExposition([{ name: 'wnod_x_total', help: 'a\\b\nc', type: 'counter', samples: [{ labels: { reason: 'a"b\\c\nd' }, value: 1 }] }]);
  t.equal(text, '# HELP wnod_x_total a\\\\b\\nc\n# TYPE wnod_x_total counter\nwnod_x_total{reason="a\\"b\\\\c\\nd"} 1\n');
  t.same(parseStrict(text)[0]!.labels, { reason: 'a"b\\c\nd' });
  t.throws(() => renderExposition([{ name: 'wnod-x', help: '', type: 'gauge', samples: [] }]));
  t.same(histogram('h_seconds', 'h', 'mode', { cold: [] }, [1]).samples.map((x) => x.value), [0, 0, 0, 0]);
});

t.test('wnod metrics --textfile DIR: wnod.prom written atomically from the real files, valid for promtool', async (t) => {
  await ensureBuilt();
  const dir = await mkdtemp(join(tmpdir(), 'wop-metrics-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const site = await makeTestSite(join(dir, 'site'));
  const log = join(dir, 'site', 'wnod.log');
  const quiet = { write: () => true } as unknown as NodeJS.WritableStream;
  const h = hookLog({ file: log, maxBytes: 1 << 20, keep: 5 }, 'prologue', '7.ce', quiet as never);
  await h.detail('accepted', { mode: 'vm' });
  await h.detail('vm-ready', { vmId: 'j7', bootS: 1.5, boot: { mode: 'restore' }, cache: 'hit' });
  await h.detail('refused', { code: 'denied', reason: 'the site refused this job: "quoted"' });
  await writeFile(`${log}.1`, JSON.stringify(ev('refused', { code: 'denied' })) + '\nnot json\n', { mode: 0o600 }); // a rotated file counts
  await appendRecord(join(dir, 'site', 'accounting.jsonl'), { v: 1, jobId: '7.ce', user: 'wop1', dn: '/CN=x', fqan: '/dteam', vo: 'dteam', image: 'vm_el9',
    digest: 'd', cpus: 1, memoryMB: 2048, bootS: 1.5, runS: 60, teardownS: 1, exitStatus: 0, vmCpuS: 42.5, end: '2026-12-03T07:01:00.000Z', node: 'wn1', mode: 'vm' });
  await mkdir(join(dir, 'site', 'state', 'templates'), { recursive: true });
  await writeFile(join(dir, 'site', 'state', 'templates', 'builds.jsonl'), JSON.stringify({ time: 'x', event: 'template-build', key: 'k', status: 'failed' }) + '\n');
  const out = join(dir, 'textfile');
  await mkdir(out);
  const r = await wnod(['metrics', '--config', site.configPath, '--textfile', out]);
  t.equal(r.exitCode, 0, r.stderr);
  t.equal(r.stdout, '');
  t.same(await readdir(out), ['wnod.prom'], 'only the file: no temp file left');
  t.equal((await stat(join(out, 'wnod.prom'))).mode & 0o777, 0o644, 'readable by node_exporter');
  const text = await readFile(join(out, 'wnod.prom'), 'utf8');
  const s = parseStrict(text);
  t.equal(val(s, 'wnod_jobs_refused_total', { reason: 'denied' }), 2, 'current and rotated log');
  t.equal(val(s, 'wnod_boot_seconds_count', { mode: 'restore' }), 1);
  t.equal(val(s, 'wnod_jobs_finished_total', { mode: 'vm' }), 1);
  t.equal(val(s, 'wnod_jobs_cpu_seconds_total'), 42.5);
  t.equal(val(s, 'wnod_template_builds_total', { result: 'failed' }), 1);
  t.equal(val(s, 'wnod_log_corrupt_lines', { file: 'log' }), 1);
  t.equal(val(s, 'wnod_vms_running'), 0);
  const stdout = await wnod(['metrics', '--config', site.configPath]);
  t.equal(stdout.exitCode, 0, stdout.stderr);
  t.equal(`${stdout.stdout}\n`, text, 'without --textfile: the same text on stdout (execa strips the last newline)');
  const tool = await promtool();
  if (!tool) { t.comment('promtool not installed: checked by the strict parser only'); return; }
  const check = await execa(tool, ['check', 'metrics'], { input: text, reject: false });
  t.equal(check.exitCode, 0, `promtool check metrics: ${check.stdout}${check.stderr}`);
  t.equal(`${check.stdout}${check.stderr}`.trim(), '', 'promtool: no lint findings');
});
