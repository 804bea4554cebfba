// The node health check on the real batch systems: `wnod install torque|slurm --apply` wires `wnod status --for
// torque|slurm` in; a node that cannot boot VMs (here: its image cache directory is not a directory) goes down in
// Torque (pbsnodes: down, with wnod's message) and is drained in Slurm (sinfo/scontrol: drained, reason "wnod: …");
// fixed, both come back by themselves. A Slurm drain of someone else's is never resumed.
import t from 'tap';
import { rm, writeFile, mkdir, chmod, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { ensureBuilt } from './kit/cli.js';
import { reachableRepo } from './kit/reachable.js';
import { makeTestSite } from './kit/site.js';
import { startTorque, torqueUnavailable } from './kit/torque.js';
import { makeSlurm, slurmMissing } from './kit/slurm.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Poll `probe` until `ok` holds (bounded: generous for a loaded machine; no timing is asserted). */
async function until<T>(what: string, probe: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 180_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: T = await probe();
  while (!ok(last)) {
    if (Date.now() > end) throw new Error(`${what}: not reached within ${timeoutMs / 1000} s (last: ${JSON.stringify(last)})`);
    await sleep(1000);
    last = await probe();
  }
  return last;
}

/** Break the node the way a full or vanished disk would: the cache directory is a regular file. */
const breakCache = (cache: string) => rm(cache, { recursive: true, force: true }).then(() => writeFile(cache, 'not a directory\n'));
const fixCache = (cache: string) => rm(cache, { force: true });

const torqueWhy = torqueUnavailable();
t.test('Torque: $node_check_script takes the node down with wnod\'s message, and back up when fixed', { skip: torqueWhy ?? false }, async (t) => {
  await ensureBuilt();
  const repo = reachableRepo();
  let siteDir = '';
  let configPath = '';
  const node = await startTorque({
    tag: 'wst', np: 2,
    beforeMom: async (n) => {
      // everything pbs_mom must reach lives under the fixture's dir (the namespace's /tmp is private)
      siteDir = join(n.dir, 'site');
      // no per-image queue under Slurm (every wnod job runs in lrm.partition)
  const s = await makeTestSite(siteDir, { images: [{ id: 'vm_sl6' }, { id: 'vm_el9' }], extra: { cache: { dir: join(siteDir, 'cache'), high_watermark_gb: 1, low_watermark_gb: 0 }, vm: { state_dir: join(siteDir, 'state') } } });
      configPath = s.configPath;
      // a site setting, not wnod's: status updates (and so node checks) every 5 s instead of 45, for a short test
      await writeFile(join(n.dir, 'spool', 'mom_priv', 'config'), '$status_update_time 5\n');
      // env -i: tap's loader (in every child's NODE_OPTIONS) lives in the checkout, which the namespace may not show
      const inst = await n.exec(['/usr/bin/env', '-i', 'PATH=/usr/sbin:/usr/bin:/sbin:/bin', process.execPath, join(repo, 'dist', 'cli', 'main.js'), 'install', 'torque', '--mom-priv', n.momPriv, '--config', configPath, '--prefix', repo, '--apply']);
      if (inst.exitCode !== 0) throw new Error(`wnod install torque: ${inst.stderr}`);
    },
  });
  t.teardown(() => node.stop());
  const conf = await readFile(join(node.dir, 'spool', 'mom_priv', 'config'), 'utf8');
  t.match(conf, /^\$node_check_script \/var\/spool\/torque\/mom_priv\/wnod-node-check$/m);
  t.match(conf, /^\$node_check_interval 1$/m);
  t.match(conf, /^\$status_update_time 5$/m, 'the site\'s own lines are kept');
  const shim = await stat(join(node.dir, 'spool', 'mom_priv', 'wnod-node-check'));
  t.same([shim.uid, shim.mode & 0o777], [0, 0o500]);

  // pbs_mom reports the script's output as the `message=` entry of the node's status attribute
  const pbsnodes = async () => {
    const out = (await node.exec(['/usr/local/bin/pbsnodes', node.host])).stdout;
    const status = /^\s+status = (.*)$/m.exec(out)?.[1] ?? '';
    return { state: /^\s+state = (.*)$/m.exec(out)?.[1] ?? '', message: /(?:^|,)message=(.*?)(?:,[a-z_]+=|$)/.exec(status)?.[1] ?? '', out };
  };
  t.match((await pbsnodes()).state, /^free/, 'healthy: free');

  const cache = join(siteDir, 'cache');
  await breakCache(cache);
  const down = await until('node down', pbsnodes, (s) => /down/.test(s.state));
  t.match(down.message, /^ERROR wnod: the image cache \(cache\.dir\) .*cache is not a directory/, `pbsnodes message: ${down.message}`);

  await fixCache(cache);
  const up = await until('node free again', pbsnodes, (s) => /^free/.test(s.state));
  t.equal(up.message, '', 'the message is cleared');
});

const slurmWhy = await slurmMissing();
t.test('Slurm: HealthCheckProgram drains the node with reason "wnod: …", resumes it when fixed, leaves an admin\'s drain alone', { skip: slurmWhy ?? false }, async (t) => {
  await ensureBuilt();
  const fx = await makeSlurm({ nodes: 1, basePort: 17300, cluster: 'wst' });
  t.teardown(() => fx.stop());
  const siteDir = join(fx.dir, 'site');
  await mkdir(siteDir, { recursive: true });
  await chmod(siteDir, 0o755);
  // no per-image queue under Slurm (every wnod job runs in lrm.partition)
  const s = await makeTestSite(siteDir, { images: [{ id: 'vm_sl6' }, { id: 'vm_el9' }], extra: {
    lrm: { type: 'slurm', partition: 'wnod', hook_dir: join(fx.dir, 'hooks') },
    cache: { dir: join(siteDir, 'cache'), high_watermark_gb: 1, low_watermark_gb: 0 }, vm: { state_dir: join(siteDir, 'state') },
  } });
  const cli = join(reachableRepo(), 'dist', 'cli', 'main.js');
  const inst = await execa(process.execPath, [cli, 'install', 'slurm', '--config', s.configPath, '--slurm-conf', fx.conf, '--health-interval', '5', '--apply']);
  t.match(inst.stdout, /add HealthCheckProgram=.*\/hooks\/health/);
  const conf = await readFile(fx.conf, 'utf8');
  t.match(conf, new RegExp(`^HealthCheckProgram=${join(fx.dir, 'hooks', 'health')}$`, 'm'));
  t.match(conf, /^HealthCheckInterval=5$/m);
  const shim = await stat(join(fx.dir, 'hooks', 'health'));
  t.same([shim.uid, shim.mode & 0o777], [0, 0o500]);
  await fx.start();

  const node = async () => {
    const r = await execa('sinfo', ['--noheader', '--Node', '--nodes=n1', '--format=%T|%E'], { env: fx.env, reject: false });
    const [state = '', reason = ''] = r.stdout.split('\n')[0]!.split('|');
    return { state: state.trim(), reason: reason.trim() };
  };
  t.equal((await node()).state, 'idle');

  const cache = join(siteDir, 'cache');
  await breakCache(cache);
  const drained = await until('n1 drained', node, (n) => /drain/.test(n.state));
  t.match(drained.reason, /^wnod: the image cache \(cache\.dir\) .*is not a directory/, `sinfo reason: ${drained.reason}`);
  const show = (await execa('scontrol', ['show', 'node', 'n1'], { env: fx.env })).stdout;
  t.match(show, /State=IDLE\+DRAIN/);
  t.match(show, /Reason=wnod: the image cache/);

  await fixCache(cache);
  await until('n1 resumed', node, (n) => n.state === 'idle');

  // an admin drains the healthy node: wnod's check (run here as slurmd runs it) leaves it drained, with their reason
  await execa('scontrol', ['update', 'nodename=n1', 'state=drain', 'reason=admin: memory test'], { env: fx.env });
  const run = await execa(join(fx.dir, 'hooks', 'health'), [], { env: { SLURMD_NODENAME: 'n1' }, extendEnv: false, reject: false });
  t.equal(run.exitCode, 0, run.stderr);
  t.match(run.stdout, /^slurm node n1: left as it is \(drained by someone else \(admin: memory test\)/m);
  const still = await node();
  t.match(still.state, /drain/, 'still drained');
  t.equal(still.reason, 'admin: memory test', 'the admin\'s reason is kept');
  await execa('scontrol', ['update', 'nodename=n1', 'state=resume'], { env: fx.env });
});
