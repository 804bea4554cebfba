#!/bin/sh
# The holder of one test Torque's private namespaces (started by test/kit/torque.ts as
# `unshare --net --mount --uts -- sh torque-ns.sh DIR HOST OWNER_PID [REPO [SHARED]]`). Torque has fixed ports (15001-15004), a fixed
# PBS_HOME (/var/spool/torque) and a fixed auth socket (/tmp/trqauthd-unix): inside these namespaces they are ours
# alone. Every command of the fixture enters them with nsenter. When stdin closes (the test ended or died), every
# process left in the network namespace (daemons, jobs, VMs) is killed; the mounts go with the namespace.
set -eu
dir=$1 host=$2
ip link set lo up
hostname "$host"
# the node's name must resolve to the address local connections come from (127.0.0.1, not Debian's 127.0.1.1)
# (a node of a multi-node site brings its own: every node's name on its site address)
[ -e "$dir/hosts" ] || printf '127.0.0.1\t%s localhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' "$host" > "$dir/hosts"
mount --bind "$dir/hosts" /etc/hosts
mount --bind "$dir/spool" /var/spool/torque
# a private /tmp that still shows DIR (itself directly under /tmp) at the same path, and the checkout (REPO, the
# 4th argument) when it lies under /tmp too: the hooks and wrappers the jobs run live there
base=$(basename "$dir")
mkdir -p "$dir/nstmp/$base"
chmod 1777 "$dir/nstmp"
mount --bind "$dir" "$dir/nstmp/$base"
repo=${4:-}
case "$repo" in
  /tmp/*)
    top=${repo#/tmp/}; top=/tmp/${top%%/*}   # keep the whole top-level dir, so the path's parents keep their modes
    mkdir -p "$dir/nstmp/${top#/tmp/}"
    mount --bind "$top" "$dir/nstmp/${top#/tmp/}" ;;
esac
shared=${5:-}
case "$shared" in
  /tmp/*/*) echo "torque-ns: SHARED must be directly under /tmp" >&2; exit 1 ;;
  /tmp/?*)
    mkdir -p "$dir/nstmp/${shared#/tmp/}"
    mount --bind "$shared" "$dir/nstmp/${shared#/tmp/}"
    # this node's own wnod state at the same path on every node (as on separate machines), and its own
    # /run/virtiofsd (virtiofsd names its pid files after the socket path, the same on every node)
    mkdir -p "$dir/node" "$dir/virtiofsd" "$shared/node" /run/virtiofsd
    mount --bind "$dir/node" "$dir/nstmp/${shared#/tmp/}/node"
    mount --bind "$dir/virtiofsd" /run/virtiofsd ;;
esac
mount --rbind "$dir/nstmp" /tmp
echo ready
read -r _ || true
mine=$(readlink /proc/$$/ns/net)
for round in 1 2 3; do
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [ "$pid" = "$$" ] && continue
    [ "$(readlink "$p/ns/net" 2>/dev/null || true)" = "$mine" ] && kill -KILL "$pid" 2>/dev/null || true
  done
  sleep 0.2
done
