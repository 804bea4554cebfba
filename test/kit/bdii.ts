// Start a REAL resource BDII in a temp dir for tests: Debian's slapd with the bdii-slapd.conf schema set on
// 127.0.0.1:<free port>, and Debian's bdii-update, copied and patched for OpenLDAP 2.5 (DESIGN A3), reading a
// gip dir of our choosing. Everything is stopped (process groups killed) and removed by stop().
import { execa, type ResultPromise } from 'execa';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'ldapts';

export interface BdiiOptions {
  /** LDIF for gip/ldif/site.ldif (Debian's default.ldif with the roots is always there). */
  staticLdif: string;
  /** Seconds bdii-update sleeps between cycles (default 2). */
  breatheS?: number;
  /** BDII_READ_TIMEOUT (default 60). */
  readTimeoutS?: number;
}

export interface RunningBdii {
  url: string;
  port: number;
  dir: string;
  gipDir: string;
  logFile: string;
  /** The bdii-update log so far. */
  log(): Promise<string>;
  /** Poll `check` (with an ldapts client bound to this BDII) until it returns a value other than undefined. */
  waitFor<T>(check: (c: Client) => Promise<T | undefined>, timeoutMs: number, what: string): Promise<T>;
  stop(): Promise<void>;
}

const SLAPD = '/usr/sbin/slapd';
const BDII_UPDATE = '/usr/sbin/bdii-update';
const SLAPD_CONF = '/usr/share/bdii/bdii-slapd.conf';
const DEFAULT_LDIF = '/usr/share/bdii/default.ldif';

/** Debian 12's bdii 6.0.0 still calls `ldapadd -h H -p P`, which OpenLDAP 2.5 removed (fixed upstream in 6.0.2). */
export function patchBdiiUpdate(src: string): string {
  const out = src
    .replace(/-h %s -p %s/g, '-H ldap://%s:%s')
    .replace(/ldapsearch -LLL -x -h %s -b %s/g, 'ldapsearch -LLL -x -H ldap://%s -b %s');
  if (/ -h %s/.test(out)) throw new Error(`${BDII_UPDATE}: a "-h %s" remains after patching; this bdii-update differs from 6.0.0`);
  return out;
}

/** bdii-slapd.conf with pid, args and database directories moved into `dir`. */
export function relocateSlapdConf(conf: string, dir: string): string {
  return conf
    .replace(/^pidfile\s+.*$/m, `pidfile ${join(dir, 'run', 'slapd.pid')}`)
    .replace(/^argsfile\s+.*$/m, `argsfile ${join(dir, 'run', 'slapd.args')}`)
    .replace(/^directory\s+\/var\/lib\/bdii\/db\/(\w+)\s*$/gm, (_, db: string) => `directory ${join(dir, 'db', db)}`);
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => (a && typeof a === 'object' ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The process group of `pid` (field 5 of /proc/<pid>/stat), or undefined when it is gone. */
function pgidOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[2]);
  } catch {
    return undefined;
  }
}

async function killGroup(pgid: number, leader: number): Promise<void> {
  for (const [sig, waitMs] of [['SIGTERM', 3000], ['SIGKILL', 2000]] as const) {
    try {
      process.kill(-pgid, sig);
    } catch {
      return; // group already empty
    }
    for (let t = 0; t < waitMs && alive(leader); t += 50) await sleep(50);
    if (!alive(leader)) return;
  }
}

/** Bind-less ldapts client on the BDII; the caller unbinds. */
function client(url: string): Client {
  return new Client({ url, timeout: 5000, connectTimeout: 2000 });
}

