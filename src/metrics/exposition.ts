/** Prometheus text exposition format 0.0.4 (what node_exporter's textfile collector reads): families with HELP and
 * TYPE, samples with escaped label values. Pure. */

export type MetricType = 'counter' | 'gauge' | 'histogram';

export interface Sample {
  /** appended to the family name: _bucket, _sum, _count for histograms */
  suffix?: '' | '_bucket' | '_sum' | '_count';
  labels?: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  help: string;
  type: MetricType;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** A label value as the format quotes it: backslash, double quote and newline escaped. */
function labelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** HELP text escaping: backslash and newline. */
function helpText(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function num(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/** Render families as exposition text (ends with a newline). Throws on a name the format does not allow: a bug. */
export function renderExposition(families: readonly Family[]): string {
  const out: string[] = [];
  for (const f of families) {
    if (!NAME.test(f.name)) throw new Error(`bad metric name ${JSON.stringify(f.name)}`);
    out.push(`# HELP ${f.name} ${helpText(f.help)}`, `# TYPE ${f.name} ${f.type}`);
    for (const s of f.samples) {
      const labels = Object.entries(s.labels ?? {});
      for (const [k] of labels) if (!LABEL.test(k) || k.startsWith('__')) throw new Error(`bad label name ${JSON.stringify(k)} on ${f.name}`);
      const l = labels.length ? `{${labels.map(([k, v]) => `${k}="${labelValue(v)}"`).join(',')}}` : '';
      out.push(`${f.name}${s.suffix ?? ''}${l} ${num(s.value)}`);
    }
  }
  return out.join('\n') + '\n';
}

/** A histogram family from observations grouped by one label (cumulative buckets, +Inf, _sum, _count). Pure. */
export function histogram(name: string, help: string, label: string, groups: Record<string, readonly number[]>, bounds: readonly number[]): Family {
  const samples: Sample[] = [];
  for (const [key, values] of Object.entries(groups)) {
    for (const le of bounds) samples.push({ suffix: '_bucket', labels: { [label]: key, le: num(le) }, value: values.filter((v) => v <= le).length });
    samples.push({ suffix: '_bucket', labels: { [label]: key, le: '+Inf' }, value: values.length });
    samples.push({ suffix: '_sum', labels: { [label]: key }, value: values.reduce((a, b) => a + b, 0) });
    samples.push({ suffix: '_count', labels: { [label]: key }, value: values.length });
  }
  return { name, help, type: 'histogram', samples };
}
