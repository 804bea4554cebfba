import t from 'tap';
import { readFileSync } from 'node:fs';
import { ConfigError, imageDigest } from '../src/config/load.js';
import { parseConfig } from '../src/config/parse.js';

const sample = readFileSync(new URL('../etc/wnod.yaml', import.meta.url), 'utf8');

function problems(text: string): string[] {
  try {
    parseConfig(text, 'site.yaml');
  } catch (err) {
    if (err instanceof ConfigError) return err.message.split('\n');
    throw err;
  }
  return [];
}

t.test('the sample config is valid and carries every documented section', async (t) => {
  const cfg = parseConfig(sample, 'etc/wnod.yaml');
  t.same(cfg.images.map((i) => i.id), ['vm_sl6', 'vm_el9']);
  t.equal(cfg.images[0]!.digest, cfg.images[0]!.disk!.sha256, 'a disk image is named by its disk digest');
  t.match(cfg.images[1]!.digest, /^[0-9a-f]{64}$/);
  t.not(cfg.images[1]!.digest, cfg.images[1]!.disk!.sha256, 'a kernel image digest covers kernel, initrd and disk');
  t.same(cfg.policy.rules.map((r) => r.name), ['atlas-production', 'dteam']);
  t.equal(cfg.policy.noRequest, 'default');
  t.equal(cfg.lrm.queue, 'wnod');
  t.equal(cfg.trust.blahFqansVerified, false);
  t.equal(cfg.vm.driver, 'qemu');
});

t.test('defaults fill what a minimal config leaves out', async (t) => {
  const cfg = parseConfig(`site: {name: S, ce_host: ce.example.org}
images:
  - id: vm_a
    title: A
    os: {name: Debian, version: "12"}
    kind: disk
    disk: {source: /srv/a.img, sha256: "${'a'.repeat(64)}", format: raw}
    cpus: {default: 1, max: 2}
    memory_mb: {default: 512, max: 1024}
    disk_gb: {default: 1, max: 2}
policy:
  rules: [{name: all, vo: dteam, images: ["*"], default: vm_a}]
`, 'min.yaml');
  t.equal(cfg.trust.vomsdir, '/etc/grid-security/vomsdir');
  t.equal(cfg.ticket.keyFile, '/etc/wnod/ticket.key');
  t.equal(cfg.lrm.prologueBudgetS, 280);
  t.equal(cfg.policy.noTicket, 'refuse');
  t.equal(cfg.glue.subClusterDn, 'GlueSubClusterUniqueID=ce.example.org,GlueClusterUniqueID=ce.example.org,mds-vo-name=resource,o=grid');
  t.equal(cfg.images[0]!.published, true);
});

t.test('every problem is reported at once, each with file, line and key', async (t) => {
  const bad = sample
    .replace('ce_host: ce.example.org', 'ce_host: "ce example"')
    .replace('default: vm_sl6\n', 'default: vm_nope\n')
    .replace('memory_mb: { default: 2048, max: 8192 }', 'memory_mb: { default: 9000, max: 8192 }')
    .replace('  stop_grace_s: 10 ', '  stop_grace: 10 ')
    .replace('driver: qemu  ', 'driver: xen   ');
  const p = problems(bad);
  const ce = p.find((l) => /^site\.yaml:\d+: site\.ce_host: "ce example" is not a host name/.test(l));
  t.ok(ce, p.join('\n'));
  t.match(bad.split('\n')[Number(ce?.split(':')[1]) - 1], /ce_host:/);
  t.ok(p.some((l) => /^site\.yaml:\d+: policy\.rules\[0\]\.default: unknown image "vm_nope"/.test(l)));
  t.ok(p.some((l) => /images\[0\]\.memory_mb\.default: default 9000 is above max 8192/.test(l)));
  t.ok(p.some((l) => /:\d+: vm\.stop_grace: unknown key/.test(l)), 'typos are unknown keys, not silently ignored');
  t.ok(p.some((l) => /vm\.driver: "xen" is not one of qemu, libvirt/.test(l)));
  t.ok(p.length >= 5);
  const line = Number(p.find((l) => l.includes('vm.stop_grace'))!.split(':')[1]);
  t.equal(bad.split('\n')[line - 1]!.trim().startsWith('stop_grace:'), true, 'the line number points at the key');
});

