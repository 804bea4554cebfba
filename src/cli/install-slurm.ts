/** `wnod install slurm --config FILE --slurm-conf FILE [--apply]`: without --apply, change nothing and print the
 * slurm.conf lines and the plugstack.conf wnod would write; with --apply, write them (plugstack.conf beside
 * slurm.conf), build the SPANK plugin against Debian's <slurm/spank.h> and install it, the root Prolog/Epilog
 * shims and the runner, root-owned with their modes, verified after writing. */
import { parseCommandLine } from './args.js';
import { chmod, chown, copyFile, lstat, mkdir, mkdtemp, readFile, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../util/errors.js';
import { writeFileAtomic } from '../util/atomic.js';
import { run as runCommand } from '../util/run.js';
import {
  checkInstallPath, mergePlugstack, mergeSlurmConf, PLUGIN_MODE, pluginBuildArgs, renderSlurmShim, SHIM_MODES,
  SlurmInstallError, slurmLayout, type SlurmShim, HEALTH_CHECK_INTERVAL_S,
} from '../lrm/slurm/install.js';

export const summary = 'install the Slurm hooks (Prolog, Epilog, SPANK plugin and its runner) and their slurm.conf lines';

const HELP = `usage: wnod install slurm --config FILE --slurm-conf FILE [--health-interval S] [--apply]
  --config FILE      the site config the hooks will read (lrm.type: slurm)
  --slurm-conf FILE  this node's slurm.conf; plugstack.conf is written beside it
  --health-interval S  HealthCheckInterval when slurm.conf sets none (default ${HEALTH_CHECK_INTERVAL_S}); the health check
                     (wnod status --for slurm) drains a node that cannot boot VMs and resumes it when fixed
  --apply            write slurm.conf, plugstack.conf, the shims and the plugin (default: print what would change)
`;

/** This installation's root: dist/cli/install-slurm.js → ../.. */
function prefix(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandLine({
    args: argv, strict: true, allowPositionals: false,
    options: { config: { type: 'string' }, 'slurm-conf': { type: 'string' }, 'health-interval': { type: 'string' }, apply: { type: 'boolean' } },
  }, HELP);
  if (!values.config) throw new UsageError(`--config is required\n${HELP}`);
  if (!values['slurm-conf']) throw new UsageError(`--slurm-conf is required\n${HELP}`);
  const healthInterval = Number(values['health-interval'] ?? HEALTH_CHECK_INTERVAL_S);
  if (!Number.isInteger(healthInterval) || healthInterval < 1) throw new UsageError(`--health-interval must be a whole number of seconds >= 1, got '${values['health-interval']}'\n${HELP}`);
  const configPath = checkInstallPath(resolve(values.config), '--config');
  const slurmConf = checkInstallPath(resolve(values['slurm-conf']), '--slurm-conf');
  const root = checkInstallPath(prefix(), 'the wnod install dir');

  const { loadConfig } = await import('../config/load.js');
  const cfg = await loadConfig(configPath);
  if (cfg.lrm.type !== 'slurm' || !cfg.lrm.partition) throw new SlurmInstallError(`${configPath} has lrm.type: ${cfg.lrm.type}; wnod install slurm needs lrm.type: slurm with lrm.partition`);
  const layout = slurmLayout(cfg, slurmConf);
  const confText = await readFile(slurmConf, 'utf8').catch((e: NodeJS.ErrnoException) => {
    throw new SlurmInstallError(`cannot read ${slurmConf}: ${e.code ?? e.message}`);
  });
  const plan = mergeSlurmConf(confText, layout, cfg.lrm.prologueBudgetS, healthInterval);
  const oldPlugstack = await readFile(layout.plugstack, 'utf8').catch((e: NodeJS.ErrnoException) => { if (e.code === 'ENOENT') return ''; throw e; });
  const plugstack = mergePlugstack(oldPlugstack, layout);
  const entry = join(root, 'dist', 'hot', 'slurm-hook.cjs');

  const out: string[] = [];
  if (!values.apply) {
    out.push(`would change ${slurmConf}:`, ...(plan.changes.length ? plan.changes : ['nothing (already configured)']).map((c) => `  ${c}`));
    out.push(`would write ${layout.plugstack}:`, ...plugstack.trimEnd().split('\n').map((l) => `  ${l}`));
    out.push(`would install into ${layout.hookDir} (root-owned): prolog (0500), epilog (0500), runner (0555), health (0500), wnod_spank.so (0755, built with gcc from lrm-hooks/slurm/wnod_spank.c)`);
    out.push(...plan.notes.map((n) => `note: ${n}`));
    out.push(`would create ${layout.marks} (root, 0755): the Prolog's marks read by the plugin`);
    out.push('rerun with --apply to do it; then restart slurmctld and slurmd (PrologFlags needs a restart)');
    process.stdout.write(out.join('\n') + '\n');
    return 0;
  }

  if (process.getuid?.() !== 0) throw new SlurmInstallError('wnod install slurm --apply must run as root (the hooks and the plugin must be owned by uid 0)');
  await stat(entry).catch(() => { throw new SlurmInstallError(`${entry} does not exist: build wnod first (npm run build)`); });
  await ensureRootDir(layout.hookDir, 0o755);
  await mkdir(dirname(layout.marks), { recursive: true, mode: 0o755 });
  await ensureRootDir(layout.marks, 0o755);

  const installed: string[] = [];
  for (const shim of ['prolog', 'epilog', 'runner', 'health'] as SlurmShim[]) {
    const template = await readFile(join(root, 'lrm-hooks', 'slurm', shim), 'utf8');
    const path = join(layout.hookDir, shim);
    // the health check runs wnod's CLI (wnod status --for slurm), the hooks the bundled entry
    const text = renderSlurmShim(template, { node: process.execPath, entry: shim === 'health' ? join(root, 'dist', 'cli', 'main.js') : entry,
      config: configPath, slurmConf, partition: cfg.lrm.partition });
    await writeFileAtomic(path, text, SHIM_MODES[shim]);
    await chown(path, 0, 0);
    await verifyRootFile(path, SHIM_MODES[shim]);
    installed.push(`${path} (${SHIM_MODES[shim].toString(8)}, root)`);
  }
  await buildPlugin(join(root, 'lrm-hooks', 'slurm', 'wnod_spank.c'), layout.plugin);
  installed.push(`${layout.plugin} (${PLUGIN_MODE.toString(8)}, root)`);

  await writeFileAtomic(layout.plugstack, plugstack, 0o644);
  if (plan.changes.length > 0) {
    const mode = (await stat(slurmConf)).mode & 0o777;
    await writeFileAtomic(slurmConf, plan.text, mode);
  }
  out.push('installed:', ...installed.map((l) => `  ${l}`));
  out.push(`wrote ${slurmConf}:`, ...(plan.changes.length ? plan.changes : ['nothing to change (already configured)']).map((c) => `  ${c}`));
  out.push(`wrote ${layout.plugstack}:`, ...plugstack.trimEnd().split('\n').map((l) => `  ${l}`));
  out.push(...plan.notes.map((n) => `note: ${n}`));
  out.push('restart slurmctld and slurmd to apply (PrologFlags needs a restart)');
  process.stdout.write(out.join('\n') + '\n');
  return 0;
}

/** A root-owned directory with exactly `mode` (not group/other writable: the plugin trusts nothing else). */
async function ensureRootDir(dir: string, mode: number): Promise<void> {
  await mkdir(dir, { recursive: true, mode });
  const st = await lstat(dir);
  if (!st.isDirectory()) throw new SlurmInstallError(`${dir} is not a directory`);
  await chown(dir, 0, 0);
  await chmod(dir, mode);
}

async function verifyRootFile(path: string, mode: number): Promise<void> {
  const st = await lstat(path);
  if (!st.isFile() || st.uid !== 0 || (st.mode & 0o777) !== mode) {
    throw new SlurmInstallError(`${path}: after writing, it is not a root-owned regular file of mode ${mode.toString(8)} (uid ${st.uid}, mode ${(st.mode & 0o777).toString(8)})`);
  }
}

/** gcc in a private temp dir, then an atomic rename into place (slurmstepd may load the old one meanwhile). */
async function buildPlugin(source: string, target: string): Promise<void> {
  const header = '/usr/include/slurm/spank.h';
  await stat(header).catch(() => { throw new SlurmInstallError(`${header} is missing: install Debian's libslurm-dev (apt-get install libslurm-dev gcc)`); });
  const tmp = await mkdtemp(join(tmpdir(), 'wnod-spank-'));
  try {
    const built = join(tmp, 'wnod_spank.so');
    await runCommand('gcc', pluginBuildArgs(source, built), { timeoutMs: 120_000 }).catch((e: unknown) => {
      throw Object.assign(new SlurmInstallError(`building the SPANK plugin failed: ${(e as Error).message}`), { cause: e });
    });
    const staged = `${target}.new`;
    await rm(staged, { force: true });
    await copyFile(built, staged);
    await chown(staged, 0, 0);
    await chmod(staged, PLUGIN_MODE);
    await rename(staged, target);
    await verifyRootFile(target, PLUGIN_MODE);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}
