/** `wnod accounting [--by vo|image|day] [--json] [--file F | --config FILE]`: summarise the accounting file. */
import { parseCommandLine } from './args.js';
import { UsageError } from '../util/errors.js';
import { readRecords } from '../accounting/store.js';
import { summarise, renderTable, type SummaryKey } from '../accounting/summary.js';

export const summary = 'summarise the per-job accounting records (jobs, wall and CPU time by VO, image or day)';

const HELP = `usage: wnod accounting [--by vo|image|day] [--json] [--file F | --config FILE]
  --by KEY       group by vo, image or day (UTC); default: one total line
  --json         machine-readable output: {"by", "rows": [{key, jobs, wallS, cpuS}], "corruptLines"}
  --file F       the accounting file (JSON lines)
  --config FILE  take accounting_file from this site config (default /etc/wnod/wnod.yaml)
`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandLine({
    args: argv, strict: true, allowPositionals: false,
    options: { by: { type: 'string' }, json: { type: 'boolean' }, file: { type: 'string' }, config: { type: 'string' } },
  }, HELP);
  const by = (values.by ?? 'all') as SummaryKey;
  if (!['vo', 'image', 'day', 'all'].includes(by)) throw new UsageError(`--by ${JSON.stringify(values.by)}: expected vo, image or day`);
  if (values.file !== undefined && values.config !== undefined) throw new UsageError('give --file or --config, not both');
  let file = values.file;
  if (file === undefined) {
    const { loadConfig } = await import('../config/load.js');
    file = (await loadConfig(values.config)).accountingFile;
  }
  const { records, corrupt } = await readRecords(file);
  const rows = summarise(records, by);
  if (values.json) {
    process.stdout.write(JSON.stringify({ file, by, rows, corruptLines: corrupt.length }) + '\n');
  } else {
    process.stdout.write(renderTable(rows, by));
  }
  if (corrupt.length > 0) {
    process.stderr.write(`wnod accounting: skipped ${corrupt.length} corrupt line(s) in ${file}: ${corrupt.slice(0, 3).map((c) => c.why).join('; ')}${corrupt.length > 3 ? '; …' : ''}\n`);
  }
  return 0;
}
