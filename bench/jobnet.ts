// Benchmark: the job network's transport (docs/virtual-clusters.md). Two worker nodes as network namespaces on a
// site switch (test/kit/siteNodes.ts). Prints one JSON object.
//
//   bash scripts/bench.sh jobnet [--runs N] [--mb M] [--setup-only]
//
// 1. Set-up and removal per node of one job's network (applyJobNet/removeJobNet: VXLAN, bridge, tap, fdb, nft),
//    interleaved with a baseline: one `ip link add` + `ip link del` of a bridge (the floor of any kernel set-up
//    through ip(8)).
// 2. Two VMs (test image, mini kernel, TCG), one per node, over each transport, interleaved round by round:
//    - vxlan: the product path (tap → job bridge → VXLAN over the site network);
//    - dgram: QEMU's own point-to-point UDP transport (`-netdev dgram`), node to node over the same site network;
//      the QEMU driver is pointed at a wrapper that swaps the job tap for that netdev.
//    Throughput: M MB from vm0 to vm1 with nc (host-side wall time of the transfer, both execs); latency: the
//    guest's ping average over 10 echoes; host cost: QEMU's RSS per VM and QEMU CPU seconds per MB moved.
import { parseArgs } from 'node:util';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { buildTestImage, testVmImage } from '../src/guest/testImage.js';
import { ensureTestUser } from '../test/kit/pbsmom.js';
import { QemuDriver, QEMU_BINARY } from '../src/vm/qemu.js';
import type { VmState } from '../src/vm/driver.js';
import { planJobNet, guestJobNet, type JobNetPlan, type JobNetSite } from '../src/cluster/jobNetPlan.js';
import { applyJobNet, removeJobNet } from '../src/cluster/jobNetHost.js';
import { siteNodes } from '../test/kit/siteNodes.js';
import { collect } from '../test/kit/collect.js';
import { median } from './lib/stats.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' }, mb: { type: 'string', default: '4' },
  'setup-only': { type: 'boolean', default: false } } });
const runs = Number(values.runs);
const mb = Number(values.mb);
const site: JobNetSite = { vni: { first: 9000, count: 1000 }, port: 4789, underlayMtu: 1500, privateRange: '10.242.0.0/16', subnetPrefix: 24 };
const DGRAM_PORT = 20650; // this engineer's lease range
const ROOT = { name: 'root', uid: 0, gid: 0 };
class SetupOnly extends Error {}
const r1 = (x: number) => Number(x.toFixed(1));
const r3 = (x: number) => Number(x.toFixed(3));

const root = await mkdtemp(join(tmpdir(), 'wvcb-'));
await chmod(root, 0o755);
const sn = await siteNodes(`b${process.pid % 1000}`, 31, 2);
const user = await ensureTestUser('wvcbench');
const started: Array<{ driver: QemuDriver; state: VmState }> = [];
const out: Record<string, unknown> = { bench: 'jobnet', host: { cpus: cpus().length, loadavgBefore: loadavg() }, runs, mb };