/** Start slapd and bdii-update in a fresh temp dir; resolves once slapd answers (bdii-update fills it ~3.5 s later). */
export async function startBdii(opts: BdiiOptions): Promise<RunningBdii> {
  const dir = await mkdtemp(join(tmpdir(), 'wnod-bdii-'));
  const gipDir = join(dir, 'gip');
  for (const d of ['run', 'db/grid', 'db/glue', 'db/stats', 'var/archive', 'gip/ldif', 'gip/provider', 'gip/plugin']) {
    await mkdir(join(dir, d), { recursive: true });
  }
  const port = await freePort();
  const url = `ldap://127.0.0.1:${port}`;
  const slapdConf = join(dir, 'slapd.conf');
  await writeFile(slapdConf, relocateSlapdConf(await readFile(SLAPD_CONF, 'utf8'), dir), { mode: 0o600 });
  await writeFile(join(gipDir, 'ldif', 'default.ldif'), await readFile(DEFAULT_LDIF, 'utf8'));
  await writeFile(join(gipDir, 'ldif', 'site.ldif'), opts.staticLdif);
  const bdiiUpdate = join(dir, 'bdii-update');
  await writeFile(bdiiUpdate, patchBdiiUpdate(await readFile(BDII_UPDATE, 'utf8')));
  await chmod(bdiiUpdate, 0o755);
  const logFile = join(dir, 'bdii-update.log');
  const pidFile = join(dir, 'run', 'bdii-update.pid');
  const conf = {
    BDII_LOG_FILE: logFile, BDII_PID_FILE: pidFile, BDII_LOG_LEVEL: 'INFO',
    BDII_LDIF_DIR: join(gipDir, 'ldif'), BDII_PROVIDER_DIR: join(gipDir, 'provider'), BDII_PLUGIN_DIR: join(gipDir, 'plugin'),
    BDII_PORT: String(port), BDII_BREATHE_TIME: String(opts.breatheS ?? 2), BDII_READ_TIMEOUT: String(opts.readTimeoutS ?? 60),
    BDII_ARCHIVE_SIZE: '0', BDII_DELETE_DELAY: '0', BDII_VAR_DIR: join(dir, 'var'), BDII_RUN_DIR: join(dir, 'run'),
    BDII_HOSTNAME: '127.0.0.1', SLAPD_CONF: slapdConf,
  };
  const bdiiConf = join(dir, 'bdii.conf');
  await writeFile(bdiiConf, Object.entries(conf).map(([k, v]) => `${k}=${v}`).join('\n') + '\n');

  const procs: { pgid: number; pid: number }[] = [];
  let slapd: ResultPromise | undefined;
  const stop = async () => {
    const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
    if (pid > 0) {
      const pgid = pgidOf(pid);
      if (pgid !== undefined) await killGroup(pgid, pid);
    }
    for (const p of procs.reverse()) await killGroup(p.pgid, p.pid);
    await slapd?.catch(() => {});
    await rm(dir, { recursive: true, force: true });
  };
  try {
    // -d 0: stay in the foreground (no fork), so our process group holds it; root is fine for a test slapd.
    slapd = execa(SLAPD, ['-f', slapdConf, '-h', `${url}/`, '-d', '0'], { detached: true, reject: false, stdio: 'ignore', cleanup: true });
    procs.push({ pgid: slapd.pid!, pid: slapd.pid! });
    await pollUntil(async () => {
      if (!alive(slapd!.pid!)) throw new Error(`slapd exited at start (config ${slapdConf})`);
      const c = client(url);
      try {
        await c.search('', { scope: 'base', filter: '(objectClass=*)' });
        return true;
      } catch {
        return undefined;
      } finally {
        await c.unbind().catch(() => {});
      }
    }, 15_000, 'slapd to answer');
    // bdii-update forks twice and calls setsid: its pid (from the pid file) leads a group we kill on stop().
    await execa('python3', [bdiiUpdate, '-c', bdiiConf, '-d'], { timeout: 60_000, stdio: 'ignore' });
  } catch (err) {
    await stop();
    throw err;
  }

  return {
    url, port, dir, gipDir, logFile,
    log: () => readFile(logFile, 'utf8').catch(() => ''),
    waitFor: <T>(check: (c: Client) => Promise<T | undefined>, timeoutMs: number, what: string) => pollUntil(async () => {
      const c = client(url);
      try {
        return await check(c);
      } catch {
        return undefined;
      } finally {
        await c.unbind().catch(() => {});
      }
    }, timeoutMs, what),
    stop,
  };
}

async function pollUntil<T>(f: () => Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(250);
  }
}

/** The static LDIF of one CREAM CE for tests: GLUE 1.3 Cluster, SubCluster and CE (with GlueForeignKey and
 * access rules), and a GLUE 2.0 ComputingService with its Manager, one endpoint and its access policy. */
