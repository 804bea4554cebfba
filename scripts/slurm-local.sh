#!/usr/bin/env bash
# A private, single-machine Slurm from Debian's packages (slurmctld, slurmd, munge) for wnod's tests, demo and bench:
# its own munge key and socket, one slurmctld and NODES slurmd on 127.0.0.1 (one port each), every file under DIR,
# no systemd. As root. Layout and settings as measured in ../shared SLURM.md (appendix).
#
#   slurm-local.sh conf  DIR NODES BASEPORT [CLUSTER]   write DIR/slurm.conf (and cgroup.conf) only
#   slurm-local.sh start DIR NODES BASEPORT [CLUSTER]   conf when DIR/slurm.conf is missing, start munge + daemons,
#                                                       wait until every node is idle (a running Slurm: no-op)
#   slurm-local.sh stop  DIR                            cancel every job, stop the daemons (pid files), wait for them
#
# Ports: slurmctld BASEPORT, node nI BASEPORT+I. Partitions: `batch` (default) and `wnod`, both on every node.
# Clients need SLURM_CONF=DIR/slurm.conf. Tunables (env): SLURM_LOCAL_CPUS (per node, default 2),
# SLURM_LOCAL_MEM_MB (per node, default 4000), SLURM_LOCAL_KILLWAIT (default 5).
# Nodes with addresses of their own (each slurmd in a network namespace, tests of multi-node jobs):
# SLURM_LOCAL_CTLD_ADDR (slurmctld's address; not 127.0.0.1: the daemons then listen on every address of their
# namespace), SLURM_LOCAL_NODE_ADDRS (one address per node, space-separated), SLURM_LOCAL_NODE_WRAPPER (an
# executable started as `WRAPPER NODE slurmd -f CONF -N NODE`, e.g. entering the node's namespace).
set -euo pipefail
PATH=/usr/sbin:/usr/bin:/sbin:/bin

