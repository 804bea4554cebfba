// `wnod gc`: remove orphans (dead VMs with a record, runtime dirs without one, stale cache references). Safe any time.
import { parseCommandLine } from './args.js';
import { gc } from '../vm/gc.js';
import { nodeCache, stateDirFrom } from '../vm/nodeState.js';
import { recordDriver } from '../vm/drivers.js';
import { jobOnNode } from '../job/alive.js';

export const summary = 'remove orphaned VMs, runtime files and stale cache references (safe to run any time)';

const USAGE = `usage: wnod gc [--config FILE | --state-dir DIR] [--json]
  ${summary}
  --config FILE    take the state dir (vm.state_dir) from this site config
  --state-dir DIR  the state dir itself (default without either: /var/lib/wnod)
  --json           machine-readable output`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandLine({ args: argv, strict: true, options: { json: { type: 'boolean' }, config: { type: 'string' }, 'state-dir': { type: 'string' } } }, USAGE);
  const stateDir = await stateDirFrom(values.config, values['state-dir']);
  const lrm = values.config ? (await (await import('../config/load.js')).loadConfig(values.config)).lrm : undefined;
  // a VM whose batch job no longer exists on this node is an orphan (src/job/alive.ts)
  const r = await gc(stateDir, (s) => recordDriver(s), { cache: await nodeCache(values.config), jobAlive: (id) => jobOnNode({ stateDir, lrm }, id) });
  if (values.json) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
  else {
    for (const id of r.destroyed) process.stdout.write(`destroyed ${id}\n`);
    for (const d of r.removedRunDirs) process.stdout.write(`removed ${d}\n`);
    for (const h of r.releasedHolders) process.stdout.write(`released cache reference ${h.holder} on ${h.digest.slice(0, 12)}\n`);
    if (!r.destroyed.length && !r.removedRunDirs.length && !r.releasedHolders.length) process.stdout.write('nothing to clean\n');
  }
  for (const e of r.errors) process.stderr.write(`wnod gc: ${e}\n`);
  return r.errors.length ? 1 : 0;
}
