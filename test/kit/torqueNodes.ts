// A real Torque 6.1.3 whose MOMs are separate machines as far as the network goes: pbs_server, pbs_sched and trqauthd
// on one host, each pbs_mom on a host of its own, every host in its own network namespace on one site network
// (./siteNodes.ts: a bridge in a switch namespace, the hosts' addresses 10.<base>.<net>.<1+i>) and its own mount and
// UTS namespaces (./torque-ns.sh: its own PBS_HOME, /etc/hosts naming every host on its site address, its own /tmp).
// A dir under /tmp is shared by every host at the same path (the site config, the submit dir, the image cache);
// `<shared>/node` is each host's own (its wnod state, as on separate machines). Torque talks between the hosts as
// between real ones: the MOMs register with the server on 15001, the mother superior joins its sisters on 15003,
// and the job's .o/.e reach the submit dir by `$usecp` (a shared file system, as at a real site).
import { writeFile, mkdtemp, chmod, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { siteNodes, type SiteNodes } from './siteNodes.js';
import { SBIN, TORQUE_TARBALL, TorqueNode, cleanStale, installTorque, openNamespaces, startServer, torqueDir } from './torque.js';

export interface TorqueNodes {
  server: TorqueNode;
  /** the MOMs, in order: their host names are `<tag>n1`, `<tag>n2`, … */
  moms: TorqueNode[];
  /** the MOMs' site addresses, in the same order */
  underlay: string[];
  /** network namespaces of the MOMs, in the same order */
  namespaces: string[];
  /** seen at the same path on every host */
  shared: string;
  /** what MOM i sees at `<shared>/node`, as the host sees it */
  nodeDir(i: number): string;
  /** `<shared>/node`: the path every MOM sees as its own */
  sharedPath: string;
  stop(): Promise<void>;
}

export interface TorqueNodesOptions {
  /** fixture tag (test/kit/torque.ts startTorque): private dirs /tmp/<tag>-trq-*, namespaces wtm<tag>n<i> */
  tag: string;
  /** the site network's third octet */
  net: number;
  /** address prefix of the site network (two octets) */
  base?: string;
  moms: number;
  np?: number;
  qmgr?: string[];
  /** once the server is configured, before the MOMs start: install hooks into each MOM */
  beforeMoms?: (c: Omit<TorqueNodes, 'stop'>) => Promise<void>;
}

async function waitLog(m: TorqueNode, text: string, timeoutMs: number): Promise<void> {
  for (const end = Date.now() + timeoutMs; !(await m.momLog()).includes(text);) {
    if (Date.now() > end) throw new Error(`pbs_mom on ${m.host} did not log ${JSON.stringify(text)} within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

export async function startTorqueNodes(o: TorqueNodesOptions): Promise<TorqueNodes> {
  if (!/^[a-z][a-z0-9]{1,5}$/.test(o.tag) || o.moms < 1 || o.moms > 8) throw new Error('bad Torque nodes spec');
  await installTorque();
  await cleanStale(o.tag);
  const sn: SiteNodes = await siteNodes(o.tag, o.net, o.moms + 1, { prefix: 'wtm', base: o.base ?? '10.233' });
  const serverHost = `${o.tag}srv`;
  const momHosts = Array.from({ length: o.moms }, (_, i) => `${o.tag}n${i + 1}`);
  const hosts = [serverHost, ...momHosts];
  const hostsFile = ['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback', ...hosts.map((h, i) => `${sn.underlay[i]}\t${h}`), ''].join('\n');
  const shared = await mkdtemp(`/tmp/${o.tag}-trq-`);
  await chmod(shared, 0o755);
  const all: TorqueNode[] = [];
  const stop = async () => {
    for (const n of all.reverse()) await n.stop().catch(() => undefined);
    await sn.teardown();
    await rm(shared, { recursive: true, force: true });
  };
  try {
    for (const [i, host] of hosts.entries()) {
      const dir = await torqueDir(o.tag, serverHost, TORQUE_TARBALL);
      await writeFile(join(dir, 'hosts'), hostsFile);
      if (i > 0) {
        // the server by name; the job's output into the submit dir by cp (every host sees /tmp/<shared>)
        await writeFile(join(dir, 'spool', 'mom_priv', 'config'), `$pbsserver ${serverHost}\n$usecp *:${shared} ${shared}\n`);
      }
      all.push(await openNamespaces(dir, host, { netns: sn.nodes[i]!, shared }));
    }
    const [server, ...moms] = all as [TorqueNode, ...TorqueNode[]];
    await startServer(server, momHosts.map((host) => ({ host, np: o.np ?? 2 })), o.qmgr);
    const c = { server, moms, underlay: sn.underlay.slice(1), namespaces: sn.nodes.slice(1), shared, nodeDir: (i: number) => join(moms[i]!.dir, 'node'), sharedPath: join(shared, 'node') };
    await o.beforeMoms?.(c);
    for (const m of moms) await m.daemon([`${SBIN}/pbs_mom`]);
    await server.daemon([`${SBIN}/pbs_sched`]);
    for (const h of momHosts) await server.waitFree(120_000, h);
    // the server may call a MOM free before the MOM has the list of hosts it accepts connections from (observed
    // under load): a mother superior without it rejects its sisters' join replies and the job hangs
    for (const m of moms) await waitLog(m, 'Successfully received the mom hierarchy file', 120_000);
    return { ...c, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