die() { echo "slurm-local: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root"
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: slurm-local.sh conf|start DIR NODES BASEPORT [CLUSTER] | stop DIR"
case "$dir" in /*) ;; *) die "DIR must be absolute: $dir" ;; esac
[[ "$dir" =~ ^[A-Za-z0-9._/-]+$ ]] || die "DIR may hold only [A-Za-z0-9._/-]: $dir"

conf=$dir/slurm.conf
sinfo_env() { env SLURM_CONF="$conf" "$@"; }

write_conf() {
  local nodes=$1 base=$2 cluster=$3
  [[ "$nodes" =~ ^([1-9]|1[0-6])$ ]] || die "NODES must be 1..16: $nodes"
  [[ "$base" =~ ^[0-9]+$ ]] && [ "$base" -ge 1024 ] && [ "$base" -le 65000 ] || die "BASEPORT must be 1024..65000: $base"
  [[ "$cluster" =~ ^[a-z][a-z0-9]{0,15}$ ]] || die "CLUSTER must be [a-z][a-z0-9]{0,15}: $cluster"
  local cpus=${SLURM_LOCAL_CPUS:-2} mem=${SLURM_LOCAL_MEM_MB:-4000} killwait=${SLURM_LOCAL_KILLWAIT:-5}
  local ctld=${SLURM_LOCAL_CTLD_ADDR:-127.0.0.1} addrs=(${SLURM_LOCAL_NODE_ADDRS:-})
  [[ "$ctld" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || die "SLURM_LOCAL_CTLD_ADDR must be an IPv4 address: $ctld"
  local comm="CommunicationParameters=NoCtldInAddrAny,NoInAddrAny"
  [ "$ctld" = 127.0.0.1 ] || comm="# nodes in namespaces of their own: the daemons listen on every address of theirs"
  mkdir -p "$dir"/{state,run,log,spool}
  chmod 0755 "$dir"
  local i
  for i in $(seq 1 "$nodes"); do mkdir -p "$dir/spool/n$i"; done
  {
    cat <<EOF
# written by wnod scripts/slurm-local.sh: a private Slurm on loopback
ClusterName=$cluster
SlurmctldHost=localhost($ctld)
SlurmctldPort=$base
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge-sock/munge.sock
$comm
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
KillWait=$killwait
MpiDefault=none
ReturnToService=2
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.txt
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=300
EOF
    for i in $(seq 1 "$nodes"); do
      local addr=${addrs[$((i - 1))]:-127.0.0.1}
      [[ "$addr" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || die "node address must be IPv4: $addr"
      echo "NodeName=n$i NodeAddr=$addr NodeHostname=n$i Port=$((base + i)) CPUs=$cpus RealMemory=$mem State=UNKNOWN"
    done
    echo "PartitionName=batch Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
    echo "PartitionName=wnod Nodes=ALL MaxTime=INFINITE State=UP"
  } > "$conf.tmp"
  chmod 0644 "$conf.tmp"
  mv -f "$conf.tmp" "$conf"
  echo "CgroupPlugin=autodetect" > "$dir/cgroup.conf"
  chmod 0644 "$dir/cgroup.conf"
}

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_munge() {
  local m=$dir/munge s=$dir/munge-sock
  if alive "$m/munged.pid" && [ -S "$s/munge.sock" ]; then return 0; fi
  install -d -o munge -g munge -m 0700 "$m"
  install -d -o munge -g munge -m 0755 "$s"
  if [ ! -s "$m/munge.key" ]; then
    head -c 1024 /dev/urandom > "$m/munge.key.tmp"
    chown munge:munge "$m/munge.key.tmp"; chmod 0400 "$m/munge.key.tmp"
    mv -f "$m/munge.key.tmp" "$m/munge.key"
  fi
  rm -f "$s/munge.sock" "$s/munge.sock.lock"
  runuser -u munge -- munged -f --key-file="$m/munge.key" --socket="$s/munge.sock" --pid-file="$m/munged.pid" \
    --log-file="$m/munged.log" --seed-file="$m/munged.seed"
  local i
  for i in $(seq 1 100); do [ -S "$s/munge.sock" ] && return 0; sleep 0.1; done
  die "munged did not create $s/munge.sock (see $m/munged.log)"
}

node_names() { sed -n 's/^NodeName=\(n[0-9]\{1,2\}\) .*/\1/p' "$conf"; }

start() {
  local nodes=$1 base=$2 cluster=$3
  [ -f "$conf" ] || write_conf "$nodes" "$base" "$cluster"
  start_munge
  alive "$dir/run/slurmctld.pid" || slurmctld -f "$conf"
  local n
  for n in $(node_names); do
    if ! alive "$dir/run/slurmd-$n.pid"; then
      if [ -n "${SLURM_LOCAL_NODE_WRAPPER:-}" ]; then "$SLURM_LOCAL_NODE_WRAPPER" "$n" slurmd -f "$conf" -N "$n"
      else slurmd -f "$conf" -N "$n"; fi
    fi
  done
  # every node idle (or mixed/allocated when jobs already run): at most 60 s
  local i states
  for i in $(seq 1 300); do
    states=$(sinfo_env sinfo -h -N -o '%T' 2>/dev/null | sort -u | tr '\n' ' ' || true)
    if [ -n "$states" ] && ! grep -qvE '^(idle|mixed|allocated|completing) ?$' <<<"$(tr ' ' '\n' <<<"$states" | sed '/^$/d')"; then
      return 0
    fi
    sleep 0.2
  done
  die "nodes not idle after 60 s (states: ${states:-none}); see $dir/log"
}

stop_pidfile() {
  local f=$1 pid
  [ -s "$f" ] || return 0
  pid=$(cat "$f")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  local i
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

stop() {
  [ -f "$conf" ] || return 0
  if alive "$dir/run/slurmctld.pid"; then
    local jobs
    jobs=$(sinfo_env timeout 20 squeue -h -o '%i' 2>/dev/null || true)
    [ -z "$jobs" ] || sinfo_env timeout 20 scancel $jobs 2>/dev/null || true
    # let running jobs finish their Epilog (the VM is destroyed there): at most 30 s
    local i
    for i in $(seq 1 150); do
      [ -z "$(sinfo_env timeout 10 squeue -h -o '%i' 2>/dev/null || true)" ] && break
      sleep 0.2
    done
  fi
  local n
  for n in $(node_names); do stop_pidfile "$dir/run/slurmd-$n.pid"; done
  stop_pidfile "$dir/run/slurmctld.pid"
  stop_pidfile "$dir/munge/munged.pid"
}

case "$cmd" in
  conf) write_conf "${3:?NODES}" "${4:?BASEPORT}" "${5:-wsl}" ;;
  start) start "${3:?NODES}" "${4:?BASEPORT}" "${5:-wsl}" ;;
  stop) stop ;;
  *) die "unknown command $cmd (conf, start, stop)" ;;
esac
