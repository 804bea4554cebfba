/** The one VM-driver interface. QEMU direct (src/vm/qemu.ts) and libvirt (src/vm/libvirt*.ts) implement it.
 *
 * The lifecycle is split across processes (Torque: the root prologue starts the VM and exits once it is ready,
 * the job starter — another process, as the job user — runs the command, the root epilogue destroys it). So every
 * operation after `prepare` takes the persistent state record (`VmState`, one JSON file per VM in the state dir,
 * see src/vm/state.ts) and nothing else: whatever is needed to reach the VM lives in that record. */
import type { Writable } from 'node:stream';

/** How the guest reaches the network. `bridge` = a tap on a site bridge with a fixed MAC per slot. */
export interface NetworkSpec {
  mode: 'none' | 'user' | 'bridge';
  bridge?: string;   // mode bridge: the host bridge
  mac?: string;      // fixed MAC (bridge: one per slot; user: defaults to a constant)
  /** user mode: host TCP ports forwarded to guest ports (leases: 127.0.0.1:<port> → the guest's ssh) */
  forwards?: PortForward[];
  /** a further NIC on the job's private network (src/cluster/jobNetPlan.ts), beside whatever `mode` gives */
  job?: JobNic;
}

/** The VM's NIC on its job's private network: the tap the root step made for it, and what the guest is told. */
export interface JobNic {
  tap: string;       // host tap on the job's bridge (created by applyJobNet, owned by the job user)
  mac: string;       // chosen by wnod
  ip: string;        // the guest's address, CIDR form (a.b.c.d/n)
  mtu: number;       // the job network's MTU (the site network's less the VXLAN overhead)
  /** every VM of the job: the guest's /etc/hosts */
  hosts: Array<{ name: string; ip: string }>;
  /** the job's host lists (src/cluster/hostfiles.ts), written into the guest for the job's script */
  files?: JobHostFiles;
  /** the job's ssh keys (src/cluster/jobSsh.ts): the VMs of the job accept each other, and only them */
  ssh?: JobSshContext;
  /** a lease group's member: `host:port` where the CE reaches this VM's lease ssh (the pilot in vm0 collects it) */
  leaseAddress?: string;
}

/** The job's host lists as MPI and batch tools read them. */
export interface JobHostFiles {
  nodelist: string;   // vm[0-2]
  mpich: string;
  openmpi: string;
  nodefile: string;   // PBS_NODEFILE style: one line per slot
}

/** What each VM of a job needs for passwordless ssh within the job (OpenSSH formats). */
export interface JobSshContext {
  /** the job user's private key, and its public line for authorized_keys */
  userKey: string;
  userPub: string;
  /** the host key every VM of the job serves, and known_hosts naming it for every VM */
  hostKey: string;
  knownHosts: string;
}

/** One host → guest TCP forward of user-mode networking. */
export interface PortForward {
  hostAddr: string;  // IPv4 literal, e.g. 127.0.0.1
  hostPort: number;
  guestPort: number;
}

/** What to boot: the catalog image and the node-local cached files of it (from ImageCache.acquire). */
export interface VmImage {
  id: string;
  digest: string;
  kind: 'disk' | 'kernel';
  files: { disk?: string; kernel?: string; initrd?: string };
  diskFormat?: 'raw' | 'qcow2';
  cmdline?: string;  // extra kernel command line (kind: kernel)
  /** false: the kernel has no ACPI (wnod's mini kernel): microvm runs with acpi=off and lists its virtio-mmio
   * devices on the kernel command line instead */
  acpi?: boolean;
  /** the image's disk_gb: the per-job overlay may grow to this (or the disk's virtual size): checked free first */
  diskGB?: number;
}

/** A Unix identity on the host; inside the guest the job runs with the same uid/gid. */
export interface UnixUser {
  name: string;
  uid: number;
  gid: number;
}

