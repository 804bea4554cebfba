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
import { chmod, mkdir, readdir, writeFile } from 'node:fs/promises';
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
  if (!Number.isInteger(net) || net < 1 || net > 254 || count < 1 || count > 9) throw new Error('bad netns node spec');
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
    'case $node in n[1-9]) ;; *) echo "node-wrap: bad node $node" >&2; exit 1 ;; esac',
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

/** Nothing of a job on any node: no job interface, no rule, no VNI claim, no VM record, no QEMU or virtiofsd (the
 * Epilogs may still be running: interfaces are awaited up to a minute). */
export async function nothingLeftOnNodes(t: Test, nodes: NetnsNodes, what: string): Promise<void> {
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
