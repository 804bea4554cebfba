/** `wnod accounting [--by vo|image|day] [--json] [--file F | --config FILE]`: summarise the accounting file. */
import { parseCommandLine } from './args.js';
import { UsageError } from '../util/errors.js';
import { readRecords } from '../accounting/store.js';
import { summarise, renderTable, type SummaryKey } from '../accounting/summary.js';

export const summary = 'summarise the per-job accounting records (jobs, wall and CPU time by VO, image or day)';

const HELP = `usage: wnod accounting [--by vo|image|day] [--json] [--file F | --config FILE]
       wnod accounting --format apel|apel-cloud [--config FILE] [--file F]
  --by KEY       group by vo, image or day (UTC); default: one total line
  --json         machine-readable output: {"by", "rows": [{key, jobs, wallS, cpuS}], "corruptLines"}
  --file F       the accounting file (JSON lines)
  --config FILE  take accounting_file from this site config (default /etc/wnod/wnod.yaml)
  --format apel        every batch job as an APEL individual job record (APEL-individual-job-message: v0.3)
  --format apel-cloud  every lease as an APEL cloud record (APEL-cloud-message: v0.4)
                 one message on stdout, for the APEL client's outgoing queue (ssmsend); Site/SiteName is site.name,
                 SubmitHost/CloudComputeService site.ce_host of the config; nothing is printed when there is no record
`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandLine({
    args: argv, strict: true, allowPositionals: false,
    options: { by: { type: 'string' }, json: { type: 'boolean' }, file: { type: 'string' }, config: { type: 'string' }, format: { type: 'string' } },
  }, HELP);
  if (values.format !== undefined) return apel(values.format, values.config, values.file, values.by !== undefined || values.json === true);
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

/** `--format apel|apel-cloud`: one APEL message on stdout; records apel would reject are named on stderr (exit 1). */
async function apel(format: string, config: string | undefined, file: string | undefined, summaryFlags: boolean): Promise<number> {
  if (format !== 'apel' && format !== 'apel-cloud') throw new UsageError(`--format ${JSON.stringify(format)}: expected apel or apel-cloud\n${HELP}`);
  if (summaryFlags) throw new UsageError(`--format takes no --by or --json\n${HELP}`);
  const { loadConfig } = await import('../config/load.js');
  const { apelJobMessage, apelCloudMessage } = await import('../accounting/apel.js');
  const cfg = await loadConfig(config);
  if (!cfg.site.name || !cfg.site.ceHost) throw new UsageError('APEL records need site.name (the GOCDB site name) and site.ce_host in the config');
  const site = { name: cfg.site.name, ceHost: cfg.site.ceHost, lrm: cfg.lrm.type };
  const { records, corrupt } = await readRecords(file ?? cfg.accountingFile);
  const msg = format === 'apel' ? apelJobMessage(records, site) : apelCloudMessage(records, site, new Date());
  process.stdout.write(msg.text);
  for (const s of msg.skipped) process.stderr.write(`wnod accounting: left out: ${s.message}\n`);
  if (corrupt.length > 0) process.stderr.write(`wnod accounting: skipped ${corrupt.length} corrupt line(s)\n`);
  return msg.skipped.length ? 1 : 0;
}
