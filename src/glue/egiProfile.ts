/** What EGI's glue-validator (EGI profile, glue_validator/egi_glue2/types.py: is_OSFamily_t, is_OSName_t,
 * is_Platform_t) accepts for an ExecutionEnvironment's OS and platform. A value outside these lists is flagged by
 * the validator; `wnod check` warns about it before the site publishes it. Pure. */
import type { SiteConfig } from '../config/types.js';
import { eePlatform } from './model.js';

export const EGI_OS_FAMILIES: readonly string[] = ['linux', 'macosx', 'solaris', 'windows'];
export const EGI_OS_NAMES: readonly string[] = ['AIX', 'CentOS', 'Debian', 'Fedoracore', 'Gentoo', 'Leopard', 'Linux-rocks', 'Mandrake',
  'RedhatEnterpriseAS', 'ScientificSL', 'ScientificCERNSLC', 'SUSE LINUX', 'Ubuntu', 'Microsoft WINDOWS'];
export const EGI_PLATFORMS: readonly string[] = ['amd64', 'i386', 'i686', 'itanium', 'powerpc', 'sparc', 'x86_64'];

/** One warning per published image whose OS family, OS name or platform the EGI profile does not list. */
export function egiProfileWarnings(cfg: Pick<SiteConfig, 'images'>): string[] {
  const out: string[] = [];
  for (const [i, img] of cfg.images.entries()) {
    if (!img.published) continue;
    const at = `images[${i}] (${img.id})`;
    const family = img.os.family.toLowerCase(); // published lower-cased
    if (!EGI_OS_FAMILIES.includes(family)) out.push(`${at}.os.family: ${JSON.stringify(img.os.family)} is not in the EGI profile's OSFamily list (${EGI_OS_FAMILIES.join(', ')}); glue-validator will flag it`);
    if (!EGI_OS_NAMES.includes(img.os.name)) out.push(`${at}.os.name: ${JSON.stringify(img.os.name)} is not in the EGI profile's OSName list (${EGI_OS_NAMES.join(', ')}); glue-validator will flag it`);
    const platform = eePlatform(img.arch);
    if (!EGI_PLATFORMS.includes(platform)) out.push(`${at}.arch: ${img.arch} is published as Platform ${JSON.stringify(platform)}, which is not in the EGI profile's list (${EGI_PLATFORMS.join(', ')}); glue-validator will flag it`);
  }
  return out;
}
