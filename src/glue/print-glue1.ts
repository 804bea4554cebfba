// GLUE 1.3 printer: the BDII plugin output (a modification of the site's existing SubCluster entry).
import { modifyRecord } from './ldif.js';
import type { Glue1Model } from './model.js';

export const RTE_ATTR = 'GlueHostApplicationSoftwareRunTimeEnvironment';

/** The plugin's LDIF: `changetype: modify` / `add:` of one RTE value per tag; empty when there is no tag
 * (an `add` without values is invalid LDIF). */
export function printGlue1Plugin(m: Glue1Model): string {
  if (m.tags.length === 0) return '';
  return modifyRecord(m.subClusterDn, [{ op: 'add', attr: RTE_ATTR, values: m.tags }]);
}
