import t from 'tap';
import { decide, type Identity, type Request } from '../src/policy/decide.js';
import type { Image, Policy } from '../src/config/types.js';

function image(id: string, over: Partial<Image> = {}): Image {
  return { id, title: id, os: { family: 'linux', name: 'X', version: '1' }, arch: 'x86_64', kind: 'disk',
    disk: { source: `/srv/${id}`, sha256: 'a'.repeat(64), format: 'qcow2' }, cpus: { default: 1, max: 4 },
    memoryMB: { default: 2048, max: 8192 }, diskGB: { default: 10, max: 20 }, published: true, digest: 'a'.repeat(64), ...over };
}
const images = [image('vm_sl6'), image('vm_el9', { queue: 'el9q' }), image('vm_big', { cpus: { default: 2, max: 32 } })];
const policy: Policy = {
  rules: [
    { name: 'atlas-prod', fqan: '/atlas/Role=production', images: ['vm_sl6', 'vm_big'], default: 'vm_sl6', maxCpus: 8 },
    { name: 'atlas-users', fqan: '/atlas/*', images: ['vm_el9'], default: 'vm_el9', maxMemoryMB: 4096 },
    { name: 'cms-any', fqan: '/cms/*/Role=*', images: ['*'] },
    { name: 'dteam', vo: 'dteam', images: ['*'], default: 'vm_el9' },
    { name: 'locals', group: 'wnodusers', images: ['vm_sl6'], default: 'vm_sl6' },
  ],
  noRequest: 'default', noTicket: 'refuse', imageTagPrefix: 'vm_',
};
const input = { policy, images, defaultQueue: 'wnod' };
const req = (over: Partial<Request> = {}): Request => ({ tags: [], ...over });
const fq = (...fqans: string[]): Identity => ({ fqans, vo: fqans[0]?.split('/')[1], source: 'proxy' });