t.test('case-insensitive id clash, unknown rule images, unquoted digests', async (t) => {
  const bad = sample.replace('- id: vm_el9', '- id: VM_SL6').replace('images: [vm_sl6, vm_el9]', 'images: [vm_sl6, vm_zz]')
    .replace('sha256: "0000000000000000000000000000000000000000000000000000000000000000"', 'sha256: 1234');
  const p = problems(bad);
  t.ok(p.some((l) => /images\[1\]\.id: "VM_SL6" clashes with images\[0\]/.test(l)), p.join('\n'));
  t.ok(p.some((l) => /policy\.rules\[0\]\.images\[1\]: unknown image "vm_zz"/.test(l)));
  t.ok(p.some((l) => /images\[0\]\.disk\.sha256: expected a string, got number 1234 \(quote it\)/.test(l)));
});

t.test('YAML syntax errors and duplicate keys name the line', async (t) => {
  t.match(problems('site:\n  name: a\n  name: b\n')[0], /^site\.yaml:3: \(top level\): YAML syntax: Map keys must be unique/);
  t.match(problems('site: [unclosed\n')[0], /^site\.yaml:\d+: \(top level\): YAML syntax/);
  t.match(problems('- a\n- b\n')[0], /expected a mapping/);
});

t.test('imageDigest is stable and order-defined', async (t) => {
  const a = imageDigest({ kind: 'kernel', kernel: { source: '/k', sha256: 'a'.repeat(64) }, initrd: { source: '/i', sha256: 'b'.repeat(64) } });
  const b = imageDigest({ kind: 'kernel', kernel: { source: '/k2', sha256: 'a'.repeat(64) }, initrd: { source: '/i2', sha256: 'b'.repeat(64) } });
  const c = imageDigest({ kind: 'kernel', kernel: { source: '/k', sha256: 'b'.repeat(64) }, initrd: { source: '/i', sha256: 'a'.repeat(64) } });
  t.equal(a, b, 'sources do not matter, contents do');
  t.not(a, c, 'swapping kernel and initrd changes the digest');
});

t.test('loadConfig: the compiled cache returns the same config and ignores entries root does not own', async (t) => {
  const { mkdtemp, writeFile, readdir, readFile: rf, chown } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { loadConfig, COMPILED_CONFIG_DIR } = await import('../src/config/load.js');
  const dir = await mkdtemp(join(tmpdir(), 'wnod-cfg-'));
  const file = join(dir, 'site.yaml');
  const text = sample.replace('name: EXAMPLE-SITE', `name: SITE-${process.pid}-${Date.now()}`);
  await writeFile(file, text);
  const first = await loadConfig(file);
  const entries = (await readdir(COMPILED_CONFIG_DIR)).filter((f) => f.endsWith('.json'));
  const mine = [];
  for (const e of entries) if ((await rf(join(COMPILED_CONFIG_DIR, e), 'utf8')).includes(first.site.name)) mine.push(e);
  t.equal(mine.length, 1, 'one cache entry written (tests run as root)');
  const second = await loadConfig(file);
  t.same(second, first, 'cache hit = same config');
  // Tamper with the entry and hand it to another owner: it must be ignored, not trusted.
  const entry = join(COMPILED_CONFIG_DIR, mine[0]!);
  const tampered = JSON.parse(await rf(entry, 'utf8'));
  tampered.policy.rules[0].images = ['*'];
  await writeFile(entry, JSON.stringify(tampered));
  t.same((await loadConfig(file)).policy.rules[0]!.images, ['*'], 'root-owned entry is trusted (only root can write there)');
  await chown(entry, 65534, 65534);
  t.same((await loadConfig(file)).policy.rules[0]!.images, ['vm_sl6', 'vm_el9'], 'an entry owned by someone else is ignored');
  const bad = join(dir, 'bad.yaml');
  await writeFile(bad, text.replace('driver: qemu', 'driver: xen'));
  await t.rejects(loadConfig(bad), { code: 'config', message: /vm\.driver/ }, 'errors are never cached');
  await t.rejects(loadConfig(bad), { code: 'config' });
});

