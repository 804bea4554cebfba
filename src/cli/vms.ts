// `wnod vms`: the VMs on this node, from their state records.
import { parseCommandLine } from './args.js';
import { listRecords } from '../vm/state.js';
import { isAlive } from '../vm/proc.js';
import { stateDirFrom } from '../vm/nodeState.js';

export const summary = 'list the VMs on this node (--json for machine-readable output)';

const USAGE = `usage: wnod vms [--config FILE | --state-dir DIR] [--json]
  ${summary}
  --config FILE    take the state dir (vm.state_dir) from this site config
  --state-dir DIR  the state dir itself (default without either: /var/lib/wnod)
  --json           machine-readable output`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandLine({ args: argv, strict: true, options: { json: { type: 'boolean' }, config: { type: 'string' }, 'state-dir': { type: 'string' } } }, USAGE);
  const stateDir = await stateDirFrom(values.config, values['state-dir']);
  const bad: string[] = [];
  const rows = [];
  for (const s of await listRecords(stateDir, (p, e) => bad.push(`${p}: ${(e as Error).message}`))) {
    const alive = await isAlive(s.pids.qemu);
    const step = (['destroyed', 'stopping', 'ready', 'started', 'prepared'] as const).find((k) => s.steps[k]) ?? 'new';
    rows.push({ id: s.id, jobId: s.jobId ?? null, driver: s.driver, image: s.spec.image.id, digest: s.spec.image.digest, accel: s.accel ?? null,
      cpus: s.spec.cpus, memoryMB: s.spec.memoryMB, step, running: alive, qemuPid: s.pids.qemu?.pid ?? null, overlay: s.spec.overlay ?? null,
      sockets: s.sockets, steps: s.steps });
  }
  if (values.json) process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
  else {
    process.stdout.write(['ID', 'JOB', 'IMAGE', 'CPUS', 'MEM', 'ACCEL', 'STEP', 'PID'].join('\t') + '\n');
    for (const r of rows) process.stdout.write([r.id, r.jobId ?? '-', r.image, r.cpus, r.memoryMB, r.accel ?? '-', r.running ? r.step : `${r.step} (dead)`, r.qemuPid ?? '-'].join('\t') + '\n');
  }
  for (const b of bad) process.stderr.write(`wnod vms: unreadable record ${b}\n`);
  return bad.length ? 1 : 0;
}
