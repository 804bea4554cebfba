import t from 'tap';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { XMLParser } from 'fast-xml-parser';
import { buildDomainXml, LibvirtSpecError, type DomainSpec } from '../src/vm/libvirtXml.js';
import { parseDomState, isNoDomainError, parseNameList, VirshError } from '../src/vm/libvirtVirsh.js';
import { matchGolden } from './kit/golden.js';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const goldens = join(root, 'test/golden/libvirt');

const channels: DomainSpec['channels'] = [
  { name: 'org.wnod.control', path: '/var/lib/wnod/vm/job1/control.sock', mode: 'bind' },
  { name: 'org.wnod.stdout', path: '/var/lib/wnod/vm/job1/stdout.sock', mode: 'bind' },
  { name: 'org.wnod.stderr', path: '/var/lib/wnod/vm/job1/stderr.sock', mode: 'bind' },
];

/** A kernel image under TCG with the workdir on virtiofs: what these machines run. */
const kernelTcg: DomainSpec = {
  name: 'wnod-job1',
  type: 'qemu',
  cpus: 2,
  memoryMB: 512,
  boot: { kind: 'kernel', kernel: '/var/cache/wnod/k/vmlinux', initrd: '/var/lib/wnod/vm/job1/initrd', cmdline: 'console=ttyS0 quiet panic=-1 tsc_early_khz=2299998' },
  disks: [{ path: '/var/lib/wnod/vm/job1/root.qcow2', format: 'qcow2' }],
  channels,
  share: { hostPath: '/home/pool001/job1', tag: 'wnodwork', driver: 'virtiofs', virtiofsd: '/usr/lib/qemu/virtiofsd' },
  network: { mode: 'none' },
  consoleLog: '/var/lib/wnod/vm/job1/console.log',
};

/** A bootable disk on KVM, on the site bridge behind clean-traffic, workdir on 9p, context through fw_cfg. */
const diskKvmBridge: DomainSpec = {
  name: 'wnod-job2',
  type: 'kvm',
  cpus: 4,
  memoryMB: 8192,
  cpuFeaturesOff: ['arch-capabilities'],
  boot: { kind: 'disk' },
  disks: [{ path: '/var/lib/wnod/vm/job2/overlay.qcow2', format: 'qcow2' }],
  channels,
  share: { hostPath: '/home/pool002/job2', tag: 'wnodwork', driver: '9p' },
  network: { mode: 'bridge', bridge: 'br0', mac: '52:54:00:0a:00:02', filter: true, ip: '10.10.0.2' },
  fwcfg: [{ name: 'opt/org.wnod/context', file: '/var/lib/wnod/vm/job2/context.cpio' }],
};

const userNet: DomainSpec = {
  ...kernelTcg,
  name: 'wnod-job3',
  share: undefined,
  disks: [],
  network: { mode: 'user', mac: '52:54:00:12:34:56' },
  consoleLog: undefined,
  debugExit: true,
};

const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@_', isArray: (name) => ['disk', 'channel', 'controller', 'interface', 'feature', 'entry', 'qemu:arg'].includes(name) });
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const parse = (xml: string): any => parser.parse(xml).domain;

t.test('golden: domain XML of the three shapes a site uses', async (t) => {
  matchGolden(t, buildDomainXml(kernelTcg), join(goldens, 'kernel-tcg-virtiofs.xml'));
  matchGolden(t, buildDomainXml(diskKvmBridge), join(goldens, 'disk-kvm-bridge-9p.xml'));
  matchGolden(t, buildDomainXml(userNet), join(goldens, 'kernel-user-net.xml'));
});

t.test('kernel boot under TCG: q35, qemu domain type, direct kernel boot, virtiofs with shared memfd memory', async (t) => {
  const d = parse(buildDomainXml(kernelTcg));
  t.equal(d['@_type'], 'qemu', 'TCG is the plain qemu domain type');
  t.equal(d.os.type['@_machine'], 'q35', 'libvirt rejects microvm: q35');
  t.equal(d.os.kernel, '/var/cache/wnod/k/vmlinux');
  t.equal(d.os.initrd, '/var/lib/wnod/vm/job1/initrd');
  t.equal(d.os.cmdline, kernelTcg.boot.kind === 'kernel' ? kernelTcg.boot.cmdline : '');
  t.notOk(d.os.boot, 'no boot device with a kernel');
  t.notOk(d.cpu, 'TCG keeps QEMU\'s default CPU model');
  t.same(d.memoryBacking, { source: { '@_type': 'memfd' }, access: { '@_mode': 'shared' } }, 'virtiofs needs shared guest memory');
  t.equal(d.memory['@_unit'], 'MiB');
  t.equal(String(d.memory['#text']), '512');
  t.equal(d.devices.filesystem.driver['@_type'], 'virtiofs');
  t.equal(d.devices.filesystem.source['@_dir'], '/home/pool001/job1');
  t.equal(d.devices.filesystem.target['@_dir'], 'wnodwork');
  t.same(d.devices.channel.map((c: { target: { '@_name': string }; source: { '@_path': string; '@_mode': string } }) =>
    [c.target['@_name'], c.source['@_path'], c.source['@_mode']]), channels.map((c) => [c.name, c.path, 'bind']));
  t.equal(d.devices.disk[0].target['@_dev'], 'vda');
  t.equal(d.devices.disk[0].driver['@_type'], 'qcow2');
  t.notOk(d.devices.interface, 'network none: no NIC at all');
  t.equal(d.devices.serial.source['@_path'], '/var/lib/wnod/vm/job1/console.log');
  t.equal(d.on_reboot, 'destroy', 'a guest reboot ends the job VM');
  t.equal(d.on_poweroff, 'destroy');
});

