// Which CEs offer which images, from GLUE 1.3 and GLUE 2.0 entries as read from a BDII (pure: entries in,
// CE list out). GLUE 1.3 is joined the way the gLite WMS does it; GLUE 2.0 through the foreign keys.

/** An LDAP entry with attribute names lower-cased and every value a string. */
export interface Entry {
  dn: string;
  attrs: Record<string, string[]>;
}

export interface Glue1Entries {
  ces: Entry[];
  clusters: Entry[];
  /** In the order the server returned them: the first of a cluster is the one the WMS uses. */
  subClusters: Entry[];
}

export interface Glue2Entries {
  services: Entry[];
  managers: Entry[];
  endpoints: Entry[];
  accessPolicies: Entry[];
  applicationEnvironments: Entry[];
  executionEnvironments: Entry[];
}

/** One CE in the answer of `wnod find` (the `--json` shape). */
export interface FoundCe {
  /** GLUE 1.3 GlueCEUniqueID (host:8443/cream-pbs-queue), or the GLUE2 ComputingService ID when only GLUE 2.0 has it. */
  ce: string;
  host: string;
  images: string[];
  vos: string[];
  source: 'glue1' | 'glue2' | 'both';
  /** GLUE2 ComputingService ID, or null. */
  glue2Service: string | null;
  /** GLUE2 endpoint URLs of that service. */
  endpoints: string[];
}

export interface FindQuery {
  image?: string;
  vo?: string;
}

const first = (e: Entry, a: string): string | undefined => e.attrs[a.toLowerCase()]?.[0];
const all = (e: Entry, a: string): string[] => e.attrs[a.toLowerCase()] ?? [];
const lc = (s: string) => s.toLowerCase();

/** The VO named by an access rule: `VO:atlas`, `VOMS:/atlas/Role=x` → atlas; other rules (DENY:, ...) → none. */
export function ruleToVo(rule: string): string | undefined {
  let m = /^VO:([^/\s]+)$/i.exec(rule.trim());
  if (m) return m[1];
  m = /^VOMS:\/([^/\s]+)/i.exec(rule.trim());
  return m ? m[1] : undefined;
}

function uniq(xs: Iterable<string>): string[] {
  return [...new Set(xs)];
}

/** Host of a URL or of a `host:port/...` CE id. */
export function hostOf(s: string): string {
  const m = /^(?:[a-z][a-z0-9+.-]*:\/\/)?\[?([^/:\]]+)/i.exec(s);
  return m ? m[1]!.toLowerCase() : '';
}

interface Offer { images: string[]; vos: string[] }

/** GLUE 1.3: GlueCE → GlueForeignKey GlueClusterUniqueID → the cluster → its FIRST GlueSubCluster's RTE tags. */
export function glue1Offers(g: Glue1Entries): Map<string, Offer & { host: string }> {
  const clusterIds = new Set(g.clusters.map((c) => first(c, 'GlueClusterUniqueID')).filter((x): x is string => !!x));
  const firstSub = new Map<string, Entry>();
  for (const sc of g.subClusters) {
    const key = all(sc, 'GlueChunkKey').map((k) => /^GlueClusterUniqueID=(.+)$/i.exec(k)?.[1]).find((x) => x !== undefined)
      ?? /,GlueClusterUniqueID=([^,]+)/i.exec(sc.dn)?.[1];
    if (key !== undefined && !firstSub.has(key)) firstSub.set(key, sc);
  }
  const out = new Map<string, Offer & { host: string }>();
  for (const ce of g.ces) {
    const id = first(ce, 'GlueCEUniqueID');
    if (!id) continue;
    const cluster = all(ce, 'GlueForeignKey').map((k) => /^GlueClusterUniqueID=(.+)$/i.exec(k)?.[1]).find((x) => x !== undefined);
    const sc = cluster !== undefined && clusterIds.has(cluster) ? firstSub.get(cluster) : undefined;
    const tags = sc ? all(sc, 'GlueHostApplicationSoftwareRunTimeEnvironment') : [];
    out.set(id, {
      host: lc(first(ce, 'GlueCEInfoHostName') ?? hostOf(id)),
      images: tags,
      vos: uniq(all(ce, 'GlueCEAccessControlBaseRule').map(ruleToVo).filter((x): x is string => !!x)),
    });
  }
  return out;
}

interface Glue2Offer extends Offer { vmImages: string[]; endpoints: string[] }

/** GLUE 2.0: ApplicationEnvironment → ComputingManager → ComputingService → endpoints (URLs, access policies).
 * `vmImages` are the environments whose ExecutionEnvironment is a virtual machine (what wnod publishes). */
