/** The one place that picks a VM driver: for a new VM from the site config's vm section, and for an existing
 * record (records say which driver made them). Used by the job core, `wnod vm run` and the node commands. */
import type { VmDriver, VmState } from './driver.js';
import type { AccelMode } from './accel.js';
import type { SnapshotOptions } from './snapshot.js';
import { QemuDriver } from './qemu.js';
import { LibvirtDriver, libvirtDriverForRecord } from './libvirtDriver.js';

export interface VmSettings {
  driver: 'qemu' | 'libvirt';
  stateDir: string;
  accel: AccelMode;
}

/** The driver for a new VM. Warm snapshots are QEMU's only. */
export function newVmDriver(vm: VmSettings, o: { probeImage?: { kernel: string; initrd: string } | undefined; snapshots?: SnapshotOptions | undefined } = {}): QemuDriver | LibvirtDriver {
  const probe = o.probeImage ? { probeImage: o.probeImage } : {};
  if (vm.driver === 'libvirt') return new LibvirtDriver({ stateDir: vm.stateDir, accel: vm.accel, ...probe });
  return new QemuDriver({ stateDir: vm.stateDir, accel: vm.accel, ...probe, ...(o.snapshots ? { snapshots: o.snapshots } : {}) });
}

/** The driver of an existing record (teardown, gc): the record's own state dir and libvirt URI. */
export function recordDriver(state: VmState, accel: AccelMode = 'tcg'): VmDriver {
  if (state.driver === 'qemu') return new QemuDriver({ stateDir: state.stateDir, accel });
  if (state.driver === 'libvirt') return libvirtDriverForRecord(state);
  throw new Error(`VM ${state.id} was made by driver '${state.driver}', which this wnod does not know`);
}