try {
  // 1. set-up / removal per node
  const apply: number[] = [], remove: number[] = [], base: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await execa('/usr/sbin/ip', ['-n', sn.nodes[0]!, 'link', 'add', 'wvcbase', 'type', 'bridge']);
    await execa('/usr/sbin/ip', ['-n', sn.nodes[0]!, 'link', 'del', 'wvcbase']);
    base.push(performance.now() - t0);
    const plan = planJobNet(site, { jobId: String(100 + i), nodes: sn.underlay, self: 0, owner: user });
    const t1 = performance.now();
    await applyJobNet(plan, { netns: sn.nodes[0]!, claimDir: join(root, 'c') });
    const t2 = performance.now();
    await removeJobNet(plan, { netns: sn.nodes[0]!, claimDir: join(root, 'c') });
    apply.push(t2 - t1);
    remove.push(performance.now() - t2);
  }
  out.setup = { applyMedianMs: r1(median(apply)), removeMedianMs: r1(median(remove)), baselineIpAddDelMedianMs: r1(median(base)),
    applyToBaseline: r1(median(apply) / median(base)) };

  // 2. two VMs per transport
  if (values['setup-only']) throw new SetupOnly();
  const img = await buildTestImage({ kernel: 'mini' });
  type Pair = { vms: Array<{ driver: QemuDriver; state: VmState }>; plans: JobNetPlan[] };
  const boot = async (transport: 'vxlan' | 'dgram', jobId: string): Promise<Pair> => {
    const pair: Pair = { vms: [], plans: [] };
    for (const [i, node] of sn.nodes.entries()) {
      const plan = planJobNet(site, { jobId, nodes: sn.underlay, self: i, owner: user });
      pair.plans.push(plan);
      let qemu: string | undefined;
      if (transport === 'vxlan') await applyJobNet(plan, { netns: node, claimDir: join(root, `c${i}`) });
      else {
        // the same VM, its job NIC on QEMU's UDP transport to the other node instead of the tap
        const dgram = `dgram,id=net1,local.type=inet,local.host=${sn.underlay[i]},local.port=${DGRAM_PORT},remote.type=inet,remote.host=${sn.underlay[1 - i]},remote.port=${DGRAM_PORT}`;
        qemu = join(root, `qemu-dgram-${i}`);
        await writeFile(qemu, `#!/bin/bash\na=()\nfor x in "$@"; do case $x in tap,id=net1,*) a+=("${dgram}");; *) a+=("$x");; esac; done\nexec ${QEMU_BINARY} "\${a[@]}"\n`, { mode: 0o755 });
      }
      const driver = new QemuDriver({ stateDir: join(root, `s${i}`), accel: 'tcg', netns: node, ...(qemu ? { qemu } : {}) });
      let state = await driver.prepare({ id: `${transport}${jobId}`, jobId, image: testVmImage(img), cpus: 1, memoryMB: 128, hostname: plan.self.hostname,
        user: { name: user.name, uid: user.uid, gid: user.gid }, env: { PATH: '/bin:/usr/bin:/sbin:/usr/sbin' },
        network: { mode: 'none', job: { tap: plan.ifaces.tap, ...guestJobNet(plan) } } });
      const vm = { driver, state };
      started.push(vm);
      vm.state = await driver.start(state);
      pair.vms.push(vm);
    }
    for (const v of pair.vms) v.state = await v.driver.waitReady(v.state, 300_000);
    return pair;
  };
  const sh = async (v: Pair['vms'][number], script: string) => {
    const o = collect(); const e = collect();
    const code = await v.driver.exec(v.state, { argv: ['/bin/sh', '-c', script], cwd: '/', env: {}, user: ROOT, stdout: o, stderr: e, timeoutMs: 300_000 });
    if (code !== 0) throw new Error(`exec failed (${code}): ${script}: ${e.text()}`);
    return o.text();
  };
  const cpuTicks = async (pid: number) => {
    const f = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(')')[1]!.trim().split(' ');
    return Number(f[11]) + Number(f[12]); // utime + stime (fields 14, 15)
  };
  const rssKb = async (pid: number) => Number(/^VmRSS:\s+(\d+)/m.exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1]);
  const clk = Number((await execa('getconf', ['CLK_TCK'])).stdout.trim());
  const measure: Record<string, { mbps: number[]; rttMs: number[]; rssMb: number[]; cpuSecPerMb: number[] }> = {
    vxlan: { mbps: [], rttMs: [], rssMb: [], cpuSecPerMb: [] }, dgram: { mbps: [], rttMs: [], rssMb: [], cpuSecPerMb: [] } };
  const pairs: Record<string, Pair> = { vxlan: await boot('vxlan', '1'), dgram: await boot('dgram', '2') };
  for (const p of Object.values(pairs)) await sh(p.vms[0]!, `head -c ${mb * 1048576} /dev/urandom > /tmp/d; ping -c 2 -W 5 vm1 >/dev/null; true`);
  for (let i = 0; i < runs; i++) {
    for (const transport of ['vxlan', 'dgram'] as const) {
      const p = pairs[transport]!;
      const m = measure[transport]!;
      const pids = p.vms.map((v) => v.state.pids.qemu!.pid);
      const c0 = (await Promise.all(pids.map(cpuTicks))).reduce((a, b) => a + b, 0);
      const t0 = performance.now();
      const [got] = await Promise.all([sh(p.vms[1]!, 'printf "#!/bin/sh\\nwc -c > /tmp/n\\n" > /tmp/rcv && chmod +x /tmp/rcv && nc -l -p 5002 -e /tmp/rcv && cat /tmp/n'), sh(p.vms[0]!, 'for i in $(seq 100); do nc vm1 5002 < /tmp/d && exit 0; sleep 0.2; done; exit 1')]);
      const secs = (performance.now() - t0) / 1000;
      const c1 = (await Promise.all(pids.map(cpuTicks))).reduce((a, b) => a + b, 0);
      if (Number(got.trim()) !== mb * 1048576) throw new Error(`${transport}: received ${got.trim()} bytes`);
      m.mbps.push(mb / secs);
      m.cpuSecPerMb.push((c1 - c0) / clk / mb);
      const ping = await sh(p.vms[0]!, 'ping -c 10 -i 0.2 vm1 | tail -1');
      const avg = /= [\d.]+\/([\d.]+)\//.exec(ping)?.[1];
      if (avg) m.rttMs.push(Number(avg));
      for (const pid of pids) m.rssMb.push((await rssKb(pid)) / 1024);
    }
  }
  const summary = (k: keyof (typeof measure)['vxlan']) => ({ vxlan: r3(median(measure.vxlan![k])), dgram: r3(median(measure.dgram![k])),
    vxlanToDgram: r3(median(measure.vxlan![k]) / median(measure.dgram![k])) });
  out.throughputMBps = summary('mbps');
  out.pingAvgMs = summary('rttMs');
  out.qemuRssMbPerVm = summary('rssMb');
  out.qemuCpuSecPerMb = summary('cpuSecPerMb');
  for (const [t, p] of Object.entries(pairs)) {
    for (const v of p.vms) await v.driver.destroy(v.state);
    if (t === 'vxlan') for (const [i, plan] of p.plans.entries()) await removeJobNet(plan, { netns: sn.nodes[i]!, claimDir: join(root, `c${i}`) });
  }
} catch (err) {
  if (!(err instanceof SetupOnly)) throw err;
} finally {
  for (const v of started) await v.driver.destroy(v.state).catch(() => {});
  await sn.teardown();
  await rm(root, { recursive: true, force: true });
}
out.host = { ...(out.host as object), loadavgAfter: loadavg() };
process.stdout.write(JSON.stringify(out, null, 2) + '\n');
