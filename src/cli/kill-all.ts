// `wnod kill-all`: destroy every VM on this node and delete their disks.
import { parseCommandLine } from './args.js';
import { killAll } from '../vm/gc.js';
import { nodeCache, stateDirFrom } from '../vm/nodeState.js';
import { recordDriver } from '../vm/drivers.js';

export const summary = 'destroy every VM on this node and delete their disks';

const USAGE = `usage: wnod kill-all [--config FILE | --state-dir DIR] [--json]
  ${summary}
  --config FILE    take the state dir (vm.state_dir) from this site config
  --state-dir DIR  the state dir itself (default without either: /var/lib/wnod)
  --json           machine-readable output`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandLine({ args: argv, strict: true, options: { json: { type: 'boolean' }, config: { type: 'string' }, 'state-dir': { type: 'string' } } }, USAGE);
  const stateDir = await stateDirFrom(values.config, values['state-dir']);
  const r = await killAll(stateDir, (s) => recordDriver(s), await nodeCache(values.config));
  if (values.json) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
  else {
    for (const id of r.destroyed) process.stdout.write(`destroyed ${id}\n`);
    for (const d of r.removedRunDirs) process.stdout.write(`removed ${d}\n`);
    for (const h of r.releasedHolders) process.stdout.write(`released cache reference ${h.holder} on ${h.digest.slice(0, 12)}\n`);
  }
  for (const e of r.errors) process.stderr.write(`wnod kill-all: ${e}\n`);
  return r.errors.length ? 1 : 0;
}
