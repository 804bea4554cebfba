// `wnod metrics [--textfile DIR]`: the node's metrics in Prometheus text format, for node_exporter's textfile
// collector (run it from cron or the epilogue as root: the log and the state it reads are root-only).
import { join } from 'node:path';
import { parseCommandLine } from './args.js';
import { writeFileAtomic } from '../util/atomic.js';
import { DEFAULT_CONFIG_PATH, loadConfig } from '../config/load.js';
import { gatherNode, nodeFamilies } from '../metrics/node.js';
import { renderExposition } from '../metrics/exposition.js';

export const summary = 'the node\'s metrics in Prometheus text format (jobs, boots, VMs, cache, templates), for node_exporter';

/** The file node_exporter's textfile collector reads (*.prom in its directory). */
export const TEXTFILE_NAME = 'wnod.prom';

const USAGE = `usage: wnod metrics [--config FILE] [--textfile DIR]
  ${summary}
  --config FILE    the site config (default ${DEFAULT_CONFIG_PATH})
  --textfile DIR   write DIR/${TEXTFILE_NAME} atomically (node_exporter --collector.textfile.directory=DIR);
                   without it, print to stdout`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandLine({ args: argv, strict: true, options: { config: { type: 'string' }, textfile: { type: 'string' } } }, USAGE);
  const cfg = await loadConfig(values.config ?? DEFAULT_CONFIG_PATH);
  const text = renderExposition(nodeFamilies(await gatherNode(cfg)));
  if (values.textfile === undefined) {
    process.stdout.write(text);
    return 0;
  }
  // temp file in DIR + rename: the collector never reads half a file. 0644: node_exporter runs unprivileged.
  await writeFileAtomic(join(values.textfile, TEXTFILE_NAME), text, 0o644);
  return 0;
}