/** Everything a driver needs to create one VM. */
export interface VmSpec {
  /** [A-Za-z0-9._-]{1,64}: names the state record and runtime files, e.g. the sanitised job id */
  id: string;
  jobId?: string;
  image: VmImage;
  /** per-job copy-on-write disk over image.files.disk (created by the caller, deleted by destroy) */
  overlay?: string;
  cpus: number;
  memoryMB: number;
  /** the job's working directory, shared into the guest at the same path */
  workdir?: { hostPath: string; uid: number; gid: number };
  hostname: string;
  user: UnixUser;
  env: Record<string, string>;
  network: NetworkSpec;
  accel?: 'kvm' | 'tcg';  // chosen by the accel probe when absent
}

/** Lifecycle steps, each stamped with a time in the state record. */
export type VmStep = 'prepared' | 'started' | 'ready' | 'stopping' | 'destroyed';

/** The persistent state record of one VM (JSON, written atomically). */
export interface VmState {
  version: 1;
  id: string;
  jobId?: string;
  driver: string;
  stateDir: string;
  spec: VmSpec;
  /** directory of this VM's runtime files (sockets, pidfiles, context cpio, logs) */
  runDir: string;
  /** host process ids this VM owns (qemu, virtiofsd, …), with their start time to detect pid reuse */
  pids: Record<string, { pid: number; startTime: string }>;
  /** Unix sockets: control/stdout/stderr of the agent channel, plus driver-specific ones */
  sockets: { control: string; stdout: string; stderr: string; [name: string]: string };
  /** files to delete at destroy (overlay, context cpio …) */
  files: string[];
  steps: Partial<Record<VmStep, string>>;  // ISO timestamps
  /** the process that created the record (gc: a prepared record whose creator is gone and has no VM is stale) */
  owner: { pid: number; startTime: string };
  accel?: 'kvm' | 'tcg';
  /** set when the creator hands the VM over to later processes (the prologue): its exit is then no orphan sign */
  handedOver?: boolean;
  /** driver-private data (e.g. libvirt domain name) */
  extra?: Record<string, string>;
}

export type VmStatus = 'prepared' | 'running' | 'ready' | 'stopped' | 'destroyed' | 'unknown';

/** One command to run inside the guest. */
export interface ExecRequest {
  argv: string[];
  cwd: string;
  env: Record<string, string>;
  user: UnixUser;
  stdout: Writable;
  stderr: Writable;
  /** aborting forwards TERM to the guest command (which then exits with its own status) */
  signal?: AbortSignal;
  /** bound on the whole exec; undefined = none */
  timeoutMs?: number;
  /** the agent heartbeat's timing while the command runs (default: agent.ts HEARTBEAT) */
  heartbeat?: { everyMs: number; silenceMs: number };
}

/** A VM driver: prepare → start → waitReady → exec* → stop → destroy. */
export interface VmDriver {
  readonly name: string;
  /** Create the runtime dir, context data and the state record; nothing runs yet. */
  prepare(spec: VmSpec): Promise<VmState>;
  /** Start the VM detached from the caller (own session, pidfile); returns once the hypervisor runs. */
  start(state: VmState): Promise<VmState>;
  /** Wait until the guest agent answers, at most timeoutMs; throws VmNotReadyError with the reason. */
  waitReady(state: VmState, timeoutMs: number): Promise<VmState>;
  /** Run a command in the guest, streaming its output; resolves to the guest command's exit code. */
  exec(state: VmState, req: ExecRequest): Promise<number>;
  /** Ask the guest to power off, wait graceMs, then force it off. */
  stop(state: VmState, graceMs: number): Promise<void>;
  /** Kill whatever is left, delete runtime files, overlay and the state record. Idempotent. */
  destroy(state: VmState): Promise<void>;
  /** What the VM is doing now, judged from its processes and record. */
  status(state: VmState): Promise<VmStatus>;
  /** Let uid:gid (the job user) reach the agent sockets and mark the VM handed over (the creator may now exit). */
  grantAgentAccess(state: VmState, uid: number, gid: number): Promise<void>;
}
