import { createHash } from 'node:crypto';
import type { Image } from './types.js';

/** Image ids are RTE tags: GLUE IA5, safe as file names and shell words. */
export const IMAGE_ID = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$/;

/** The digest that names an image as a whole: the disk's for `disk`, a sha256 over all parts for `kernel`. */
export function imageDigest(img: Pick<Image, 'kind' | 'disk' | 'kernel' | 'initrd'>): string {
  if (img.kind === 'disk') return img.disk?.sha256 ?? '';
  const h = createHash('sha256');
  for (const [role, a] of [['kernel', img.kernel], ['initrd', img.initrd], ['disk', img.disk]] as const) {
    if (a) h.update(`${role}:${a.sha256}\n`);
  }
  return h.digest('hex');
}
