/** Users and groups of this host, read from /etc/passwd and /etc/group directly: root code must not run helpers
 * (`id`, `getent`) found through PATH. Sites whose job users live only in NSS (LDAP, sssd) need them in the files
 * too — the LRM's own daemons see them there on a worker node anyway. */
import { readFile } from 'node:fs/promises';

export interface PasswdEntry { name: string; uid: number; gid: number; home: string; shell: string }

const INT = /^[0-9]{1,10}$/;

/** The /etc/passwd entry of `name` in `text` (pure); undefined when absent or malformed. */
export function findPasswdEntry(text: string, name: string): PasswdEntry | undefined {
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 7 || f[0] !== name) continue;
    if (!INT.test(f[2]!) || !INT.test(f[3]!)) return undefined;
    return { name, uid: Number(f[2]), gid: Number(f[3]), home: f[5]!, shell: f[6]! };
  }
  return undefined;
}

/** The gid of group `name` in /etc/group `text` (pure). */
export function findGroupId(text: string, name: string): number | undefined {
  for (const line of text.split('\n')) {
    const [group, , gid] = line.split(':');
    if (group === name && gid !== undefined && INT.test(gid)) return Number(gid);
  }
  return undefined;
}

/** The passwd entry of user `name`, or undefined. */
export async function lookupUser(name: string, passwdFile = '/etc/passwd'): Promise<PasswdEntry | undefined> {
  return findPasswdEntry(await readFile(passwdFile, 'utf8').catch(() => ''), name);
}

/** The gid of group `name`, or undefined. */
export async function lookupGroupId(name: string, groupFile = '/etc/group'): Promise<number | undefined> {
  return findGroupId(await readFile(groupFile, 'utf8').catch(() => ''), name);
}
