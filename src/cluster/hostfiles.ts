/** The cluster's host lists as MPI and batch tools expect them inside the VMs (issue 13): MPICH (`host:slots`),
 * Open MPI (`host slots=N`), a PBS_NODEFILE (one line per slot) and a SLURM_JOB_NODELIST-style compressed list
 * (`vm[0-2,5]`). Pure. */
import { JobNetSpecError } from './errors.js';

export interface ClusterHost {
  name: string;   // the VM's host name on the job network
  slots: number;  // the cpus the job holds on that VM
}

const NAME = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

function check(hosts: readonly ClusterHost[]): void {
  if (hosts.length === 0) throw new JobNetSpecError('a host list needs at least one host');
  const seen = new Set<string>();
  for (const h of hosts) {
    if (!NAME.test(h.name)) throw new JobNetSpecError(`invalid host name '${h.name}'`);
    if (!Number.isInteger(h.slots) || h.slots < 1 || h.slots > 4096) throw new JobNetSpecError(`host ${h.name}: slots must be 1..4096, got ${h.slots}`);
    if (seen.has(h.name)) throw new JobNetSpecError(`host ${h.name} is listed twice`);
    seen.add(h.name);
  }
}

/** MPICH/Hydra machinefile: `host:slots` per line. */
export function mpichHostfile(hosts: readonly ClusterHost[]): string {
  check(hosts);
  return hosts.map((h) => `${h.name}:${h.slots}\n`).join('');
}

/** Open MPI hostfile: `host slots=N` per line. */
export function openmpiHostfile(hosts: readonly ClusterHost[]): string {
  check(hosts);
  return hosts.map((h) => `${h.name} slots=${h.slots}\n`).join('');
}

/** PBS_NODEFILE: each host once per slot, in order. */
export function pbsNodefile(hosts: readonly ClusterHost[]): string {
  check(hosts);
  return hosts.flatMap((h) => Array.from({ length: h.slots }, () => `${h.name}\n`)).join('');
}

/** A SLURM_JOB_NODELIST-style list: consecutive names with the same prefix and number width fold into ranges
 * (`vm[0-2,5],login`), in the order given. */
export function compressedNodelist(names: readonly string[]): string {
  check(names.map((name) => ({ name, slots: 1 })));
  const groups: Array<{ prefix: string; width: number; nums: number[] } | { name: string }> = [];
  for (const n of names) {
    const m = /^(.*?[^0-9]|)(\d+)$/.exec(n);
    const last = groups[groups.length - 1];
    if (!m) { groups.push({ name: n }); continue; }
    const [prefix, digits] = [m[1]!, m[2]!];
    const width = digits.startsWith('0') && digits.length > 1 ? digits.length : 0;
    // a padded group takes any number of its width ("wn01", "wn10"); an unpadded one only unpadded numbers
    const fits = last && 'prefix' in last && last.prefix === prefix && (last.width ? digits.length === last.width : width === 0);
    if (fits) last.nums.push(Number(digits));
    else groups.push({ prefix, width, nums: [Number(digits)] });
  }
  return groups.map((g) => {
    if ('name' in g) return g.name;
    const pad = (x: number) => String(x).padStart(g.width, '0');
    if (g.nums.length === 1) return `${g.prefix}${pad(g.nums[0]!)}`;
    const parts: string[] = [];
    for (let i = 0; i < g.nums.length;) {
      let j = i;
      while (j + 1 < g.nums.length && g.nums[j + 1] === g.nums[j]! + 1) j++;
      parts.push(i === j ? pad(g.nums[i]!) : `${pad(g.nums[i]!)}-${pad(g.nums[j]!)}`);
      i = j + 1;
    }
    return `${g.prefix}[${parts.join(',')}]`;
  }).join(',');
}
