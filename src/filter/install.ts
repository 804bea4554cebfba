/** Installing the CE side (pure parts): the submit-attributes shim BLAH sources and the qsub/sbatch wrapper for its
 * binpath, rendered from the templates in plugins/ with every path baked in (a job can set any shell variable in the
 * shell that sources the shim, so the shim reads none). The CLI (src/cli/install-blah.ts) does the I/O. */
import type { LrmType } from '../config/types.js';
import { checkShimPath, InstallError } from '../lrm/torque/install.js';

export interface BlahInstallPlan {
  /** file name BLAH looks for in its libexec dir (prelz) or ~/.blah, /etc/blahp (HTCondor-CE blahp) */
  shim: string;
  /** the submit command BLAH runs from its binpath, which the wrapper replaces */
  submit: 'qsub' | 'sbatch';
  /** the other commands BLAH runs from the same binpath: linked to the real ones beside the wrapper */
  companions: string[];
  /** blah.config's name for the binpath */
  binpathKey: 'pbs_binpath' | 'slurm_binpath';
}

export function blahPlan(lrm: LrmType): BlahInstallPlan {
  return lrm === 'slurm'
    ? { shim: 'slurm_local_submit_attributes.sh', submit: 'sbatch', binpathKey: 'slurm_binpath',
        companions: ['scancel', 'scontrol', 'squeue', 'sacct', 'sinfo', 'salloc', 'srun'] }
    : { shim: 'pbs_local_submit_attributes.sh', submit: 'qsub', binpathKey: 'pbs_binpath',
        companions: ['qstat', 'qdel', 'qhold', 'qrls', 'qalter', 'qsig', 'qselect', 'tracejob', 'pbsnodes'] };
}

function fill(template: string, values: Record<string, string>): string {
  let out = template;
  for (const [k, v] of Object.entries(values)) out = out.replaceAll(`@${k}@`, v);
  if (/@[A-Z_]+@/.test(out)) throw new InstallError(`template has an unknown placeholder ${/@[A-Z_]+@/.exec(out)![0]}`);
  return out;
}

/** The submit-attributes shim with absolute paths (pure). */
export function renderFilterShim(template: string, p: { node: string; filter: string; config: string; log?: string | undefined }): string {
  return fill(template, {
    NODE: checkShimPath(p.node, 'node binary'), FILTER: checkShimPath(p.filter, 'filter entry'),
    CONFIG: checkShimPath(p.config, 'config file'), LOG: p.log ? `--log ${checkShimPath(p.log, 'filter log')} ` : '',
  });
}

/** The qsub/sbatch wrapper with absolute paths (pure). */
export function renderSubmitWrapper(template: string, p: { node: string; gate: string; real: string; allowUnfiltered: boolean }): string {
  return fill(template, {
    NODE: checkShimPath(p.node, 'node binary'), GATE: checkShimPath(p.gate, 'gate entry'),
    REAL: checkShimPath(p.real, 'real submit command'),
    GATE_FLAGS: p.allowUnfiltered ? '--allow-unfiltered ' : '', ALLOW_UNFILTERED: p.allowUnfiltered ? 'yes' : 'no',
  });
}

/** What blah.config must say for the installed files (printed by the installer). */
export function blahConfigLines(plan: BlahInstallPlan, binDir: string): string[] {
  // blahpd reads blah.config as `. blah.config; set` through /bin/sh. dash cannot assign `x[0]=…` (the pass list
  // would be empty), but both shells print this scalar back in single quotes, which blahpd strips, and blahpd
  // reads a value of the form ([0]="a" [1]="b") as an array: one spelling for every /bin/sh.
  return [
    `${plan.binpathKey}=${binDir}`,
    `blah_pass_submit_attributes='([0]="x509userproxy" [1]="x509UserProxyFQAN")'`,
  ];
}
