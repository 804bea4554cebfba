// The BLAH submit filter: BLAH's temp script in, batch directives out. Never throws, never prints anything
// but directives and comments; every failure becomes a deny marker (fail closed).
import { readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { loadConfig } from '../config/load.js';
import { parseBlahScript } from '../jdl/blahScript.js';
import { requestFromScript, type JobRequest } from '../jdl/request.js';
import { decide, type Decision, type Identity } from '../policy/decide.js';
import { issueTicket, loadTicketKey } from '../ticket/index.js';
import { describe, WnodError } from '../util/errors.js';
import { allowDirectives, denyDirectives } from './directives.js';
import type { SiteConfig } from '../config/types.js';
import { resolveIdentity } from './identity.js';

const MAX_SCRIPT_BYTES = 1 << 20;

export interface FilterResult {
  output: string;          // what goes to stdout, verbatim into the batch script
  decision?: Decision;
  identity?: Identity;
  request?: JobRequest;
  log: string[];           // details for the site log (never for the user's output)
}

/** Decide for one parsed request and render the directives (the part `wnod explain` shares). */
export async function decideRequest(req: JobRequest, cfg: SiteConfig, now: Date): Promise<{ decision: Decision; identity?: Identity }> {
  let identity: Identity;
  try {
    identity = await resolveIdentity(req, cfg.trust, cfg.site.ceHost, now);
  } catch (err) {
    const code = err instanceof WnodError ? `${err.code}: ` : '';
    return { decision: { allow: false, reason: `the job's VOMS proxy could not be verified (${code}${describe(err)})` } };
  }
  if (req.vo && identity.vo && req.vo !== identity.vo && identity.source === 'proxy') {
    return { identity, decision: { allow: false, reason: `the job names VO ${req.vo} but its proxy carries VO ${identity.vo}` } };
  }
  return { identity, decision: decide(req, identity, { policy: cfg.policy, images: cfg.images, defaultQueue: cfg.lrm.queue }) };
}

/** Run the filter on BLAH's temp script (its path is `$0` of the sourced submit-attributes script). */
export async function runFilter(scriptPath: string, configPath: string, now: Date = new Date()): Promise<FilterResult> {
  const log: string[] = [];
  try {
    const cfg = await loadConfig(configPath);
    const buf = await readFile(scriptPath);
    if (buf.length > MAX_SCRIPT_BYTES) throw new WnodError('malformed', `BLAH script ${scriptPath} is larger than ${MAX_SCRIPT_BYTES} bytes`);
    const parsed = parseBlahScript(buf.toString('utf8'));
    const request = requestFromScript(parsed);
    log.push(...request.warnings.map((w) => `${scriptPath}: ${w}`));
    const { decision, identity } = await decideRequest(request, cfg, now);
    if (!decision.allow) {
      log.push(`deny: ${decision.reason}`);
      return { output: denyDirectives(decision.reason), decision, request, log, ...(identity ? { identity } : {}) };
    }
    const key = await loadTicketKey(cfg.ticket.keyFile, { allowGroup: cfg.ticket.keyGroup });
    const token = issueTicket({
      image: decision.image, cpus: decision.cpus, memoryMB: decision.memoryMB, rule: decision.rule, account: userInfo().username,
      identity, vo: identity?.vo ?? request.vo ?? '', ce: cfg.site.ceHost, lifetimeS: cfg.ticket.lifetimeS,
    }, key, now);
    const who = identity?.fqans[0] ?? (identity?.vo ? `VO ${identity.vo}` : 'unknown user');
    log.push(`allow: ${decision.image.id} for ${who} (${identity?.source}) rule ${decision.rule}`);
    return { output: allowDirectives(decision, { token, jobClass: cfg.lrm.jobClass, who }), decision, request, log, ...(identity ? { identity } : {}) };
  } catch (err) {
    log.push(`internal error: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
    return { output: denyDirectives(`the wnod submit filter failed (${describe(err).split('\n')[0]}); the site log has details`), log };
  }
}
