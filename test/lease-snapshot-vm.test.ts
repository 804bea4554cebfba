// A lease's VM restored from a warm template (vm.snapshots: true): the first lease of the image cold boots and asks
// for a template; the next one is a restored clone that listens on its own forwarded port, makes its own host key
// and serves ssh. VMs booted here: 2 leases and 1 template.
import t, { type Test } from 'tap';
import { readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { loadConfig } from '../src/config/load.js';
import { lookupTemplate } from '../src/vm/snapshot.js';
import { makeLeaseSite, type LeaseSite } from './kit/leaseSite.js';

let s: LeaseSite;

t.before(async () => {
  s = await makeLeaseSite({ userName: 'wnodleasesnap', vm: { snapshots: true } });
});

t.teardown(async () => {
  if (s) {
    await s.close();
    await rm(s.registry, { recursive: true, force: true });
  }
});

type LeaseJson = { id: string; state: string; jobId?: string; address?: string; hostKey?: string };

async function create(t: Test): Promise<LeaseJson> {
  const r = await s.lease(['create', '--image', 'vm_test', '--ssh-key', s.pubKey, '--hours', '1', '--json']);
  t.equal(r.exitCode, 0, `lease create exits 0 (stderr: ${r.stderr.slice(0, 400)})`);
  return JSON.parse(r.stdout) as LeaseJson;
}

/** How the prologue brought the lease's VM up (the root log's vm-ready). */
async function bootOf(jobId: string): Promise<{ mode?: string; coldReason?: string } | undefined> {
  const cfg = await loadConfig(s.site.configPath);
  const lines = (await readFile(cfg.logFile, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  return lines.find((l) => l.job === jobId && l.event === 'vm-ready')?.boot as { mode?: string } | undefined;
}

t.test('the first lease cold boots and asks for a template; the next is restored, on its own port, with its own host key', async (t) => {
  const first = await create(t);
  t.equal(first.state, 'ready');
  t.match(await bootOf(first.jobId!), { mode: 'cold', coldReason: /no snapshot template yet/ });
  const tdir = join(s.site.stateDir, 'templates');
  let key: string | undefined;
  for (let i = 0; i < 900 && !key; i++) {
    for (const n of await readdir(tdir).catch(() => [] as string[])) if (/^[0-9a-f]{32}$/.test(n) && (await lookupTemplate(tdir, n)).status === 'ready') key = n;
    if (!key) await new Promise((r) => setTimeout(r, 200));
  }
  t.ok(key, `a template was built for the lease's image (log: ${await readFile(join(tdir, 'build.log'), 'utf8').catch(() => '')})`);

  const second = await create(t);
  t.equal(second.state, 'ready', 'the restored lease served ssh');
  t.match(await bootOf(second.jobId!), { mode: 'restore' }, 'its VM was restored from the template');
  t.not(second.address, first.address, 'on a port of its own');
  t.not(second.hostKey, first.hostKey, 'with a host key of its own, made after the restore');
  for (const l of [first, second]) {
    const r = await s.ssh(l.address!, l.hostKey!, 'id -u');
    t.same([r.exitCode, r.stdout], [0, String(s.user.uid)], `ssh into ${l.id} with its host key pinned (stderr: ${r.stderr.slice(0, 200)})`);
  }
  for (const l of [first, second]) {
    t.equal((await s.lease(['delete', l.id, '--json'])).exitCode, 0);
    await s.lrm.wait(l.jobId!);
  }
  t.same(await s.hypervisors(), [], 'no QEMU left');
});