type Row = [string, Request, Identity, RegExp | Record<string, unknown>];
const rows: Row[] = [
  ['production role gets the requested image', req({ tags: ['vm_sl6'] }), fq('/atlas/Role=production/Capability=NULL'), { image: 'vm_sl6', rule: 'atlas-prod', queue: 'wnod', cpus: 1, memoryMB: 2048 }],
  ['tags match case-insensitively', req({ tags: ['VM_SL6'] }), fq('/atlas/Role=production/Capability=NULL'), { image: 'vm_sl6' }],
  ['production role may not have el9 (first match wins)', req({ tags: ['vm_el9'] }), fq('/atlas/Role=production/Capability=NULL'), /\/atlas\/Role=production\/Capability=NULL is not authorised for image vm_el9 \(rule atlas-prod allows: vm_sl6, vm_big\)/],
  ['plain atlas member matches /atlas/*', req({ tags: ['vm_el9'] }), fq('/atlas/Role=NULL/Capability=NULL'), { image: 'vm_el9', rule: 'atlas-users', queue: 'el9q' }],
  ['atlas subgroup matches /atlas/*', req({}), fq('/atlas/higgs/Role=NULL/Capability=NULL'), { image: 'vm_el9', requested: false }],
  ['/atlas/* does not match another role', req({ tags: ['vm_el9'] }), fq('/atlas/Role=pilot/Capability=NULL'), /no rule of this site authorises \/atlas\/Role=pilot\/Capability=NULL for image vm_el9/],
  ['a secondary FQAN can match a rule', req({ tags: ['vm_el9'] }), fq('/atlas/Role=pilot/Capability=NULL', '/atlas/Role=NULL/Capability=NULL'), { rule: 'atlas-users' }],
  ['/cms/*/Role=* matches any role, all images, but no default', req({ tags: ['vm_big'] }), fq('/cms/Role=lcgadmin/Capability=NULL'), { image: 'vm_big', cpus: 2 }],
  ['no request and no default', req({}), fq('/cms/Role=NULL/Capability=NULL'), /requests no image and rule cms-any has no default image/],
  ['VO-only identity matches a vo rule', req({}), { vo: 'dteam', fqans: [], source: 'vo' }, { image: 'vm_el9', rule: 'dteam' }],
  ['VO-only identity matches no fqan rule', req({ tags: ['vm_sl6'] }), { vo: 'atlas', fqans: [], source: 'vo' }, /no rule of this site authorises VO atlas for image vm_sl6/],
  ['local group rule', req({}), { fqans: [], groups: ['users', 'wnodusers'], source: 'local' }, { image: 'vm_sl6', rule: 'locals' }],
  ['unknown vm_ tag is denied naming what the CE offers', req({ tags: ['vm_centos5'] }), fq('/dteam/Role=NULL/Capability=NULL'), /image vm_centos5 is not offered by this CE \(it offers: vm_sl6, vm_el9, vm_big\)/],
  ['non-image RTE tags are left alone', req({ tags: ['VO-dteam-sw-1.0', 'vm_sl6'] }), fq('/dteam/Role=NULL/Capability=NULL'), { image: 'vm_sl6' }],
  ['two different images are ambiguous', req({ tags: ['vm_sl6', 'vm_el9'] }), fq('/dteam/Role=NULL/Capability=NULL'), /requests 2 different images \(vm_sl6, vm_el9\)/],
  ['the same image twice is one request', req({ tags: ['vm_sl6', 'VM_SL6'] }), fq('/dteam/Role=NULL/Capability=NULL'), { image: 'vm_sl6' }],
  ['memory minimum raises the VM memory', req({ tags: ['vm_sl6'], memoryMinMB: 4000 }), fq('/dteam/Role=NULL/Capability=NULL'), { memoryMB: 4000 }],
  ['memory maximum lowers it', req({ tags: ['vm_sl6'], memoryMaxMB: 1000 }), fq('/dteam/Role=NULL/Capability=NULL'), { memoryMB: 1000 }],
  ['memory above the image maximum', req({ tags: ['vm_sl6'], memoryMinMB: 9000 }), fq('/dteam/Role=NULL/Capability=NULL'), /asks for 9000 MB of memory; image vm_sl6 allows at most 8192 MB/],
  ['memory above the rule maximum', req({ tags: ['vm_el9'], memoryMinMB: 5000 }), fq('/atlas/Role=NULL/Capability=NULL'), /allows at most 4096 MB/],
  ['min above max', req({ tags: ['vm_sl6'], memoryMinMB: 3000, memoryMaxMB: 2000 }), fq('/dteam/Role=NULL/Capability=NULL'), /at least 3000 MB and at most 2000 MB/],
  ['cpus within the image max', req({ tags: ['vm_sl6'], cpus: 4 }), fq('/dteam/Role=NULL/Capability=NULL'), { cpus: 4 }],
  ['cpus above the image max', req({ tags: ['vm_sl6'], cpus: 5 }), fq('/dteam/Role=NULL/Capability=NULL'), /asks for 5 cpus; image vm_sl6 allows 1 to 4/],
  ['cpus bounded by the rule below the image', req({ tags: ['vm_big'], cpus: 9 }), fq('/atlas/Role=production/Capability=NULL'), /allows 1 to 8/],
  ['nobody at all', req({ tags: ['vm_sl6'] }), { fqans: [], source: 'vo' }, /no rule of this site authorises an unidentified user/],
];

for (const [name, r, id, want] of rows) {
  t.test(name, async (t) => {
    const d = decide(r, id, input);
    if (want instanceof RegExp) {
      t.equal(d.allow, false);
      if (!d.allow) t.match(d.reason, want);
    } else {
      t.equal(d.allow, true, d.allow ? '' : d.reason);
      if (d.allow) {
        const got: Record<string, unknown> = { image: d.image.id, rule: d.rule, queue: d.queue, cpus: d.cpus, memoryMB: d.memoryMB, requested: d.requested };
        for (const [k, v] of Object.entries(want)) t.equal(got[k], v, k);
      }
    }
  });
}

t.test('no_request: deny refuses jobs that request nothing', async (t) => {
  const d = decide(req({}), fq('/dteam/Role=NULL/Capability=NULL'), { ...input, policy: { ...policy, noRequest: 'deny' } });
  t.equal(d.allow, false);
  if (!d.allow) t.match(d.reason, /requests no image and this site requires one/);
});

t.test('an empty tag prefix makes only catalog ids image requests', async (t) => {
  const d = decide(req({ tags: ['vm_centos5'] }), fq('/dteam/Role=NULL/Capability=NULL'), { ...input, policy: { ...policy, imageTagPrefix: '' } });
  t.equal(d.allow, true, 'unknown tag ignored, the default applies');
});

t.test('the decision is a pure function: same input, same output; input untouched', async (t) => {
  const r = req({ tags: ['vm_sl6'], memoryMinMB: 3000 });
  const snapshot = JSON.stringify([r, policy, images]);
  t.same(decide(r, fq('/dteam/Role=NULL/Capability=NULL'), input), decide(r, fq('/dteam/Role=NULL/Capability=NULL'), input));
  t.equal(JSON.stringify([r, policy, images]), snapshot);
});
