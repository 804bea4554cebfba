/** One multi-node job on this node, LRM-neutral: from the job's node names (in the batch system's order), the cpus
 * it holds on each and the site's `job_network:` config, the job network plan of this node (jobNetPlan.ts) and the
 * NIC its VM gets — address, peers, host lists (hostfiles.ts) and ssh keys (jobSsh.ts). Every node of the job
 * computes the same cluster on its own. */
import type { JobNetworkConfig } from '../config/types.js';
import type { JobNic } from '../vm/driver.js';
import { JobNetSpecError } from './errors.js';
import { compressedNodelist, mpichHostfile, openmpiHostfile, pbsNodefile, type ClusterHost } from './hostfiles.js';
import { guestJobNet, planJobNet, type JobNetPlan } from './jobNetPlan.js';
import { jobSshKeys, knownHosts } from './jobSsh.js';

export interface JobClusterRequest {
  jobId: string;
  /** the job's nodes as the batch system names them, in its order: the VM on nodes[i] is vm<i> */
  nodes: readonly string[];
  /** this node's name */
  self: string;
  /** the cpus the job holds on each node, in the same order */
  slots: readonly number[];
  owner: { uid: number; gid: number };
}

/** What this node creates for the job (plan), and where it keeps its claim. */
export interface JobCluster {
  plan: JobNetPlan;
  claimDir: string;
  /** the VM's NIC, with everything the guest is told */
  nic: JobNic;
}

/** The underlay addresses of the job's nodes (pure): every node must be in the site's map. */
export function underlayOf(net: Pick<JobNetworkConfig, 'nodes'>, nodes: readonly string[]): string[] {
  return nodes.map((n) => {
    const addr = Object.hasOwn(net.nodes, n) ? net.nodes[n] : undefined;
    if (addr === undefined) throw new JobNetSpecError(`node ${n} has no underlay address in job_network.nodes`);
    return addr;
  });
}

/** The job's cluster as this node sees it (pure over the site secret). */
export function jobCluster(net: JobNetworkConfig, secret: Buffer, req: JobClusterRequest): JobCluster {
  const self = req.nodes.indexOf(req.self);
  if (self < 0) throw new JobNetSpecError(`this node (${req.self}) is not in the job's node list`);
  if (req.slots.length !== req.nodes.length) throw new JobNetSpecError(`${req.slots.length} cpu counts for ${req.nodes.length} nodes`);
  const plan = planJobNet(net, { jobId: req.jobId, nodes: underlayOf(net, req.nodes), self, owner: req.owner });
  const hosts: ClusterHost[] = plan.members.map((m) => ({ name: m.hostname, slots: req.slots[m.index]! }));
  const keys = jobSshKeys(secret, req.jobId, req.owner.uid);
  const g = guestJobNet(plan);
  return {
    plan, claimDir: net.claimDir,
    nic: {
      tap: plan.ifaces.tap, ...g,
      files: { nodelist: compressedNodelist(hosts.map((h) => h.name)), mpich: mpichHostfile(hosts), openmpi: openmpiHostfile(hosts), nodefile: pbsNodefile(hosts) },
      ssh: { userKey: keys.user.privateKey, userPub: keys.user.publicKey, hostKey: keys.host.privateKey, knownHosts: knownHosts(keys.host, g.hosts) },
    },
  };
}

/** Where the guest keeps the job's host lists (guest/init writes them from the context). */
export const GUEST_JOB_FILES = {
  nodelist: '/etc/wnod/job/nodelist',
  mpich: '/etc/wnod/job/hostfile.mpich',
  openmpi: '/etc/wnod/job/hostfile.openmpi',
  nodefile: '/etc/wnod/job/nodefile',
} as const;

/** The variables the job's script gets in the first VM of a job of `count` VMs (pure): the cluster from inside —
 * the VMs, not the host nodes — in the spellings MPI and batch scripts look for. */
export function guestClusterEnv(count: number, namePrefix = 'vm'): Record<string, string> {
  const names = Array.from({ length: count }, (_, i) => `${namePrefix}${i}`);
  const list = compressedNodelist(names);
  return {
    WNOD_JOB_NODELIST: list, SLURM_JOB_NODELIST: list, SLURM_NODELIST: list,
    WNOD_NODEFILE: GUEST_JOB_FILES.nodefile, PBS_NODEFILE: GUEST_JOB_FILES.nodefile,
    WNOD_HOSTFILE_MPICH: GUEST_JOB_FILES.mpich, WNOD_HOSTFILE_OPENMPI: GUEST_JOB_FILES.openmpi,
  };
}
