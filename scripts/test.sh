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
# CI shows only the tail of this output: name every failed assertion here, after tap's coverage table (bounded).
if grep -q '^ *not ok ' "$log"; then
  echo "failed assertions (test file › subtest › assertion, with the start of tap's diagnostic):"
  awk '
    function flush() { if (pending != "") print pending (where != "" ? "  (" where ")" : ""); pending = ""; where = "" }
    /^ *# Subtest: / { flush(); match($0, /^ */); name[RLENGTH / 4] = substr($0, RLENGTH + 11); next }
    /^ *not ok / {
      flush(); match($0, /^ */); lvl = RLENGTH / 4; path = ""
      for (i = 0; i < lvl; i++) path = path name[i] " › "
      pending = substr("  FAILED " path substr($0, RLENGTH + 1), 1, 400); diffs = 0; next
    }
    pending != "" && /^ *fileName: / { f = $2 }
    pending != "" && /^ *lineNumber: / && where == "" { where = f ":" $2 }
    /^ *diff: / { indiff = 1; next }
    /^ *[a-zA-Z]+:( |$)/ { indiff = 0 }
    indiff && pending != "" && /^ *[-+][^-+]/ && diffs < 4 { flush(); diffs++ }
    indiff && diffs > 0 && diffs <= 4 && /^ *[-+][^-+]/ { print "      " substr($0, 1, 200); diffs++ }
    /^ *(ok|1\.\.)/ { flush(); diffs = 0; indiff = 0 }
    END { flush() }
  ' "$log" | head -n 80 || true   # head stops reading after 80 lines: awk's SIGPIPE is no failure of the run
fi
summary=$(grep -E '^# \{ total: [0-9]+' "$log" | tail -n 1 || true)
if [ -n "$summary" ]; then
  num() { printf '%s' "$summary" | grep -oE "$1: [0-9]+" | grep -oE '[0-9]+' || echo 0; }
  echo "tests: $(num pass) passed, $(num fail) failed, $(( $(num skip) + $(num todo) )) skipped"
fi
exit "$rc"
