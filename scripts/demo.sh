#!/usr/bin/env bash
# The README's first command: the whole wnod path end to end on embedded defaults, on a fresh Debian 12 + Node 20,
# as root. Installs what it needs (Debian packages, npm ci, build), then runs the compiled demo, which works in a
# temp dir on a private real Slurm (or --lrm torque: a real Torque 6.1.3 when its tarball is at hand, else the
# pbs_mom harness), stops its daemons, cleans up its VMs and
# files, and exits non-zero naming the failed step. Extra args go to the demo (--lrm slurm|torque,
# --accel auto|kvm|tcg, --keep, --slurm-port N; --help).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "wnod demo: run as root (it installs root-owned hooks and starts VMs)" >&2
  exit 1
fi
bash scripts/install-deps.sh
# the demo builds apart from the product (it uses the test fixtures of test/kit)
npm run -s build:demo
exec node demo/dist/demo.mjs "$@"
