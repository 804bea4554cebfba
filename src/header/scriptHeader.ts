/** The wnod lines of a job script's header — the one parser and printer of them. The filter writes them on the CE
 * (`# wnod-ticket: <token>` or `# wnod-deny: <reason>`), the lease CLI writes its pilot's (`# wnod-lease: <id>`),
 * and the node, the CLI and the submit wrapper read them back. Only the leading block of comments, directives and
 * blank lines is read (a line further down belongs to the job); the first ticket-or-deny line wins, and so does
 * the first lease line. */
export const TICKET_PREFIX = '# wnod-ticket: ';
export const DENY_PREFIX = '# wnod-deny: ';
export const LEASE_PREFIX = '# wnod-lease: ';
/** The job variable that carries the ticket too where a host of the job has no script to read (Torque's sisters:
 * the filter's `#PBS -v`, src/lrm/torque/jobTicket.ts). */
export const TICKET_VARIABLE = 'WNOD_TICKET';

/** A lease id (the registry's directory name, the marker's value). */
export const LEASE_ID = /^l[0-9a-f]{10}$/;

/** What the header says. `lease` is set only for a well-formed lease id. */
export interface ScriptHeader {
  ticket?: string;
  deny?: string;
  lease?: string;
}

const MAX_LINES = 4096;

/** Read the header of a job script (pure). */
export function readScriptHeader(scriptText: string): ScriptHeader {
  const out: ScriptHeader = {};
  let decided = false;
  let leaseSeen = false;
  for (const line of scriptText.split('\n', MAX_LINES)) {
    const l = line.replace(/\r$/, '');
    if (!decided && l.startsWith(TICKET_PREFIX)) {
      decided = true;
      out.ticket = l.slice(TICKET_PREFIX.length).trim();
    } else if (!decided && l.startsWith(DENY_PREFIX)) {
      decided = true;
      out.deny = l.slice(DENY_PREFIX.length).trim();
    } else if (!leaseSeen && l.startsWith(LEASE_PREFIX)) {
      leaseSeen = true;
      const id = l.slice(LEASE_PREFIX.length).trim();
      if (LEASE_ID.test(id)) out.lease = id;
    } else if (!(l.trim() === '' || l.startsWith('#'))) {
      break;
    }
  }
  return out;
}

/** The ticket or deny line of a job script (the header's decision part). */
export function findTicketLine(scriptText: string): { ticket?: string; deny?: string } {
  const { lease: _lease, ...decision } = readScriptHeader(scriptText);
  return decision;
}

/** The lease id a job script's header names, if any. */
export function findLeaseMarker(scriptText: string): string | undefined {
  return readScriptHeader(scriptText).lease;
}

/** Make one line safe as a comment: printable ASCII, bounded, no line breaks. */
export function oneLine(text: string, max = 400): string {
  const s = text.replace(/[^\x20-\x7e]+/g, ' ').replace(/\s+/g, ' ').trim();
  return s.length > max ? `${s.slice(0, max - 3)}...` : s;
}

export const ticketLine = (token: string): string => `${TICKET_PREFIX}${token}`;
export const denyLine = (reason: string): string => `${DENY_PREFIX}${oneLine(reason)}`;
export const leaseLine = (id: string): string => `${LEASE_PREFIX}${id}`;