export function staticCeLdif(o: { host: string; queue: string; vos: string[]; site?: string }): string {
  const { host, queue } = o;
  const ceId = `${host}:8443/cream-pbs-${queue}`;
  const svc = `${host}_ComputingElement`;
  const mgr = `${svc}_Manager`;
  const ep = `${host}_org.glite.ce.CREAM`;
  const site = o.site ?? 'TEST-SITE';
  const glue1Schema = 'GlueSchemaVersionMajor: 1\nGlueSchemaVersionMinor: 3';
  return `dn: GlueClusterUniqueID=${host},mds-vo-name=resource,o=grid
objectClass: GlueClusterTop
objectClass: GlueCluster
objectClass: GlueInformationService
objectClass: GlueKey
objectClass: GlueSchemaVersion
GlueClusterUniqueID: ${host}
GlueClusterName: ${host}
GlueForeignKey: GlueSiteUniqueID=${site}
GlueForeignKey: GlueCEUniqueID=${ceId}
${glue1Schema}

dn: GlueSubClusterUniqueID=${host},GlueClusterUniqueID=${host},mds-vo-name=resource,o=grid
objectClass: GlueClusterTop
objectClass: GlueSubCluster
objectClass: GlueHostApplicationSoftware
objectClass: GlueHostArchitecture
objectClass: GlueHostMainMemory
objectClass: GlueInformationService
objectClass: GlueKey
objectClass: GlueSchemaVersion
GlueSubClusterUniqueID: ${host}
GlueSubClusterName: ${host}
GlueChunkKey: GlueClusterUniqueID=${host}
GlueHostApplicationSoftwareRunTimeEnvironment: GLITE-3_2_0
GlueHostArchitecturePlatformType: x86_64
GlueHostMainMemoryRAMSize: 16384
${glue1Schema}

dn: GlueCEUniqueID=${ceId},mds-vo-name=resource,o=grid
objectClass: GlueCETop
objectClass: GlueCE
objectClass: GlueCEAccessControlBase
objectClass: GlueCEInfo
objectClass: GlueCEPolicy
objectClass: GlueCEState
objectClass: GlueInformationService
objectClass: GlueKey
objectClass: GlueSchemaVersion
GlueCEUniqueID: ${ceId}
GlueCEName: ${queue}
GlueCEInfoHostName: ${host}
GlueCEImplementationName: CREAM
GlueCEStateStatus: Production
${o.vos.map((v) => `GlueCEAccessControlBaseRule: VO:${v}`).join('\n')}
GlueForeignKey: GlueClusterUniqueID=${host}
${glue1Schema}

dn: GLUE2ServiceID=${svc},GLUE2GroupID=resource,o=glue
objectClass: GLUE2Entity
objectClass: GLUE2Service
objectClass: GLUE2ComputingService
GLUE2ServiceID: ${svc}
GLUE2ServiceType: org.glite.ce.CREAM
GLUE2ServiceQualityLevel: production
GLUE2ServiceAdminDomainForeignKey: ${site}

dn: GLUE2ManagerID=${mgr},GLUE2ServiceID=${svc},GLUE2GroupID=resource,o=glue
objectClass: GLUE2Entity
objectClass: GLUE2Manager
objectClass: GLUE2ComputingManager
GLUE2ManagerID: ${mgr}
GLUE2ManagerProductName: torque
GLUE2ManagerServiceForeignKey: ${svc}

dn: GLUE2EndpointID=${ep},GLUE2ServiceID=${svc},GLUE2GroupID=resource,o=glue
objectClass: GLUE2Entity
objectClass: GLUE2Endpoint
objectClass: GLUE2ComputingEndpoint
GLUE2EndpointID: ${ep}
GLUE2EndpointURL: https://${host}:8443/ce-cream/services
GLUE2EndpointInterfaceName: org.glite.ce.CREAM
GLUE2EndpointQualityLevel: production
GLUE2EndpointHealthState: ok
GLUE2EndpointServingState: production
GLUE2EndpointServiceForeignKey: ${svc}

dn: GLUE2PolicyID=${ep}_Policy,GLUE2EndpointID=${ep},GLUE2ServiceID=${svc},GLUE2GroupID=resource,o=glue
objectClass: GLUE2Entity
objectClass: GLUE2Policy
objectClass: GLUE2AccessPolicy
GLUE2PolicyID: ${ep}_Policy
GLUE2PolicyScheme: org.glite.standard
${o.vos.map((v) => `GLUE2PolicyRule: VO:${v}`).join('\n')}
GLUE2AccessPolicyEndpointForeignKey: ${ep}

`;
}