t.test('lrm.type: slurm takes a partition and refuses the Torque-only keys', async (t) => {
  const torqueBlock = sample.slice(sample.indexOf('\nlrm:\n'), sample.indexOf('\nlease:'));
  const slurm = (lrm: string) => sample.replace(torqueBlock, `\nlrm:\n${lrm}\n`).replace(/^ {4}# queue: wnod_sl6.*$/m, '');
  const cfg = parseConfig(slurm('  type: slurm\n  partition: wnod\n  hook_dir: /opt/wnod-slurm\n  prologue_budget_s: 100'), 's.yaml');
  t.equal(cfg.lrm.type, 'slurm');
  t.equal(cfg.lrm.partition, 'wnod');
  t.equal(cfg.lrm.hookDir, '/opt/wnod-slurm');
  t.equal(cfg.lrm.prologueBudgetS, 100);
  t.equal(cfg.lrm.queue, undefined);
  t.equal(parseConfig(slurm('  type: slurm\n  partition: p'), 's.yaml').lrm.hookDir, '/usr/local/lib/wnod/slurm', 'hook_dir default');

  const p = problems(slurm('  type: slurm\n  partition: wnod\n  queue: wnod\n  job_class: wnod\n  mom_priv: /x\n  max_requeues: 2'));
  t.match(p.join('\n'), /lrm\.queue: is for lrm\.type: torque, not for lrm\.type: slurm \(use lrm\.partition\)/);
  for (const k of ['job_class', 'mom_priv', 'max_requeues']) t.match(p.join('\n'), new RegExp(`lrm\\.${k}: is for lrm\\.type: torque`));
  t.equal(p.filter((l) => /unknown key/.test(l)).length, 0, 'refused keys are not also reported as unknown');
  t.match(problems(slurm('  type: slurm')).join('\n'), /lrm\.partition: missing \(required\)/);
  t.match(problems(slurm('  type: slurm\n  partition: "a,b"')).join('\n'), /lrm\.partition: "a,b" is not a partition name/);
  t.match(problems(slurm('  type: slurm\n  partition: p\n  hook_dir: relative')).join('\n'), /lrm\.hook_dir/);
  t.match(problems(sample.replace('  type: torque\n', '  type: torque\n  partition: wnod\n')).join('\n'), /lrm\.partition: is for lrm\.type: slurm, not for lrm\.type: torque/);
  t.match(problems(slurm('  type: slurm\n  partition: p').replace(/^lease:.*$/m, 'lease:\n  queue: q')).join('\n'), /lease\.queue: is for lrm\.type: torque/);
  t.match(problems(sample.replace(torqueBlock, '\nlrm:\n  type: slurm\n  partition: p\n').replace('# queue: wnod_sl6', 'queue: wnod_sl6')).join('\n'), /images\[0\]\.queue: is for lrm\.type: torque/);
  t.match(problems(slurm('  type: pbspro')).join('\n'), /lrm\.type: "pbspro" is not one of torque, slurm/);
});

t.test('job_network: the sample section parses; bad ranges, addresses and node names are refused with their key', async (t) => {
  const start = sample.indexOf('# job_network:');
  const end = sample.indexOf('\ncache:');
  const block = sample.slice(start, end);
  const live = sample.replace(block, block.split('\n').map((l) => l.replace(/^# ?/, '')).join('\n'));
  const cfg = parseConfig(live, 's.yaml');
  t.same(cfg.jobNetwork, {
    vni: { first: 1048576, count: 1048576 }, port: 4789, underlayMtu: 1500, privateRange: '10.128.0.0/9', subnetPrefix: 24,
    nodes: { wn01: '192.0.2.11', wn02: '192.0.2.12' }, secretFile: '/etc/wnod/jobnet.secret', claimDir: '/run/wnod/jobnet',
  });
  t.equal(parseConfig(sample, 's.yaml').jobNetwork, undefined, 'absent: no job networks');
  const withNet = (body: string) => problems(sample.replace('\ncache:', `\njob_network:\n${body}\ncache:`)).join('\n');
  t.match(withNet('  nodes:\n    wn01: 192.0.2.300'), /job_network\.nodes\.wn01: "192\.0\.2\.300" is not an IPv4 address/);
  t.match(withNet('  nodes:\n    wn01: 192.0.2.1\n    wn02: 192.0.2.1'), /job_network\.nodes\.wn02: 192\.0\.2\.1 is also node wn01's address/);
  t.match(withNet('  nodes:\n    "bad name": 192.0.2.1'), /is not a node name/);
  t.match(withNet('  port: 4789'), /job_network\.nodes: missing \(required\)/);
  t.match(withNet('  nodes: {}\n  private_range: 10.128.0.1/9'), /job_network: privateRange '10\.128\.0\.1\/9' has host bits set/);
  t.match(withNet('  nodes: {}\n  private_range: 10.0.0.0/16\n  subnet_prefix: 12'), /job_network: subnetPrefix must be an integer 16\.\.30/);
  t.match(withNet('  nodes: {}\n  vni: { first: 16777215, count: 2 }'), /vni\.count must be an integer 1\.\.1/);
  t.match(withNet('  nodes: {}\n  underlay_mtu: 100'), /job_network\.underlay_mtu: 100 is below the minimum/);
  t.match(withNet('  nodes: {}\n  secret_file: relative'), /job_network\.secret_file/);
  t.match(withNet('  nodes: {}\n  vni_first: 3'), /job_network\.vni_first: unknown key/);
});
