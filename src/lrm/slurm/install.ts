/** Installing wnod on a Slurm node (pure parts): where the files go, the shims' text, the slurm.conf lines merged
 * into an existing slurm.conf, and plugstack.conf. The CLI (src/cli/install-slurm.ts) does the I/O. */
import { dirname, join } from 'node:path';
import type { SiteConfig } from '../../config/types.js';
import { WnodError } from '../../util/errors.js';
import { slurmStateDir } from './marks.js';

export class SlurmInstallError extends WnodError {
  constructor(message: string) {
    super('install', message);
  }
}

/** Paths baked into a shell script or a plugstack.conf line: nothing a shell or Slurm's parser would interpret. */
const SAFE_PATH = /^\/[A-Za-z0-9._/+-]*$/;

export function checkInstallPath(value: string, what: string): string {
  if (!SAFE_PATH.test(value) || value.split('/').includes('..')) throw new SlurmInstallError(`${what} ${JSON.stringify(value)} must be an absolute path of [A-Za-z0-9._/+-] without '..'`);
  return value;
}

/** Where everything goes on a node. */
export interface SlurmLayout {
  hookDir: string;
  prolog: string;
  epilog: string;
  runner: string;
  /** HealthCheckProgram: `wnod status --for slurm` (drains the node when it cannot boot VMs) */
  health: string;
  plugin: string;
  /** the Prolog's marks, read by the SPANK plugin as the job user: root-owned 0755 */
  marks: string;
  plugstack: string;
}

export function slurmLayout(cfg: Pick<SiteConfig, 'lrm' | 'vm'>, slurmConf: string): SlurmLayout {
  const hookDir = checkInstallPath(cfg.lrm.hookDir ?? '/usr/local/lib/wnod/slurm', 'lrm.hook_dir');
  return {
    hookDir,
    prolog: join(hookDir, 'prolog'),
    epilog: join(hookDir, 'epilog'),
    runner: join(hookDir, 'runner'),
    health: join(hookDir, 'health'),
    plugin: join(hookDir, 'wnod_spank.so'),
    marks: checkInstallPath(slurmStateDir(cfg.vm.stateDir), 'vm.state_dir'),
    plugstack: join(dirname(checkInstallPath(slurmConf, '--slurm-conf')), 'plugstack.conf'),
  };
}

export type SlurmShim = 'prolog' | 'epilog' | 'runner' | 'health';

/** The files `--apply` writes into hook_dir, with their modes: root hooks 0500, the runner (exec'd by the job user)
 * and the plugin (loaded by slurmstepd, which runs it as the user) world-readable. */
export const SHIM_MODES: Record<SlurmShim, number> = { prolog: 0o500, epilog: 0o500, runner: 0o555, health: 0o500 };
export const PLUGIN_MODE = 0o755;

/** Fill a shim template from lrm-hooks/slurm/ (pure). */
export function renderSlurmShim(template: string, v: { node: string; entry: string; config: string; slurmConf: string; partition: string }): string {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(v.partition)) throw new SlurmInstallError(`partition ${JSON.stringify(v.partition)} is not a partition name`);
  const out = template
    .replaceAll('@NODE@', checkInstallPath(v.node, 'node binary'))
    .replaceAll('@ENTRY@', checkInstallPath(v.entry, 'hook entry'))
    .replaceAll('@CONFIG@', checkInstallPath(v.config, 'config file'))
    .replaceAll('@SLURM_CONF@', checkInstallPath(v.slurmConf, 'slurm.conf'))
    .replaceAll('@PARTITION@', v.partition);
  if (/@[A-Z_]+@/.test(out)) throw new SlurmInstallError('shim template has an unknown placeholder');
  return out;
}

/** plugstack.conf's line for the plugin. */
export function plugstackLine(l: SlurmLayout): string {
  return `required ${l.plugin} runner=${l.runner} marks=${l.marks}`;
}

/** plugstack.conf with our line in place of any earlier one for the same plugin; the site's lines kept (pure). */
export function mergePlugstack(existing: string, l: SlurmLayout): string {
  const keep = existing.split('\n').filter((line) => {
    const words = line.trim().split(/\s+/);
    return !(words[1] === l.plugin || line.trim() === '# wnod SPANK plugin (wnod install slurm)');
  });
  while (keep.length > 0 && keep[keep.length - 1] === '') keep.pop();
  return [...keep, '# wnod SPANK plugin (wnod install slurm)', plugstackLine(l), ''].join('\n');
}

export interface SlurmConfPlan {
  /** the new slurm.conf text */
  text: string;
  /** what changed, one line each, for the operator */
  changes: string[];
  /** what the operator must do by hand (a health check of the site's own already configured) */
  notes: string[];
}

/** HealthCheckInterval wnod sets when slurm.conf has none: `wnod status` is cheap (no VM boots, no locks). */
export const HEALTH_CHECK_INTERVAL_S = 60;

