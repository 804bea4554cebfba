import { isMap, isScalar, isSeq, LineCounter, type Document, type Node } from 'yaml';

import type { ConfigProblem } from './errors.js';

type Path = (string | number)[];

function keyPath(path: Path): string {
  return path.map((k, i) => (typeof k === 'number' ? `[${k}]` : i === 0 ? k : `.${k}`)).join('');
}

/** Typed, strict access to a YAML document that records every problem with its line instead of stopping at
 * the first: `wnod check` reports all of them at once. Every read key is remembered so that unknown keys
 * (typos) are reported too. */
export class ConfigReader {
  readonly problems: ConfigProblem[] = [];
  private readonly seen = new Set<string>();

  constructor(readonly file: string, private readonly doc: Document, private readonly lines: LineCounter) {}

  /** The line of the node at `path`, or of its nearest existing ancestor. */
  lineOf(path: Path): number {
    for (let n = path.length; n >= 0; n--) {
      const node = n === 0 ? this.doc.contents : (this.doc.getIn(path.slice(0, n), true) as Node | undefined);
      if (node && typeof node === 'object' && 'range' in node && node.range) {
        return this.lines.linePos(node.range[0]).line;
      }
    }
    return 1;
  }

  /** The line of the KEY at `path` (for unknown keys, the key itself is what is wrong). */
  private keyLine(path: Path): number {
    const parent = path.length <= 1 ? this.doc.contents : this.doc.getIn(path.slice(0, -1), true);
    if (isMap(parent)) {
      for (const pair of parent.items) {
        if (isScalar(pair.key) && pair.key.value === path[path.length - 1] && pair.key.range) {
          return this.lines.linePos(pair.key.range[0]).line;
        }
      }
    }
    return this.lineOf(path);
  }

  problem(path: Path, message: string): void {
    this.problems.push({ file: this.file, line: this.lineOf(path), key: keyPath(path), message });
  }

  private raw(path: Path): unknown {
    for (let n = 1; n <= path.length; n++) this.seen.add(keyPath(path.slice(0, n)));
    const node = path.length === 0 ? this.doc.contents : this.doc.getIn(path, true);
    if (node === undefined || node === null) return undefined;
    if (isScalar(node)) return node.value;
    return node;
  }

  has(path: Path): boolean {
    const v = this.raw(path);
    return v !== undefined && v !== null;
  }

  str(path: Path, opts: { default?: string; pattern?: RegExp; patternText?: string; optional?: boolean } = {}): string | undefined {
    const v = this.raw(path);
    if (v === undefined || v === null) {
      if (opts.default !== undefined) return opts.default;
      if (!opts.optional) this.problem(path, 'missing (required)');
      return undefined;
    }
    if (typeof v === 'number' || typeof v === 'boolean') {
      this.problem(path, `expected a string, got ${typeof v} ${JSON.stringify(v)} (quote it)`);
      return undefined;
    }
    if (typeof v !== 'string') {
      this.problem(path, 'expected a string, got a ' + (isSeq(v) ? 'list' : 'mapping'));
      return undefined;
    }
    if (v.length === 0) {
      this.problem(path, 'must not be empty');
      return undefined;
    }
    if (opts.pattern && !opts.pattern.test(v)) {
      this.problem(path, `${JSON.stringify(v)} is not ${opts.patternText ?? `of the form ${opts.pattern}`}`);
      return undefined;
    }
    return v;
  }

