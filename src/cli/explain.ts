import { parseCommandLine } from './args.js';
import { readFile } from 'node:fs/promises';
import { DEFAULT_CONFIG_PATH, loadConfig } from '../config/load.js';
import { UsageError, WnodError, describe } from '../util/errors.js';
import { parseClassAd } from '../jdl/classad.js';
import { renderBlahScript, unwindCeRequirements } from '../jdl/unwind.js';
import { parseBlahScript } from '../jdl/blahScript.js';
import { requestFromScript, type JobRequest } from '../jdl/request.js';
import { decide, type Decision, type Identity } from '../policy/decide.js';
import { canonicalFqan } from '../voms/fqan.js';
import { allowDirectives, denyDirectives } from '../filter/directives.js';
import { decideRequest } from '../filter/filter.js';
import { unverifiedRefusal } from '../filter/identity.js';

export const summary = 'show what the submit filter decides for a CeRequirements expression or a BLAH script';

const USAGE = `usage: wnod explain [--config FILE] (--cereq 'EXPR' | --req-script FILE) (--proxy FILE | --fqan FQAN... | --vo VO) [--json]
  --cereq EXPR       a JDL CeRequirements expression, unwound exactly as blahpd does
  --req-script FILE  a BLAH temp script (NAME='value' lines) as the filter receives it
  --proxy FILE       a VOMS proxy, verified against the config's vomsdir and certdir
  --fqan FQAN        FQANs taken as given (repeat; the first is primary)
  --vo VO            only the VO is known (what the filter sees without FQANs)
exit 0 when allowed, 1 when denied, 2 on bad input`;

function requestOf(values: { cereq?: string | undefined; 'req-script'?: string | undefined }, scriptText?: string): JobRequest {
  if (values.cereq !== undefined) {
    // blahpd's protocol is line-based: a raw line break ends the submit command, and blahpd refuses it.
    const brk = /[\r\n]/.exec(values.cereq);
    if (brk) {
      throw new WnodError('cereq-line-break', `CeRequirements holds a raw line break (offset ${brk.index}): blahpd rejects ` +
        'the submission, so the job would never reach the filter (write \\n inside a string if you mean one)');
    }
    const expr = parseClassAd(values.cereq);
    return requestFromScript(parseBlahScript(renderBlahScript(unwindCeRequirements(expr))));
  }
  return requestFromScript(parseBlahScript(scriptText ?? ''));
}

function describeRequest(req: JobRequest): string {
  const parts: string[] = [];
  parts.push(req.tags.length ? `tags ${req.tags.join(', ')}` : 'no image tag');
  if (req.memoryMinMB !== undefined) parts.push(`memory >= ${req.memoryMinMB} MB`);
  if (req.memoryMaxMB !== undefined) parts.push(`memory <= ${req.memoryMaxMB} MB`);
  if (req.cpus !== undefined) parts.push(`${req.cpus} cpus`);
  return parts.join('; ');
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandLine({
    args: argv, strict: true, allowPositionals: false,
    options: {
      config: { type: 'string' }, cereq: { type: 'string' }, 'req-script': { type: 'string' },
      proxy: { type: 'string' }, fqan: { type: 'string', multiple: true }, vo: { type: 'string' },
      json: { type: 'boolean' },
    },
  }, USAGE);
  if ((values.cereq === undefined) === (values['req-script'] === undefined)) throw new UsageError(`give exactly one of --cereq and --req-script\n${USAGE}`);
  const ids = [values.proxy !== undefined, values.fqan !== undefined, values.vo !== undefined].filter(Boolean).length;
  if (ids !== 1) throw new UsageError(`give exactly one of --proxy, --fqan and --vo\n${USAGE}`);

  const fail = (reason: string, code: number): number => {
    if (values.json) process.stdout.write(JSON.stringify({ allow: false, reason }) + '\n');
    else process.stderr.write(`wnod explain: ${reason}\n`);
    return code;
  };

  const cfg = await loadConfig(values.config ?? DEFAULT_CONFIG_PATH);
  let req: JobRequest;
  try {
    const text = values['req-script'] !== undefined ? await readFile(values['req-script'], 'utf8') : undefined;
    req = requestOf(values, text);
  } catch (err) {
    if (err instanceof WnodError && err.code === 'cereq-line-break') return fail(err.message, 2);
    if (err instanceof WnodError) {
      const what = values.cereq !== undefined ? 'CeRequirements' : `BLAH script ${values['req-script']}`;
      return fail(`${what}: ${describe(err)} (blahpd would drop a malformed expression and submit the job with no requirement)`, 2);
    }
    throw err;
  }

  let identity: Identity | undefined;
  let decision: Decision;
  const now = new Date();
  if (values.proxy !== undefined) {
    ({ decision, identity } = await decideRequest({ ...req, proxyPath: values.proxy }, cfg, now));
  } else {
    try {
      identity = values.fqan
        ? { fqans: values.fqan.map((f) => canonicalFqan(f)), source: 'blah' }
        : { vo: values.vo, fqans: [], source: 'vo' };
    } catch (err) {
      return fail(`--fqan: ${describe(err)}`, 2);
    }
    identity.vo ??= identity.fqans[0]?.split('/')[1];
    const unverified = unverifiedRefusal(identity, cfg.trust);
    decision = unverified ? { allow: false, reason: `${unverified} (explain: give --proxy to see the policy's decision)` }
      : decide(req, identity, { policy: cfg.policy, images: cfg.images, defaultQueue: cfg.lrm.queue });
  }

  const who = identity?.fqans[0] ?? (identity?.vo ? `VO ${identity.vo}` : 'unknown');
  if (values.json) {
    const out = decision.allow
      ? { allow: true, image: decision.image.id, cpus: decision.cpus, memoryMB: decision.memoryMB, rule: decision.rule,
          queue: decision.queue ?? null, digest: decision.image.digest, requested: decision.requested,
          identity: identity ? { vo: identity.vo ?? null, fqans: identity.fqans, source: identity.source } : null, tags: req.tags }
      : { allow: false, reason: decision.reason, rule: decision.rule ?? null,
          identity: identity ? { vo: identity.vo ?? null, fqans: identity.fqans, source: identity.source } : null, tags: req.tags };
    process.stdout.write(JSON.stringify(out) + '\n');
    return decision.allow ? 0 : 1;
  }
  const lines = [
    `request:  ${describeRequest(req)}`,
    `identity: ${who}${identity ? ` (${identity.source === 'proxy' ? 'verified proxy' : identity.source === 'vo' ? 'VO only' : 'given, not verified'})` : ''}`,
  ];
  if (decision.allow) {
    lines.push(`decision: ALLOW by rule ${decision.rule}${decision.requested ? '' : ' (no image requested: the rule\'s default)'}`,
      `image:    ${decision.image.id} — ${decision.image.title} (digest ${decision.image.digest.slice(0, 16)}…)`,
      `cpus:     ${decision.cpus}`, `memory:   ${decision.memoryMB} MB`, `queue:    ${decision.queue ?? '(BLAH\'s)'}`,
      'directives the filter prints (ticket elided):',
      ...allowDirectives(decision, { token: '<signed ticket>', who, lrm: cfg.lrm }).trimEnd().split('\n').map((l) => `  ${l}`));
  } else {
    lines.push(`decision: DENY${decision.rule ? ` (rule ${decision.rule})` : ''}`, `reason:   ${decision.reason}`,
      'directives the filter prints:', `  ${denyDirectives(decision.reason).trimEnd()}`);
  }
  process.stdout.write(lines.join('\n') + '\n');
  return decision.allow ? 0 : 1;
}
