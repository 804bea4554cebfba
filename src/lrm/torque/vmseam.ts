/** Where the Torque hooks meet the VM engine (src/vm). The hooks decide, refuse, count attempts and account on
 * their own; the implementation of this interface (vmEngine.ts: the VM drivers and the image cache) is passed to
 * them as `ctx.vm` by src/lrm/torque/entry.ts. Tests may pass a stub. */
import type { Image, SiteConfig } from '../../config/types.js';
import type { JobRecord } from './jobstate.js';

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

export interface TorqueVmEngine {
  /** Prologue (root): stage the image and boot the job's VM detached; resolve once it is ready. Throw a
   * TransientFault for faults worth a retry, a Refusal for permanent ones. */
  start(job: VmJob & { image: Image; cpus: number; memoryMB: number; workdir?: string; lease?: LeaseBoot }): Promise<{ vmId: string; bootS: number; boot?: { mode: string; coldReason?: string } }>;
  /** Starter (job user): run the job script in the job's VM, streaming its output; resolve to its exit status. */
  runJob(job: VmJob & { scriptPath: string; argv?: string[]; env: Record<string, string>; cwd: string }): Promise<number>;
  /** Epilogue (root): destroy whatever exists of the job's VM (never created, half created, running). Idempotent. */
  destroy(job: VmJob & { record?: JobRecord }): Promise<{ vmCpuS?: number }>;
}
