/** Kernel modules for a direct-boot initramfs: read each module's `depends=` from its .modinfo section and order
 * the closure of the wanted modules so that every module comes after what it depends on (busybox insmod does not
 * resolve dependencies). Pure apart from the caller's file reads. */
import { WnodError } from '../util/errors.js';

export class ModuleError extends WnodError {
  constructor(message: string) {
    super('kernel-module', message);
  }
}

/** The module names (comma-separated `depends=` in .modinfo) a module file depends on. */
export function moduleDepends(ko: Uint8Array): string[] {
  const buf = Buffer.from(ko.buffer, ko.byteOffset, ko.byteLength);
  const key = Buffer.from('\0depends=', 'ascii');
  const at = buf.indexOf(key);
  if (at < 0) return [];
  const start = at + key.length;
  const end = buf.indexOf(0, start);
  const value = buf.subarray(start, end < 0 ? buf.length : end).toString('ascii');
  return value.split(',').map((s) => s.trim()).filter(Boolean);
}

/** Normalise a module name as the kernel does ('-' and '_' are the same). */
export function moduleName(fileOrName: string): string {
  return fileOrName.replace(/^.*\//, '').replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');
}

/** Order `wanted` and their dependencies: `deps(name)` gives a module's dependencies, or undefined if the module
 * is not available (then it must be built in: `builtin` lists those). Throws on a missing or cyclic module. */
export function loadOrder(wanted: readonly string[], deps: (name: string) => string[] | undefined, builtin: ReadonlySet<string>): string[] {
  const order: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (raw: string, from: string | undefined): void => {
    const name = moduleName(raw);
    if (builtin.has(name)) return;
    const s = state.get(name);
    if (s === 'done') return;
    if (s === 'visiting') throw new ModuleError(`module dependency cycle through ${name}`);
    const d = deps(name);
    if (d === undefined) throw new ModuleError(`kernel module ${name}${from ? ` (needed by ${from})` : ''} is neither a module nor built in`);
    state.set(name, 'visiting');
    for (const x of d) visit(x, name);
    state.set(name, 'done');
    order.push(name);
  };
  for (const w of wanted) visit(w, undefined);
  return order;
}
