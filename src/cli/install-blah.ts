/** `wnod install blah --blah-dir DIR --bin-dir DIR [--real PATH] [--config FILE] [--prefix DIR] [--node PATH]
 * [--filter-log FILE] [--allow-unfiltered]`: write the submit-attributes shim where BLAH looks for it and the
 * qsub/sbatch wrapper (with links to the LRM's other commands) for BLAH's binpath, every path baked in; print the
 * blah.config lines. The batch system comes from the config's `lrm.type`. */
import { parseCommandLine } from './args.js';
import { readFile, lstat, stat, symlink, rename, unlink, access, constants } from 'node:fs/promises';
import { join, resolve, dirname, basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../util/errors.js';
import { writeFileAtomic } from '../util/atomic.js';
import { assertTrustedPath } from '../util/trustedPath.js';
import { InstallError, checkShimPath } from '../lrm/torque/install.js';
import { blahConfigLines, blahPlan, renderFilterShim, renderSubmitWrapper } from '../filter/install.js';

export const summary = 'install the submit filter shim and the qsub/sbatch wrapper for BLAH (CREAM or HTCondor-CE)';

const HELP = `usage: wnod install blah --blah-dir DIR --bin-dir DIR [--real PATH] [--config FILE] [--prefix DIR] [--node PATH]
                         [--filter-log FILE] [--allow-unfiltered]
  ${summary}; the batch system is the config's lrm.type (torque: qsub, slurm: sbatch)
  --blah-dir DIR      where BLAH looks for <lrms>_local_submit_attributes.sh: \${blah_libexec_directory} (prelz,
                      CREAM) or /etc/blahp (HTCondor-CE blahp)
  --bin-dir DIR       a directory of its own for the wrapper (pbs_binpath / slurm_binpath in blah.config)
  --real PATH         the real qsub or sbatch (default /usr/local/bin/qsub for torque, /usr/bin/sbatch for slurm)
  --config FILE       the site config the filter reads (default /etc/wnod/wnod.yaml)
  --prefix DIR        where wnod is installed (holds dist/hot; default: this installation)
  --node PATH         the node binary (default: this node)
  --filter-log FILE   the filter appends one line per decision there (must be writable by BLAH's accounts)
  --allow-unfiltered  let the wrapper pass scripts with neither a wnod ticket nor a deny marker (default: refuse
                      them: BLAH skipped the filter)
`;

function defaultPrefix(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
}

async function mustExist(path: string, what: string): Promise<void> {
  await stat(path).catch(() => { throw new InstallError(`${what} ${path} does not exist`); });
}

/** Point `link` at `target`, replacing what is there (atomically, through a temp name). */
async function linkAtomic(target: string, link: string): Promise<void> {
  const tmp = join(dirname(link), `.${basename(link)}.${process.pid}.tmp`);
  await unlink(tmp).catch(() => {});
  await symlink(target, tmp);
  await rename(tmp, link).catch(async (err) => { await unlink(tmp).catch(() => {}); throw err; });
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandLine({
    args: argv, strict: true, allowPositionals: false,
    options: {
      'blah-dir': { type: 'string' }, 'bin-dir': { type: 'string' }, real: { type: 'string' }, config: { type: 'string' },
      prefix: { type: 'string' }, node: { type: 'string' }, 'filter-log': { type: 'string' },
      'allow-unfiltered': { type: 'boolean' },
    },
  }, HELP);
  if (!values['blah-dir'] || !values['bin-dir']) throw new UsageError(`--blah-dir and --bin-dir are required\n${HELP}`);
  const blahDir = checkShimPath(resolve(values['blah-dir']), '--blah-dir');
  const binDir = checkShimPath(resolve(values['bin-dir']), '--bin-dir');
  const configPath = checkShimPath(resolve(values.config ?? '/etc/wnod/wnod.yaml'), '--config');
  const prefix = checkShimPath(resolve(values.prefix ?? defaultPrefix()), '--prefix');
  const node = checkShimPath(resolve(values.node ?? process.execPath), '--node');
  const log = values['filter-log'] !== undefined ? checkShimPath(resolve(values['filter-log']), '--filter-log') : undefined;

  const { loadConfig } = await import('../config/load.js');
  const cfg = await loadConfig(configPath);
  const plan = blahPlan(cfg.lrm.type);
  const real = checkShimPath(resolve(values.real ?? (plan.submit === 'qsub' ? '/usr/local/bin/qsub' : '/usr/bin/sbatch')), '--real');
  if (dirname(real) === binDir) throw new InstallError(`--real ${real} is inside --bin-dir: the wrapper would call itself`);
  await access(real, constants.X_OK).catch(() => { throw new InstallError(`--real ${real} is not an executable ${plan.submit}`); });
  const filter = join(prefix, 'dist', 'hot', 'filter.cjs');
  const gate = join(prefix, 'dist', 'hot', 'gate.cjs');
  for (const [p, what] of [[filter, 'filter entry'], [gate, 'gate entry']] as const) {
    await mustExist(p, what).catch(() => { throw new InstallError(`${p} does not exist: build wnod first (npm run build) or give --prefix`); });
  }
  // What BLAH's accounts will run and read must not be writable by them or anyone else but root.
  for (const [p, what] of [[node, '--node'], [real, '--real'], [filter, 'filter entry'], [gate, 'gate entry'], [configPath, '--config'], [blahDir, '--blah-dir'], [binDir, '--bin-dir']] as const) {
    await assertTrustedPath(p, what).catch((err: Error) => { throw new InstallError(err.message); });
  }
  for (const [d, what] of [[blahDir, '--blah-dir'], [binDir, '--bin-dir']] as const) {
    const st = await lstat(d).catch(() => { throw new InstallError(`${what} ${d} does not exist`); });
    if (!st.isDirectory()) throw new InstallError(`${what} ${d} is not a directory`);
  }

  const shimPath = join(blahDir, plan.shim);
  const shimText = renderFilterShim(await readFile(join(prefix, 'plugins', plan.shim), 'utf8'), { node, filter, config: configPath, log });
  await writeFileAtomic(shimPath, shimText, 0o644);
  const wrapperPath = join(binDir, plan.submit);
  const wrapperText = renderSubmitWrapper(await readFile(join(prefix, 'plugins', plan.submit), 'utf8'),
    { node, gate, real, allowUnfiltered: values['allow-unfiltered'] === true });
  await writeFileAtomic(wrapperPath, wrapperText, 0o755);
  const linked: string[] = [];
  for (const c of plan.companions) {
    const target = join(dirname(real), c);
    if (await access(target, constants.X_OK).then(() => true, () => false)) {
      await linkAtomic(target, join(binDir, c));
      linked.push(c);
    }
  }
  const out = [
    'installed:',
    `  ${shimPath} (sourced by BLAH's temp script; paths baked in)`,
    `  ${wrapperPath} (runs ${real}; ${values['allow-unfiltered'] ? 'passes' : 'refuses'} scripts the filter did not see)`,
    ...(linked.length ? [`  ${binDir}/{${linked.join(',')}} -> ${dirname(real)}/`] : []),
    'in blah.config (these lines also work where /bin/sh is dash: blahpd reads the file through /bin/sh):',
    ...blahConfigLines(plan, binDir).map((l) => `  ${l}`),
    'on a prelz BLAH (CREAM) where /bin/sh is dash, BLAH must run its temp script with /bin/bash: see the README',
  ];
  process.stdout.write(out.join('\n') + '\n');
  return 0;
}
