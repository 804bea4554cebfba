/** `wnod status [--config FILE] [--json] [--for torque|slurm [--node NAME]]`: the node at a glance, as a Nagios plugin
 * (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN — a bad command line too, unlike the other commands' 2), and as the
 * batch system's node health check. Read-only and fast: src/status/gather.ts. */
import { parseArgs } from 'node:util';
import { DEFAULT_CONFIG_PATH } from '../config/load.js';
import { describe } from '../util/errors.js';
import { HelpRequested } from './args.js';
import { gatherFacts } from '../status/gather.js';
import { reportOf, statusJson, statusText } from '../status/report.js';
import { exitCodeOf, oneLine, slurmAction, torqueCheckOutput } from '../status/classify.js';

export const summary = 'the node at a glance and its health, as a Nagios plugin (exit 0/1/2/3) or the batch system\'s node health check';

/** Nagios' UNKNOWN: the status could not be computed, or the command line was wrong. */
export const UNKNOWN = 3;

const HELP = `usage: wnod status [--config FILE] [--json] [--for torque|slurm [--node NAME]]
${summary}.
  --config FILE  the site config (default ${DEFAULT_CONFIG_PATH})
  --json         one JSON object: health (ok|degraded|broken), problems, accel, vms, bootSlots, cache, templates, failures
  --for torque   pbs_mom's $node_check_script: print "ERROR wnod: …" when the node cannot boot VMs (pbs_mom then
                 marks it down with that message), nothing otherwise
  --for slurm    Slurm's HealthCheckProgram (root): drain the node with reason "wnod: …" when it cannot boot VMs,
                 resume it when fixed if the drain was wnod's
  --node NAME    the Slurm node name (default: $SLURMD_NODENAME, else the short host name)
The first output line is \`WNOD OK|WARNING|CRITICAL|UNKNOWN - <summary>\`; exit 0 OK, 1 WARNING (degraded: jobs run,
worse than they should), 2 CRITICAL (broken: no VM can boot here), 3 UNKNOWN (no status, or a bad command line).
Nothing boots: the accelerator is the KVM probe's cached verdict (\`wnod check --probe\` renews it).
`;

function unknown(why: string, forTorque: boolean): number {
  // pbs_mom reads stdout: an internal error must not take the node down, so it goes to stderr only there
  (forTorque ? process.stderr : process.stdout).write(`WNOD UNKNOWN - ${oneLine(why, 1000)}\n`);
  return UNKNOWN;
}

export async function run(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, strict: true, allowPositionals: false, options: {
      config: { type: 'string' }, json: { type: 'boolean' }, for: { type: 'string' }, node: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    } }));
  } catch (err) {
    process.stderr.write(HELP);
    return unknown(`bad command line: ${describe(err)}`, false);
  }
  if (values.help) throw new HelpRequested(HELP); // main prints it, exit 0, as for every command
  const target = values.for;
  if (target !== undefined && target !== 'torque' && target !== 'slurm') return unknown(`bad command line: --for takes torque or slurm, not ${JSON.stringify(target)}`, false);
  if (target && values.json) return unknown('bad command line: --json and --for are exclusive', false);
  if (values.node !== undefined && target !== 'slurm') return unknown('bad command line: --node goes with --for slurm', false);

  // the state, the cache and /dev/kvm are judged as the hooks see them, which is as root (NRPE: run it with sudo)
  if (process.getuid?.() !== 0) return unknown('wnod status must run as root: the state and cache directories, the root log and /dev/kvm are judged as the hooks (root) see them', target === 'torque');
  let report;
  try {
    report = reportOf(await gatherFacts(values.config ?? DEFAULT_CONFIG_PATH));
  } catch (err) {
    return unknown(`cannot look at this node: ${describe(err)}`, target === 'torque');
  }
  const code = exitCodeOf(report.health);
  if (target === 'torque') {
    process.stdout.write(torqueCheckOutput(report.health, report.problems));
    return code;
  }
  if (target === 'slurm') {
    const { slurmNodeName, slurmNodeState, applySlurmAction } = await import('../lrm/slurm/health.js');
    try {
      const node = slurmNodeName(values.node);
      const action = slurmAction(report.health, report.problems, await slurmNodeState(node));
      await applySlurmAction(node, action);
      process.stdout.write(`${statusText(report).split('\n')[0]}\nslurm node ${node}: ${action.kind === 'drain' ? `drained (${action.reason})` : action.kind === 'resume' ? 'resumed' : `left as it is (${action.why})`}\n`);
    } catch (err) {
      return unknown(`${report.health}, but the Slurm node could not be updated: ${describe(err)}`, false);
    }
    return code;
  }
  process.stdout.write(values.json ? JSON.stringify(statusJson(report), null, 2) + '\n' : statusText(report));
  return code;
}
