/** The libvirt domain XML of one wnod VM: a pure function from a `DomainSpec` to text, built with fast-xml-parser's
 * XMLBuilder (which escapes every attribute and text value — nothing here escapes by hand). */
import { XMLBuilder } from 'fast-xml-parser';
import { WnodError } from '../util/errors.js';

/** A field of the domain spec that libvirt would reject or that would mean something else than intended. */
export class LibvirtSpecError extends WnodError {
  constructor(readonly field: string, message: string) {
    super('libvirt-spec', `domain spec: ${field}: ${message}`);
  }
}

/** A virtio-serial port exposed on the host as a Unix socket (the guest sees /sys/class/virtio-ports/<p>/name). */
export interface ChannelSpec {
  /** the port name the guest agent looks up, e.g. "wnod.control" */
  name: string;
  /** absolute host path of the Unix socket */
  path: string;
  /** bind: QEMU (libvirt) listens on the socket and the host connects; connect: QEMU connects to a host listener */
  mode: 'bind' | 'connect';
}

/** The job's working directory shared into the guest. */
export interface ShareSpec {
  hostPath: string;
  /** mount tag inside the guest */
  tag: string;
  /** virtiofs (needs shared memory; the only choice with Debian's cloud kernel) or 9p (kernels that have it) */
  driver: 'virtiofs' | '9p';
  /** virtiofsd binary; libvirt's vhost-user JSON lookup is used when absent */
  virtiofsd?: string;
  readonly?: boolean;
}

export type DomainNetwork =
  | { mode: 'none' }
  | { mode: 'user'; mac: string }
  /** a tap on a site bridge; `filter` adds libvirt's clean-traffic nwfilter (anti MAC/IP/ARP spoofing) */
  | { mode: 'bridge'; bridge: string; mac: string; filter: boolean; ip?: string };

/** Everything the domain XML says, already decided: no defaults are looked up here. */
export interface DomainSpec {
  /** libvirt domain name, [A-Za-z0-9._-]{1,80} */
  name: string;
  /** kvm where the accel probe said KVM works, qemu (TCG) otherwise */
  type: 'kvm' | 'qemu';
  cpus: number;
  memoryMB: number;
  /** QEMU binary; libvirt's default for the arch when absent */
  emulator?: string;
  /** CPU features to switch off with host-passthrough (kvm only), e.g. ["arch-capabilities"] on PVM hosts */
  cpuFeaturesOff?: string[];
  boot: { kind: 'kernel'; kernel: string; initrd?: string; cmdline: string } | { kind: 'disk' };
  /** the per-job disk (a qcow2 overlay over the cached image, or a raw file); first disk = vda */
  disks: { path: string; format: 'qcow2' | 'raw'; readonly?: boolean }[];
  channels: ChannelSpec[];
  share?: ShareSpec;
  network: DomainNetwork;
  /** serial console (ttyS0) written to this host file; no serial port when absent */
  consoleLog?: string;
  /** fw_cfg blobs the guest reads under /sys/firmware/qemu_fw_cfg (disk images get their per-job context here) */
  fwcfg?: { name: string; file: string }[];
  /** add QEMU's isa-debug-exit device (iobase 0xf4), so the guest can end QEMU with an exit code */
  debugExit?: boolean;
}

