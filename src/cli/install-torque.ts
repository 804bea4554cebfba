/** `wnod install torque --mom-priv DIR [--config FILE] [--prefix INSTALL_DIR] [--apply]`: install the hook shims
 * into mom_priv (root-owned, the modes pbs_mom demands, verified after writing) and print — or with --apply write
 * into mom_priv/config — the mom config lines; print the qmgr lines for the server. */
import { parseCommandLine } from './args.js';
import { readFile, lstat, chown, stat } from 'node:fs/promises';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../util/errors.js';
import { writeFileAtomic } from '../util/atomic.js';
import { InstallError, renderShim, shimPlan, permissionProblem, momConfigLines, mergeMomConfig, qmgrLines, checkShimPath } from '../lrm/torque/install.js';
import { foreignNodeCheck, nodeCheckLines, NODE_CHECK_MODE, NODE_CHECK_NAME } from '../lrm/torque/nodeCheck.js';

export const summary = 'install the Torque hooks (prologue, epilogue, job starter) into mom_priv';

const HELP = `usage: wnod install torque --mom-priv DIR [--config FILE] [--prefix INSTALL_DIR] [--apply]
  --mom-priv DIR   pbs_mom's $PBS_HOME/mom_priv
  --config FILE    the site config the hooks will read (default /etc/wnod/wnod.yaml)
  --prefix DIR     where wnod is installed (holds dist/ and lrm-hooks/; default: this installation)
  --apply          also write $prologalarm, $job_starter and the node check ($node_check_script: wnod status
                   --for torque) into DIR/config (default: print them)
`;

/** This installation's root: dist/cli/install-torque.js → ../.. */
function defaultPrefix(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandLine({
    args: argv, strict: true, allowPositionals: false,
    options: { 'mom-priv': { type: 'string' }, config: { type: 'string' }, prefix: { type: 'string' }, apply: { type: 'boolean' } },
  }, HELP);
  if (!values['mom-priv']) throw new UsageError(`--mom-priv is required\n${HELP}`);
  const momPriv = checkShimPath(resolve(values['mom-priv']), '--mom-priv');
  const configPath = checkShimPath(resolve(values.config ?? '/etc/wnod/wnod.yaml'), '--config');
  const prefix = checkShimPath(resolve(values.prefix ?? defaultPrefix()), '--prefix');
  if (process.getuid?.() !== 0) throw new InstallError('wnod install torque must run as root (the hooks must be owned by uid 0)');

  const { loadConfig } = await import('../config/load.js');
  const cfg = await loadConfig(configPath);
  // the bundled entry (dist/hot): one file to load per hook instead of ~60 modules, ~75 ms less per hook on Node 20
  const entry = join(prefix, 'dist', 'hot', 'hook.cjs');
  await stat(entry).catch(() => { throw new InstallError(`${entry} does not exist: build wnod first (npm run build) or give --prefix`); });
  const mp = await lstat(momPriv).catch(() => { throw new InstallError(`mom_priv ${momPriv} does not exist`); });
  if (!mp.isDirectory()) throw new InstallError(`mom_priv ${momPriv} is not a directory`);

  const cfgFile = join(momPriv, 'config');
  const existing = await readFile(cfgFile, 'utf8').catch((e: NodeJS.ErrnoException) => { if (e.code === 'ENOENT') return ''; throw e; });
  // before anything is installed: a root job starter with the job's environment is refused (mergeMomConfig says why)
  mergeMomConfig(existing, []);
  const installed: string[] = [];
  for (const s of shimPlan(cfg)) {
    const template = await readFile(join(prefix, 'lrm-hooks', s.hook), 'utf8');
    const path = join(momPriv, s.name);
    await writeFileAtomic(path, renderShim(template, { node: process.execPath, entry, config: configPath, log: cfg.logFile, state: cfg.vm.stateDir }), s.mode);
    await chown(path, 0, 0);
    // verify what pbs_mom will see: a violation would requeue every job in a loop
    const st = await lstat(path);
    const problem = permissionProblem({ uid: st.uid, mode: st.mode, isFile: st.isFile() }, s.hook === 'starter' ? 'user' : 'root');
    if (problem || (st.mode & 0o777) !== s.mode) throw new InstallError(`${path}: after writing, ${problem ?? `mode is ${(st.mode & 0o777).toString(8)}, not ${s.mode.toString(8)}`}`);
    installed.push(`${path} (${s.mode.toString(8)}, root)`);
  }
  // the node health check (wnod status --for torque): the shim runs wnod's CLI, not the hooks' bundle
  const nodeCheck = join(momPriv, NODE_CHECK_NAME);
  await writeFileAtomic(nodeCheck, renderShim(await readFile(join(prefix, 'lrm-hooks', 'node-check'), 'utf8'),
    { node: process.execPath, entry: join(prefix, 'dist', 'cli', 'main.js'), config: configPath, log: cfg.logFile, state: cfg.vm.stateDir }), NODE_CHECK_MODE);
  await chown(nodeCheck, 0, 0);
  installed.push(`${nodeCheck} (${NODE_CHECK_MODE.toString(8)}, root)`);
  const check = nodeCheckLines(nodeCheck, foreignNodeCheck(existing, nodeCheck));
  const starter = join(momPriv, 'wnod-starter');
  const momLines = [...momConfigLines(cfg, starter), ...check.lines];
  const out: string[] = ['installed:', ...installed.map((l) => `  ${l}`)];
  if (check.note) out.push(`note: ${check.note}`);
  if (values.apply) {
    await writeFileAtomic(cfgFile, mergeMomConfig(existing, momLines), 0o644);
    out.push(`wrote to ${cfgFile} (restart pbs_mom to apply):`, ...momLines.map((l) => `  ${l}`));
  } else {
    out.push(`add to ${join(momPriv, 'config')} (or rerun with --apply), then restart pbs_mom:`, ...momLines.map((l) => `  ${l}`));
  }
  out.push('on the Torque server, run with qmgr:', ...qmgrLines(cfg).map((l) => `  ${l}`));
  // the cheap check on every acquire cannot see all damage at rest: re-hash the whole cache now and then
  out.push('schedule a full re-hash of the image cache (corrupt files are removed and fetched again on next use), e.g. /etc/cron.d/wnod:',
    `  ${cacheVerifyCronLine(process.execPath, join(prefix, 'dist', 'cli', 'main.js'), configPath)}`);
  if (cfg.lrm.jobClass) out.push(`jobs reach these hooks with \`qsub -T ${cfg.lrm.jobClass}\` (the submit filter adds it)`);
  process.stdout.write(out.join('\n') + '\n');
  return 0;
}

/** The cron line for the weekly `wnod cache verify` (Sunday 03:17, as root, quiet unless something is wrong). Pure. */
export function cacheVerifyCronLine(node: string, cli: string, config: string): string {
  return `17 3 * * 0 root ${node} ${cli} cache verify --config ${config} >/dev/null`;
}
