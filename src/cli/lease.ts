// `wnod lease create|list|show|delete`: workspace pilots — a VM you log into with ssh, run as a batch job.
import { readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { parseCommandLine, runSubcommand } from './args.js';
import { UsageError, WnodError, describe } from '../util/errors.js';
import { run as runCmd } from '../util/run.js';
import { DEFAULT_CONFIG_PATH, loadConfig } from '../config/load.js';
import type { SiteConfig } from '../config/types.js';
import type { Identity } from '../policy/decide.js';
import { lrmAdapterFor } from '../lrm/adapters.js';
import type { LrmAdapter } from '../lrm/adapter.js';
import { MAX_GROUP, listLeases, readLease, registryDir, type Lease } from '../lease/registry.js';
import { LeaseDenied, createLease, deleteLease, parsePublicKeys, reconcile, waitFor, type Requester } from '../lease/service.js';

export const summary = 'lease a VM you log into with ssh, run as a pilot job of the batch system (lease create|list|show|delete)';

const USAGE = `usage:
  wnod lease create --image ID [--cpus N] [--memory MB] [--hours H] [--nodes N] --ssh-key FILE [--proxy FILE] [--wait S] [--json] [--config FILE]
  wnod lease list [--json] [--config FILE]
  wnod lease show ID [--json] [--config FILE]
  wnod lease delete ID [--wait S] [--json] [--config FILE]

create authorises the request with the site's policy (the VOMS proxy given with --proxy, else your unix groups),
submits a pilot job and waits up to --wait seconds (default 300; 0 = do not wait) for its VM to serve ssh; the
lease then reports its address (ssh -p PORT USER@HOST). --nodes N (Slurm sites with a job network) asks for a lease
group: N VMs of the image, one per node, on a private network of their own, held by one pilot; create returns when
all serve ssh, and reports each (--json: "nodes"). A lease ends at --hours (the pilot's walltime) or with
delete. Exit 0 = done (a lease still queued when the wait ends is not an error), 1 = refused or failed, 2 = usage.`;

const MAX_WAIT_S = 86_400;

function num(v: string | undefined, name: string, min: number, max: number, decimal = false): number | undefined {
  if (v === undefined) return undefined;
  if (!(decimal ? /^\d+(\.\d+)?$/ : /^\d+$/).test(v)) throw new UsageError(`--${name} must be a ${decimal ? '' : 'whole '}number, got '${v}'\n${USAGE}`);
  const n = Number(v);
  if (n < min || n > max) throw new UsageError(`--${name} ${v} is outside ${min}..${max}`);
  return n;
}

/** `ssh -p PORT USER@HOST` for a `host:port` address. */
function sshLine(address: string, user: string): string {
  return `ssh -p ${/:(\d+)$/.exec(address)?.[1]} ${user}@${address.replace(/:\d+$/, '')}`;
}

/** The JSON shape of one lease (documented in docs/leases.md). */
export function leaseJson(l: Lease, withHistory = false): Record<string, unknown> {
  return {
    id: l.id, state: l.state, ...(l.jobId ? { jobId: l.jobId } : {}), image: l.request.image, cpus: l.request.cpus, memoryMB: l.request.memoryMB,
    hours: l.request.hours, user: l.request.user, created: l.request.created,
    ...(l.address ? { address: l.address, ssh: sshLine(l.address, l.request.user) } : {}),
    ...(l.hostKey ? { hostKey: l.hostKey } : {}), ...(l.reason ? { reason: l.reason } : {}),
    dir: l.dir, rule: l.request.rule, authorisedBy: l.request.authorisedBy, ticket: l.request.ticket,
    // a lease group: every VM, vm0 (the one the fields above describe) first
    ...(l.nodes ? { nodes: l.nodes.map((n) => ({ name: n.name, address: n.address, ssh: sshLine(n.address, l.request.user), hostKey: n.hostKey, privateAddress: n.privateAddress })) } : {}),
    ...(withHistory ? { history: l.history.map((e) => ({ ...e, at: new Date(e.t).toISOString() })) } : {}),
    ...(l.problems.length ? { problems: l.problems } : {}),
  };
}

function text(l: Lease): string {
  const j = leaseJson(l);
  const group = l.request.nodes ? `  ${l.request.nodes} VMs` : '';
  const vms = l.nodes
    ? l.nodes.flatMap((n) => [`  ${n.name}  ${sshLine(n.address, l.request.user)}  (private ${n.privateAddress})`, `    host key ${n.hostKey}`])
    : [...(j.ssh ? [`  ${String(j.ssh)}`] : []), ...(l.hostKey ? [`  host key ${l.hostKey}`] : [])];
  return [`${l.id}  ${l.state}  image ${l.request.image}  ${l.request.cpus} cpu  ${l.request.memoryMB} MB  ${l.request.hours} h${group}${l.jobId ? `  job ${l.jobId}` : ''}`,
    ...vms, ...(l.reason ? [`  ${l.reason}`] : [])].join('\n');
}

async function requester(cfg: SiteConfig, proxy: string | undefined): Promise<Requester> {
  const me = userInfo();
  if (me.uid === 0) throw new LeaseDenied('root cannot hold a lease (wnod runs no VM for root); run wnod lease as yourself');
  const [groups, primary] = await Promise.all([
    runCmd('id', ['-Gn'], { timeoutMs: 10_000 }).then((r) => r.stdout.trim().split(/\s+/).filter(Boolean)),
    runCmd('id', ['-gn'], { timeoutMs: 10_000 }).then((r) => r.stdout.trim()),
  ]);
  let identity: Identity;
  if (proxy) {
    const { verifyProxyFile } = await import('../voms/index.js');
    try {
      const v = await verifyProxyFile(proxy, { vomsdir: cfg.trust.vomsdir, certdir: cfg.trust.certdir, now: new Date(), host: cfg.site.ceHost });
      identity = { vo: v.vo, fqans: v.fqans, dn: v.holderSubject, source: 'proxy' };
    } catch (err) {
      throw new LeaseDenied(`the VOMS proxy ${proxy} could not be verified (${err instanceof WnodError ? `${err.code}: ` : ''}${describe(err)})`, { cause: err });
    }
  } else {
    identity = { fqans: [], groups, source: 'local' };
  }
  return { user: me.username, uid: me.uid, primaryGroup: primary, identity };
}

function out(json: boolean, value: unknown, human: string): void {
  process.stdout.write(json ? JSON.stringify(value, null, 2) + '\n' : human + '\n');
}

export const subcommands = ['create', 'list', 'show', 'delete'] as const;

export async function run(argv: string[]): Promise<number> {
  return runSubcommand('lease', argv, Object.fromEntries(subcommands.map((s) => [s, (rest: string[]) => leaseCmd(s, rest)])), USAGE);
}

async function leaseCmd(sub: typeof subcommands[number], rest: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine({ args: rest, strict: true, allowPositionals: true, options: {
    image: { type: 'string' }, cpus: { type: 'string' }, memory: { type: 'string' }, hours: { type: 'string' }, 'ssh-key': { type: 'string' },
    proxy: { type: 'string' }, wait: { type: 'string' }, json: { type: 'boolean' }, config: { type: 'string' }, nodes: { type: 'string' },
  } }, USAGE);
  const json = values.json === true;
  const allowed: Record<string, string[]> = {
    create: ['image', 'cpus', 'memory', 'hours', 'nodes', 'ssh-key', 'proxy', 'wait', 'json', 'config'],
    list: ['json', 'config'], show: ['json', 'config'], delete: ['wait', 'json', 'config'],
  };
  for (const k of Object.keys(values)) if (!allowed[sub]!.includes(k)) throw new UsageError(`lease ${sub} takes no --${k}\n${USAGE}`);
  const wantsId = sub === 'show' || sub === 'delete';
  if (positionals.length !== (wantsId ? 1 : 0)) throw new UsageError(wantsId ? `lease ${sub} needs one lease id\n${USAGE}` : `unexpected argument '${positionals[0]}'\n${USAGE}`);
  const waitS = num(values.wait, 'wait', 0, MAX_WAIT_S);
  if (sub === 'create') {
    if (!values.image) throw new UsageError(`--image ID is required\n${USAGE}`);
    if (!values['ssh-key']) throw new UsageError(`--ssh-key FILE is required (your ssh public key)\n${USAGE}`);
  }
  const cpus = num(values.cpus, 'cpus', 1, 1024);
  const memoryMB = num(values.memory, 'memory', 64, 4 << 20);
  const hours = num(values.hours, 'hours', 0.0001, 8760, true);
  const nodes = num(values.nodes, 'nodes', 1, MAX_GROUP);

  const cfg = await loadConfig(values.config ?? DEFAULT_CONFIG_PATH);
  const lrm: LrmAdapter = lrmAdapterFor(cfg);
  const root = registryDir(userInfo().homedir, cfg.lease.dir);
  try {
    switch (sub) {
      case 'create': {
        const keyText = await readFile(values['ssh-key']!, 'utf8').catch((err: NodeJS.ErrnoException) => {
          throw new LeaseDenied(`cannot read the ssh key ${values['ssh-key']}: ${err.code ?? err.message}`, { cause: err });
        });
        if (keyText.length > 64 * 1024) throw new LeaseDenied(`${values['ssh-key']} is larger than 64 KiB: not a public key file`);
        const who = await requester(cfg, values.proxy);
        let l = await createLease(cfg, lrm, root, who, { image: values.image!, cpus, memoryMB, hours, nodes, authorizedKeys: parsePublicKeys(keyText, values['ssh-key']!) });
        if (l.state === 'queued' && (waitS ?? 300) > 0) l = await waitFor(lrm, root, l.id, new Set(['ready']), (waitS ?? 300) * 1000);
        out(json, leaseJson(l), text(l));
        return l.state === 'failed' ? 1 : 0;
      }
      case 'list': {
        const all = await Promise.all((await listLeases(root)).map((l) => reconcile(lrm, root, l)));
        out(json, all.map((l) => leaseJson(l)), all.length ? all.map(text).join('\n') : 'no leases');
        return 0;
      }
      case 'show': {
        const l = await reconcile(lrm, root, await readLease(root, positionals[0]!));
        out(json, leaseJson(l, true), [text(l), ...l.history.map((e) => `  ${new Date(e.t).toISOString()}  ${e.event} (${e.by})${e.reason ? `: ${e.reason}` : ''}`)].join('\n'));
        return 0;
      }
      case 'delete': {
        const l = await deleteLease(lrm, root, positionals[0]!, (waitS ?? 120) * 1000);
        out(json, leaseJson(l), text(l));
        return l.state === 'released' || l.state === 'failed' ? 0 : 1;
      }
    }
  } catch (err) {
    if (!(err instanceof WnodError) || err instanceof UsageError) throw err;
    if (json) process.stdout.write(JSON.stringify({ error: err.code, reason: err.message }) + '\n');
    process.stderr.write(`wnod lease ${sub}: ${err.message}\n`);
    return 1;
  }
  return 2;
}
