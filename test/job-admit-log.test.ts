// Admission's root-log line for a booted VM names the node's decisions for it: boot mode, cache hit or miss, the
// accelerator (what `wnod metrics` counts), and a lease pilot's job record keeps its lease id (APEL cloud records).
import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { admitJob } from '../src/job/admit.js';
import { readJobRecord } from '../src/job/jobstate.js';
import { loadConfig } from '../src/config/load.js';
import type { JobContext } from '../src/job/contract.js';
import type { HookLog } from '../src/job/log.js';
import { makeTestSite } from './kit/site.js';

t.test('vm-ready carries boot mode, cache and accel; the lease id reaches the job record', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wop-admit-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const site = await makeTestSite(dir);
  const cfg = { ...(await loadConfig(site.configPath)) };
  cfg.policy = { ...cfg.policy, noTicket: 'group-default', rules: [{ name: 'local', group: 'wopgrp', images: ['vm_el9'], default: 'vm_el9' }] };
  const events: { event: string; fields: Record<string, unknown> }[] = [];
  const log: HookLog = { user: () => {}, detail: async (event, fields = {}) => { events.push({ event, fields }); } };
  const ctx: JobContext = {
    vm: {
      start: async () => ({ vmId: 'j1', bootS: 0.7, boot: { mode: 'restore' }, cache: 'miss', accel: 'tcg' }),
    } as unknown as JobContext['vm'],
  } as JobContext;
  const out = await admitJob(cfg, {
    lrm: 'torque', jobId: '1.ce', user: 'wop1', group: 'wopgrp', holds: {},
    script: async () => '#!/bin/sh\n# wnod-lease: l0123456789\necho hi\n',
  }, ctx, log);
  t.same(out, { kind: 'go' });
  const ready = events.find((e) => e.event === 'vm-ready');
  t.same(ready?.fields, { vmId: 'j1', bootS: 0.7, boot: { mode: 'restore' }, cache: 'miss', accel: 'tcg' });
  t.equal((await readJobRecord(cfg.vm.stateDir, '1.ce'))?.lease, 'l0123456789');
});
