// Read the GLUE 1.3 and GLUE 2.0 entries `wnod find` needs from a BDII (anonymous LDAP, ldapts), within a deadline.
import { Client, type Entry as LdapEntry } from 'ldapts';
import { WnodError, describe } from '../util/errors.js';
import type { Entry, Glue1Entries, Glue2Entries } from './discover.js';

/** The BDII could not be asked (bad URL, unreachable, timeout, LDAP error); the message names the URL. */
export class BdiiError extends WnodError {
  constructor(message: string) {
    super('bdii', message);
  }
}

const BDII_URL = /^ldaps?:\/\/(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?\/?$/;

/** Check `ldap://HOST:PORT` (the URL names only the server; the bases are GLUE's). */
export function checkBdiiUrl(url: string): string {
  if (!BDII_URL.test(url)) throw new BdiiError(`--bdii: ${JSON.stringify(url)} is not ldap://HOST[:PORT] (a BDII listens on 2170)`);
  return url.replace(/\/$/, '');
}

function toEntry(e: LdapEntry): Entry {
  const attrs: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(e)) {
    if (k === 'dn') continue;
    const vals = Array.isArray(v) ? v : [v];
    attrs[k.toLowerCase()] = vals.map((x) => (typeof x === 'string' ? x : x.toString('utf8')));
  }
  return { dn: e.dn, attrs };
}

const GLUE1 = {
  ces: ['(objectClass=GlueCE)', ['GlueCEUniqueID', 'GlueForeignKey', 'GlueCEAccessControlBaseRule', 'GlueCEInfoHostName']],
  clusters: ['(objectClass=GlueCluster)', ['GlueClusterUniqueID']],
  subClusters: ['(objectClass=GlueSubCluster)', ['GlueSubClusterUniqueID', 'GlueChunkKey', 'GlueHostApplicationSoftwareRunTimeEnvironment']],
} as const;

const GLUE2 = {
  services: ['(objectClass=GLUE2ComputingService)', ['GLUE2ServiceID']],
  managers: ['(objectClass=GLUE2Manager)', ['GLUE2ManagerID', 'GLUE2ManagerServiceForeignKey']],
  endpoints: ['(objectClass=GLUE2Endpoint)', ['GLUE2EndpointID', 'GLUE2EndpointURL', 'GLUE2EndpointServiceForeignKey']],
  accessPolicies: ['(objectClass=GLUE2AccessPolicy)', ['GLUE2PolicyRule', 'GLUE2AccessPolicyEndpointForeignKey']],
  applicationEnvironments: ['(objectClass=GLUE2ApplicationEnvironment)', ['GLUE2ApplicationEnvironmentID', 'GLUE2EntityName',
    'GLUE2ApplicationEnvironmentAppName', 'GLUE2ApplicationEnvironmentAppVersion',
    'GLUE2ApplicationEnvironmentComputingManagerForeignKey', 'GLUE2ApplicationEnvironmentExecutionEnvironmentForeignKey']],
  executionEnvironments: ['(objectClass=GLUE2ExecutionEnvironment)', ['GLUE2ResourceID', 'GLUE2ExecutionEnvironmentVirtualMachine']],
} as const;

/** Read both GLUE trees from `url`; the whole exchange ends within `timeoutMs` or throws BdiiError. A missing
 * suffix (a BDII without o=glue) yields empty lists for it. */
export async function readBdii(url: string, timeoutMs: number): Promise<{ glue1: Glue1Entries; glue2: Glue2Entries }> {
  // ldapts' own timeouts only back up our deadline (which gives the clearer message).
  const client = new Client({ url: checkBdiiUrl(url), timeout: timeoutMs + 1000, connectTimeout: timeoutMs + 1000, strictDN: false });
  const search = async (base: string, filter: string, attributes: readonly string[]): Promise<Entry[]> => {
    try {
      const r = await client.search(base, { scope: 'sub', filter, attributes: [...attributes], timeLimit: Math.ceil(timeoutMs / 1000) });
      return r.searchEntries.map(toEntry);
    } catch (err) {
      if ((err as { code?: unknown }).code === 32) return []; // noSuchObject: this BDII has no such suffix
      throw err;
    }
  };
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new BdiiError(`BDII ${url} did not answer within ${timeoutMs / 1000} s`)), timeoutMs);
  });
  const work = (async () => {
    const glue1 = {} as Record<keyof typeof GLUE1, Entry[]>;
    for (const [k, [f, a]] of Object.entries(GLUE1)) glue1[k as keyof typeof GLUE1] = await search('o=grid', f, a);
    const glue2 = {} as Record<keyof typeof GLUE2, Entry[]>;
    for (const [k, [f, a]] of Object.entries(GLUE2)) glue2[k as keyof typeof GLUE2] = await search('o=glue', f, a);
    return { glue1, glue2 };
  })();
  try {
    return await Promise.race([work, deadline]);
  } catch (err) {
    if (err instanceof BdiiError) throw err;
    throw new BdiiError(`cannot query BDII ${url}: ${describe(err) || (err as { code?: string }).code || 'connection failed'}`);
  } finally {
    clearTimeout(timer);
    work.catch(() => {}); // already reported through the race
    await client.unbind().catch(() => {});
  }
}
