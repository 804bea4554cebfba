// A job user's working directory for the batch-system tests: made by root, handed to the user (0755, so root's
// checks can read it), removed at the test's end; scripts go in as the user's, outputs come back as text.
import type { Test } from 'tap';
import { chmod, chown, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface UserWorkdir {
  dir: string;
  /** `#!/bin/sh` + body, 0755, owned by the user; resolves to its path */
  script(name: string, body: string): Promise<string>;
  /** a file's text, '' while it does not exist */
  read(name: string): Promise<string>;
}

export async function userWorkdir(t: Test, user: { uid: number; gid: number }, prefix: string): Promise<UserWorkdir> {
  const dir = await mkdtemp(`/tmp/${prefix}`);
  await chown(dir, user.uid, user.gid);
  await chmod(dir, 0o755);
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return {
    dir,
    async script(name, body) {
      const p = join(dir, name);
      await writeFile(p, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
      await chown(p, user.uid, user.gid);
      return p;
    },
    read: (name) => readFile(join(dir, name), 'utf8').catch(() => ''),
  };
}
