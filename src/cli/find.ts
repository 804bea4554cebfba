// `wnod find`: which CEs offer VM images, read from a BDII (GLUE 1.3 and GLUE 2.0).
import { parseCommandLine } from './args.js';
import { UsageError } from '../util/errors.js';

export const summary = 'list the CEs a BDII publishes with images (GLUE 1.3 and 2.0), by image and VO';

const USAGE = `usage: wnod find --bdii ldap://HOST:2170 [--image ID] [--vo VO] [--json] [--timeout S]
  ${summary}
  --image ID     only CEs offering this image (case-insensitive, as Member() in a JDL)
  --vo VO        only CEs open to this VO (GlueCEAccessControlBaseRule / GLUE2 access policies)
  --json         {"bdii":URL,"ces":[{"ce","host","images","vos","source":"glue1"|"glue2"|"both","glue2Service","endpoints"}]}
  --timeout S    give up after S seconds (default 15); exit 1 with the reason
`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandLine({
    args: argv, strict: true, allowPositionals: false,
    options: {
      bdii: { type: 'string' }, image: { type: 'string' }, vo: { type: 'string' },
      json: { type: 'boolean' }, timeout: { type: 'string' },
    },
  }, USAGE);
  if (!values.bdii) throw new UsageError(`--bdii is required\n${USAGE}`);
  const timeoutS = values.timeout === undefined ? 15 : Number(values.timeout);
  if (!Number.isFinite(timeoutS) || timeoutS <= 0 || timeoutS > 3600) {
    throw new UsageError(`--timeout: ${JSON.stringify(values.timeout)} is not a number of seconds in (0, 3600]`);
  }
  const { readBdii, checkBdiiUrl } = await import('../glue/bdii-client.js');
  const { findCes } = await import('../glue/discover.js');
  const url = checkBdiiUrl(values.bdii);
  const { glue1, glue2 } = await readBdii(url, Math.round(timeoutS * 1000));
  const ces = findCes(glue1, glue2, { ...(values.image ? { image: values.image } : {}), ...(values.vo ? { vo: values.vo } : {}) });
  if (values.json) {
    process.stdout.write(JSON.stringify({ bdii: url, ces }) + '\n');
  } else if (ces.length === 0) {
    process.stdout.write('no CE found\n');
  } else {
    for (const c of ces) {
      process.stdout.write(`${c.ce}  images=${c.images.join(',')}  vos=${c.vos.join(',') || '-'}  (${c.source === 'both' ? 'GLUE 1.3+2.0' : c.source === 'glue1' ? 'GLUE 1.3' : 'GLUE 2.0'})\n`);
    }
  }
  return 0;
}
