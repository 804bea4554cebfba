/** The nftables rules of one job network on one node, as text for `nft -f -`. Pure.
 *
 * - bridge family, prerouting: frames from the VM's tap pass the anti-spoofing rules of src/vm/network.ts (its own
 *   MAC and address only, no DHCP on a job network); frames from the VXLAN port must come from a MAC of one of the
 *   job's other VMs (a peer node enforces the rest at its own tap).
 * - bridge family, input: nothing from the job's segment reaches this host's own stack (the bridge has no address
 *   either; this also covers a host that forwards IPv4 and would otherwise route what a VM addresses to the
 *   bridge's MAC).
 * - inet family, input: VXLAN datagrams carrying this job's VNI are accepted only from the job's peer nodes, so
 *   nothing else on the site network or on this host (a local user's UDP socket) can inject frames into the job.
 *
 * The file first declares and deletes the tables, then declares them again: nft applies it as one transaction, so
 * re-applying replaces the rules atomically (idempotent) and a half-applied state is never visible. */
import { antiSpoofLines } from '../vm/network.js';
import type { JobNetPlan } from './jobNetPlan.js';

/** The ruleset text of one job network on this node. */
export function jobNetRules(plan: JobNetPlan): string {
  const { vxlan, tap } = plan.ifaces;
  const remoteMacs = plan.members.filter((m) => m.index !== plan.self.index).map((m) => m.mac);
  const vni = `0x${plan.vni.toString(16)}`;
  const lines = [
    `table bridge ${plan.table}`,
    `delete table bridge ${plan.table}`,
    `table inet ${plan.table}`,
    `delete table inet ${plan.table}`,
    `table bridge ${plan.table} {`,
    `  chain prerouting {`,
    `    type filter hook prerouting priority -200; policy accept;`,
    `    iifname "${tap}" jump from_vm`,
    `    iifname "${vxlan}" jump from_peers`,
    `  }`,
    `  chain from_vm {`,
    ...antiSpoofLines(plan.self.mac, plan.self.ip, { dhcp: false }).map((r) => `    ${r}`),
    `  }`,
    `  chain from_peers {`,
    remoteMacs.length ? `    ether saddr != { ${remoteMacs.join(', ')} } drop` : `    drop`,
    `  }`,
    `  chain input {`,
    `    type filter hook input priority -200; policy accept;`,
    `    iifname { "${tap}", "${vxlan}" } drop`,
    `  }`,
    `}`,
    `table inet ${plan.table} {`,
    `  chain input {`,
    `    type filter hook input priority -200; policy accept;`,
    plan.peers.length
      ? `    udp dport ${plan.port} @th,96,24 ${vni} ip saddr != { ${plan.peers.join(', ')} } drop`
      : `    udp dport ${plan.port} @th,96,24 ${vni} drop`,
    `  }`,
    `}`,
    '',
  ];
  return lines.join('\n');
}
