/** Slurm worker nodes that are separate machines as far as the network goes: each slurmd runs in a network
 * namespace of its own (`wmn<tag>n<i>`, address 10.247.<net>.<10+i> on `site0`), the nodes share a site network
 * (a bridge in a switch namespace), and slurmctld and the clients stay in the host's namespace, reached through a
 * veth on the same switch (10.247.<net>.1). A job's VXLAN packets take the path they take between two real
 * nodes: node A's stack → site0 → the switch → node B's site0.
 * Each slurmd also gets a mount namespace where `<dir>/node` is its own `<dir>/nodes/n<i>`: every node has its own
 * state dir and claim dir at the same configured path (as separate machines do), while the config, the image
 * cache and the logs are shared; so is /run/virtiofsd (its pid files are named after the VM's socket path). For slurm-local.sh's SLURM_LOCAL_NODE_WRAPPER (test/kit/slurm.ts `net`). */
import type { Test } from 'tap';
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { ensureTestUser, type TestUser } from './pbsmom.js';
import { ensureBuilt } from './cli.js';
import { reachableRepo } from './reachable.js';
import { buildSshTestImage } from './sshImage.js';
import { makeSlurmSite, type SlurmSite } from './slurmSite.js';
import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { SlurmNodeNet } from './slurm.js';
import { inNode, siteNodes } from './siteNodes.js';
import { hypervisorsOf } from './hypervisors.js';

const IP = '/usr/sbin/ip';

export interface NetnsNodes {
  net: SlurmNodeNet;
  /** namespace of Slurm node n<i+1> */
  namespaces: string[];
  /** underlay address of node n<i+1> */
  underlay: string[];
  /** what node n<i+1> sees at `<dir>/node` */
  nodeDir(i: number): string;
  /** the path every node sees as its own */
  sharedPath: string;
  teardown(): Promise<void>;
}

export async function netnsNodes(dir: string, tag: string, net: number, count: number): Promise<NetnsNodes> {
  if (!Number.isInteger(net) || net < 1 || net > 254 || count < 1 || count > 16) throw new Error('bad netns node spec');
  // node n<i+1> is namespace wmn<tag>n<i>, address 10.247.<net>.<1+i>; slurmctld is .254 on the same switch
  const sn = await siteNodes(tag, net, count, { prefix: 'wmn', base: '10.247' });
  const hostIf = `wmn${tag}h`;
  const ctldAddr = `10.247.${net}.254`;
  const teardown = async () => {
    await execa(IP, ['link', 'del', hostIf], { reject: false });
    await sn.teardown();
  };
  await execa(IP, ['link', 'del', hostIf], { reject: false });
  const ip = (...args: string[]) => execa(IP, args);
  await ip('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', 'ph', 'netns', sn.switchNs);
  await ip('-n', sn.switchNs, 'link', 'set', 'ph', 'master', 'site', 'up');
  await ip('addr', 'add', `${ctldAddr}/24`, 'dev', hostIf);
  await ip('link', 'set', hostIf, 'up');
  const sharedPath = join(dir, 'node');
  await mkdir(sharedPath, { recursive: true, mode: 0o755 });
  for (let i = 0; i < count; i++) {
    await mkdir(join(dir, 'nodes', `n${i + 1}`), { recursive: true, mode: 0o755 });
    await chmod(join(dir, 'nodes', `n${i + 1}`), 0o755);
  }
  const wrapper = join(dir, 'node-wrap');
  await writeFile(wrapper, [
    '#!/bin/sh',
    '# slurm-local.sh: node-wrap NODE slurmd -f CONF -N NODE — the node\'s network namespace, its own <dir>/node',
    'node=$1; shift',
    'case $node in n[1-9]|n1[0-6]) ;; *) echo "node-wrap: bad node $node" >&2; exit 1 ;; esac',
    // not `ip netns exec`: it remounts /sys, and slurmd then finds no cgroup file system
    `exec /usr/bin/unshare --mount --propagation private /usr/bin/nsenter --net=/run/netns/wmn${tag}n$(( \${node#n} - 1 )) \\`,
    // and its own /run/virtiofsd (virtiofsd's pid files are named after the socket path, the same on every node)
    `  /bin/sh -c 'mount --bind "$1" "$2" && mkdir -p "$1/.virtiofsd" /run/virtiofsd && mount --bind "$1/.virtiofsd" /run/virtiofsd && shift 2 && exec "$@"' \\`,
    `  node-wrap "${join(dir, 'nodes')}/$node" "${sharedPath}" "$@"`,
    '',
  ].join('\n'), { mode: 0o755 });
  return {
    net: { ctldAddr, nodeAddrs: sn.underlay, wrapper }, namespaces: sn.nodes, underlay: sn.underlay, sharedPath,
    nodeDir: (i) => join(dir, 'nodes', `n${i + 1}`),
    teardown,
  };
}

