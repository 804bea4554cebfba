// Job networks with real VMs: two worker nodes (network namespaces on a site switch, test/kit/siteNodes.ts), each
// with the job's VXLAN, bridge and tap made by the root step and a real QEMU VM (TCG, the test image with wnod's
// minimal kernel) attached by the QEMU driver. Packets take the path they take between two real nodes: guest →
// tap → job bridge → VXLAN → the site network (UDP 4789) → the other node's VXLAN → bridge → tap → guest.
// Two jobs run on the same two nodes at once; what one job's VM sends never reaches the other job.
import t from 'tap';
import { chmodSync, mkdtempSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { buildTestImage, testVmImage, type TestImage } from '../src/guest/testImage.js';
import { ensureTestUser, type TestUser } from './kit/pbsmom.js';
import { QemuDriver } from '../src/vm/qemu.js';
import { isAlive } from '../src/vm/proc.js';
import { planJobNet, guestJobNet, type JobNetSite } from '../src/cluster/jobNetPlan.js';
import { applyJobNet, removeJobNet } from '../src/cluster/jobNetHost.js';
import { siteNodes, inNode, type SiteNodes } from './kit/siteNodes.js';
import { guestSh, jobNetVms, jobNetUsable, type JobNetVm } from './kit/jobNetVms.js';

const READY_MS = 240_000;
const site: JobNetSite = { vni: { first: 7000, count: 1000 }, port: 4789, underlayMtu: 1500, privateRange: '10.241.0.0/16', subnetPrefix: 24 };

t.test('two jobs on two nodes: data crosses the private network, nothing crosses between jobs, spoofing is dropped, removal leaves nothing', async (t) => {
  if (!(await jobNetUsable())) {
    t.comment('skipped: needs root and nft');
    return;
  }
  const img: TestImage = await buildTestImage({ kernel: 'mini' });
  const users: TestUser[] = [await ensureTestUser('wvcjob1'), await ensureTestUser('wvcjob2')];
  const root = mkdtempSync(join(tmpdir(), 'wvc-'));
  chmodSync(root, 0o755);
  const sn: SiteNodes = await siteNodes(String(process.pid % 10000), 21, 2);
  const vms = jobNetVms(t, sn, root);

  // job 1 and job 2, each with one VM on node 0 and one on node 1
  const jobs = ['101', '102'];
  for (const [j, jobId] of jobs.entries()) {
    for (const [i, node] of sn.nodes.entries()) {
      const plan = planJobNet(site, { jobId, nodes: sn.underlay, self: i, owner: users[j]! });
      const claimDir = join(root, `claims${i}`);
      await applyJobNet(plan, { netns: node, claimDir });
      const driver = new QemuDriver({ stateDir: join(root, `s${i}`), accel: 'tcg', netns: node });
      const g = guestJobNet(plan);
      const state = await driver.prepare({
        id: `j${jobId}`, jobId, image: testVmImage(img), cpus: 1, memoryMB: 128, hostname: plan.self.hostname,
        user: { name: users[j]!.name, uid: users[j]!.uid, gid: users[j]!.gid }, env: { PATH: '/bin:/usr/bin:/sbin:/usr/sbin' },
        network: { mode: 'none', job: { tap: plan.ifaces.tap, ...g } },
      });
      vms.push({ driver, state, plan, node, claimDir });
    }
  }
  for (const v of vms) v.state = await v.driver.start(v.state);
  for (const v of vms) v.state = await v.driver.waitReady(v.state, READY_MS);
  const [a1, b1, a2, b2] = vms as [JobNetVm, JobNetVm, JobNetVm, JobNetVm];

  const sh = guestSh;
  const uidOf = async (pid: number) => /^Uid:\t(\d+)\t/m.exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1];
  t.equal(await uidOf(a1.state.pids.qemu!.pid), String(users[0]!.uid), 'job 1\'s QEMU runs as job 1\'s user');

  // the guest configured its NIC from the context: address, MTU, and every VM of the job by name
  const conf = await sh(a1, 'hostname; ip -o addr show | grep -o "inet [0-9./]*"; cat /sys/class/net/eth0/mtu; grep vm /etc/hosts');
  t.equal(conf.code, 0, conf.err);
  t.match(conf.out, `vm0\n`);
  t.match(conf.out, `inet ${a1.plan.self.ip}/24`);
  t.match(conf.out, '\n1450\n');
  t.match(conf.out, `${b1.plan.self.ip} vm1`);

  // job 1: 1 MB from vm0 (node 0) to vm1 (node 1), as the job user, by name; checked on both ends
  const job = { name: users[0]!.name, uid: users[0]!.uid, gid: users[0]!.gid };
  const made = await sh(a1, 'head -c 1048576 /dev/urandom > /tmp/d && md5sum < /tmp/d', job);
  t.equal(made.code, 0, made.err);
  const [recv, sent] = await Promise.all([
    // the receiving end runs as nc's -e program: plain `nc -l` would half-close at once (its stdin is empty) and
    // busybox's nc client exits when it reads that close, before it has sent all its input
    sh(b1, 'printf "#!/bin/sh\\ncat > /tmp/r\\n" > /tmp/rcv && chmod +x /tmp/rcv && nc -l -p 5001 -e /tmp/rcv && wc -c < /tmp/r && md5sum < /tmp/r', job),
    sh(a1, 'for i in $(seq 60); do nc vm1 5001 < /tmp/d && exit 0; sleep 1; done; exit 1', job),
  ]);
  t.equal(sent.code, 0, `vm0 sent over the private network (${sent.err})`);
  t.equal(recv.code, 0, recv.err);
  t.equal(recv.out, `1048576\n${made.out}`, 'vm1 received every byte, unchanged');

  // cross-job: job 2's VM (root inside it, so it can route and ARP anywhere) tries job 1's addresses. Without
  // isolation it would reach job 1's vm1 (same L2 if the jobs shared a segment); here nothing arrives there at all.
  const rx = async (v: JobNetVm) => Number((await sh(v, 'cat /sys/class/net/eth0/statistics/rx_packets')).out.trim());
  // job 1's own traffic may still reach vm1 and is legitimate: vm1 only sent ACKs in the transfer, so nothing
  // confirmed its ARP entry for vm0, and the kernel probes it after delay_first_probe_time (5 s), vm0's reply
  // arriving after the transfer. Wait until vm1's counter has been still for 7 s before counting.
  let before = await rx(b1);
  for (let still = 0, i = 0; still < 7 && i < 60; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    const now = await rx(b1);
    still = now === before ? still + 1 : 0;
    before = now;
  }
  const probe = await sh(a2, `ip route add ${a1.plan.subnet} dev eth0; ping -c 3 -W 2 ${b1.plan.self.ip}; echo ping=$?`);
  t.match(probe.out, /ping=1\n/, 'job 2 cannot reach job 1\'s address');
  const after = await rx(b1);
  t.equal(after, before, `job 1's VM on the other node received not a single frame from job 2 (rx ${before} → ${after})`);
  const own = await sh(a2, `ping -c 3 -W 2 ${b2.plan.self.ip}`);
  t.equal(own.code, 0, 'the same probe reaches job 2\'s own peer: the probe works, isolation made the difference');

  // spoofing: job 1's vm0 takes another address of its own subnet, then another MAC; both are dropped at its tap
  const spoofIp = `${a1.plan.subnet.split('.').slice(0, 3).join('.')}.99`;
  const ping = (v: JobNetVm, dst: string) => sh(v, `ip neigh flush all; ping -c 3 -W 2 ${dst}`);
  await sh(b1, 'ip neigh flush all');
  t.equal((await ping(a1, b1.plan.self.ip)).code, 0, 'vm0 with its own MAC and address reaches vm1');
  await sh(a1, `ip addr flush dev eth0 && ip addr add ${spoofIp}/24 dev eth0`);
  await sh(b1, 'ip neigh flush all');
  t.not((await ping(a1, b1.plan.self.ip)).code, 0, 'a spoofed source address is dropped');
  // the control: without the tap's rules the same spoofed packets pass, so the rules did the dropping
  const fromVm = `${a1.plan.table}`;
  t.equal((await inNode(a1.node, '/usr/sbin/nft', ['flush', 'chain', 'bridge', fromVm, 'from_vm'])).exitCode, 0);
  t.equal((await ping(a1, b1.plan.self.ip)).code, 0, 'without the anti-spoofing rules the spoofed address gets through');
  await applyJobNet(a1.plan, { netns: a1.node, claimDir: a1.claimDir }); // re-apply restores the rules
  t.not((await ping(a1, b1.plan.self.ip)).code, 0, 're-applied rules drop it again');
  await sh(a1, `ip addr flush dev eth0 && ip addr add ${a1.plan.self.ip}/24 dev eth0 && ip link set eth0 down && ip link set eth0 address 02:66:66:66:66:66 && ip link set eth0 up`);
  await sh(b1, 'ip neigh flush all');
  t.not((await ping(a1, b1.plan.self.ip)).code, 0, 'a spoofed source MAC is dropped');

  // removal: VMs, then the networks; nothing is left on either node
  const pids = vms.map((v) => v.state.pids.qemu!);
  for (const v of vms) await v.driver.destroy(v.state);
  for (const v of vms) await removeJobNet(v.plan, { netns: v.node, claimDir: v.claimDir });
  for (const p of pids) t.notOk(await isAlive(p), `QEMU ${p.pid} is gone`);
  for (const node of sn.nodes) {
    const links = JSON.parse((await inNode(node, '/usr/sbin/ip', ['-j', 'link', 'show'])).stdout) as Array<{ ifname: string }>;
    t.same(links.map((l) => l.ifname).sort(), ['lo', 'site0'], `${node}: no interface left`);
    t.equal((await inNode(node, '/usr/sbin/nft', ['list', 'ruleset'])).stdout.trim(), '', `${node}: no rule left`);
  }
});
