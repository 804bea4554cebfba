/** The QEMU command line for one VM, as an argument array (never a shell). Pure: every path comes in resolved.
 *
 * Kernel images boot on `-M microvm` with the options measured in DESIGN A5 (1.6–1.9 s under TCG with Debian's cloud
 * kernel); bootable disk images boot on q35 with SeaBIOS. The guest talks to the host over three named
 * virtio-serial ports (the agent channel) and sees the job's workdir through virtiofs. */
import type { NetworkSpec, PortForward } from './driver.js';

export const AGENT_PORTS = { control: 'org.wnod.control', stdout: 'org.wnod.stdout', stderr: 'org.wnod.stderr' } as const;
export const WORKDIR_TAG = 'wnodwork';
/** The job NIC's device id (QMP query-rx-filter names it). */
export const JOB_NIC_ID = 'jobnic';
/** MAC of the user-mode NIC when none is given (QEMU's own prefix 52:54:00). */
export const DEFAULT_USER_MAC = '52:54:00:12:34:56';

export interface QemuPlan {
  machine: 'microvm' | 'q35';
  accel: 'kvm' | 'tcg';
  cpus: number;
  memoryMB: number;
  kernel?: string;
  initrd?: string;
  cmdline?: string;
  disk?: { path: string; format: 'raw' | 'qcow2' };
  /** fw_cfg blob with the per-job context (disk images, which have no initrd to append to) */
  contextBlob?: string;
  sockets: { control: string; stdout: string; stderr: string; qmp: string; virtiofs?: string };
  /** microvm: false → acpi=off (a kernel without ACPI finds virtio-mmio devices on its command line) */
  acpi?: boolean;
  /** warm snapshots (src/vm/snapshot.ts): the workdir over 9p from this host path (virtiofs blocks migration) */
  ninep?: string;
  /** warm snapshots: restore from this migration URI (`fd:N`, an inherited fd) instead of booting */
  incoming?: string;
  /** warm snapshots: stay paused once the stream is loaded (-S), until the host says `cont` */
  paused?: boolean;
  /** warm snapshots: guest RAM is this file, mapped shared by the template (its RAM lands in the file, not in the
   * migration stream: the x-ignore-shared capability, set over QMP on both sides) and private copy-on-write by each clone (idle clones share its pages) */
  templateRam?: { path: string; share: boolean };
  console: string;    // serial console log file
  /** keep the serial console in a QEMU ring buffer of this many bytes instead of the file (restored clones: the
   * guest may already be the job's, whose output must not fill the node's disk) */
  consoleRing?: number;
  pidfile: string;
  /** `job.tap` absent: the job NIC of a snapshot template, on no host network (netdev backends are not migrated:
   * each clone brings its own job's tap to the same device) */
  network: Omit<NetworkSpec, 'job'> & { tap?: string; job?: { tap?: string; mac: string } };
  /** drop to this job user (`-runas uid:gid`) once every file, fd and socket is open: a guest escape through 9p
   * or QEMU then has the job user's rights, not root's. Numeric: no second name lookup, no supplementary groups */
  runAs?: { uid: number; gid: number };
}

/** Whom a job VM's QEMU runs as: the job user, or root (no -runas) for root's own VMs. Pure. */
export function runAsFor(user: { uid: number; gid: number }): QemuPlan['runAs'] {
  return user.uid === 0 ? undefined : { uid: user.uid, gid: user.gid };
}

/** The guest kernel command line: the A5 fast-boot options (tsc_early_khz is mandatory under TCG), then extra. */
export function kernelCmdline(accel: 'kvm' | 'tcg', tscKhz: number | undefined, extra?: string): string {
  const base = ['console=ttyS0', 'quiet', 'panic=-1', 'reboot=t', 'rdinit=/init', 'cryptomgr.notests', 'random.trust_cpu=on', '8250.nr_uarts=1'];
  if (accel === 'tcg') {
    if (tscKhz !== undefined) base.push(`tsc_early_khz=${tscKhz}`);
    // not nolapic_timer (A5 measured −0.25 s): without the local APIC timer microvm guests have no clock event
    // device, so every sleep in the guest hangs for ever (measured here)
    base.push('tsc=reliable', 'no_timer_check');
  }
  if (extra && extra.trim()) base.push(extra.trim());
  return base.join(' ');
}

