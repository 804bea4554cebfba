/** The wnod ticket of a Torque job as a job variable (`WNOD_TICKET`, the filter's `#PBS -v`), read from the job as
 * pbs_mom saved it (`<mom_priv>/jobs/<id>.JB`, Torque 6's XML job file). A sister MOM has no job script, but its
 * saved job holds the job's whole Variable_List (observed on Torque 6.1.3 with three MOMs: the mother superior's
 * job file before its prologue, each sister's after its prologue.parallel), so every host of the job decides from
 * the same ticket. Torque writes the list as `NAME=value,NAME=value` with `\` before a comma, quote, backslash or
 * newline inside a value (qsub), and XML-escapes `<`, `>` and `&`. */
import { TICKET_VARIABLE, type ScriptHeader } from '../../header/scriptHeader.js';
import { hasTicketShape } from '../../ticket/index.js';
import { WnodError } from '../../util/errors.js';
import { Refusal } from '../../job/outcome.js';

export class JobTicketError extends WnodError {
  constructor(message: string) {
    super('torque-job-ticket', message);
  }
}

const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };
const MAX_VARIABLES = 4096;

/** The text of a saved job's `<Variable_List>` (entities decoded); undefined when the job has none (pure). */
function variableListText(xml: string): string | undefined {
  const found = [...xml.matchAll(/<Variable_List(?:\s[^>]*)?(?:\/>|>([^<]*)<\/Variable_List>)/g)];
  if (found.length > 1) throw new JobTicketError('the saved job has more than one Variable_List');
  const raw = found[0]?.[1];
  if (raw === undefined) return undefined;
  return raw.replace(/&([a-z]+);|&/g, (all, name: string | undefined) => {
    const c = name === undefined ? undefined : ENTITIES[name];
    if (c === undefined) throw new JobTicketError(`the saved job's Variable_List holds ${JSON.stringify(all)}, not an XML entity Torque writes`);
    return c;
  });
}

/** A Variable_List → its variables, name and unescaped value, in order (pure, strict). */
export function parseVariableList(text: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  let item = '';
  let escaped = false;
  const end = () => {
    if (out.length >= MAX_VARIABLES) throw new JobTicketError('the saved job has too many variables');
    const eq = item.indexOf('=');
    // an item without `=` (qsub writes none; another client might): a name without a value
    out.push(eq < 0 ? [item, ''] : [item.slice(0, eq), item.slice(eq + 1)]);
    item = '';
  };
  for (const c of text) {
    if (escaped) { item += c; escaped = false; } else if (c === '\\') escaped = true; else if (c === ',') end(); else item += c;
  }
  if (item !== '' || out.length > 0) end();
  return out;
}

/** The ticket a saved job carries in its variables; undefined when it carries none. Throws JobTicketError when
 * the variable is there but not one well-formed ticket (pure). */
export function ticketOfJobFile(xml: string): string | undefined {
  const text = variableListText(xml);
  if (text === undefined) return undefined;
  const values = parseVariableList(text).filter(([name]) => name === TICKET_VARIABLE).map(([, value]) => value);
  if (values.length === 0) return undefined;
  if (values.length > 1) throw new JobTicketError(`the job sets ${TICKET_VARIABLE} ${values.length} times`);
  if (!hasTicketShape(values[0]!)) throw new JobTicketError(`the job's ${TICKET_VARIABLE} is not a wnod ticket`);
  return values[0];
}

/** Why a job on several hosts cannot start when its script's header and its job variable disagree on the ticket:
 * the sisters decide from the variable, the mother superior from the script, and every VM of the job must be
 * decided from the same ticket. Both absent, or the same ticket: undefined. A deny marker is the script's to
 * refuse, whatever the variable says (pure). */
export function ticketMismatch(header: ScriptHeader, variable: string | undefined): string | undefined {
  if (header.deny !== undefined || header.ticket === variable) return undefined;
  if (variable === undefined) {
    return `the job runs on several hosts but carries its wnod ticket only in its script, not in its ${TICKET_VARIABLE} variable (a qsub -v replaces the script's #PBS -v lines: add ${TICKET_VARIABLE} to it, or drop -v)`;
  }
  if (header.ticket === undefined) return `the job's ${TICKET_VARIABLE} variable carries a wnod ticket its script does not`;
  return `the job's ${TICKET_VARIABLE} variable carries another wnod ticket than its script`;
}

/** ticketOfJobFile for an admission: a job variable that is not one ticket refuses the job (its user set it). */
export function jobTicketForAdmission(xml: string): string | undefined {
  try {
    return ticketOfJobFile(xml);
  } catch (err) {
    if (err instanceof JobTicketError) throw new Refusal(err.code, `the job's wnod ticket is not valid: ${err.message}; the job was not started`, {}, { cause: err });
    throw err;
  }
}
