/** The worker-node core's contract with the LRM adapters (src/lrm/<lrm>/): what a job start and a job end carry,
 * what admission answers, and the seam to the VM engine (vmEngine.ts; tests pass stubs). An adapter turns its
 * batch system's hook calls into these and maps the outcome onto its own protocol (Torque: prologue exit 0/1/2). */
import type { Writable } from 'node:stream';
import type { Image, SiteConfig } from '../config/types.js';
import type { JobRecord } from './jobstate.js';
import type { JobNic } from '../vm/driver.js';

/** What the job holds on this node, as the LRM granted it (absent = the LRM did not say). */
export interface JobHolds {
  cpus?: number | undefined;
  memoryMB?: number | undefined;
  nodes?: number | undefined;
}

/** A job reaching this node (root hook, before it runs). */
export interface JobStart {
  /** the adapter's name: 'torque', 'slurm' */
  lrm: string;
  /** the LRM's job id, validated by the adapter (see JOB_ID_RE) */
  jobId: string;
  user: string;
  group: string;
  /** the job script's text (its header carries the ticket); throws Refusal / TransientFault when it cannot be read */
  script: () => Promise<string>;
  /** the job's working directory as the LRM gives it (Torque: PBS_O_WORKDIR); checked before it is shared */
  workdir?: string | undefined;
  holds: JobHolds;
  /** the LRM enforces what the job holds (Slurm: the allocation's cpus and memory): size the VM by it, within the
   * image's and the rule's maxima, instead of by the ticket alone (decision.ts fitToHolds) */
  sizeByHolds?: boolean | undefined;
  /** the LRM queue / partition, for the log */
  queue?: string | undefined;
  /** a job on several nodes (one VM per node, on a private network of the job's: src/job/jobNetwork.ts): its
   * nodes as the LRM names them in its order, this node's name, and the cpus it holds on each; throws Refusal /
   * TransientFault when the LRM's node list cannot be read */
  cluster?: (() => Promise<JobNodes>) | undefined;
}

/** The nodes of a multi-node job as the LRM gives them. */
export interface JobNodes {
  nodes: string[];
  self: string;
  slots: number[];
}

/** A job leaving this node (root hook, after it ran, was refused or was cancelled). */
export interface JobEnd {
  lrm: string;
  jobId: string;
  user: string;
  group: string;
  /** the exit status as the LRM knows it (Torque: rc, 256+signal, or a negative JOB_EXEC code) */
  exitStatus: number;
  /** the LRM will run the job again here: keep its record (attempt counter, consumed nonce), account nothing */
  willRetry: boolean;
  holds: JobHolds;
  /** what the LRM measured */
  used: { wallS?: number | undefined; cpuS?: number | undefined };
}

/** Admission's answer. `refuse`: never run the job here (the user was told why); `retry`: a transient fault,
 * worth another attempt (the core already counted it: an exhausted job gets `refuse`). */
export type Outcome =
  | { kind: 'go' }
  | { kind: 'refuse'; code: string; reason: string }
  | { kind: 'retry'; code: string; message: string };

/** What every core entry point gets besides the config. */
export interface JobContext {
  /** the user's one-line messages (Torque: the job's .o file) */
  stdout?: Writable | undefined;
  now?: (() => Date) | undefined;
  /** the VM engine (vmEngine.ts, wired by the adapter's entry); tests may leave it out or pass a stub */
  vm?: JobVmEngine | undefined;
  /** the config file the hook was started with (baked into its shim): admission points it at its state dir so
   * that a teardown which cannot read the config still finds the job's VM (pointer.ts) */
  configPath?: string | undefined;
}

export interface VmJob {
  jobId: string;
  user: string;
  group: string;
  cfg: SiteConfig;
}

/** A lease pilot's VM (the script's `# wnod-lease:` marker): user-mode network with its ssh forwarded. */
export interface LeaseBoot {
  id: string;
}

/** A VM of a multi-node job: its name in the job, and its NIC on the job's private network (made by the core). */
export interface ClusterBoot {
  hostname: string;
  nic: JobNic;
  /** this node's underlay address (job_network.nodes): where a lease group's ssh forward listens */
  underlay: string;
}

/** How the job is run in its VM: its batch script (read lazily, as the job user), or a task's argv (refused). */
export interface GuestRun {
  script: () => Promise<string>;
  /** the script's own arguments (Slurm: `sbatch job.sh a b`); Torque has none */
  args?: string[] | undefined;
  argv?: string[] | undefined;
  /** the job's environment on the host (filtered for the guest) */
  env: Record<string, string>;
  /** the host directory the job was started in */
  cwd: string;
  /** the job's working directory (shared into the guest) */
  workdir?: string | undefined;
  /** a multi-node job: the other VMs' host names, which must answer (ssh) before the script runs */
  peers?: string[] | undefined;
  /** how long the peers may take to answer (default a few seconds each: Slurm's Prologs booted them all before
   * the script; Torque's sisters boot detached, alongside the mother superior's VM) */
  peersWaitS?: number | undefined;
}

/** A booted job VM: how long the boot took, how (restore, or cold and why), and whether its image was in the cache. */
export interface VmStarted {
  vmId: string;
  bootS: number;
  boot?: { mode: string; coldReason?: string };
  /** hit: the image was in the node's cache; miss: (part of) it was fetched for this job */
  cache?: 'hit' | 'miss';
  /** the accelerator the VM got (kvm, or tcg: software emulation) */
  accel?: string;
}

export interface JobVmEngine {
  /** Admission (root): stage the image and boot the job's VM detached; resolve once it is ready. Throw a
   * TransientFault for faults worth a retry, a Refusal for permanent ones. */
  start(job: VmJob & { image: Image; cpus: number; memoryMB: number; workdir?: string; lease?: LeaseBoot; cluster?: ClusterBoot }): Promise<VmStarted>;
  /** The job's run (job user): run the job in the job's VM, streaming its output; resolve to its exit status. */
  runJob(job: VmJob & GuestRun): Promise<number>;
  /** Teardown (root): destroy whatever exists of the job's VM (never created, half created, running). Idempotent.
   * `final`: the LRM will not run the job here again — staging it left for a retry (a partial download) goes too. */
  destroy(job: VmJob & { record?: JobRecord; final?: boolean }): Promise<{ vmCpuS?: number; /** the job's run's notes for the admin */ notes?: string[] }>;
  /** Is the job's VM up and handed over (a second admission of the same job id must leave it alone)? */
  running?(job: VmJob): Promise<boolean>;
}
