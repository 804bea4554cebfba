// The ticket a Torque job carries in its variables (src/lrm/torque/jobTicket.ts), read from the job as a sister MOM
// saved it: fixtures are sister job files from Torque 6.1.3 with three MOMs (trimmed; the ticket in
// sister-with-ticket.JB replaced by a well-formed one), and the mother superior's check against its script.
import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseVariableList, ticketOfJobFile, ticketMismatch, jobTicketForAdmission, JobTicketError } from '../src/lrm/torque/jobTicket.js';
import { Refusal } from '../src/job/outcome.js';
import { execHostOfJobFile } from '../src/lrm/torque/nodes.js';

const fixture = (name: string) => readFile(join(import.meta.dirname, 'fixtures', 'torque', name), 'utf8');
const TICKET = 'eyJ2IjoxLCJhY2NvdW50IjoidHNram9iIn0.AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdE';
const OTHER = 'eyJ2IjoyfQ.AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdE';
const withList = (list: string) => `<job>\n  <attributes>\n    <Variable_List flags="3">${list}</Variable_List>\n  </attributes>\n</job>\n`;

t.test('a sister\'s saved job: its hosts and its ticket', async (t) => {
  const xml = await fixture('sister-with-ticket.JB');
  t.equal(execHostOfJobFile(xml), 'tskn2/0+tskn1/0');
  t.equal(ticketOfJobFile(xml), TICKET);
  const escaped = await fixture('sister-escaped.JB');
  t.equal(ticketOfJobFile(escaped), undefined, 'a job without the variable carries no ticket (decided as before)');
});

t.test('Variable_List as Torque writes it: entities, qsub\'s backslash escapes, commas between variables', async (t) => {
  const vars = parseVariableList('A=1,CMDV=a<b&c>d"e\'f,B=x\\,WNOD_TICKET=no,C=back\\\\slash,D=line\\\nbreak,NAMEONLY');
  t.same(vars, [['A', '1'], ['CMDV', 'a<b&c>d"e\'f'], ['B', 'x,WNOD_TICKET=no'], ['C', 'back\\slash'], ['D', 'line\nbreak'], ['NAMEONLY', '']]);
  t.same(parseVariableList(''), []);
  const xml = await fixture('sister-escaped.JB');
  t.match(xml, /CMDV=a&lt;b&amp;c&gt;d"e'f,OTHER=x/, 'the fixture is what Torque wrote for qsub -v \'CMDV=a<b&c>d"e\'f,OTHER=x\'');
  // a value that only looks like the variable after a comma escaped by qsub is not the variable
  t.equal(ticketOfJobFile(withList(`A=x\\,WNOD_TICKET=${TICKET}`)), undefined);
  t.equal(ticketOfJobFile(withList(`WNOD_TICKET=${TICKET}`)), TICKET, 'first in the list');
  t.equal(ticketOfJobFile(withList(`A=&lt;,WNOD_TICKET=${TICKET},Z=1`)), TICKET);
  t.equal(ticketOfJobFile(withList(`WNOD_TICKETS=${TICKET},wnod_ticket=${TICKET}`)), undefined, 'the exact name only');
  t.equal(ticketOfJobFile('<job><attributes><Variable_List flags="3"/></attributes></job>'), undefined, 'an empty list');
  t.equal(ticketOfJobFile('<job><jobid>1.x</jobid></job>'), undefined, 'no list');
});

t.test('a variable that is not one ticket: refused, never guessed', async (t) => {
  t.throws(() => ticketOfJobFile(withList(`WNOD_TICKET=${TICKET},WNOD_TICKET=${OTHER}`)), { code: 'torque-job-ticket', message: /sets WNOD_TICKET 2 times/ });
  t.throws(() => ticketOfJobFile(withList(`WNOD_TICKET=${TICKET},WNOD_TICKET=${TICKET}`)), JobTicketError, 'twice, even the same');
  t.throws(() => ticketOfJobFile(withList('WNOD_TICKET=fromcmd')), /not a wnod ticket/);
  t.throws(() => ticketOfJobFile(withList('WNOD_TICKET=')), /not a wnod ticket/);
  t.throws(() => ticketOfJobFile(withList(`WNOD_TICKET=${TICKET}\\,x`)), /not a wnod ticket/);
  t.throws(() => ticketOfJobFile(withList(`WNOD_TICKET=${'a'.repeat(5000)}.${'b'.repeat(43)}`)), /not a wnod ticket/, 'bounded');
  t.throws(() => ticketOfJobFile(withList('A=&#44;')), /not an XML entity Torque writes/);
  t.throws(() => ticketOfJobFile(withList('A=&')), JobTicketError);
  t.throws(() => ticketOfJobFile(withList('A=1') + withList(`WNOD_TICKET=${TICKET}`)), /more than one Variable_List/);
  t.throws(() => parseVariableList(Array.from({ length: 5000 }, (_, i) => `V${i}=1`).join(',')), /too many variables/);
  t.throws(() => jobTicketForAdmission(withList('WNOD_TICKET=x')), Refusal, 'an admission refuses the job');
  t.equal(jobTicketForAdmission(withList(`WNOD_TICKET=${TICKET}`)), TICKET);
});

t.test('the mother superior of a job on several hosts: its script\'s ticket and the variable must agree', async (t) => {
  t.equal(ticketMismatch({ ticket: TICKET }, TICKET), undefined, 'the same ticket');
  t.equal(ticketMismatch({}, undefined), undefined, 'no ticket anywhere: every host decides without one');
  t.equal(ticketMismatch({ deny: 'no' }, TICKET), undefined, 'a deny marker refuses the job anyway');
  t.match(ticketMismatch({ ticket: TICKET }, OTHER), /carries another wnod ticket than its script/);
  t.match(ticketMismatch({ ticket: TICKET }, undefined), /only in its script, not in its WNOD_TICKET variable \(a qsub -v replaces/);
  t.match(ticketMismatch({}, TICKET), /variable carries a wnod ticket its script does not/);
});
