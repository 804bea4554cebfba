// The submit gate: what the qsub/sbatch wrapper (BLAH's pbs_binpath/slurm_binpath) decides for one batch script.
// A deny marker refuses the job with the filter's reason (the only way back to the user: blahpd hands the failing
// submit's stderr to CREAM as the failure reason). A ticket lets it through with the filter's own directives passed
// again on the command line. A script with neither went around the filter (BLAH skipped it: dash as /bin/sh, an
// empty pass list, the stock prelz temp script): refused unless the site switched that off.
import { readScriptHeader } from '../header/scriptHeader.js';
import type { LrmType } from '../config/types.js';
import { filterBlockArgs } from './directives.js';
import { describe } from '../util/errors.js';

export type GateResult = { go: true; args: string[] } | { go: false; reason: string };

export interface GateOptions {
  lrm: LrmType;
  /** refuse a script that carries neither a ticket nor a deny marker (the default; a site may switch it off) */
  requireFilter: boolean;
}

export const UNFILTERED_REASON = 'the batch script carries neither a wnod ticket nor a wnod deny marker: the wnod ' +
  'submit filter did not run on this CE (BLAH skipped it); the site must fix its BLAH setup';

/** Decide for one batch script's text. Pure. */
export function gate(scriptText: string, opts: GateOptions): GateResult {
  const found = readScriptHeader(scriptText);
  if (found.deny !== undefined) return { go: false, reason: `job refused by site policy: ${found.deny}` };
  if (found.ticket === undefined) {
    return opts.requireFilter ? { go: false, reason: `job refused: ${UNFILTERED_REASON}` } : { go: true, args: [] };
  }
  try {
    return { go: true, args: filterBlockArgs(scriptText, opts.lrm) };
  } catch (err) {
    return { go: false, reason: `job refused: ${describe(err)}` };
  }
}
