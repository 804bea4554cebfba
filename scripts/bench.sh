#!/usr/bin/env bash
# Run one benchmark (bench/NAME.ts) or all of them; each prints JSON lines. Needs the build: it runs tsc first.
set -euo pipefail
cd "$(dirname "$0")/.."
npm run -s build
run() { node --import=./node_modules/@tapjs/typescript/dist/esm/import.mjs "bench/$1.ts" "${@:2}"; }
if [ $# -gt 0 ]; then run "$@"; else for f in bench/*.ts; do run "$(basename "$f" .ts)"; done; fi
