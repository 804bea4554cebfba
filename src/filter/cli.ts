// The submit filter's command line: `filter.cjs --config FILE [--log FILE] [--] <BLAH temp script>`. stdout goes
// verbatim into the batch script, stderr is discarded by BLAH and the exit code ignored, so the log goes to the file
// named by --log (if writable) and the output is always directives. Every path comes from the command line the
// install baked into the shim: nothing is read from the environment (the job can set variables in the shell that
// runs the shim). Apart from main.ts so that it can be loaded without running (bench/filter.ts's snapshot arm).
import { appendFile } from 'node:fs/promises';
import { runFilter } from './filter.js';
import { DEFAULT_CONFIG_PATH } from '../config/load.js';
import { denyDirectives } from './directives.js';

async function filterCli(argv: string[]): Promise<void> {
  let config = DEFAULT_CONFIG_PATH;
  let script: string | undefined;
  let logFile: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--config' && i + 1 < argv.length) config = argv[++i]!;
    else if (argv[i] === '--log' && i + 1 < argv.length) logFile = argv[++i]!;
    else if (argv[i] === '--' && i + 1 < argv.length) script = argv[++i];
    else script = argv[i];
  }
  if (!script) {
    process.stdout.write(denyDirectives('the wnod submit filter was called without the BLAH script'));
    return;
  }
  const r = await runFilter(script, config);
  process.stdout.write(r.output);
  if (logFile && r.log.length > 0) {
    const stamp = new Date().toISOString();
    await appendFile(logFile, r.log.map((l) => `${stamp} filter[${process.pid}] ${l}\n`).join(''), { mode: 0o600 }).catch(() => {});
  }
  process.stderr.write(r.log.map((l) => `wnod-filter: ${l}\n`).join(''));
}

/** Run the filter on `argv` (the arguments after the entry script); never rejects: any failure is a deny. */
export function main(argv: string[]): Promise<void> {
  return filterCli(argv).catch(() => {
    process.stdout.write(denyDirectives('the wnod submit filter failed unexpectedly'));
  });
}
