// The batch directives the filter prints, and the reading of them back by the submit wrappers (one owner for both
// shapes). BLAH pastes the filter's stdout verbatim into the batch script and appends its own directives after it
// (`#PBS -l nodes=N` for NodeNumber, `#SBATCH -p <queue>` when it finds none of its spelling): the wrappers pass
// the filter's block again on the submit command line, which Torque's qsub and sbatch both rank above the script.
import { TICKET_PREFIX, TICKET_VARIABLE, denyLine, oneLine, ticketLine } from '../header/scriptHeader.js';
import type { Decision } from '../policy/decide.js';
import type { LrmConfig, LrmType } from '../config/types.js';
import { WnodError } from '../util/errors.js';

/** The first line of the filter's block (a comment: qsub and sbatch read on past it). */
export const BLOCK_PREFIX = '# wnod: image ';

export interface DirectiveOptions {
  token: string;
  who: string;
  lrm: Pick<LrmConfig, 'type' | 'jobClass' | 'partition'>;
}

/** Batch directives for an allowed job: only `#PBS`/`#SBATCH` lines and comments — qsub and sbatch stop reading
 * directives at the first other line. Never `#PBS -T` for Slurm: sbatch rejects a script holding it. */
export function allowDirectives(d: Extract<Decision, { allow: true }>, opts: DirectiveOptions): string {
  const lines = [`${BLOCK_PREFIX}${d.image.id} (${d.cpus} cpu, ${d.memoryMB} MB) for ${oneLine(opts.who, 200)} by rule ${d.rule}`];
  if (opts.lrm.type === 'slurm') {
    if (opts.lrm.partition) lines.push(`#SBATCH --partition=${opts.lrm.partition}`);
    lines.push('#SBATCH --nodes=1', '#SBATCH --ntasks=1', `#SBATCH --cpus-per-task=${d.cpus}`, `#SBATCH --mem=${d.memoryMB}M`);
    // The Prolog reads the ticket from SLURM_JOB_COMMENT (the script is not on the node yet). The owner can change
    // the comment of a pending job: the node verifies the signature and the account, never trusts the comment.
    lines.push(`#SBATCH --comment=${opts.token}`);
  } else {
    if (d.queue) lines.push(`#PBS -q ${d.queue}`);
    if (opts.lrm.jobClass) lines.push(`#PBS -T ${opts.lrm.jobClass}`);
    lines.push(`#PBS -l nodes=1:ppn=${d.cpus}`, `#PBS -l mem=${d.memoryMB}mb`);
    // The ticket again as a job variable: a sister MOM of a job on several hosts has no script, but Torque copies
    // the job's variables to it (src/lrm/torque/jobTicket.ts). A ticket is base64url and a dot: no comma to escape.
    lines.push(`#PBS -v ${TICKET_VARIABLE}=${opts.token}`);
  }
  lines.push(ticketLine(opts.token));
  return lines.join('\n') + '\n';
}

/** The deny marker: the submit wrapper refuses the script with this reason, and the worker node refuses it anyway. */
export function denyDirectives(reason: string): string {
  return `${denyLine(reason)}\n`;
}

const NAME = '[A-Za-z0-9._-]{1,64}';
const COUNT = '[1-9][0-9]{0,6}';
// a ticket's shape (src/ticket, not imported: the gate's bundle stays a few kB)
const TOKEN = '[A-Za-z0-9_-]{1,4000}\\.[A-Za-z0-9_-]{43}';
/** Exactly the directive shapes allowDirectives prints (minus the ticket comment), with the command-line words each
 * becomes. Anything else inside the block is refused: a wrapper passes nothing it does not recognise. */
const SHAPES: Record<LrmType, RegExp> = {
  torque: new RegExp(`^#PBS (-q|-T) (${NAME})$|^#PBS (-l) (nodes=1:ppn=${COUNT}|mem=${COUNT}mb)$|^#PBS (-v) (${TICKET_VARIABLE}=${TOKEN})$`),
  slurm: new RegExp(`^#SBATCH (--(?:partition=${NAME}|nodes=1|ntasks=1|cpus-per-task=${COUNT}|mem=${COUNT}M))$`),
};

export class DirectiveBlockError extends WnodError {
  constructor(message: string) {
    super('bad-filter-block', message);
  }
}

/**
 * The filter's directives in a batch script, as submit command-line words: the lines between the block's first
 * line and the ticket line (the leading comment block only). [] when the script has no block. Throws
 * DirectiveBlockError when the block holds a directive the filter does not print (the wrapper then refuses).
 */
export function filterBlockArgs(scriptText: string, lrm: LrmType): string[] {
  const lines = scriptText.split('\n', 4096).map((l) => l.replace(/\r$/, ''));
  const start = lines.findIndex((l) => l.startsWith(BLOCK_PREFIX));
  if (start < 0) return [];
  // the block must sit in the leading comment block, where qsub and sbatch read directives
  for (const l of lines.slice(1, start)) if (!(l === '' || l.startsWith('#'))) return [];
  const args: string[] = [];
  for (const l of lines.slice(start + 1)) {
    if (l.startsWith(TICKET_PREFIX)) return args;
    if (lrm === 'slurm' && l.startsWith('#SBATCH --comment=')) continue; // the ticket again; the node reads it
    const m = SHAPES[lrm].exec(l);
    if (!m) throw new DirectiveBlockError(`the wnod block of the batch script holds a line the filter does not print: ${JSON.stringify(oneLine(l, 80))}`);
    const words = m.slice(1).filter((w): w is string => w !== undefined);
    args.push(...words);
  }
  throw new DirectiveBlockError('the wnod block of the batch script has no ticket line');
}
