import { parseCommandLine, runSubcommand } from './args.js';
import { randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { writeFileAtomic } from '../util/atomic.js';
import { UsageError } from '../util/errors.js';
import { DEFAULT_CONFIG_PATH, loadConfig } from '../config/load.js';
import { loadTicketKey, ticketImage, verifyTicket } from '../ticket/index.js';
import { findTicketLine } from '../header/scriptHeader.js';

export const summary = 'make the shared ticket key (ticket key), or check the ticket in a job script (ticket verify)';

const USAGE = `usage: wnod ticket key --out FILE [--force]        write a new random key (mode 0600)
       wnod ticket verify [--config FILE] --script FILE [--json]   check a job script's ticket as the prologue would`;

const handlers = { key: (rest: string[]) => ticketCmd('key', rest), verify: (rest: string[]) => ticketCmd('verify', rest) };
export const subcommands = Object.keys(handlers);

export async function run(argv: string[]): Promise<number> {
  return runSubcommand('ticket', argv, handlers, USAGE);
}

async function ticketCmd(sub: 'key' | 'verify', rest: string[]): Promise<number> {
  const { values } = parseCommandLine({ args: rest, strict: true, allowPositionals: false, options: {
    out: { type: 'string' }, force: { type: 'boolean' }, config: { type: 'string' }, script: { type: 'string' }, json: { type: 'boolean' },
  } }, USAGE);
  if (sub === 'key') {
    if (!values.out) throw new UsageError(`--out FILE is required\n${USAGE}`);
    if (!values.force && (await stat(values.out).catch(() => undefined))) {
      throw new UsageError(`${values.out} exists; a new key invalidates every queued job's ticket (use --force if you mean it)`);
    }
    await writeFileAtomic(values.out, randomBytes(32).toString('hex') + '\n', 0o600);
    process.stdout.write(`wrote ${values.out} (mode 0600); copy it to every worker node and the CE\n`);
    return 0;
  }
  if (sub === 'verify') {
    if (!values.script) throw new UsageError(`--script FILE is required\n${USAGE}`);
    const cfg = await loadConfig(values.config ?? DEFAULT_CONFIG_PATH);
    const found = findTicketLine(await readFile(values.script, 'latin1'));
    let result: Record<string, unknown>;
    if (found.deny !== undefined) result = { ok: false, error: `denied by the filter: ${found.deny}` };
    else if (found.ticket === undefined) result = { ok: false, error: 'no wnod ticket in the script' };
    else {
      try {
        const claims = verifyTicket(found.ticket, await loadTicketKey(cfg.ticket.keyFile, { allowGroup: cfg.ticket.keyGroup }));
        ticketImage(claims, cfg.images);
        result = { ok: true, claims };
      } catch (err) {
        result = { ok: false, error: (err as Error).message };
      }
    }
    process.stdout.write(values.json ? JSON.stringify(result) + '\n' : result.ok ? `ticket OK: ${JSON.stringify(result.claims)}\n` : `ticket refused: ${result.error}\n`);
    return result.ok ? 0 : 1;
  }
  throw new UsageError(USAGE);
}
