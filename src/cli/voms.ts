// `wnod voms inspect`: verify a proxy's VOMS identity exactly as the filter does and show it.
import { parseCommandLine, runSubcommand } from './args.js';
import { hostname } from 'node:os';
import { UsageError, WnodError, describe } from '../util/errors.js';

export const summary = 'voms inspect --proxy FILE: verify a proxy\'s VOMS AC and show VO, FQANs, issuer, validity';

const USAGE = `usage: wnod voms inspect --proxy FILE [--vomsdir DIR] [--certdir DIR] [--config FILE] [--host NAME] [--json]
  Verifies the proxy chain and its VOMS attribute certificate (DESIGN A4) and prints the VO, the canonical FQANs,
  the primary FQAN, the AC issuer and its validity. Exit 0 when verified, 1 with the reason otherwise.
  --vomsdir, --certdir  default: trust.* of --config, else /etc/grid-security/{vomsdir,certificates}
  --host                this host, for ACs restricted to targets (default: site.ce_host of --config, else hostname)
  --json                one JSON object on stdout: {"ok":true,"vo",…} or {"ok":false,"error":"<code>: <message>"}
`;

const handlers = { inspect };
export const subcommands = Object.keys(handlers);

export async function run(argv: string[]): Promise<number> {
  return runSubcommand('voms', argv, handlers, USAGE);
}

async function inspect(rest: string[]): Promise<number> {
  const { values } = parseCommandLine({
    args: rest, strict: true, allowPositionals: false,
    options: {
      proxy: { type: 'string' }, vomsdir: { type: 'string' }, certdir: { type: 'string' }, config: { type: 'string' },
      host: { type: 'string' }, json: { type: 'boolean' },
    },
  }, USAGE);
  if (!values.proxy) throw new UsageError(`--proxy FILE is required\n${USAGE}`);
  const json = values.json === true;
  const fail = (err: unknown): number => {
    const text = err instanceof WnodError ? `${err.code}: ${err.message}` : describe(err);
    if (json) process.stdout.write(JSON.stringify({ ok: false, error: text }) + '\n');
    else process.stderr.write(`wnod voms inspect: ${text}\n`);
    return 1;
  };
  try {
    let vomsdir = '/etc/grid-security/vomsdir';
    let certdir = '/etc/grid-security/certificates';
    let host = hostname();
    if (values.config) {
      const { loadConfig } = await import('../config/load.js'); // only when asked: keeps `inspect` light
      const cfg = await loadConfig(values.config);
      ({ vomsdir, certdir } = cfg.trust);
      host = cfg.site.ceHost;
    }
    const { verifyProxyFile } = await import('../voms/index.js');
    const id = await verifyProxyFile(values.proxy, {
      vomsdir: values.vomsdir ?? vomsdir, certdir: values.certdir ?? certdir, host: values.host ?? host,
    });
    if (json) {
      process.stdout.write(JSON.stringify({
        ok: true, vo: id.vo, fqans: id.fqans, primary: id.primary, issuer: id.issuer,
        notBefore: id.notBefore.toISOString(), notAfter: id.notAfter.toISOString(),
        holderSubject: id.holderSubject, holderIssuer: id.holderIssuer,
      }) + '\n');
    } else {
      const [first, ...others] = id.fqans;
      process.stdout.write([
        `VO:         ${id.vo}`,
        `FQANs:      ${first}`, ...others.map((f) => `            ${f}`),
        `Primary:    ${id.primary}`,
        `AC issuer:  ${id.issuer}`,
        `Validity:   ${id.notBefore.toISOString()} – ${id.notAfter.toISOString()}`,
        `Holder:     ${id.holderSubject}`,
        `            (issued by ${id.holderIssuer})`,
      ].join('\n') + '\n');
    }
    return 0;
  } catch (err) {
    return fail(err);
  }
}
