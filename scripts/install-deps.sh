#!/usr/bin/env bash
# Install everything wnod's demo and tests need on a fresh Debian 12 machine (as root): Debian packages and npm modules.
# (prometheus only for promtool: the metrics test checks `wnod metrics` with `promtool check metrics`)
set -euo pipefail
cd "$(dirname "$0")/.."
# Not Debian's prometheus (for promtool): 96 MB installed. test/metrics.test.ts checks the exposition with a strict
# parser, and with `promtool check metrics` where promtool is installed.
pkgs=(qemu-system-x86 qemu-utils busybox-static bdii slapd glue-schema ldap-utils voms-clients openssl cpio e2fsprogs util-linux mount procps iproute2 passwd libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libxml2-utils nftables libxml2 libreadline8 gcc libc6-dev build-essential flex bison bc libelf-dev xz-utils openssh-client binutils slurmctld slurmd slurm-client munge libslurm-dev prometheus)
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # slapd's postinst must not start a system-wide server on port 389: we start our own on loopback
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npm run -s build
