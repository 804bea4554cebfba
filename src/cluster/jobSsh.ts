/** The ssh keys of one multi-node job: a user key (every VM of the job accepts it, and holds it for the job user)
 * and a host key (every VM of the job serves it, and every VM's known_hosts names it for the job's host names and
 * addresses), so that the job's VMs ssh to each other without a password or a prompt, and to nothing else.
 *
 * Every node of the job derives the same keys on its own, with nothing exchanged: HKDF-SHA256 of the site's
 * root-only secret (`job_network.secret_file`, the same on every worker node) with the job id and the job user's
 * uid. Threat model: another user of the site cannot compute a job's key without the secret (root on the worker
 * nodes only); the key never travels through anything the user or other users can write or read (no job comment,
 * no shared file system): it reaches the guest only in the root-only context archive. A job id that the batch
 * system reuses (state reset) for the same user gives the same key again: that user already had it, and the old
 * job's VMs are gone with its network. The job user holds the private key inside their VMs by design. */
import { createHash, createPrivateKey, createPublicKey, hkdfSync } from 'node:crypto';
import { open } from 'node:fs/promises';
import { constants } from 'node:fs';
import { WnodError } from '../util/errors.js';

export class JobSecretError extends WnodError {
  constructor(message: string) {
    super('jobnet-secret', message);
  }
}

export interface SshKeyPair {
  /** OpenSSH private key file text (unencrypted `openssh-key-v1`, ed25519) */
  privateKey: string;
  /** `ssh-ed25519 <base64> <comment>`: an authorized_keys / known_hosts key */
  publicKey: string;
}

export interface JobSshKeys {
  user: SshKeyPair;
  host: SshKeyPair;
}

const SECRET_MIN = 32;
const SECRET_MAX = 4096;

/** The site secret: a regular file owned by root, readable by nobody else, 32..4096 bytes. */
export async function readJobSecret(path: string): Promise<Buffer> {
  let fh;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    throw new JobSecretError(`cannot open the job network secret ${path}: ${(err as Error).message}`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile() || st.uid !== 0 || (st.mode & 0o077) !== 0) throw new JobSecretError(`${path} must be a regular file owned by root and readable by root only (0600)`);
    if (st.size < SECRET_MIN || st.size > SECRET_MAX) throw new JobSecretError(`${path} must hold ${SECRET_MIN}..${SECRET_MAX} bytes (e.g. head -c 32 /dev/urandom), it has ${st.size}`);
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}

const u32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32BE(n >>> 0); return b; };
const sshString = (b: Buffer | string) => { const x = Buffer.isBuffer(b) ? b : Buffer.from(b); return Buffer.concat([u32(x.length), x]); };
/** PKCS#8 DER of an ed25519 private key is this prefix and the 32-byte seed (RFC 8410). */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/** An ed25519 key pair from a 32-byte seed, in OpenSSH's formats. Pure. */
export function ed25519FromSeed(seed: Buffer, comment: string): SshKeyPair {
  if (seed.length !== 32) throw new Error('an ed25519 seed is 32 bytes');
  if (!/^[\x21-\x7e]{1,128}$/.test(comment)) throw new Error(`bad key comment ${JSON.stringify(comment)}`);
  const priv = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  const pub = (createPublicKey(priv).export({ format: 'der', type: 'spki' }) as Buffer).subarray(-32);
  const pubBlob = Buffer.concat([sshString('ssh-ed25519'), sshString(pub)]);
  // the check word only has to repeat itself (it detects a wrong passphrase): fixed by the key, so the file is too
  const check = createHash('sha256').update(pub).digest().subarray(0, 4);
  let inner = Buffer.concat([check, check, sshString('ssh-ed25519'), sshString(pub), sshString(Buffer.concat([seed, pub])), sshString(comment)]);
  const pad = (8 - (inner.length % 8)) % 8;
  inner = Buffer.concat([inner, Buffer.from(Array.from({ length: pad }, (_, i) => i + 1))]);
  const body = Buffer.concat([Buffer.from('openssh-key-v1\0'), sshString('none'), sshString('none'), sshString(''), u32(1), sshString(pubBlob), sshString(inner)]);
  const b64 = body.toString('base64').replace(/.{1,70}/g, '$&\n');
  return {
    privateKey: `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64}-----END OPENSSH PRIVATE KEY-----\n`,
    publicKey: `ssh-ed25519 ${pubBlob.toString('base64')} ${comment}`,
  };
}

/** The job's keys (pure over the secret): one HKDF per role, bound to the job id and its user's uid. */
export function jobSshKeys(secret: Buffer, jobId: string, uid: number): JobSshKeys {
  if (secret.length < SECRET_MIN) throw new JobSecretError(`the job network secret must hold at least ${SECRET_MIN} bytes`);
  if (!/^[A-Za-z0-9._-]{1,128}$/.test(jobId) || !Number.isInteger(uid) || uid < 0) throw new Error(`bad job identity ${JSON.stringify({ jobId, uid })}`);
  const seed = (role: string) => Buffer.from(hkdfSync('sha256', secret, 'wnod job ssh v1', `${role}\0${jobId}\0${uid}`, 32));
  return {
    user: ed25519FromSeed(seed('user'), `wnod-job-${jobId}`),
    host: ed25519FromSeed(seed('host'), `wnod-job-${jobId}-host`),
  };
}

/** known_hosts: the job's host key for every VM's name and address, one per line (dropbear's client matches a
 * line's first word only, OpenSSH's reads either). Pure. */
export function knownHosts(host: SshKeyPair, vms: ReadonlyArray<{ name: string; ip: string }>): string {
  const key = host.publicKey.split(' ').slice(0, 2).join(' ');
  return vms.flatMap((v) => [`${v.name} ${key}\n`, `${v.ip} ${key}\n`]).join('');
}