  int(path: Path, opts: { default?: number; min?: number; max?: number; optional?: boolean } = {}): number | undefined {
    const v = this.raw(path);
    if (v === undefined || v === null) {
      if (opts.default !== undefined) return opts.default;
      if (!opts.optional) this.problem(path, 'missing (required)');
      return undefined;
    }
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) {
      this.problem(path, `expected a whole number, got ${JSON.stringify(typeof v === 'object' ? 'a ' + (isSeq(v) ? 'list' : 'mapping') : v)}`);
      return undefined;
    }
    if (opts.min !== undefined && v < opts.min) { this.problem(path, `${v} is below the minimum ${opts.min}`); return undefined; }
    if (opts.max !== undefined && v > opts.max) { this.problem(path, `${v} is above the maximum ${opts.max}`); return undefined; }
    return v;
  }

  /** A real number (YAML int or float) within (min, max]: `minExclusive` for factors that must be positive. */
  real(path: Path, opts: { default: number; minExclusive?: number; max?: number }): number {
    const v = this.raw(path);
    if (v === undefined || v === null) return opts.default;
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      this.problem(path, `expected a number, got ${JSON.stringify(typeof v === 'object' ? 'a ' + (isSeq(v) ? 'list' : 'mapping') : v)}`);
      return opts.default;
    }
    if (opts.minExclusive !== undefined && v <= opts.minExclusive) { this.problem(path, `${v} must be above ${opts.minExclusive}`); return opts.default; }
    if (opts.max !== undefined && v > opts.max) { this.problem(path, `${v} is above the maximum ${opts.max}`); return opts.default; }
    return v;
  }

  bool(path: Path, dflt: boolean): boolean {
    const v = this.raw(path);
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'boolean') { this.problem(path, `expected true or false, got ${JSON.stringify(v)}`); return dflt; }
    return v;
  }

  oneOf<T extends string>(path: Path, allowed: readonly T[], dflt?: T): T | undefined {
    const v = this.str(path, dflt === undefined ? {} : { default: dflt });
    if (v === undefined) return undefined;
    if (!(allowed as readonly string[]).includes(v)) {
      this.problem(path, `${JSON.stringify(v)} is not one of ${allowed.join(', ')}`);
      return undefined;
    }
    return v as T;
  }

  /** A list of strings (a YAML sequence of scalars). */
  strList(path: Path, opts: { pattern?: RegExp; patternText?: string; optional?: boolean } = {}): string[] | undefined {
    const n = this.length(path, opts.optional ?? false);
    if (n === undefined) return undefined;
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
      const s = this.str([...path, i], opts);
      if (s !== undefined) out.push(s);
    }
    return out;
  }

  /** The number of items of the sequence at `path`, or undefined (with a problem if required). */
  length(path: Path, optional = false): number | undefined {
    const v = this.raw(path);
    if (v === undefined || v === null) {
      if (!optional) this.problem(path, 'missing (required)');
      return undefined;
    }
    if (!isSeq(v)) { this.problem(path, 'expected a list'); return undefined; }
    return v.items.length;
  }

  /** True when `path` is a mapping; records a problem if present but not a mapping, or missing and required. */
  isMapping(path: Path, optional = false): boolean {
    const v = this.raw(path);
    if (v === undefined || v === null) {
      if (!optional) this.problem(path, 'missing (required)');
      return false;
    }
    if (!isMap(v)) { this.problem(path, 'expected a mapping (key: value lines)'); return false; }
    return true;
  }

  /** The keys of the mapping at `path` (a map of names: each value is read by the caller), or undefined. */
  keys(path: Path, optional = false): string[] | undefined {
    if (!this.isMapping(path, optional)) return undefined;
    const out: string[] = [];
    for (const pair of (this.raw(path) as { items: Array<{ key: unknown }> }).items) {
      if (isScalar(pair.key) && typeof pair.key.value === 'string') out.push(pair.key.value);
      else this.problem(path, 'keys must be plain strings');
    }
    return out;
  }

  /** Report every key of every mapping that no reader asked for: typos must not pass silently. */
  reportUnknownKeys(): void {
    const walk = (node: unknown, path: Path): void => {
      if (isMap(node)) {
        for (const pair of node.items) {
          const key = isScalar(pair.key) ? pair.key.value : undefined;
          if (typeof key !== 'string') {
            this.problem(path, 'keys must be plain strings');
            continue;
          }
          const p = [...path, key];
          if (!this.seen.has(keyPath(p))) {
            this.problems.push({ file: this.file, line: this.keyLine(p), key: keyPath(p), message: 'unknown key' });
            continue;
          }
          walk(pair.value, p);
        }
      } else if (isSeq(node)) {
        node.items.forEach((item, i) => walk(item, [...path, i]));
      }
    };
    walk(this.doc.contents, []);
  }
}
