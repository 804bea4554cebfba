/** The validated site configuration (one YAML file, e.g. /etc/wnod/wnod.yaml). Keys are camelCase here,
 * snake_case in the file; `src/config/load.ts` maps and validates. */

/** One artifact on shared storage: a path, file://, http:// or https:// URL, and its expected sha256. */
export interface Artifact {
  source: string;
  sha256: string;
}

/** A bounded resource: what a job gets when it asks for nothing, and the most it may ask for. */
export interface Bounded {
  default: number;
  max: number;
}

export interface ImageOS {
  family: string;   // GLUE2 OSFamily, e.g. "linux"
  name: string;     // e.g. "ScientificSL"
  version: string;  // e.g. "6.10"
}

/** A catalog entry. `kind: disk` boots a bootable disk image (raw or qcow2); `kind: kernel` boots
 * kernel + initrd directly, with an optional root disk. */
export interface Image {
  id: string;                 // the RTE tag users request, e.g. "vm_sl6" (ASCII, [A-Za-z0-9._-])
  title: string;
  os: ImageOS;
  arch: 'x86_64' | 'i686' | 'aarch64';
  kind: 'disk' | 'kernel';
  disk?: Artifact & { format: 'raw' | 'qcow2' };
  kernel?: Artifact;
  initrd?: Artifact;
  cmdline?: string;           // extra kernel command line (kind: kernel)
  acpi?: boolean;             // false: a kernel without ACPI (wnod's mini kernel): microvm with acpi=off
  cpus: Bounded;
  memoryMB: Bounded;
  /** GLUE2ExecutionEnvironmentVirtualMemorySize (MB); default: memoryMB.max (a VM has no swap of its own) */
  virtualMemoryMB?: number | undefined;
  diskGB: Bounded;
  published: boolean;
  queue?: string;             // overrides lrm.queue for jobs of this image
  /** sha256 identifying the whole image: the disk's for `disk`, a digest over all artifacts for `kernel`. */
  digest: string;
}

/** An ordered authorisation rule: the first rule whose pattern matches one of the user's FQANs (or the VO) wins. */
export interface Rule {
  name: string;
  fqan?: string;              // Argus-style FQAN pattern, e.g. "/atlas/Role=production" or "/atlas/*"
  vo?: string;                // matches any member of the VO (any FQAN, or the VO name alone)
  group?: string;             // local unix group (used for jobs without ticket / leases by local users)
  images: string[];           // allowed image ids; ["*"] means every catalog image
  default?: string;           // image for jobs that request none
  maxCpus?: number;
  maxMemoryMB?: number;
}

export interface Policy {
  rules: Rule[];
  /** A job that requests no image: give it the matched rule's default, or deny it. */
  noRequest: 'default' | 'deny';
  /** Prologue, for a job without a ticket: refuse it, give it the default of the rule matching its unix group,
   * or run it bare on the host (no VM). */
  noTicket: 'refuse' | 'group-default' | 'bare';
  /** A requested RTE tag with this prefix is an image request even if the catalog lacks it (then denied as
   * unknown); other unknown tags are software tags the filter leaves alone. '' = only catalog ids. */
  imageTagPrefix: string;
}

export interface Trust {
  vomsdir: string;
  certdir: string;
  /** true when the CE verified the FQANs it passes to BLAH (x509UserProxyFQAN) — only then are they used
   * without a proxy. */
  blahFqansVerified: boolean;
  /** The filter issues a ticket only to a job whose VOMS proxy it verified itself (BLAH passed `x509userproxy`);
   * a job decided on BLAH's FQAN list or the VO alone is refused. Off when absent; on in the sample config. */
  requireVerifiedProxy: boolean;
}

export interface TicketConfig {
  keyFile: string;
  /** CEs where BLAH runs as many pool accounts: the filter may read a key that is group-readable by THIS group
   * (never other-readable). Worker nodes always demand a root-only key. */
  keyGroup?: string | undefined;
  lifetimeS: number;          // validity from issue (covers the time a job waits in the queue)
}

/** The batch system of the site. */
export type LrmType = 'torque' | 'slurm';

/** `lrm:`. One flat shape for both batch systems (the keys that do not apply to `type` are refused in the file
 * and left at their defaults here). */
