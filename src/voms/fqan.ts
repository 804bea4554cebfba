// FQANs (Fully Qualified Attribute Names) in the canonical long form `/group[/sub…]/Role=<r|NULL>/Capability=<c|NULL>`,
// and FQAN patterns with the Argus/LCMAPS conventions (DESIGN A4):
//   /atlas/Role=production   exactly that group and role (capability NULL)
//   /atlas/*                 /atlas and every subgroup, Role=NULL only
//   /atlas/*/Role=*          /atlas and every subgroup, any role
import { VomsError } from './errors.js';
import { printable } from './der.js';

// VOMS group and role names: letters, digits, '_', '-', '.' (never all dots: no '.'/'..' path games)
const NAME = /^[A-Za-z0-9_.-]+$/;
const MAX_FQAN = 1024;

interface Parsed {
  groups: string[];          // path segments, groups[0] = the VO
  groupWildcard: boolean;    // pattern only: trailing "/*"
  role: string;              // "NULL" when absent; "*" in patterns
  capability: string;
}

function bad(fqan: string, why: string): VomsError {
  return new VomsError('malformed', `invalid FQAN '${printable(fqan)}': ${why}`);
}

function validName(s: string): boolean {
  return NAME.test(s) && !/^\.+$/.test(s) && s !== 'NULL';
}

function parse(fqan: string, pattern: boolean): Parsed {
  if (typeof fqan !== 'string' || fqan.length === 0) throw bad(String(fqan), 'empty');
  if (fqan.length > MAX_FQAN) throw bad(fqan, `longer than ${MAX_FQAN} characters`);
  if (!fqan.startsWith('/')) throw bad(fqan, "must start with '/'");
  const segs = fqan.slice(1).split('/');
  const groups: string[] = [];
  let groupWildcard = false;
  let role: string | undefined;
  let capability: string | undefined;
  for (const seg of segs) {
    if (seg.startsWith('Role=')) {
      if (role !== undefined || capability !== undefined) throw bad(fqan, "'Role=' misplaced or repeated");
      role = seg.slice(5);
      if (!(validName(role) || role === 'NULL' || (pattern && role === '*'))) throw bad(fqan, `invalid role '${printable(role)}'`);
    } else if (seg.startsWith('Capability=')) {
      if (capability !== undefined) throw bad(fqan, "'Capability=' repeated");
      capability = seg.slice(11);
      if (!(validName(capability) || capability === 'NULL' || (pattern && capability === '*'))) {
        throw bad(fqan, `invalid capability '${printable(capability)}'`);
      }
    } else {
      if (role !== undefined || capability !== undefined) throw bad(fqan, 'group name after Role/Capability');
      if (groupWildcard) throw bad(fqan, "'*' must be the last group segment");
      if (pattern && seg === '*' && groups.length > 0) { groupWildcard = true; continue; }
      if (seg === '') throw bad(fqan, 'empty group name');
      if (!validName(seg)) throw bad(fqan, `invalid group name '${printable(seg)}'`);
      groups.push(seg);
    }
  }
  if (groups.length === 0) throw bad(fqan, 'no group');
  return { groups, groupWildcard, role: role ?? 'NULL', capability: capability ?? 'NULL' };
}

/** The canonical long form `/vo[/sub]/Role=…/Capability=…`; throws VomsError('malformed') on garbage. */
export function canonicalFqan(fqan: string): string {
  const p = parse(fqan, false);
  return `/${p.groups.join('/')}/Role=${p.role}/Capability=${p.capability}`;
}

/** The canonical form of an Argus FQAN pattern (keeps `/*` and `Role=*`); throws VomsError('malformed'). */
export function canonicalFqanPattern(pattern: string): string {
  const p = parse(pattern, true);
  return `/${p.groups.join('/')}${p.groupWildcard ? '/*' : ''}/Role=${p.role}/Capability=${p.capability}`;
}

/** The VO of an FQAN (its first group). */
export function fqanVo(fqan: string): string {
  return parse(fqan, false).groups[0]!;
}

/** Does the FQAN match the Argus pattern? Garbage on either side never matches. */
export function fqanMatches(pattern: string, fqan: string): boolean {
  let pat: Parsed;
  let f: Parsed;
  try {
    pat = parse(pattern, true);
    f = parse(fqan, false);
  } catch {
    return false;
  }
  if (pat.groupWildcard) {
    if (f.groups.length < pat.groups.length) return false;
  } else if (f.groups.length !== pat.groups.length) return false;
  for (let i = 0; i < pat.groups.length; i++) if (pat.groups[i] !== f.groups[i]) return false;
  if (pat.role !== '*' && pat.role !== f.role) return false;
  if (pat.capability !== '*' && pat.capability !== f.capability) return false;
  return true;
}

/** Does the FQAN lie inside the VO (`/<vo>` or `/<vo>/…`)? */
export function fqanInVo(fqan: string, vo: string): boolean {
  return fqan === `/${vo}` || fqan.startsWith(`/${vo}/`);
}
