// Golden-file comparison: a mismatch writes `<file>.new` beside the golden for review (diff it, then move it
// over the golden if the change is intended); WNOD_UPDATE_GOLDEN=1 rewrites the goldens directly.
import { existsSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import type { Test } from 'tap';

export function matchGolden(t: Test, actual: string, goldenPath: string): void {
  const fresh = `${goldenPath}.new`;
  if (process.env.WNOD_UPDATE_GOLDEN === '1') {
    writeFileSync(goldenPath, actual);
    rmSync(fresh, { force: true });
  }
  const expected = existsSync(goldenPath) ? readFileSync(goldenPath, 'utf8') : undefined;
  if (expected === actual) {
    rmSync(fresh, { force: true });
    t.pass(`matches ${goldenPath}`);
    return;
  }
  writeFileSync(fresh, actual);
  t.equal(actual, expected ?? '(no golden file)', `differs from ${goldenPath}; the new output is in ${fresh}`);
}