const NAME_RE = /^[A-Za-z0-9._-]{1,80}$/;
const PORT_RE = /^[A-Za-z0-9._-]{1,64}$/;
const TAG_RE = /^[A-Za-z0-9._-]{1,36}$/;          // virtio-fs/9p tags are short
const BRIDGE_RE = /^[A-Za-z0-9._-]{1,15}$/;        // IFNAMSIZ - 1
const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const IPV4_RE = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const FWCFG_RE = /^opt\/[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;
const FEATURE_RE = /^[a-z0-9_.-]{1,40}$/;
// XML 1.0 cannot carry most control characters at all; a path or cmdline with one is an error, not something to mangle
// eslint-disable-next-line no-control-regex
const CONTROL_RE = /[\u0000-\u001f\u007f]/;

function check(ok: boolean, field: string, message: string): asserts ok {
  if (!ok) throw new LibvirtSpecError(field, message);
}

function checkPath(p: string, field: string): void {
  check(typeof p === 'string' && p.startsWith('/'), field, `must be an absolute path, got ${JSON.stringify(p)}`);
  check(!CONTROL_RE.test(p), field, `contains a control character: ${JSON.stringify(p)}`);
  check(!p.split('/').includes('..'), field, `must not contain '..': ${JSON.stringify(p)}`);
}

function checkInt(n: number, min: number, max: number, field: string): void {
  check(Number.isInteger(n) && n >= min && n <= max, field, `must be an integer in [${min}, ${max}], got ${n}`);
}

/** Throw a LibvirtSpecError naming the first field of the spec that is not acceptable. */
export function validateDomainSpec(s: DomainSpec): void {
  check(NAME_RE.test(s.name), 'name', `must match ${NAME_RE}, got ${JSON.stringify(s.name)}`);
  check(s.type === 'kvm' || s.type === 'qemu', 'type', `must be kvm or qemu, got ${JSON.stringify(s.type)}`);
  checkInt(s.cpus, 1, 512, 'cpus');
  checkInt(s.memoryMB, 16, 16 * 1024 * 1024, 'memoryMB');
  if (s.emulator !== undefined) checkPath(s.emulator, 'emulator');
  (s.cpuFeaturesOff ?? []).forEach((f, i) => check(FEATURE_RE.test(f), `cpuFeaturesOff[${i}]`, `bad feature name ${JSON.stringify(f)}`));
  if (s.boot.kind === 'kernel') {
    checkPath(s.boot.kernel, 'boot.kernel');
    if (s.boot.initrd !== undefined) checkPath(s.boot.initrd, 'boot.initrd');
    check(!CONTROL_RE.test(s.boot.cmdline), 'boot.cmdline', 'contains a control character');
    check(s.boot.cmdline.length <= 2048, 'boot.cmdline', `too long (${s.boot.cmdline.length} > 2048 bytes)`);
  } else {
    check(s.boot.kind === 'disk', 'boot.kind', `must be kernel or disk, got ${JSON.stringify((s.boot as { kind: unknown }).kind)}`);
    check(s.disks.length > 0, 'disks', 'disk boot needs at least one disk');
  }
  check(s.disks.length <= 20, 'disks', `at most 20 disks, got ${s.disks.length}`);
  s.disks.forEach((d, i) => {
    checkPath(d.path, `disks[${i}].path`);
    check(d.format === 'qcow2' || d.format === 'raw', `disks[${i}].format`, `must be qcow2 or raw, got ${JSON.stringify(d.format)}`);
  });
  const ports = new Set<string>();
  s.channels.forEach((c, i) => {
    check(PORT_RE.test(c.name), `channels[${i}].name`, `must match ${PORT_RE}, got ${JSON.stringify(c.name)}`);
    check(!ports.has(c.name), `channels[${i}].name`, `duplicate port name ${c.name}`);
    ports.add(c.name);
    checkPath(c.path, `channels[${i}].path`);
    // sun_path is 108 bytes including the NUL
    check(Buffer.byteLength(c.path) <= 107, `channels[${i}].path`, `longer than a Unix socket path may be (107 bytes): ${c.path}`);
    check(c.mode === 'bind' || c.mode === 'connect', `channels[${i}].mode`, `must be bind or connect, got ${JSON.stringify(c.mode)}`);
  });
  if (s.share) {
    checkPath(s.share.hostPath, 'share.hostPath');
    check(TAG_RE.test(s.share.tag), 'share.tag', `must match ${TAG_RE}, got ${JSON.stringify(s.share.tag)}`);
    check(s.share.driver === 'virtiofs' || s.share.driver === '9p', 'share.driver', `must be virtiofs or 9p, got ${JSON.stringify(s.share.driver)}`);
    if (s.share.virtiofsd !== undefined) checkPath(s.share.virtiofsd, 'share.virtiofsd');
  }
  const n = s.network;
  if (n.mode === 'user' || n.mode === 'bridge') check(MAC_RE.test(n.mac), 'network.mac', `must be a lower-case MAC like 52:54:00:12:34:56, got ${JSON.stringify(n.mac)}`);
  if (n.mode === 'bridge') {
    check(BRIDGE_RE.test(n.bridge), 'network.bridge', `must be an interface name matching ${BRIDGE_RE}, got ${JSON.stringify(n.bridge)}`);
    if (n.ip !== undefined) check(IPV4_RE.test(n.ip), 'network.ip', `must be a dotted IPv4 address, got ${JSON.stringify(n.ip)}`);
  } else {
    check(n.mode === 'none' || n.mode === 'user', 'network.mode', `must be none, user or bridge, got ${JSON.stringify((n as { mode: unknown }).mode)}`);
  }
  if (s.consoleLog !== undefined) checkPath(s.consoleLog, 'consoleLog');
  (s.fwcfg ?? []).forEach((f, i) => {
    // QEMU reserves names outside opt/ for itself; libvirt requires the opt/ prefix too
    check(FWCFG_RE.test(f.name) && f.name.length <= 55, `fwcfg[${i}].name`, `must match ${FWCFG_RE} in at most 55 bytes, got ${JSON.stringify(f.name)}`);
    checkPath(f.file, `fwcfg[${i}].file`);
  });
}

type Node = Record<string, unknown>;
const A = (attrs: Record<string, string | number>): Node =>
  Object.fromEntries(Object.entries(attrs).map(([k, v]) => [`@_${k}`, String(v)]));

function osNode(s: DomainSpec): Node {
  const os: Node = { type: { ...A({ arch: 'x86_64', machine: 'q35' }), '#text': 'hvm' } };
  if (s.boot.kind === 'kernel') {
    os.kernel = s.boot.kernel;
    if (s.boot.initrd !== undefined) os.initrd = s.boot.initrd;
    os.cmdline = s.boot.cmdline;
  } else {
    os.boot = A({ dev: 'hd' });
  }
  return os;
}

function diskNodes(s: DomainSpec): Node[] {
  return s.disks.map((d, i) => {
    const disk: Node = {
      ...A({ type: 'file', device: 'disk' }),
      driver: A({ name: 'qemu', type: d.format, discard: 'unmap' }),
      source: A({ file: d.path }),
      target: A({ dev: `vd${String.fromCharCode(97 + i)}`, bus: 'virtio' }),
    };
    if (d.readonly) disk.readonly = '';
    return disk;
  });
}

function filesystemNode(sh: ShareSpec): Node {
  const fs: Node = { ...A({ type: 'mount', accessmode: 'passthrough' }) };
  if (sh.driver === 'virtiofs') {
    fs.driver = A({ type: 'virtiofs' });
    if (sh.virtiofsd !== undefined) fs.binary = A({ path: sh.virtiofsd });
  } else {
    fs.driver = A({ type: 'path' });
  }
  fs.source = A({ dir: sh.hostPath });
  fs.target = A({ dir: sh.tag });
  if (sh.readonly) fs.readonly = '';
  return fs;
}

function interfaceNodes(n: DomainNetwork): Node[] {
  if (n.mode === 'none') return [];
  if (n.mode === 'user') return [{ ...A({ type: 'user' }), mac: A({ address: n.mac }), model: A({ type: 'virtio' }) }];
  const iface: Node = {
    ...A({ type: 'bridge' }),
    mac: A({ address: n.mac }),
    source: A({ bridge: n.bridge }),
    model: A({ type: 'virtio' }),
  };
  if (n.filter) {
    // clean-traffic learns the IP from DHCP unless it is pinned; pin it when the site assigns one per slot
    iface.filterref = { ...A({ filter: 'clean-traffic' }), ...(n.ip ? { parameter: A({ name: 'IP', value: n.ip }) } : {}) };
  }
  return [iface];
}

/** Build the domain XML for `s` (validated first; throws LibvirtSpecError naming the bad field). */
export function buildDomainXml(s: DomainSpec): string {
  validateDomainSpec(s);
  const devices: Node = {};
  if (s.emulator !== undefined) devices.emulator = s.emulator;
  const disks = diskNodes(s);
  if (disks.length) devices.disk = disks;
  if (s.share) devices.filesystem = filesystemNode(s.share);
  // libvirt adds a USB controller and a balloon to q35 unless told not to: a job VM needs neither
  devices.controller = [A({ type: 'usb', model: 'none' }), A({ type: 'virtio-serial', index: 0 })];
  const ifaces = interfaceNodes(s.network);
  if (ifaces.length) devices.interface = ifaces;
  if (s.consoleLog !== undefined) {
    devices.serial = { ...A({ type: 'file' }), source: A({ path: s.consoleLog }), target: A({ port: 0 }) };
  }
  devices.channel = s.channels.map((c) => ({
    ...A({ type: 'unix' }),
    source: A({ mode: c.mode, path: c.path }),
    target: A({ type: 'virtio', name: c.name }),
  }));
  devices.memballoon = A({ model: 'none' });
  // guests seed their RNG from the host (clones and fresh boots alike); also keeps boot from waiting for entropy
  devices.rng = { ...A({ model: 'virtio' }), backend: { ...A({ model: 'random' }), '#text': '/dev/urandom' } };

  const domain: Node = { ...A({ type: s.type }) };
  if (s.debugExit) domain['@_xmlns:qemu'] = 'http://libvirt.org/schemas/domain/qemu/1.0';
  domain.name = s.name;
  domain.memory = { ...A({ unit: 'MiB' }), '#text': String(s.memoryMB) };
  domain.vcpu = String(s.cpus);
  if (s.share?.driver === 'virtiofs') {
    // vhost-user (virtiofsd) maps guest memory: it must be shared, memfd needs no hugepages or NUMA nodes
    domain.memoryBacking = { source: A({ type: 'memfd' }), access: A({ mode: 'shared' }) };
  }
  if (s.fwcfg?.length) {
    domain.sysinfo = { ...A({ type: 'fwcfg' }), entry: s.fwcfg.map((f) => A({ name: f.name, file: f.file })) };
  }
  domain.os = osNode(s);
  domain.features = { acpi: '' };
  if (s.type === 'kvm') {
    domain.cpu = {
      ...A({ mode: 'host-passthrough', check: 'none', migratable: 'off' }),
      ...((s.cpuFeaturesOff ?? []).length ? { feature: (s.cpuFeaturesOff ?? []).map((f) => A({ policy: 'disable', name: f })) } : {}),
    };
  }
  domain.clock = A({ offset: 'utc' });
  // a job VM is done when the guest stops, whatever the reason: never reboot it
  domain.on_poweroff = 'destroy';
  domain.on_reboot = 'destroy';
  domain.on_crash = 'destroy';
  domain.devices = devices;
  if (s.debugExit) {
    domain['qemu:commandline'] = { 'qemu:arg': [A({ value: '-device' }), A({ value: 'isa-debug-exit,iobase=0xf4,iosize=0x04' })] };
  }
  const builder = new XMLBuilder({
    ignoreAttributes: false,
    attributeNamePrefix: '@_',
    textNodeName: '#text',
    format: true,
    indentBy: '  ',
    suppressEmptyNode: true,
    suppressBooleanAttributes: false,
    processEntities: true,
  });
  return builder.build({ domain }) as string;
}
