/** The end-to-end demo (`bash scripts/demo.sh` → `node demo/dist/demo.mjs`): on embedded defaults, in a temp dir,
 * a grid job goes CE → worker node → accounting → site BDII, on a real Slurm (demo/slurm.ts, the default) or on
 * Torque through the pbs_mom harness (demo/torque.ts, `--lrm torque`). Exit 0 on success; non-zero with the
 * failing step named. It stops what it started and removes its VMs, temp dirs and the demo user's files. */
import { parseArgs } from 'node:util';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DemoError, out, progress } from './common.js';
import { slurmDemo } from './slurm.js';
import { torqueDemo } from './torque.js';
import { torqueRealDemo } from './torqueReal.js';
import { torqueUnavailable } from '../test/kit/torque.js';

const USAGE = `usage: node demo/dist/demo.mjs [--lrm slurm|torque] [--accel tcg|auto|kvm] [--keep] [--slurm-port N] [--slurm-cluster NAME]
  as root. --lrm slurm (default): a real Slurm from Debian's packages, started privately on 127.0.0.1
  (--slurm-port, default 17800: slurmctld there, slurmd on the next port). --lrm torque: a real Torque 6.1.3 in
  private namespaces when its prebuilt tarball is at hand (WNOD_TORQUE_TARBALL, default
  /work/shared/torque/torque-6.1.3-debian12-amd64.tar.xz; --torque-tag NAME names its private dirs), else — or
  with --torque-harness — the pbs_mom harness, which also shows a lease through a fake Torque server.
  --user: the demo's grid/lease user (default wnoddemo, made when missing). --keep leaves the temp dir for a look
  (daemons and VMs are stopped anyway).`;

async function main(): Promise<number> {
  const { values } = parseArgs({ options: {
    lrm: { type: 'string', default: 'slurm' }, accel: { type: 'string', default: 'tcg' }, keep: { type: 'boolean' },
    'slurm-port': { type: 'string', default: '17800' }, 'slurm-cluster': { type: 'string', default: 'wnoddemo' }, user: { type: 'string', default: 'wnoddemo' },
    'torque-harness': { type: 'boolean' }, 'torque-tag': { type: 'string', default: 'wnoddemo' }, help: { type: 'boolean', short: 'h' },
  } });
  if (values.help) {
    out(USAGE);
    return 0;
  }
  if (!['tcg', 'auto', 'kvm'].includes(values.accel!)) throw new DemoError(`--accel must be tcg, auto or kvm, got ${values.accel}`);
  if (!['slurm', 'torque'].includes(values.lrm!)) throw new DemoError(`--lrm must be slurm or torque, got ${values.lrm}`);
  const slurmPort = Number(values['slurm-port']);
  if (!Number.isInteger(slurmPort) || slurmPort < 1024 || slurmPort > 65000) throw new DemoError(`--slurm-port must be 1024..65000, got ${values['slurm-port']}`);
  if (!/^[a-z][a-z0-9]{0,15}$/.test(values['slurm-cluster']!)) throw new DemoError('--slurm-cluster must be [a-z][a-z0-9]{0,15}');
  if (!/^[a-z][a-z0-9]{2,15}$/.test(values.user!)) throw new DemoError('--user must be [a-z][a-z0-9]{2,15}');
  if (!/^[a-z][a-z0-9]{1,8}$/.test(values['torque-tag']!)) throw new DemoError('--torque-tag must be [a-z][a-z0-9]{1,8}');
  if (process.getuid?.() !== 0) throw new DemoError('the demo must run as root (it installs hooks owned by root, starts daemons and VMs)');
  const dir = await mkdtemp(join(tmpdir(), 'wnod-demo-'));
  await chmod(dir, 0o755);
  const noRealTorque = values['torque-harness'] ? 'asked for with --torque-harness' : torqueUnavailable();
  const on = values.lrm === 'slurm' ? 'a real Slurm' : noRealTorque === undefined ? 'a real Torque 6.1.3' : `Torque through the pbs_mom harness (${noRealTorque})`;
  out(`wnod demo on ${on}, VMs under ${values.accel!.toUpperCase()}, working in ${dir}`);
  const o = { dir, accel: values.accel!, keep: values.keep === true, slurmPort, slurmCluster: values['slurm-cluster']!, user: values.user! };
  try {
    await (values.lrm === 'slurm' ? slurmDemo(o) : noRealTorque === undefined ? torqueRealDemo({ ...o, torqueTag: values['torque-tag']! }) : torqueDemo(o));
    out('\nwnod demo: OK (daemons stopped, VMs destroyed, temp files removed)');
    return 0;
  } finally {
    if (o.keep) out(`(kept ${dir})`);
    else await rm(dir, { recursive: true, force: true });
  }
}

main().then((code) => {
  process.exitCode = code;
}, (err: unknown) => {
  process.stderr.write(`\nwnod demo FAILED${progress.currentStep ? ` at step ${progress.stepNo} (${progress.currentStep})` : ''}: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
