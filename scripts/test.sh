#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine with Node 20, as root: installs what it needs, builds, runs tap.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
npm run -s build
npx tsc -p tsconfig.check.json   # tests and benches type-check too
# the minimal guest kernel: built once here (minutes on a cold cache), not inside a test's timeout
echo "building the minimal guest kernel (cached in /var/cache/wnod/kernel)…"
node dist/cli/main.js kernel build
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
npx tap "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# tap ends with `# { total: N, pass: P, fail: F, skip: S }`; print the plain closing line CI reads.
summary=$(grep -E '^# \{ total: [0-9]+' "$log" | tail -n 1 || true)
if [ -n "$summary" ]; then
  num() { printf '%s' "$summary" | grep -oE "$1: [0-9]+" | grep -oE '[0-9]+' || echo 0; }
  echo "tests: $(num pass) passed, $(num fail) failed, $(( $(num skip) + $(num todo) )) skipped"
fi
exit "$rc"