export interface LrmConfig {
  type: LrmType;
  queue?: string | undefined; // torque: default queue for wnod jobs (printed as #PBS -q when set)
  jobClass?: string | undefined;        // torque: printed as #PBS -T <class> so pbs_mom runs prologue.<class>
  momPriv: string;            // torque: $PBS_HOME/mom_priv
  prologueBudgetS: number;    // the VM start must fit it (torque: $prologalarm, 300 s killed 10 s early; slurm: PrologEpilogTimeout)
  maxRequeues: number;        // torque: transient prologue faults requeue at most this many times, then abort
  binDir?: string | undefined; // where qsub/qdel/qstat or sbatch/squeue/scancel are (leases; like BLAH's *_binpath); unset = PATH
  /** slurm (required): the wnod partition. Every job in it is a wnod job (printed as #SBATCH --partition); jobs in
   * any other partition run natively, untouched. */
  partition?: string | undefined;
  /** slurm: where `wnod install slurm` puts the Prolog/Epilog shims and the SPANK plugin (root-owned) */
  hookDir?: string | undefined;
}

/** Leases (workspace pilots, `wnod lease`): each lease is a pilot job whose VM serves ssh. */
export interface LeaseConfig {
  /** host ports forwarded to the guest's ssh on this node (user-mode networking), inclusive; below 1024, so that
   * only root can bind them (QEMU does, before -runas) */
  portMin: number;
  portMax: number;
  hostAddress: string;        // where the forwards listen (127.0.0.1 on a single machine)
  guestPort: number;          // the port the pilot's ssh server listens on inside the VM (> 1024: no root)
  defaultHours: number;
  maxHours: number;
  queue?: string | undefined; // queue of pilot jobs; unset = the image's queue or lrm.queue
  /** each user's lease registry, relative to the user's home */
  dir: string;
}

export interface CacheConfig {
  dir: string;
  highWatermarkGB: number;
  lowWatermarkGB: number;
}

export interface VmConfig {
  driver: 'qemu' | 'libvirt';
  accel: 'auto' | 'kvm' | 'tcg';
  stateDir: string;
  network: 'none' | 'user' | 'bridge';
  bridge?: string | undefined;
  readyTimeoutS: number;
  stopGraceS: number;
  maxBooting: number;         // 0 = the core count
  /** warm snapshots (src/vm/snapshot.ts): restore kernel images from per-shape templates in <stateDir>/templates */
  snapshots?: boolean;
}

/** GLUE identity of this CE for the info provider. */
export interface GlueConfig {
  subClusterDn: string;       // GLUE 1.3 SubCluster DN that carries the RTE tags
  computingServiceId: string; // GLUE 2.0
  computingManagerId: string; // GLUE 2.0
  glue2Suffix: string;        // e.g. "GLUE2GroupID=resource,o=glue"
  perVoTags: boolean;         // also publish VO-<vo>-<image> tags
  validityS: number;
  /** GLUE2ExecutionEnvironmentCPUTimeScalingFactor / WallTimeScalingFactor of every image (EGI profile: mandatory) */
  cpuTimeScalingFactor: number;
  wallTimeScalingFactor: number;
  lastGoodFile: string;       // cache of the last good provider output
}

/** `job_network:` — the private network of multi-node jobs (src/cluster, docs/virtual-clusters.md). */
export interface JobNetworkConfig {
  vni: { first: number; count: number };
  port: number;
  underlayMtu: number;
  privateRange: string;
  subnetPrefix: number;
  /** the batch system's node name → that node's underlay IPv4 address (the site network between worker nodes) */
  nodes: Record<string, string>;
  /** root-only secret every node of a job derives the job's ssh key from (HKDF with the job id) */
  secretFile: string;
  /** claim files and locks of this node's job networks (tmpfs: a rebooted node has no networks left either) */
  claimDir: string;
}

export interface SiteConfig {
  site: { name: string; ceHost: string };
  images: Image[];
  policy: Policy;
  trust: Trust;
  ticket: TicketConfig;
  lrm: LrmConfig;
  cache: CacheConfig;
  vm: VmConfig;
  lease: LeaseConfig;
  /** absent: no job gets a private network, multi-node wnod jobs are refused */
  jobNetwork?: JobNetworkConfig | undefined;
  glue: GlueConfig;
  logFile: string;            // root-only log for details that must not reach the job's output
  /** the log is rotated when a write would take it past maxBytes: logFile.1 … logFile.<keep> (oldest) */
  log: { maxBytes: number; keep: number };
  accountingFile: string;
  /** where the config was read from (for messages) */
  path: string;
}
