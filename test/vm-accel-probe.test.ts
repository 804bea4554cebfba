// The KVM probe boots only what wnod ships or builds (the minimal kernel + an initramfs of the guest init and agent),
// never the test image, and `accelStatus` / `wnod check` say which accelerator jobs get and why.
// VMs booted here: 1 (TCG, the probe's guest) when the minimal kernel can be built; none otherwise.
import t, { type Test } from 'tap';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { accelStatus, chooseAccel, probeAccelNow, probeBoot, readVerdict } from '../src/vm/accel.js';
import { findBuiltMiniKernel, isStaticElf, probeGuest } from '../src/vm/probeGuest.js';
import { listRecords } from '../src/vm/state.js';
import { accelLine } from '../src/cli/check.js';

const tmp = async (t: Test) => {
  const d = await mkdtemp(join(tmpdir(), 'wnod-acc-'));
  t.teardown(() => rm(d, { recursive: true, force: true }));
  return d;
};

t.test('the probe guest needs a static busybox', async (t) => {
  t.ok(isStaticElf(await readFile('/bin/busybox')), "Debian's busybox-static is static");
  t.notOk(isStaticElf(await readFile('/bin/ls')), '/bin/ls has an interpreter');
  t.notOk(isStaticElf(Buffer.from('#!/bin/sh\n')), 'not ELF');
});

t.test('forced modes and a missing /dev/kvm are reported with their reason, without probing', async (t) => {
  const sd = await tmp(t);
  t.match(await accelStatus({ stateDir: sd, mode: 'tcg' }), { accel: 'tcg', source: 'config' });
  t.match(await accelStatus({ stateDir: sd, mode: 'kvm', kvmDevice: join(sd, 'nokvm') }), { accel: 'kvm', source: 'config', reason: /VMs will fail to start/ });
  const s = await accelStatus({ stateDir: sd, mode: 'auto', kvmDevice: join(sd, 'nokvm') });
  t.match(s, { accel: 'tcg', source: 'no-kvm', reason: /nokvm is missing/ });
  t.match(accelLine(s), /^accelerator: jobs on this node get TCG \(software emulation/);
});

t.test('a node that never built a test image or a kernel: the verdict says TCG because there is nothing to probe with', async (t) => {
  const sd = await tmp(t);
  const fakeKvm = join(sd, 'kvm'); // usable as far as access(2) goes: makes the decision reach the probe on any host
  await writeFile(fakeKvm, '');
  const noKernels = join(sd, 'kernels');
  await mkdir(noKernels);
  t.match(await accelStatus({ stateDir: sd, mode: 'auto', kvmDevice: fakeKvm, kernelCacheDir: noKernels }), { accel: 'unknown', source: 'pending' });
  t.equal(await chooseAccel({ stateDir: sd, mode: 'auto', kvmDevice: fakeKvm, kernelCacheDir: noKernels }), 'tcg');
  const v = await readVerdict(sd);
  t.match(v, { accel: 'tcg', guest: 'none', reason: /minimal guest kernel is not built.*wnod kernel build/ }, 'recorded, with the way out');
  const st = await accelStatus({ stateDir: sd, mode: 'auto', kvmDevice: fakeKvm, kernelCacheDir: noKernels });
  t.match(st, { accel: 'tcg', source: 'no-guest', at: v!.at, reason: /wnod kernel build/ });
});

t.test('the probe boots the minimal kernel with the agent\'s initramfs (under TCG here: any host), then really probes KVM', async (t) => {
  if (!(await findBuiltMiniKernel())) {
    // the test suite builds it first (scripts/test.sh); alone, build it (minutes, cached afterwards)
    const { buildMiniKernel } = await import('../src/kernel/miniKernel.js');
    await buildMiniKernel();
  }
  const sd = await tmp(t);
  const g = await probeGuest(sd);
  if (!('guest' in g)) return t.fail(`no probe guest: ${g.missing}`);
  t.match(g.guest, { kernel: /^\/var\/cache\/wnod\/kernel\/[0-9a-f]{20}\/vmlinux$/, acpi: false, id: /^mini-/ });
  const r = await probeBoot(sd, undefined, g.guest, 'tcg', 120_000);
  t.same(r, { ok: true, why: 'a test boot under TCG answered' }, 'the product\'s own guest boots and its agent runs a command');
  t.same(await listRecords(sd), [], 'the probe VM is gone');

  // the real decision path with a KVM device that only looks usable: the probe runs with that guest and fails
  const fakeKvm = join(sd, 'kvm');
  await writeFile(fakeKvm, '');
  const st = await probeAccelNow({ stateDir: sd, mode: 'auto', kvmDevice: fakeKvm, timeoutMs: 20_000 });
  t.match(st, { source: 'probe', reason: /test boot under KVM/ });
  if (!existsSync('/dev/kvm')) t.match(st, { accel: 'tcg', reason: /test boot under KVM failed/ }, 'no real KVM here: the boot failed');
  t.match(await readVerdict(sd), { guest: g.guest.id }, 'the verdict names the guest it probed with');
  t.same(await listRecords(sd), [], 'no probe VM left');
});