t.test('disk boot on KVM: host CPU minus the listed features, clean-traffic pinned to the slot IP, 9p, fw_cfg', async (t) => {
  const d = parse(buildDomainXml(diskKvmBridge));
  t.equal(d['@_type'], 'kvm');
  t.equal(d.os.boot['@_dev'], 'hd');
  t.notOk(d.os.kernel);
  t.equal(d.cpu['@_mode'], 'host-passthrough');
  t.same(d.cpu.feature, [{ '@_policy': 'disable', '@_name': 'arch-capabilities' }]);
  t.notOk(d.memoryBacking, '9p needs no shared memory');
  t.equal(d.devices.filesystem.driver['@_type'], 'path');
  const nic = d.devices.interface[0];
  t.equal(nic['@_type'], 'bridge');
  t.equal(nic.source['@_bridge'], 'br0');
  t.equal(nic.mac['@_address'], '52:54:00:0a:00:02');
  t.equal(nic.filterref['@_filter'], 'clean-traffic');
  t.same(nic.filterref.parameter, { '@_name': 'IP', '@_value': '10.10.0.2' });
  t.same(d.sysinfo.entry, [{ '@_name': 'opt/org.wnod/context', '@_file': '/var/lib/wnod/vm/job2/context.cpio' }]);
  t.equal(d.sysinfo['@_type'], 'fwcfg');

  const unfiltered = parse(buildDomainXml({ ...diskKvmBridge, network: { mode: 'bridge', bridge: 'br0', mac: '52:54:00:0a:00:02', filter: false } }));
  t.notOk(unfiltered.devices.interface[0].filterref, 'filter: false leaves the bridge port unfiltered');
  const noIp = parse(buildDomainXml({ ...diskKvmBridge, network: { mode: 'bridge', bridge: 'br0', mac: '52:54:00:0a:00:02', filter: true } }));
  t.same(noIp.devices.interface[0].filterref, { '@_filter': 'clean-traffic' }, 'without a slot IP clean-traffic learns it');
});

t.test('user network and the isa-debug-exit device through the qemu namespace', async (t) => {
  const xml = buildDomainXml(userNet);
  const d = parse(xml);
  t.equal(d.devices.interface[0]['@_type'], 'user');
  t.equal(d.devices.interface[0].mac['@_address'], '52:54:00:12:34:56');
  t.equal(d['@_xmlns:qemu'], 'http://libvirt.org/schemas/domain/qemu/1.0');
  t.same(d['qemu:commandline']['qemu:arg'].map((a: { '@_value': string }) => a['@_value']), ['-device', 'isa-debug-exit,iobase=0xf4,iosize=0x04']);
  t.notOk(d.devices.disk, 'no disks');
  t.notOk(d.devices.serial, 'no console file: no serial port');
  t.notOk(buildDomainXml(kernelTcg).includes('xmlns:qemu'), 'the namespace only when it is used');
});

t.test('the builder escapes: hostile characters in paths and the cmdline come back byte for byte', async (t) => {
  const nasty = `/srv/a&b<c>"d'e]]>/f`;
  const cmdline = `console=ttyS0 x="</cmdline><kernel>/etc/shadow</kernel>" & y='z'`;
  const xml = buildDomainXml({ ...kernelTcg, boot: { kind: 'kernel', kernel: nasty, cmdline }, share: { ...kernelTcg.share!, hostPath: nasty } });
  t.notOk(xml.includes('<kernel>/etc/shadow'), 'no element smuggled in');
  const d = parse(xml);
  t.equal(d.os.kernel, nasty);
  t.equal(d.os.cmdline, cmdline);
  t.equal(d.devices.filesystem.source['@_dir'], nasty);
  t.equal(d.os.initrd, undefined, 'initrd left out when absent');
});

