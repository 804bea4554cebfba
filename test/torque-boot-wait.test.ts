// The starter's wait for the detached boot's outcome (src/job/detachedBoot.ts waitBoot): woken by the outcome's
// rename into place, not by its next look — here the looks are an hour apart, so only the wake can end the wait.
import t from 'tap';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { SiteConfig } from '../src/config/types.js';
import { writeFileAtomic } from '../src/util/atomic.js';
import { waitBoot } from '../src/job/detachedBoot.js';

const HOUR = 3_600_000;
const root = t.testdir({});
let n = 0;

/** A state dir with its torque/ directory, as the prologue leaves it. */
async function site(): Promise<{ cfg: SiteConfig; outcome: (jobId: string) => string }> {
  const stateDir = join(root, `s${n++}`);
  await mkdir(join(stateDir, 'torque'), { recursive: true });
  return { cfg: { vm: { stateDir } } as SiteConfig, outcome: (jobId) => join(stateDir, 'torque', `${jobId}.boot`) };
}

/** `p`, or a failure if it has not settled within `ms` (a guard against a hang, not a timing assertion). */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const guard = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: still waiting`)), ms); });
  try {
    return await Promise.race([p, guard]);
  } finally {
    clearTimeout(timer);
  }
}

t.test('an outcome written while the starter waits wakes it (its next look would be an hour later)', async (t) => {
  const { cfg, outcome } = await site();
  const waiting = waitBoot(cfg, '7.wn1', Date.now() + 2 * HOUR, { pollMs: HOUR });
  await new Promise((r) => setTimeout(r, 100)); // the starter is in its wait
  await writeFileAtomic(outcome('7.wn1'), 'ready\n', 0o640);
  t.same(await within(waiting, 60_000, 'ready'), { kind: 'ready' });
});

t.test('a refusal and a fault carry their reason; another job\'s outcome does not end the wait', async (t) => {
  const { cfg, outcome } = await site();
  const refused = waitBoot(cfg, '8.wn1', Date.now() + 2 * HOUR, { pollMs: HOUR });
  const failed = waitBoot(cfg, '9.wn1', Date.now() + 2 * HOUR, { pollMs: HOUR });
  let failedDone = false;
  void failed.then(() => { failedDone = true; });
  await new Promise((r) => setTimeout(r, 100));
  await writeFileAtomic(outcome('8.wn1'), 'refuse\nimage vm_x is not allowed here\n', 0o640);
  t.same(await within(refused, 60_000, 'refuse'), { kind: 'refuse', reason: 'image vm_x is not allowed here' });
  t.notOk(failedDone, 'job 9 still waits for its own outcome');
  await writeFileAtomic(outcome('9.wn1'), 'fault\nQEMU did not start\n', 0o640);
  t.same(await within(failed, 60_000, 'fault'), { kind: 'fault', reason: 'QEMU did not start' });
});

t.test('an outcome already there is read at once; past the deadline the wait ends as a fault', async (t) => {
  const { cfg, outcome } = await site();
  await writeFileAtomic(outcome('10.wn1'), 'ready\n', 0o640);
  t.same(await within(waitBoot(cfg, '10.wn1', Date.now() + HOUR, { pollMs: HOUR }), 60_000, 'present'), { kind: 'ready' });
  const late = await within(waitBoot(cfg, '11.wn1', Date.now() + 200), 60_000, 'deadline');
  t.equal(late.kind, 'fault');
  t.match(late, { reason: /did not start in time/ });
});

t.test('something that is not an outcome is an error, not a wait', async (t) => {
  const { cfg, outcome } = await site();
  const waiting = waitBoot(cfg, '12.wn1', Date.now() + 2 * HOUR, { pollMs: HOUR });
  await new Promise((r) => setTimeout(r, 100));
  await writeFileAtomic(outcome('12.wn1'), 'maybe\n', 0o640);
  await t.rejects(within(waiting, 60_000, 'bad'), { code: 'bad-boot-outcome' });
});
