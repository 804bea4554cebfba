#!/usr/bin/env node
// Entry point of the submit wrappers (plugins/qsub, plugins/sbatch, as installed by `wnod install blah`):
// `gate.cjs --lrm torque|slurm [--allow-unfiltered] -- SCRIPT`. The wrapper starts it with an empty environment.
// Exit 0: go on, stdout = the extra submit arguments, one per line. Exit 1: refuse, stderr = one line for the user.
// Anything else (usage, unreadable script, a crash): the wrapper refuses too (fail closed).
import { open } from 'node:fs/promises';
import { gate } from './gate.js';

/** The filter's output sits in the first lines; BLAH's wrapper body after it can be large (the job's environment). */
const MAX_HEAD_BYTES = 256 * 1024;

async function readHead(path: string): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(MAX_HEAD_BYTES);
    const { bytesRead } = await fh.read(buf, 0, MAX_HEAD_BYTES, 0);
    return buf.subarray(0, bytesRead).toString('utf8');
  } finally {
    await fh.close();
  }
}

async function main(argv: string[]): Promise<number> {
  let lrm: 'torque' | 'slurm' | undefined;
  let requireFilter = true;
  let script: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--lrm' && (argv[i + 1] === 'torque' || argv[i + 1] === 'slurm')) lrm = argv[++i] as 'torque' | 'slurm';
    else if (a === '--allow-unfiltered') requireFilter = false;
    else if (a === '--' && i + 2 === argv.length) script = argv[++i];
    else {
      process.stderr.write('wnod: the submit wrapper called its gate wrongly; contact the site\n');
      return 2;
    }
  }
  if (!lrm || !script) {
    process.stderr.write('wnod: the submit wrapper called its gate without --lrm or the script; contact the site\n');
    return 2;
  }
  let text: string;
  try {
    text = await readHead(script);
  } catch (err) {
    process.stderr.write(`wnod: job refused: cannot read the batch script (${(err as NodeJS.ErrnoException).code ?? 'error'})\n`);
    return 1;
  }
  const r = gate(text, { lrm, requireFilter });
  if (!r.go) {
    process.stderr.write(`wnod: ${r.reason}\n`);
    return 1;
  }
  process.stdout.write(r.args.map((a) => `${a}\n`).join(''));
  return 0;
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, () => {
  process.stderr.write('wnod: the submit gate failed unexpectedly; contact the site\n');
  process.exitCode = 3;
});
