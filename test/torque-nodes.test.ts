// The hosts of a Torque job on several nodes as pbs_mom gives them (src/lrm/torque/nodes.ts): the mother superior's
// node file, a sister's saved job (exec_host in Torque 6's XML job file, as observed), the sister hook's own checks.
import t from 'tap';
import { mkdtemp, mkdir, writeFile, chmod, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseNodefile, parseExecHost, execHostOfJobFile, motherSuperiorNodes, sisterNodes, TorqueNodesError } from '../src/lrm/torque/nodes.js';
import { parseNodeNum, isWnodJob } from '../src/lrm/torque/sister.js';

t.test('node file and exec_host: hosts in Torque\'s order, the slots on each', async (t) => {
  t.same(parseNodefile('n3\nn2\nn1\n'), { nodes: ['n3', 'n2', 'n1'], slots: [1, 1, 1] });
  t.same(parseNodefile('n2\nn2\nn1\nn1\n'), { nodes: ['n2', 'n1'], slots: [2, 2] });
  t.same(parseExecHost('tmnn3/0+tmnn2/0+tmnn1/0'), { nodes: ['tmnn3', 'tmnn2', 'tmnn1'], slots: [1, 1, 1] });
  t.same(parseExecHost('a/0-2+b/0,3'), { nodes: ['a', 'b'], slots: [3, 2] });
  t.throws(() => parseNodefile(''), TorqueNodesError, 'no host');
  t.throws(() => parseNodefile('n1\n../x\n'), TorqueNodesError, 'not a node name');
  t.throws(() => parseExecHost('a/0+b'), TorqueNodesError, 'an item without slots');
  t.throws(() => parseExecHost('a/3-1'), TorqueNodesError, 'a backwards range');
  t.throws(() => parseExecHost('a/0;rm'), TorqueNodesError);
});

t.test('exec_host from a saved job (the XML a sister MOM writes, trimmed)', async (t) => {
  const xml = '<job>\n  <jobid>0.tmnsrv</jobid>\n  <attributes>\n    <Job_Name flags="1">probe</Job_Name>\n    <exec_host flags="1">tmnn3/0+tmnn2/0+tmnn1/0</exec_host>\n  </attributes>\n</job>\n';
  t.equal(execHostOfJobFile(xml), 'tmnn3/0+tmnn2/0+tmnn1/0');
  t.equal(execHostOfJobFile('<job><jobid>1.x</jobid></job>'), undefined, 'not saved with its hosts yet');
});

t.test('the files are found by job id under mom_priv, root-owned only', { skip: process.getuid?.() !== 0 ? 'needs root (file owners)' : false }, async (t) => {
  const home = await mkdtemp(join(tmpdir(), 'wnod-tnodes-'));
  t.teardown(() => rm(home, { recursive: true, force: true }));
  const momPriv = join(home, 'mom_priv');
  await mkdir(join(momPriv, 'jobs'), { recursive: true });
  await mkdir(join(home, 'aux'));
  t.equal(await motherSuperiorNodes(momPriv, '5.srv'), undefined, 'no node file: a job without nodes');
  await writeFile(join(home, 'aux', '5.srv'), 'n2\nn1\nn3\n');
  t.same(await motherSuperiorNodes(momPriv, '5.srv'), { nodes: ['n2', 'n1', 'n3'], slots: [1, 1, 1], self: 'n2' }, 'the mother superior is the first host');
  await chmod(join(home, 'aux', '5.srv'), 0o666);
  await t.rejects(motherSuperiorNodes(momPriv, '5.srv'), TorqueNodesError, 'a node file others can write is refused');
  await t.rejects(motherSuperiorNodes(momPriv, '../x'), /not a Torque job id/);
  // a sister waits for pbs_mom to save the job
  const later = setTimeout(() => { void writeFile(join(momPriv, 'jobs', '5.srv.JB'), '<job><exec_host flags="1">n2/0+n1/0+n3/0</exec_host></job>'); }, 300);
  const saved = await sisterNodes(momPriv, '5.srv', 2, Date.now() + 10_000);
  t.same(saved.nodes, { nodes: ['n2', 'n1', 'n3'], slots: [1, 1, 1], self: 'n3' }, 'PBS_NODENUM names this host');
  t.equal(saved.jobFile, '<job><exec_host flags="1">n2/0+n1/0+n3/0</exec_host></job>', 'with the saved job (its variables: the ticket)');
  clearTimeout(later);
  await t.rejects(sisterNodes(momPriv, '5.srv', 3, Date.now() + 10_000), /not a sister/);
  await t.rejects(sisterNodes(momPriv, '6.srv', 1, Date.now() + 200), /did not save job 6\.srv/, 'bounded');
});

t.test('the sister hook: PBS_NODENUM of a sister, wnod\'s jobs by queue', async (t) => {
  t.equal(parseNodeNum('2'), 2);
  for (const bad of [undefined, '', '0', '-1', '1x', '123456']) t.throws(() => parseNodeNum(bad), `PBS_NODENUM ${bad}`);
  t.ok(isWnodJob({ lrm: { queue: 'wnod' } } as never, { queue: 'wnod' }));
  t.notOk(isWnodJob({ lrm: { queue: 'wnod' } } as never, { queue: 'batch' }), 'another queue\'s multi-node job is left alone');
  t.ok(isWnodJob({ lrm: {} } as never, { queue: 'batch' }), 'no lrm.queue: every job, as the plain prologue');
});
