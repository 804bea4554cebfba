// `wnod snapshot build|list`: warm-snapshot templates (src/vm/snapshot.ts). `build --spec` is what a prologue
// starts, detached, when a job cold booted for want of a template; it waits for a boot slot like a prologue does.
import { parseCommandLine, runSubcommand } from './args.js';
import { readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { UsageError } from '../util/errors.js';
import { buildTemplate, lookupTemplate, type BuildResult } from '../vm/snapshot.js';
import { QEMU_BINARY } from '../vm/qemu.js';
import type { VmSpec } from '../vm/driver.js';
import { takeBootSlot } from '../job/bootSlots.js';
import { appendPrivate, BUILDS_LOG } from '../job/log.js';

export const summary = 'warm VM snapshot templates: build one for a VM spec (snapshot build), list them (snapshot list)';

const HELP = `usage:
  wnod snapshot build --state-dir DIR --spec FILE [--max-booting N] [--json]
  wnod snapshot list --state-dir DIR [--json]

Templates live in DIR/templates (root-only). build saves the template of the spec's image and shape unless one
exists (single-flight); it takes one of the node's boot slots (vm.max_booting, 0 = the core count) while the
template VM boots. A guest that cannot be restored safely is remembered as refused, with the reason; a build that
failed for a passing cause (the VM died, its agent did not answer) is retried after a back-off (10 min, doubling).`;

/** Read and sanity-check a spec file written by the engine (root-only, in the templates dir). */
async function readSpec(path: string): Promise<VmSpec> {
  let v: unknown;
  try {
    v = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new UsageError(`--spec ${path}: ${(err as Error).message}`);
  }
  const s = v as Partial<VmSpec>;
  if (!s || typeof s !== 'object' || !s.image || typeof s.image.digest !== 'string' || !s.image.files || !Number.isInteger(s.cpus) ||
    !Number.isInteger(s.memoryMB) || !s.network || (s.accel !== 'kvm' && s.accel !== 'tcg')) {
    throw new UsageError(`--spec ${path}: not a VM spec with image, cpus, memoryMB, network and accel`);
  }
  return s as VmSpec;
}

async function buildCmd(argv: string[]): Promise<number> {
  const { values } = parseCommandLine({ args: argv, strict: true, options: {
    'state-dir': { type: 'string' }, spec: { type: 'string' }, 'max-booting': { type: 'string' }, json: { type: 'boolean' },
  } }, HELP);
  if (!values['state-dir'] || !values.spec) throw new UsageError(`--state-dir and --spec are required\n${HELP}`);
  const maxBooting = Number(values['max-booting'] ?? '0');
  if (!Number.isInteger(maxBooting) || maxBooting < 0) throw new UsageError(`--max-booting must be a whole number, got '${values['max-booting']}'`);
  const stateDir = values['state-dir'];
  const spec = await readSpec(values.spec);
  const r: BuildResult = await buildTemplate({
    dir: join(stateDir, 'templates'), qemu: QEMU_BINARY, spec, accel: spec.accel!,
    takeSlot: async () => {
      const slot = await takeBootSlot(stateDir, maxBooting, Date.now() + 600_000);
      return () => slot.release();
    },
    log: (s) => process.stderr.write(`${new Date().toISOString()} wnod snapshot: ${s}\n`),
  });
  await rm(values.spec, { force: true });
  // one JSON line per build for `wnod metrics` (template builds by result); build.log keeps the human lines
  await appendPrivate(join(stateDir, 'templates', BUILDS_LOG), JSON.stringify({ time: new Date().toISOString(), event: 'template-build', key: r.key, status: r.status,
    ...(r.status === 'built' ? { seconds: r.seconds } : {}) }) + '\n').catch(() => {});
  process.stdout.write(values.json ? JSON.stringify(r) + '\n' : `${r.status} ${r.key}${r.status === 'refused' || r.status === 'failed' ? `: ${r.reason}` : ''}\n`);
  return r.status === 'refused' || r.status === 'failed' ? 1 : 0;
}

async function listCmd(argv: string[]): Promise<number> {
  const { values } = parseCommandLine({ args: argv, strict: true, options: { 'state-dir': { type: 'string' }, json: { type: 'boolean' } } }, HELP);
  if (!values['state-dir']) throw new UsageError(`--state-dir is required\n${HELP}`);
  const dir = join(values['state-dir'], 'templates');
  const keys = new Set<string>();
  for (const n of await readdir(dir).catch(() => [] as string[])) {
    const m = /^([0-9a-f]{32})(\.refused\.json|\.failed\.json)?$/.exec(n);
    if (m) keys.add(m[1]!);
  }
  const rows = [];
  for (const k of [...keys].sort()) rows.push({ key: k, ...(await lookupTemplate(dir, k)) });
  if (values.json) process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
  else {
    for (const r of rows) {
      process.stdout.write(r.status === 'ready'
        ? `${r.key} ready ${r.meta.imageId} ${r.meta.cpus}cpu ${r.meta.memoryMB}MB ${r.meta.network} ${(r.meta.snapshotBytes / 1e6).toFixed(1)}MB ${r.meta.createdAt}\n`
        : `${r.key} ${r.status}${r.status === 'refused' ? `: ${r.reason}` : ''}\n`);
    }
    if (!rows.length) process.stdout.write('no templates\n');
  }
  return 0;
}

const handlers = { build: buildCmd, list: listCmd };
export const subcommands = Object.keys(handlers);

export async function run(argv: string[]): Promise<number> {
  return runSubcommand('snapshot', argv, handlers, HELP);
}
