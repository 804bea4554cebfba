#!/usr/bin/env node
// Entry point called by plugins/pbs_local_submit_attributes.sh: `main.js --config FILE <BLAH temp script>`.
// stdout goes verbatim into the batch script, stderr is discarded by BLAH and the exit code ignored, so the
// log goes to the file named by WNOD_FILTER_LOG (if writable) and the output is always directives.
// The submit wrappers (plugins/qsub) call `main.js --deny-reason <batch script>`: exit 3 and the reason on stdout
// when the script's header carries a deny line, 0 when not, 2 when the script cannot be read.
import { appendFile, open } from 'node:fs/promises';
import { runFilter } from './filter.js';
import { DEFAULT_CONFIG_PATH } from '../config/load.js';
import { denyDirectives } from './directives.js';
import { oneLine, readScriptHeader } from '../header/scriptHeader.js';

const HEADER_BYTES = 1 << 20;

/** The wrappers' check: the deny reason of a batch script's header, through the one header reader. */
async function denyReason(path: string | undefined): Promise<number> {
  try {
    if (!path) throw new Error('no batch script given');
    const fh = await open(path, 'r');
    let text: string;
    try {
      const buf = Buffer.alloc(HEADER_BYTES);
      const { bytesRead } = await fh.read(buf, 0, HEADER_BYTES, 0); // the header sits at the top
      text = buf.subarray(0, bytesRead).toString('utf8');
    } finally {
      await fh.close();
    }
    const { deny } = readScriptHeader(text);
    if (deny === undefined) return 0;
    process.stdout.write(`${oneLine(deny)}\n`);
    return 3;
  } catch (err) {
    process.stderr.write(`wnod: cannot read the batch script's header: ${(err as Error).message}\n`);
    return 2;
  }
}

async function main(argv: string[]): Promise<void> {
  if (argv[0] === '--deny-reason') {
    process.exitCode = await denyReason(argv[1]);
    return;
  }
  let config = DEFAULT_CONFIG_PATH;
  let script: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--config' && i + 1 < argv.length) config = argv[++i]!;
    else script = argv[i];
  }
  if (!script) {
    process.stdout.write(denyDirectives('the wnod submit filter was called without the BLAH script'));
    return;
  }
  const r = await runFilter(script, config);
  process.stdout.write(r.output);
  const logFile = process.env.WNOD_FILTER_LOG;
  if (logFile && r.log.length > 0) {
    const stamp = new Date().toISOString();
    await appendFile(logFile, r.log.map((l) => `${stamp} filter[${process.pid}] ${l}\n`).join(''), { mode: 0o600 }).catch(() => {});
  }
  process.stderr.write(r.log.map((l) => `wnod-filter: ${l}\n`).join(''));
}

main(process.argv.slice(2)).catch(() => {
  process.stdout.write(denyDirectives('the wnod submit filter failed unexpectedly'));
});
