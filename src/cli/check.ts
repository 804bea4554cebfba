import { parseCommandLine } from './args.js';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError, DEFAULT_CONFIG_PATH, loadConfig } from '../config/load.js';
import type { SiteConfig } from '../config/types.js';
import { unprivilegedPortStart } from '../job/leasePorts.js';
import { momConfigRunsPrivileged } from '../lrm/torque/install.js';
import { egiProfileWarnings } from '../glue/egiProfile.js';
import { accelStatus, probeAccelNow, type AccelStatus } from '../vm/accel.js';

export const summary = 'validate the site config and report every problem at once';

/** where pbs_mom keeps its config when neither --mom-priv nor lrm.mom_priv says */
export const DEFAULT_MOM_PRIV = '/var/spool/torque/mom_priv';

const USAGE = `usage: wnod check [--config FILE] [--json] [--probe] [--mom-priv DIR]
${summary}, and say which accelerator this node's VMs get and why (--probe: run the KVM probe now if no verdict is
cached; root). A Torque node's mom config (DIR/config; default lrm.mom_priv, else ${DEFAULT_MOM_PRIV}) must not start
the job starter as root. Exit 0 when valid, 1 otherwise`;

/** Checks of the host around a valid config: paths that must exist, the ticket key's mode. Warnings only:
 * a CE has no cache dir and a worker node needs no vomsdir. */
async function hostWarnings(cfg: SiteConfig): Promise<string[]> {
  const out: string[] = [];
  for (const [key, dir] of [['trust.vomsdir', cfg.trust.vomsdir], ['trust.certdir', cfg.trust.certdir]] as const) {
    const s = await stat(dir).catch(() => undefined);
    if (!s?.isDirectory()) out.push(`${key}: ${dir} is not a directory (needed on the CE to verify proxies)`);
  }
  const start = await unprivilegedPortStart();
  if (start <= cfg.lease.portMax) {
    out.push(`lease.port_min..port_max: net.ipv4.ip_unprivileged_port_start is ${start}, so any local user can bind lease ports and deny every lease; this node refuses leases until it is above ${cfg.lease.portMax}`);
  }
  const k = await stat(cfg.ticket.keyFile).catch(() => undefined);
  if (!k) out.push(`ticket.key_file: ${cfg.ticket.keyFile} does not exist (create it with: wnod ticket key --out ${cfg.ticket.keyFile})`);
  else if (k.mode & 0o004) out.push(`ticket.key_file: ${cfg.ticket.keyFile} is readable by others: the filter and the prologue will refuse it`);
  else if (k.mode & 0o040) out.push(`ticket.key_file: ${cfg.ticket.keyFile} is group-readable: only a CE with ticket.key_group accepts that; worker nodes refuse it`);
  return out;
}

/** Errors of the node around a valid config (exit 1): a privileged job starter in the mom config. */
async function hostErrors(cfg: SiteConfig, momPriv: string | undefined): Promise<string[]> {
  const dir = momPriv ?? (cfg.lrm.type === 'torque' ? cfg.lrm.momPriv : DEFAULT_MOM_PRIV);
  const path = join(dir, 'config');
  const text = await readFile(path, 'utf8').catch(() => undefined);
  if (text === undefined || !momConfigRunsPrivileged(text)) return [];
  return [`${path}: $job_starter_run_privileged is on: pbs_mom starts the job starter as root with the job's own environment, so a job's PATH or LD_PRELOAD runs its code as root; remove the line (wnod never needs it) and restart pbs_mom`];
}

/** One line for people: what this node's VMs get, why, and since when. Pure. */
export function accelLine(a: AccelStatus): string {
  const what = a.accel === 'unknown' ? 'not decided yet' : a.accel === 'kvm' ? 'KVM (hardware virtualisation)' : 'TCG (software emulation, much slower)';
  return `accelerator: jobs on this node get ${what} — ${a.reason}${a.at ? ` (probed ${a.at}${a.probeMs !== undefined ? `, ${(a.probeMs / 1000).toFixed(1)} s` : ''})` : ''}`;
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandLine({ args: argv, options: { config: { type: 'string' }, json: { type: 'boolean' }, probe: { type: 'boolean' }, 'mom-priv': { type: 'string' } }, strict: true, allowPositionals: false }, USAGE);
  const path = values.config ?? DEFAULT_CONFIG_PATH;
  try {
    const cfg = await loadConfig(path);
    const warnings = [...egiProfileWarnings(cfg), ...await hostWarnings(cfg)];
    const errors = await hostErrors(cfg, values['mom-priv']);
    const accelOpts = { stateDir: cfg.vm.stateDir, mode: cfg.vm.accel };
    const accel = values.probe ? await probeAccelNow(accelOpts) : await accelStatus(accelOpts);
    if (values.json) {
      process.stdout.write(JSON.stringify({ ok: errors.length === 0, file: path, images: cfg.images.map((i) => i.id), rules: cfg.policy.rules.map((r) => r.name), errors, warnings, accel }) + '\n');
    } else {
      process.stdout.write(`${path}: ${errors.length ? 'the config is valid, the node is not' : 'OK'} — ${cfg.images.length} images (${cfg.images.map((i) => i.id).join(', ')}), ${cfg.policy.rules.length} rules\n`);
      process.stdout.write(`${accelLine(accel)}\n`);
      for (const e of errors) process.stdout.write(`error: ${e}\n`);
      for (const w of warnings) process.stdout.write(`warning: ${w}\n`);
    }
    return errors.length ? 1 : 0;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    if (values.json) {
      process.stdout.write(JSON.stringify({ ok: false, file: path, problems: err.problems }) + '\n');
    } else {
      process.stderr.write(`${err.message}\n${err.problems.length} problem${err.problems.length === 1 ? '' : 's'} in ${path}\n`);
    }
    return 1;
  }
}