/** The host TSC frequency in kHz from /proc/cpuinfo text ("cpu MHz : 2299.998"), or undefined. */
export function tscKhzFromCpuinfo(cpuinfo: string): number | undefined {
  const m = /^cpu MHz\s*:\s*(\d+(?:\.\d+)?)\s*$/m.exec(cpuinfo);
  if (!m) return undefined;
  const khz = Math.round(Number(m[1]) * 1000);
  return Number.isFinite(khz) && khz > 0 ? khz : undefined;
}

/** Bytes of guest console a VM keeps once the job may write to it (QEMU wants a power of two). */
export const CONSOLE_RING_BYTES = 64 * 1024;

/** A QEMU ring buffer size: a power of two from 4 KiB to 1 MiB. */
function ringSize(n: number): number {
  if (!Number.isInteger(n) || n < 4096 || n > 1 << 20 || (n & (n - 1)) !== 0) throw new Error(`invalid console ring size ${n}`);
  return n;
}

/** The QMP arguments that swap a running VM's serial console from its log file to a bounded ring buffer. */
export function boundedConsoleChange(bytes = CONSOLE_RING_BYTES): { id: string; backend: { type: 'ringbuf'; data: { size: number } } } {
  return { id: 'con0', backend: { type: 'ringbuf', data: { size: ringSize(bytes) } } };
}

// QEMU option values are comma-separated: a comma inside a path must be doubled.
function q(path: string): string {
  return path.replace(/,/g, ',,');
}

/** `hostfwd=tcp:ADDR:PORT-:GUESTPORT`, validated: the values come from config and a port allocator. */
export function hostfwd(f: PortForward): string {
  const port = (n: number) => Number.isInteger(n) && n >= 1 && n <= 65535;
  if (!/^(\d{1,3}\.){3}\d{1,3}$/.test(f.hostAddr) || !port(f.hostPort) || !port(f.guestPort)) {
    throw new Error(`invalid port forward ${JSON.stringify(f)}`);
  }
  return `hostfwd=tcp:${f.hostAddr}:${f.hostPort}-:${f.guestPort}`;
}