const MANAGED = '# wnod (wnod install slurm): root Prolog admits wnod jobs and starts their VMs; Epilog destroys them';

/** A top-level `Key=Value` line of slurm.conf (keys are case-insensitive; NodeName/PartitionName lines are not ours). */
function keyOf(line: string): { key: string; value: string } | undefined {
  const m = /^\s*([A-Za-z]+)\s*=\s*(\S*)\s*(#.*)?$/.exec(line);
  return m ? { key: m[1]!.toLowerCase(), value: m[2]! } : undefined;
}

/** Merge wnod's lines into slurm.conf (pure): Prolog= and Epilog= pointing at our shims (a different hook already
 * configured is an error: Slurm 22.05 runs one of each), PrologFlags gains Alloc (the VM boots at allocation, before
 * the batch step), a PlugStackConfig elsewhere than beside slurm.conf is an error (plugstack.conf goes there), and a
 * PrologEpilogTimeout below the VM start budget is an error (the Prolog would be killed and the node drained). */
export function mergeSlurmConf(existing: string, l: SlurmLayout, budgetS: number, healthIntervalS = HEALTH_CHECK_INTERVAL_S): SlurmConfPlan {
  const lines = existing.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  const changes: string[] = [];
  const notes: string[] = [];
  const add: string[] = [];
  const found = new Map<string, number>();
  lines.forEach((line, i) => {
    const kv = keyOf(line);
    if (!kv) return;
    if (found.has(kv.key)) throw new SlurmInstallError(`slurm.conf sets ${kv.key} twice (lines ${found.get(kv.key)! + 1} and ${i + 1})`);
    found.set(kv.key, i);
  });
  const val = (key: string) => { const i = found.get(key); return i === undefined ? undefined : keyOf(lines[i]!)!.value; };

  for (const [key, name, want] of [['prolog', 'Prolog', l.prolog], ['epilog', 'Epilog', l.epilog]] as const) {
    const have = val(key);
    if (have === undefined) add.push(`${name}=${want}`);
    else if (have !== want) throw new SlurmInstallError(`slurm.conf already has ${name}=${have}: Slurm 22.05 runs one ${name}; call it from a script of your own or remove it, then rerun`);
  }
  const flags = val('prologflags');
  if (flags === undefined) add.push('PrologFlags=Alloc');
  else if (!flags.split(',').some((f) => f.toLowerCase() === 'alloc')) {
    const i = found.get('prologflags')!;
    lines[i] = `PrologFlags=${[...flags.split(',').filter(Boolean), 'Alloc'].join(',')}`;
    changes.push(`line ${i + 1}: PrologFlags=${flags} → ${lines[i]!.slice('PrologFlags='.length)}`);
  }
  const plugstack = val('plugstackconfig');
  if (plugstack !== undefined && plugstack !== l.plugstack) throw new SlurmInstallError(`slurm.conf has PlugStackConfig=${plugstack}; wnod writes ${l.plugstack} (beside slurm.conf): remove the line or point it there`);
  const timeout = val('prologepilogtimeout');
  if (timeout !== undefined && (!/^\d+$/.test(timeout) || Number(timeout) < budgetS + 30)) {
    throw new SlurmInstallError(`slurm.conf has PrologEpilogTimeout=${timeout}: the VM start may take lrm.prologue_budget_s=${budgetS} s; set it to at least ${budgetS + 30} (or remove it: the default is unlimited)`);
  }
  // node health (wnod status --for slurm drains the node itself): Slurm runs one HealthCheckProgram, so a site's
  // own (e.g. LBNL NHC) is kept and told to call ours; an interval already set is the site's choice
  const hc = val('healthcheckprogram');
  if (hc === undefined) add.push(`HealthCheckProgram=${l.health}`);
  else if (hc !== l.health) notes.push(`slurm.conf already has HealthCheckProgram=${hc} (Slurm runs one): have it run ${l.health} too`);
  const interval = val('healthcheckinterval');
  if (interval === undefined) add.push(`HealthCheckInterval=${healthIntervalS}`);
  else if (interval === '0') notes.push('slurm.conf has HealthCheckInterval=0: the health check never runs, so a node that cannot boot VMs is not drained');
  if (add.length > 0) {
    const at = lines.indexOf(MANAGED);
    if (at >= 0) lines.splice(at + 1, 0, ...add);
    else lines.push(MANAGED, ...add);
    changes.push(...add.map((a) => `add ${a}`));
  }
  return { text: lines.join('\n') + '\n', changes, notes };
}

/** The compiler command for the plugin (argv; the source and output are absolute paths). */
export function pluginBuildArgs(source: string, output: string): string[] {
  return ['-shared', '-fPIC', '-O2', '-Wall', '-Wextra', '-o', checkInstallPath(output, 'plugin output'), checkInstallPath(source, 'plugin source')];
}
