// `wnod install <target>`: put wnod's hooks where the software around it looks for them. One module per target,
// loaded on demand; the target parses its own flags.
import { parseCommandLine, runSubcommand } from './args.js';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, UsageError } from '../util/errors.js';

export const summary = 'install the hooks: into BDII (install bdii), into pbs_mom (install torque), into slurmd (install slurm), into BLAH (install blah)';

type Target = { summary: string; run(argv: string[]): Promise<number> };

/** Target name → runner; each parses its own flags. */
const targets: Record<string, () => Promise<Target>> = {
  bdii: async () => ({ summary: BDII_SUMMARY, run: installBdiiCommand }),
  torque: () => import('./install-torque.js'),
  slurm: () => import('./install-slurm.js'),
  blah: () => import('./install-blah.js'),
};

const BDII_SUMMARY = 'write the GLUE plugin and provider shims into <gip-dir>/plugin and <gip-dir>/provider';
const BDII_USAGE = `usage: wnod install bdii --gip-dir DIR [--config FILE] [--prefix INSTALL_DIR] [--node PATH] [--last-good FILE]
  ${BDII_SUMMARY}
  --gip-dir DIR      BDII's gip directory (/var/lib/bdii/gip)
  --config FILE      site config the shims pass on (default /etc/wnod/wnod.yaml)
  --prefix DIR       wnod install dir holding dist/ (default: this wnod)
  --node PATH        node binary the shims exec (default: this node)
  --last-good FILE   last good output base path (default: glue.last_good_file of the config)
  --bdii-user USER   the user bdii-update runs as (BDII_USER, default openldap): it must be able to write the
                     last-good directory, which is created for it when missing
`;

/** The wnod install dir this CLI runs from (dist/cli/install.js → ../..). */
function thisPrefix(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
}

async function installBdiiCommand(argv: string[]): Promise<number> {
  const { values } = parseCommandLine({
    args: argv, strict: true, allowPositionals: false,
    options: {
      'gip-dir': { type: 'string' }, config: { type: 'string' }, prefix: { type: 'string' },
      node: { type: 'string' }, 'last-good': { type: 'string' }, 'bdii-user': { type: 'string' },
    },
  }, BDII_USAGE);
  if (!values['gip-dir']) throw new UsageError(`--gip-dir is required\n${BDII_USAGE}`);
  const { DEFAULT_SHIM_PARAMS, installBdii, prepareLastGoodDir } = await import('../glue/install-bdii.js');
  const config = values.config ?? DEFAULT_SHIM_PARAMS.config;
  let lastGood = values['last-good'];
  if (lastGood === undefined) {
    // The shim names the last-good file itself so that it can be found when the config cannot be read.
    try {
      const { loadConfig } = await import('../config/load.js');
      lastGood = (await loadConfig(config)).glue.lastGoodFile;
    } catch (err) {
      lastGood = DEFAULT_SHIM_PARAMS.lastGood;
      process.stderr.write(`wnod install bdii: note: cannot read ${config} (${describe(err).split('\n')[0]}); using --last-good ${lastGood}\n`);
    }
  }
  const files = await installBdii(values['gip-dir'], {
    node: values.node ?? process.execPath,
    prefix: values.prefix ?? thisPrefix(),
    config,
    lastGood,
  });
  for (const f of files) process.stdout.write(`installed ${f}\n`);
  const note = await prepareLastGoodDir(lastGood, values['bdii-user'] ?? 'openldap');
  if (note) process.stdout.write(`${note}\n`);
  return 0;
}

export const subcommands = Object.keys(targets);

export async function run(argv: string[]): Promise<number> {
  const names = Object.keys(targets).sort();
  const lines = await Promise.all(names.map(async (n) => `  ${n.padEnd(6)}  ${(await targets[n]!()).summary}`));
  const help = ['usage: wnod install <target> [options]   (wnod install <target> --help for its options)', '', 'targets:', ...lines].join('\n');
  const handlers = Object.fromEntries(names.map((n) => [n, async (rest: string[]) => (await targets[n]!()).run(rest)]));
  return runSubcommand('install', argv, handlers, help);
}
