import { denyLine, oneLine, ticketLine } from '../header/scriptHeader.js';
import type { Decision } from '../policy/decide.js';

/** Batch directives for an allowed job (PBS): only `#PBS` lines and comments — qsub stops reading directives at
 * the first other line, and BLAH pastes our stdout verbatim into the batch script. */
export function allowDirectives(d: Extract<Decision, { allow: true }>, opts: { token: string; jobClass?: string | undefined; who: string }): string {
  const lines = [
    `# wnod: image ${d.image.id} (${d.cpus} cpu, ${d.memoryMB} MB) for ${oneLine(opts.who, 200)} by rule ${d.rule}`,
  ];
  if (d.queue) lines.push(`#PBS -q ${d.queue}`);
  if (opts.jobClass) lines.push(`#PBS -T ${opts.jobClass}`);
  lines.push(`#PBS -l nodes=1:ppn=${d.cpus}`, `#PBS -l mem=${d.memoryMB}mb`);
  lines.push(ticketLine(opts.token));
  return lines.join('\n') + '\n';
}

/** The deny marker: the qsub wrapper refuses the script with this reason, and the prologue refuses it anyway. */
export function denyDirectives(reason: string): string {
  return `${denyLine(reason)}\n`;
}
