/** Installing the Torque hooks (pure parts): the shim text, the file names and modes pbs_mom demands, the mom
 * config and qmgr lines. The CLI (src/cli/install-torque.ts) does the I/O. */
import type { SiteConfig } from '../../config/types.js';
import { WnodError } from '../../util/errors.js';

export class InstallError extends WnodError {
  constructor(message: string) {
    super('install', message);
  }
}

/** Paths baked into a shell script: refuse anything a shell would interpret (the shim has no quoting to break). */
const SAFE_PATH = /^\/[A-Za-z0-9._/+-]*$/;

export function checkShimPath(value: string, what: string): string {
  if (!SAFE_PATH.test(value) || value.split('/').includes('..')) throw new InstallError(`${what} ${JSON.stringify(value)} must be an absolute path of [A-Za-z0-9._/+-] without '..'`);
  return value;
}

/** What a shim has baked in: the node binary, the hook entry, the config, the root-only log for faults before the
 * config is read (the config's log_file at install time) and the state dir whose markers the starter looks for. */
export interface ShimPaths { node: string; entry: string; config: string; log: string; state: string }

/** Fill a shim template from lrm-hooks/ (pure). */
export function renderShim(template: string, paths: ShimPaths): string {
  const out = template
    .replaceAll('@NODE@', checkShimPath(paths.node, 'node binary'))
    .replaceAll('@ENTRY@', checkShimPath(paths.entry, 'hook entry'))
    .replaceAll('@CONFIG@', checkShimPath(paths.config, 'config file'))
    .replaceAll('@LOG@', checkShimPath(paths.log, 'log_file'))
    .replaceAll('@STATE@', checkShimPath(paths.state, 'vm.state_dir'));
  if (/@[A-Z]+@/.test(out)) throw new InstallError('shim template has an unknown placeholder');
  return out;
}

export interface ShimPlan {
  /** the template in lrm-hooks/ */
  hook: 'prologue' | 'epilogue' | 'starter' | 'prologue-parallel' | 'epilogue-parallel';
  /** file name inside mom_priv */
  name: string;
  mode: number;
}

/** Which files go into mom_priv: `prologue.<class>`/`epilogue.<class>` when a job class is configured (so plain
 * jobs keep the site's own hooks), the sister hosts' `prologue.parallel`/`epilogue.parallel` of multi-node jobs
 * (Torque has no per-class variant: they leave jobs outside lrm.queue alone), and the starter (run by the job
 * user: o+rx). */
export function shimPlan(cfg: Pick<SiteConfig, 'lrm'>): ShimPlan[] {
  const suffix = cfg.lrm.jobClass ? `.${cfg.lrm.jobClass}` : '';
  return [
    { hook: 'prologue', name: `prologue${suffix}`, mode: 0o500 },
    { hook: 'epilogue', name: `epilogue${suffix}`, mode: 0o500 },
    { hook: 'prologue-parallel', name: 'prologue.parallel', mode: 0o500 },
    { hook: 'epilogue-parallel', name: 'epilogue.parallel', mode: 0o500 },
    { hook: 'starter', name: 'wnod-starter', mode: 0o555 },
  ];
}

/** pbs_mom's rule (DESIGN A2), used to verify what we wrote: uid 0, u+rx, not g/o-writable; user-run files o+rx. */
export function permissionProblem(st: { uid: number; mode: number; isFile: boolean }, runBy: 'root' | 'user'): string | undefined {
  if (!st.isFile) return 'not a regular file';
  if (st.uid !== 0) return `owner uid ${st.uid} is not 0`;
  if ((st.mode & 0o500) !== 0o500) return `mode ${(st.mode & 0o777).toString(8)} lacks u+rx`;
  if (st.mode & 0o022) return `mode ${(st.mode & 0o777).toString(8)} is group/other writable`;
  if (runBy === 'user' && (st.mode & 0o005) !== 0o005) return `mode ${(st.mode & 0o777).toString(8)} lacks o+rx`;
  return undefined;
}

/** `$prologalarm` that fits the prologue budget: pbs_mom SIGKILLs the hook 10 s early; keep 10 s more of slack. */
export function prologAlarmFor(cfg: Pick<SiteConfig, 'lrm'>): number {
  return cfg.lrm.prologueBudgetS + 20;
}

/** kill_delay above the VM stop grace, so qdel's SIGKILL does not cut the guest's shutdown short. */
export function killDelayFor(cfg: Pick<SiteConfig, 'vm'>): number {
  return cfg.vm.stopGraceS + 20;
}

/** The mom config lines wnod needs. */
export function momConfigLines(cfg: Pick<SiteConfig, 'lrm'>, starterPath: string): string[] {
  return [`$prologalarm ${prologAlarmFor(cfg)}`, `$job_starter ${starterPath}`];
}

/** The qmgr lines for the server (printed: the server is not on this node). */
export function qmgrLines(cfg: Pick<SiteConfig, 'lrm' | 'vm'>): string[] {
  const q = cfg.lrm.queue;
  if (!q) return [`# no lrm.queue configured: raise kill_delay on the queue(s) wnod jobs use, e.g.`, `# set queue batch kill_delay = ${killDelayFor(cfg)}`];
  return [`create queue ${q} queue_type = execution`, `set queue ${q} kill_delay = ${killDelayFor(cfg)}`, `set queue ${q} enabled = true`, `set queue ${q} started = true`];
}

/** Whether a mom config turns `$job_starter_run_privileged` on (pure): pbs_mom then starts the job starter as root
 * with the job's whole environment (PATH, LD_PRELOAD…), so user code runs as root before any wnod code does.
 * As pbs_mom's setbool (parse_config.c) reads it: true when the value starts with t, y or 1 (any case), or is
 * `on`; the last line wins. */
export function momConfigRunsPrivileged(text: string): boolean {
  let on = false;
  for (const line of text.split('\n')) {
    const m = /^\s*\$job_starter_run_privileged\s+(\S+)/.exec(line);
    if (m) on = /^([ty1]|on$)/i.test(m[1]!);
  }
  return on;
}

/** Merge our directives into an existing mom config (pure): our directives replace earlier ones of the same name.
 * A config that runs the job starter as root is refused: pbs_mom would start it with the job's whole environment. */
export function mergeMomConfig(existing: string, lines: readonly string[]): string {
  if (momConfigRunsPrivileged(existing)) {
    throw new InstallError('mom_priv/config sets $job_starter_run_privileged: pbs_mom would run the job starter as root with the job\'s environment (LD_PRELOAD, PATH). wnod refuses that mode: remove the line, then rerun');
  }
  const ours = new Set(lines.map((l) => l.split(/\s+/)[0]));
  const kept = existing.split('\n').filter((l) => !ours.has(l.trim().split(/\s+/)[0] ?? ''));
  while (kept.length > 0 && kept.at(-1) === '') kept.pop();
  return [...kept, '# wnod (wnod install torque)', ...lines].join('\n') + '\n';
}