/** Build the argument array (without the qemu binary itself). */
export function qemuArgs(p: QemuPlan): string[] {
  const mmio = p.machine === 'microvm';
  const dev = (name: string) => (mmio ? `${name}-device` : `${name}-pci`);
  const a: string[] = [];
  // keep microvm's RTC: without it the kernel polls for it twice, 1 s each (measured: rtc=off costs 2 s per boot)
  if (mmio) a.push('-M', `microvm,x-option-roms=off${p.acpi === false ? ',acpi=off' : ''}`, '-global', 'virtio-mmio.force-legacy=false');
  else a.push('-M', 'q35');
  a.push('-nodefaults', '-no-user-config', '-no-reboot', '-display', 'none');
  a.push('-accel', p.accel);
  // -cpu host aborts on PVM hosts (MSR 0x10a) unless arch-capabilities is off; TCG keeps QEMU's default model
  if (p.accel === 'kvm') a.push('-cpu', 'host,-arch-capabilities');
  a.push('-smp', String(p.cpus));
  // virtiofs needs guest RAM shareable with virtiofsd: a memfd backend bound to one NUMA node
  if (p.ninep !== undefined && !p.sockets.virtiofs) {
    if (p.templateRam) {
      const { path, share } = p.templateRam;
      a.push('-m', `${p.memoryMB}M`, '-object', `memory-backend-file,id=mem0,size=${p.memoryMB}M,mem-path=${q(path)},share=${share ? 'on' : 'off'}`,
        '-numa', 'node,memdev=mem0');
    } else {
      // snapshots: private anonymous RAM; a restore reading untouched shared memfd pages would allocate every one
      a.push('-m', `${p.memoryMB}M`);
    }
  } else {
    a.push('-m', `${p.memoryMB}M`, '-object', `memory-backend-memfd,id=mem0,size=${p.memoryMB}M,share=on`, '-numa', 'node,memdev=mem0');
  }
  if (p.kernel) {
    a.push('-kernel', p.kernel);
    if (p.initrd) a.push('-initrd', p.initrd);
    if (p.cmdline) a.push('-append', p.cmdline);
  }
  a.push('-chardev', p.consoleRing !== undefined ? `ringbuf,id=con0,size=${ringSize(p.consoleRing)}` : `file,id=con0,path=${q(p.console)}`,
    '-serial', 'chardev:con0');
  a.push('-device', dev('virtio-serial'));
  for (const [key, name] of Object.entries(AGENT_PORTS) as Array<[keyof typeof AGENT_PORTS, string]>) {
    a.push('-chardev', `socket,id=ch-${key},path=${q(p.sockets[key])},server=on,wait=off`);
    a.push('-device', `virtserialport,chardev=ch-${key},name=${name}`);
  }
  if (p.sockets.virtiofs) {
    a.push('-chardev', `socket,id=fs0,path=${q(p.sockets.virtiofs)}`);
    a.push('-device', `${mmio ? 'vhost-user-fs-device' : 'vhost-user-fs-pci'},chardev=fs0,tag=${WORKDIR_TAG}`);
  }
  if (p.ninep !== undefined) {
    a.push('-fsdev', `local,id=fs9,path=${q(p.ninep)},security_model=passthrough`);
    a.push('-device', `${mmio ? 'virtio-9p-device' : 'virtio-9p-pci'},fsdev=fs9,mount_tag=${WORKDIR_TAG}`);
  }
  if (p.disk) {
    a.push('-drive', `file=${q(p.disk.path)},if=none,id=disk0,format=${p.disk.format},cache=unsafe,discard=unmap`);
    a.push('-device', `${dev('virtio-blk')},drive=disk0`);
  }
  if (p.contextBlob) a.push('-fw_cfg', `name=opt/org.wnod/context,file=${q(p.contextBlob)}`);
  a.push('-object', 'rng-random,id=rng0,filename=/dev/urandom', '-device', `${dev('virtio-rng')},rng=rng0`);
  if (p.network.mode === 'user') {
    // restrict=on keeps the guest off the host and the outside; explicit forwards still work (QEMU docs)
    a.push('-netdev', ['user,id=net0,restrict=on', ...(p.network.forwards ?? []).map(hostfwd)].join(','));
    a.push('-device', `${dev('virtio-net')},netdev=net0,mac=${p.network.mac ?? DEFAULT_USER_MAC}`);
  } else if (p.network.mode === 'bridge') {
    if (!p.network.tap || !p.network.mac) throw new Error('bridge network needs a tap device and a MAC');
    a.push('-netdev', `tap,id=net0,ifname=${p.network.tap},script=no,downscript=no`);
    a.push('-device', `${dev('virtio-net')},netdev=net0,mac=${p.network.mac}`);
  }
  if (p.network.job) {
    // the job's private network: a tap on the job's bridge, opened as root before -runas (QEMU opens netdevs first);
    // a template's NIC sits alone on a hub port (no host side at all)
    const { tap, mac } = p.network.job;
    if ((tap !== undefined && !/^[A-Za-z0-9_.-]{1,15}$/.test(tap)) || !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(mac)) throw new Error(`invalid job network NIC ${JSON.stringify({ tap, mac })}`);
    a.push('-netdev', tap !== undefined ? `tap,id=net1,ifname=${tap},script=no,downscript=no` : 'hubport,id=net1,hubid=1');
    a.push('-device', `${dev('virtio-net')},netdev=net1,mac=${mac},id=${JOB_NIC_ID}`);
  }
  a.push('-qmp', `unix:${q(p.sockets.qmp)},server=on,wait=off`);
  if (p.paused) a.push('-S');
  if (p.incoming) a.push('-incoming', p.incoming);
  if (p.runAs) {
    const { uid, gid } = p.runAs;
    const id = (n: number) => Number.isInteger(n) && n >= 0 && n < 0xffffffff;
    if (!id(uid) || uid === 0 || !id(gid)) throw new Error(`invalid -runas ids ${JSON.stringify(p.runAs)} (root or not a uid/gid)`);
    a.push('-runas', `${uid}:${gid}`);
  }
  a.push('-pidfile', p.pidfile, '-daemonize');
  return a;
}
