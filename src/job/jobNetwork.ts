/** The private network of a multi-node job on this node (root): set up at admission before the VM boots (its tap
 * must exist), torn down at the job's end whatever happened (the plan is in the job's record, written before
 * anything is created, so a teardown finds what an interrupted admission made). See docs/virtual-clusters.md. */
import type { SiteConfig } from '../config/types.js';
import { jobCluster, type JobCluster } from '../cluster/jobCluster.js';
import { applyJobNet, removeJobNet } from '../cluster/jobNetHost.js';
import { readJobSecret, JobSecretError } from '../cluster/jobSsh.js';
import { JobNetApplyError, JobNetCollisionError, JobNetSpecError } from '../cluster/errors.js';
import { newJobRecord, updateJobRecord, type JobRecord } from './jobstate.js';
import { jobUser } from './jobUser.js';
import { Refusal, TransientFault } from './outcome.js';
import type { JobNodes, JobStart } from './contract.js';

/** Plan, record and apply the job's network on this node; resolves to the cluster its VM joins. */
export async function setUpJobNetwork(cfg: SiteConfig, job: Pick<JobStart, 'jobId' | 'user'>, nodes: JobNodes): Promise<JobCluster> {
  const net = cfg.jobNetwork;
  if (!net) throw new Refusal('no-job-network', `this site does not run wnod jobs on more than one node (${nodes.nodes.length} nodes asked); the job was not started`);
  const user = await jobUser(job.user);
  let secret: Buffer;
  try {
    secret = await readJobSecret(net.secretFile);
  } catch (err) {
    // an admin can fix the secret: worth a retry where the LRM retries
    if (err instanceof JobSecretError) throw new TransientFault('jobnet-secret', err.message, {}, { cause: err });
    throw err;
  }
  let cluster: JobCluster;
  try {
    cluster = jobCluster(net, secret, { jobId: job.jobId, nodes: nodes.nodes, self: nodes.self, slots: nodes.slots, owner: user });
  } catch (err) {
    if (err instanceof JobNetSpecError) throw new Refusal('jobnet-spec', `the job's private network cannot be made: ${err.message}`, {}, { cause: err });
    throw err;
  }
  await updateJobRecord(cfg.vm.stateDir, job.jobId, (cur) => ({ ...(cur ?? newJobRecord(job.jobId, job.user)), jobNet: { plan: cluster.plan, claimDir: cluster.claimDir } }));
  try {
    await applyJobNet(cluster.plan, { claimDir: cluster.claimDir });
  } catch (err) {
    if (err instanceof JobNetCollisionError) throw new Refusal(err.code, `the job's private network cannot be made on this node: ${err.message}`, { vni: err.vni, holder: err.holder }, { cause: err });
    if (err instanceof JobNetApplyError) throw new TransientFault(err.code, err.message, {}, { cause: err });
    throw err;
  }
  return cluster;
}

/** Remove what the record says this node made for the job (nothing when it has no network). Idempotent. */
export async function tearDownJobNetwork(rec: JobRecord | undefined): Promise<boolean> {
  if (!rec?.jobNet) return false;
  await removeJobNet(rec.jobNet.plan, { claimDir: rec.jobNet.claimDir });
  return true;
}
