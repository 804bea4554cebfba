// Worker nodes as network namespaces joined by a "site network": a bridge in a namespace of its own (the site's
// switch) and one veth per node, underlay addresses 10.231.<net>.<1+i>/24. Nothing leaves these namespaces.
import { execa } from 'execa';

export interface SiteNodes {
  /** namespace names, one per node: wvc<tag>n0, wvc<tag>n1, … */
  nodes: string[];
  /** the nodes' underlay addresses, in the same order */
  underlay: string[];
  switchNs: string;
  teardown(): Promise<void>;
}

const IP = '/usr/sbin/ip';

/** Create `count` node namespaces on one site network. Names start with `prefix` (an engineer's test prefix, default
 * wvc), addresses with `base` (default 10.231). */
export async function siteNodes(tag: string, net: number, count: number, o: { prefix?: string; base?: string } = {}): Promise<SiteNodes> {
  if (!/^[a-z0-9]{1,6}$/.test(tag)) throw new Error(`bad tag ${tag}`);
  const prefix = o.prefix ?? 'wvc';
  if (!/^[a-z]{1,4}$/.test(prefix) || !/^\d{1,3}\.\d{1,3}$/.test(o.base ?? '10.231')) throw new Error('bad prefix or base');
  const nodes = Array.from({ length: count }, (_, i) => `${prefix}${tag}n${i}`);
  const switchNs = `${prefix}${tag}sw`;
  const underlay = nodes.map((_, i) => `${o.base ?? '10.231'}.${net}.${1 + i}`);
  const teardown = async () => { for (const ns of [...nodes, switchNs]) await execa(IP, ['netns', 'del', ns], { reject: false }); };
  await teardown();
  const ip = (...args: string[]) => execa(IP, args);
  await ip('netns', 'add', switchNs);
  await ip('-n', switchNs, 'link', 'add', 'site', 'type', 'bridge');
  await ip('-n', switchNs, 'link', 'set', 'site', 'up');
  for (const [i, ns] of nodes.entries()) {
    await ip('netns', 'add', ns);
    await ip('-n', switchNs, 'link', 'add', `p${i}`, 'type', 'veth', 'peer', 'name', 'site0', 'netns', ns);
    await ip('-n', switchNs, 'link', 'set', `p${i}`, 'master', 'site', 'up');
    await ip('-n', ns, 'addr', 'add', `${underlay[i]}/24`, 'dev', 'site0');
    await ip('-n', ns, 'link', 'set', 'site0', 'up');
    await ip('-n', ns, 'link', 'set', 'lo', 'up');
  }
  return { nodes, underlay, switchNs, teardown };
}

/** Run a command inside a node's namespace (absolute path), not rejecting. */
export const inNode = (ns: string, file: string, args: string[], opts: { input?: string } = {}) =>
  execa(IP, ['netns', 'exec', ns, file, ...args], { reject: false, timeout: 30_000, ...opts });