t.test('a bad spec is refused with the field named', async (t) => {
  const bad: [string, Partial<DomainSpec>, RegExp][] = [
    ['name', { name: 'wnod job' }, /name: must match/],
    ['name', { name: '' }, /name: must match/],
    ['cpus', { cpus: 0 }, /cpus: must be an integer/],
    ['memoryMB', { memoryMB: 1.5 }, /memoryMB: must be an integer/],
    ['boot.kernel', { boot: { kind: 'kernel', kernel: 'vmlinux', cmdline: '' } }, /boot.kernel: must be an absolute path/],
    ['boot.cmdline', { boot: { kind: 'kernel', kernel: '/k', cmdline: 'a\nb' } }, /boot.cmdline: contains a control character/],
    ['disks', { boot: { kind: 'disk' }, disks: [] }, /disks: disk boot needs at least one disk/],
    ['disks[0].path', { disks: [{ path: '/var/lib/wnod/../../etc/shadow', format: 'raw' }] }, /disks\[0\].path: must not contain '..'/],
    ['disks[0].format', { disks: [{ path: '/x', format: 'vmdk' as 'raw' }] }, /must be qcow2 or raw/],
    ['channels[1].name', { channels: [channels[0]!, { ...channels[1]!, name: channels[0]!.name }] }, /duplicate port name/],
    ['channels[0].path', { channels: [{ ...channels[0]!, path: '/' + 'x'.repeat(107) }] }, /longer than a Unix socket path/],
    ['channels[0].name', { channels: [{ ...channels[0]!, name: 'a b' }] }, /channels\[0\].name: must match/],
    ['share.tag', { share: { ...kernelTcg.share!, tag: 'work dir' } }, /share.tag: must match/],
    ['network.mac', { network: { mode: 'user', mac: '52:54:00:12:34' } }, /network.mac/],
    ['network.mac', { network: { mode: 'user', mac: '52:54:00:AB:34:56' } }, /lower-case MAC/],
    ['network.bridge', { network: { mode: 'bridge', bridge: 'br0;reboot', mac: '52:54:00:12:34:56', filter: true } }, /network.bridge/],
    ['network.ip', { network: { mode: 'bridge', bridge: 'br0', mac: '52:54:00:12:34:56', filter: true, ip: '10.0.0.256' } }, /network.ip/],
    ['fwcfg[0].name', { fwcfg: [{ name: 'etc/ramfb', file: '/x' }] }, /fwcfg\[0\].name/],
    ['cpuFeaturesOff[0]', { cpuFeaturesOff: ['-foo bar'] }, /cpuFeaturesOff\[0\]/],
  ];
  for (const [field, patch, re] of bad) {
    try {
      buildDomainXml({ ...kernelTcg, ...patch });
      t.fail(`${field}: accepted ${JSON.stringify(patch)}`);
    } catch (err) {
      t.ok(err instanceof LibvirtSpecError, `${field}: a LibvirtSpecError`);
      t.equal((err as LibvirtSpecError).code, 'libvirt-spec');
      t.equal((err as LibvirtSpecError).field, field);
      t.match((err as Error).message, re);
    }
  }
});

t.test('virsh output readers', async (t) => {
  t.equal(parseDomState('running\n\n'), 'running');
  t.equal(parseDomState('shut off\n'), 'shut off');
  t.equal(parseDomState('in shutdown\n'), 'in shutdown');
  t.throws(() => parseDomState('runnin\n'), VirshError, 'an unknown state is an error, not a guess');
  t.throws(() => parseDomState(''), VirshError);
  t.ok(isNoDomainError("error: failed to get domain 'wnod-x'\n"), 'libvirt 9 wording (measured)');
  t.ok(isNoDomainError("error: Domain not found: no domain with matching name 'wnod-x'"), 'older wording');
  t.notOk(isNoDomainError('error: failed to connect to the hypervisor'), 'a dead daemon is not an absent domain');
  t.same(parseNameList('wnod-a\nwnod-b\n\n'), ['wnod-a', 'wnod-b']);
  t.same(parseNameList('\n'), []);
});

t.test('preflight: /dev/kvm must be root:kvm 0660 for libvirt', async (t) => {
  const { kvmDeviceProblem, groupGid } = await import('../src/vm/libvirtPreflight.js');
  t.equal(groupGid('root:x:0:\nkvm:x:993:\n', 'kvm'), 993);
  t.equal(groupGid('root:x:0:\nkvmx:x:5:\n', 'kvm'), undefined);
  t.equal(kvmDeviceProblem(undefined, undefined), undefined, 'no /dev/kvm: TCG, nothing to fix');
  t.equal(kvmDeviceProblem({ mode: 0o20660, gid: 993 }, 993), undefined, 'root:kvm 0660 is right');
  t.match(kvmDeviceProblem({ mode: 0o20600, gid: 0 }, 993), /mode 0600 group 0, want root:kvm 0660/, 'this machine\'s root-only device');
  t.match(kvmDeviceProblem({ mode: 0o20600, gid: 0 }, undefined), /no "kvm" group/);
  t.equal(kvmDeviceProblem({ mode: 0o20666, gid: 0 }, undefined), undefined, 'world read-write: the QEMU user can open it');
  t.match(kvmDeviceProblem({ mode: 0o20640, gid: 993 }, 993), /mode 0640/, 'group read-only is not enough');
});