export function glue2Offers(g: Glue2Entries): Map<string, Glue2Offer> {
  const serviceOfManager = new Map<string, string>();
  for (const m of g.managers) {
    const id = first(m, 'GLUE2ManagerID');
    const svc = first(m, 'GLUE2ManagerServiceForeignKey');
    if (id && svc) serviceOfManager.set(id, svc);
  }
  const vmEe = new Set(g.executionEnvironments.filter((e) => lc(first(e, 'GLUE2ExecutionEnvironmentVirtualMachine') ?? '') === 'true')
    .map((e) => first(e, 'GLUE2ResourceID')).filter((x): x is string => !!x));
  const out = new Map<string, Glue2Offer>();
  for (const s of g.services) {
    const id = first(s, 'GLUE2ServiceID');
    if (id) out.set(id, { images: [], vmImages: [], vos: [], endpoints: [] });
  }
  const serviceOfEndpoint = new Map<string, string>();
  for (const ep of g.endpoints) {
    const svc = first(ep, 'GLUE2EndpointServiceForeignKey');
    const o = svc !== undefined ? out.get(svc) : undefined;
    if (!o) continue;
    const url = first(ep, 'GLUE2EndpointURL');
    if (url) o.endpoints.push(url);
    const epId = first(ep, 'GLUE2EndpointID');
    if (epId) serviceOfEndpoint.set(epId, svc!);
  }
  for (const p of g.accessPolicies) {
    for (const epId of all(p, 'GLUE2AccessPolicyEndpointForeignKey')) {
      const o = out.get(serviceOfEndpoint.get(epId) ?? '');
      if (o) o.vos = uniq([...o.vos, ...all(p, 'GLUE2PolicyRule').map(ruleToVo).filter((x): x is string => !!x)]);
    }
  }
  for (const ae of g.applicationEnvironments) {
    const o = out.get(serviceOfManager.get(first(ae, 'GLUE2ApplicationEnvironmentComputingManagerForeignKey') ?? '') ?? '');
    if (!o) continue;
    const appName = first(ae, 'GLUE2ApplicationEnvironmentAppName') ?? '';
    const version = first(ae, 'GLUE2ApplicationEnvironmentAppVersion');
    const name = first(ae, 'GLUE2EntityName') ?? (version ? `${appName}-${version}` : appName);
    if (!name) continue;
    o.images.push(name);
    if (all(ae, 'GLUE2ApplicationEnvironmentExecutionEnvironmentForeignKey').some((k) => vmEe.has(k))) o.vmImages.push(name);
  }
  return out;
}

/** Merge both models into one list of CEs offering images, filtered by image (case-insensitive, as the WMS's
 * Member() on an IA5 attribute) and VO. Without --image a GLUE 1.3 CE lists its RTE tags except `VO-*` ones
 * (GLUE 1.3 cannot tell an image tag from other software); a GLUE 2.0 service lists its VM environments. */
export function findCes(g1: Glue1Entries, g2: Glue2Entries, q: FindQuery): FoundCe[] {
  const o1 = glue1Offers(g1);
  const o2 = glue2Offers(g2);
  const pick = (names: string[]): string[] =>
    q.image === undefined ? names : names.filter((n) => lc(n) === lc(q.image!));
  const voOk = (vos: string[]) => q.vo === undefined || vos.includes(q.vo);
  const hostsOf2 = new Map<string, string[]>();
  for (const [id, o] of o2) hostsOf2.set(id, uniq(o.endpoints.map(hostOf).filter(Boolean)));
  const used2 = new Set<string>();
  const out: FoundCe[] = [];
  for (const [ceId, o] of o1) {
    const svc = [...o2.keys()].find((id) => hostsOf2.get(id)!.includes(o.host));
    const s = svc !== undefined ? o2.get(svc)! : undefined;
    if (svc !== undefined) used2.add(svc);
    const img1 = pick(q.image === undefined ? o.images.filter((t) => !/^VO-/i.test(t)) : o.images);
    const img2 = s ? pick(q.image === undefined ? s.vmImages : s.images) : [];
    const vos = uniq([...o.vos, ...(s?.vos ?? [])]);
    if (!voOk(vos)) continue;
    const images = img2.length > 0 ? uniq([...img2, ...img1.filter((t) => img2.some((n) => lc(n) === lc(t)))]) : img1;
    if (images.length === 0) continue;
    const source = img1.length > 0 && img2.length > 0 ? 'both' : img1.length > 0 ? 'glue1' : 'glue2';
    out.push({ ce: ceId, host: o.host, images: uniq(q.image === undefined ? images : [images[0]!]), vos, source,
      glue2Service: svc ?? null, endpoints: s?.endpoints ?? [] });
  }
  for (const [id, s] of o2) {
    if (used2.has(id)) continue;
    const images = pick(q.image === undefined ? s.vmImages : s.images);
    if (images.length === 0 || !voOk(s.vos)) continue;
    out.push({ ce: id, host: hostsOf2.get(id)![0] ?? '', images: uniq(images), vos: s.vos, source: 'glue2', glue2Service: id, endpoints: s.endpoints });
  }
  return out.sort((a, b) => a.ce.localeCompare(b.ce));
}
