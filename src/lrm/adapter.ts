/** The LRM adapter: how `wnod lease` talks to the batch system (submit a pilot, cancel it, ask after it). Torque
 * (src/lrm/torque/adapter.ts) implements it with qsub/qdel/qstat, Slurm (src/lrm/slurm/adapter.ts) with
 * sbatch/squeue/scancel; src/lrm/adapters.ts picks one by lrm.type. Tests point Torque's at a fake batch system
 * (test/kit/fakeLrm.ts) and run Slurm's against a real Slurm (test/lease-slurm-vm.test.ts). */

/** A pilot job to submit. */
export interface PilotSubmission {
  /** the batch script's text */
  script: string;
  /** the job's working directory (PBS_O_WORKDIR: the lease directory) */
  workdir: string;
  name: string;
  walltimeS: number;
  cpus: number;
  memoryMB: number;
  /** a lease group: this many nodes, one task with `cpus` and `memoryMB` on each (default 1) */
  nodes?: number | undefined;
  queue?: string | undefined;
  /** Torque job class (`qsub -T`): pbs_mom runs prologue.<class> */
  jobClass?: string | undefined;
  /** where the job's stdout/stderr go */
  stdoutPath: string;
  stderrPath: string;
}

/** What the batch system says about a job. `unknown` = it no longer knows it (finished and purged, or never). */
export type PilotStatus = 'queued' | 'running' | 'done' | 'unknown';

export interface LrmAdapter {
  readonly name: string;
  /** Submit; resolves to the job id. Throws with the batch system's own message on refusal. */
  submit(job: PilotSubmission): Promise<string>;
  /** Cancel (qdel): the batch system sends the pilot SIGTERM, then SIGKILL. A job it no longer knows is no error. */
  cancel(jobId: string): Promise<void>;
  status(jobId: string): Promise<PilotStatus>;
}