/** Nothing of a job on any node (of this kit, or a Torque site's: ./torqueNodes.ts): no job interface, no rule, no VNI claim, no VM record, no QEMU or virtiofsd (the
 * Epilogs may still be running: interfaces are awaited up to a minute). */
export async function nothingLeftOnNodes(t: Test, nodes: Pick<NetnsNodes, 'namespaces' | 'nodeDir' | 'sharedPath'>, what: string): Promise<void> {
  for (const [i, ns] of nodes.namespaces.entries()) {
    const until = Date.now() + 60_000;
    let links: string[] = [];
    for (;;) {
      links = (JSON.parse((await inNode(ns, '/usr/sbin/ip', ['-j', 'link', 'show'])).stdout) as Array<{ ifname: string }>).map((l) => l.ifname).sort();
      if (links.length === 2 || Date.now() > until) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    t.same(links, ['lo', 'site0'], `${what}: n${i + 1} has no job interface left`);
    t.equal((await inNode(ns, '/usr/sbin/nft', ['list', 'ruleset'])).stdout.trim(), '', `${what}: n${i + 1} has no rule left`);
    t.same(await readdir(join(nodes.nodeDir(i), 'claims')).then((f) => f.filter((x) => x.endsWith('.json')), () => []), [], `${what}: n${i + 1} holds no VNI claim`);
    t.same(await readdir(join(nodes.nodeDir(i), 'state', 'vms')).catch(() => []), [], `${what}: n${i + 1} has no VM record`);
  }
  t.same(await hypervisorsOf(nodes.sharedPath), [], `${what}: no QEMU or virtiofsd left on any node`);
}

/** What a multi-node job's script (in vm0) runs to show its cluster works: a command on every VM by ssh (the
 * job's own key), 1 MiB sent from vm0 to vm1 over the job network, vm0's address on it (`prefix`: the private
 * range's first two octets, e.g. 10.242). */
export function clusterProbeLines(vms: readonly string[], prefix: string): string[] {
  return [
    `for h in ${vms.join(' ')}; do ssh "$h" 'echo "ssh-ok host=$(hostname) user=$(id -un)"' || echo "ssh-failed $h"; done`,
    'head -c 1048576 /dev/urandom > /tmp/d',
    'echo "sent=$(md5sum < /tmp/d | cut -d" " -f1)"',
    // vm1 receives over the job network (ssh between the VMs) and checks its end
    'ssh vm1 \'cat > /tmp/r; echo "received=$(wc -c < /tmp/r) $(md5sum < /tmp/r | cut -d" " -f1) on $(hostname) from ${SSH_CLIENT%% *}"\' < /tmp/d',
    `ip -o -4 addr show | grep -o "inet ${prefix.replaceAll('.', '\\.')}[0-9./]*"`,
  ];
}

/** Check what clusterProbeLines printed: every VM answered as the user, vm1 got every byte from vm0's private address. */
export function checkClusterProbe(t: Test, out: string, user: string, vms: readonly string[], prefix: string): void {
  for (const h of vms) t.match(out, `ssh-ok host=${h} user=${user}`, `ssh to ${h}, no password, no prompt`);
  t.notMatch(out, /ssh-failed/);
  const sent = /sent=([0-9a-f]{32})/.exec(out)?.[1];
  t.ok(sent, 'vm0 made the data');
  const recv = /received=(\d+) ([0-9a-f]{32}) on (\S+) from (\S+)/.exec(out);
  t.same(recv?.slice(1, 4), ['1048576', sent, 'vm1'], 'vm1 received every byte, unchanged');
  const vm0Ip = new RegExp(`inet (${prefix.replaceAll('.', '\\.')}\\.[0-9.]+)/24`).exec(out)?.[1];
  t.ok(vm0Ip, 'vm0 has an address on the private network');
  t.equal(recv?.[4], vm0Ip, 'over the private network, from vm0\'s address on it');
}

export interface NetnsSlurmSite {
  dir: string;
  repo: string;
  user: TestUser;
  nodes: NetnsNodes;
  ss: SlurmSite;
  /** stop Slurm, kill every node's VMs, remove the namespaces and the dir */
  close(): Promise<void>;
}

/** A real Slurm of three such nodes with wnod installed and a job network over them (the ssh test image, the
 * minimal kernel, 1 cpu and 256 MB per VM; the user's group may run vm_test, decided without a ticket; `snapshots`:
 * warm snapshots on). The site of the multi-node tests: each gives its own tag, net, ports, cluster, user, VNI range
 * and private range. */
export async function makeNetnsSlurmSite(o: { prefix: string; tag: string; net: number; basePort: number; cluster: string; userName: string;
  vni: { first: number; count: number }; privateRange: string; snapshots?: boolean }): Promise<NetnsSlurmSite> {
  await ensureBuilt();
  const repo = reachableRepo();
  const img = await buildSshTestImage({ kernel: 'mini' });
  const user = await ensureTestUser(o.userName);
  const dir = await mkdtemp(join(tmpdir(), `${o.prefix}-`));
  await chmod(dir, 0o755);
  let nodes: NetnsNodes | undefined;
  let ss: SlurmSite | undefined;
  const close = async () => {
    await ss?.stop();
    // each node's own state dir, as the host sees it
    for (const i of [0, 1, 2]) await execa(process.execPath, [join(repo, 'dist', 'cli', 'main.js'), 'kill-all', '--state-dir', join(dir, 'nodes', `n${i + 1}`, 'state')], { reject: false });
    await nodes?.teardown();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    nodes = await netnsNodes(dir, o.tag, o.net, 3);
    const secret = join(dir, 'jobnet.secret');
    await writeFile(secret, randomBytes(32), { mode: 0o600 });
    ss = await makeSlurmSite({
      dir: join(dir, 'site'), repo, img, basePort: o.basePort, cluster: o.cluster, nodes: 3, cpus: 2, net: nodes.net,
      site: {
        rules: [{ name: 'clusters', group: user.group, images: ['vm_test'], default: 'vm_test' }], policy: { no_ticket: 'group-default' },
        // every node's own state under the same path (its mount namespace)
        vm: { state_dir: join(nodes.sharedPath, 'state'), ready_timeout_s: 240, ...(o.snapshots ? { snapshots: true } : {}) },
        sections: {
          job_network: {
            nodes: { n1: nodes.underlay[0], n2: nodes.underlay[1], n3: nodes.underlay[2] }, vni: o.vni, private_range: o.privateRange,
            secret_file: secret, claim_dir: join(nodes.sharedPath, 'claims'),
          },
        },
      },
    });
    return { dir, repo, user, nodes, ss, close };
  } catch (err) {
    await close();
    throw err;
  }
}
