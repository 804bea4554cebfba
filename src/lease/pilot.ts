/** The pilot: the batch script of a lease (pure). Its header carries the lease marker (and the ticket when the
 * CLI could sign one); its body runs INSIDE the lease's VM as the user, with the lease directory shared at the
 * same path as its working directory and home: it starts an ssh server as the user (key-only, host key made in the
 * VM), records running/ready/terminating/released as event files there, and ends cleanly on SIGTERM — which the
 * job starter forwards from the batch system (delete, walltime, preemption) before it powers the VM off.
 *
 * The marker is not a credential: it only makes the node forward a loopback port to the VM's ssh port (the VM
 * stays `restrict=on`); who may run which image is still the ticket's or the group policy's decision. */
import { LEASE_ID, leaseLine, ticketLine } from '../header/scriptHeader.js';

/** The pilot's batch script. The body must stay busybox-sh compatible (test images have no bash). */
export function pilotScript(o: { leaseId: string; ticket?: string | undefined }): string {
  if (!LEASE_ID.test(o.leaseId)) throw new Error(`bad lease id ${o.leaseId}`);
  if (o.ticket !== undefined && !/^[A-Za-z0-9_.-]+$/.test(o.ticket)) throw new Error('bad ticket token');
  return [
    '#!/bin/sh',
    `# wnod lease pilot for ${o.leaseId}: serves ssh in its VM until the batch system ends the job`,
    leaseLine(o.leaseId),
    ...(o.ticket ? [ticketLine(o.ticket)] : []),
    PILOT_BODY,
  ].join('\n');
}

const PILOT_BODY = String.raw`
# the lease directory: Torque's PBS_O_WORKDIR, Slurm's SLURM_SUBMIT_DIR (sbatch runs there)
d=${'$'}{PBS_O_WORKDIR:-${'$'}{SLURM_SUBMIT_DIR:?}}
E="$d/events"
n=0
srv=
# one event = one file, written whole then renamed (the registry never sees half an event)
ev() {
  n=$((n + 1)); t="$(date +%s)000"; f="$t-pilot-$1-$$-$n.json"
  printf '{"event":"%s","t":%s,"by":"pilot"%s}\n' "$1" "$t" "$2" >"$E/.$f" && mv -f "$E/.$f" "$E/$f"
}
fail() { ev failed ",\"reason\":\"$1\""; [ -n "$srv" ] && kill -TERM "$srv" 2>/dev/null; exit 1; }
ended() {
  ev terminating ",\"reason\":\"the batch system ended the pilot (delete, walltime or preemption)\""
  [ -n "$srv" ] && { kill -TERM "$srv" 2>/dev/null; wait "$srv" 2>/dev/null; }
  ev released
  exit 0
}
trap ended TERM INT HUP
# In a VM of a multi-node job the user's passwd home is the job's own (/run/wnod-job/home, holding the job's ssh
# key): the user's lease keys go there too, here and in every other VM (through the job's ssh, over the private
# network), where a server like ours starts with a host key made in that VM. Each VM's forwarded address comes from
# its node (/etc/wnod/job/lease-address); the ready event lists every VM (name, address, host key, private address).
groupNodes() {
  jh=$(grep "^$(id -un):" /etc/passwd | cut -d: -f6)
  if [ -n "$jh" ] && [ "$jh" != "$d" ]; then cat "$d/.ssh/authorized_keys" >>"$jh/.ssh/authorized_keys" || fail "cannot add your keys in vm0"; fi
  cat >"$k/peer.sh" <<'PEER' || fail "no temporary file in the VM"
p=$1
# an ssh session's PATH has no sbin (where dropbear is)
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
a=$(cat /etc/wnod/job/lease-address 2>/dev/null) || { echo "its node gave it no lease address"; exit 1; }
k=$(mktemp -d) || { echo "no temporary directory"; exit 1; }
dropbearkey -t ed25519 -f "$k/hk" >/dev/null 2>&1 || { echo "could not make an ssh host key"; exit 1; }
hk=$(dropbearkey -y -f "$k/hk" 2>/dev/null | grep '^ssh-ed25519 ' | cut -d' ' -f1,2)
# no -F: the server detaches, so this session can end
dropbear -E -s -w -k -p "$p" -r "$k/hk" -P "$k/pid" </dev/null >/dev/null 2>"$k/log" || { echo "the ssh server did not start"; exit 1; }
hex=$(printf '%04X' "$p"); i=0
until grep -q ":$hex 00000000:0000 0A" /proc/net/tcp 2>/dev/null; do
  i=$((i + 1)); [ "$i" -lt 300 ] || { echo "the ssh server did not listen within 30 s"; exit 1; }
  sleep 0.1
done
echo "ok $a $hk"
PEER
  me=$(hostname)
  sep=
  for h in $(cut -d: -f1 /etc/wnod/job/hostfile.mpich); do
    case "$h" in *[!A-Za-z0-9-]*|'') fail "a malformed host name in the job's host list" ;; esac
    ip=$(grep " $h\$" /etc/hosts | head -n 1 | cut -d' ' -f1)
    if [ "$h" = "$me" ]; then
      a=$WNOD_LEASE_ADDRESS; key=$hk
    else
      ssh "$h" 'cat >>"$HOME/.ssh/authorized_keys"' <"$d/.ssh/authorized_keys" || fail "cannot add your keys in $h"
      r=$(ssh "$h" sh -s "$WNOD_LEASE_GUEST_PORT" <"$k/peer.sh" 2>&1 | tail -n 1)
      set -- $r
      [ "$1" = ok ] && [ "$#" -eq 4 ] || fail "the ssh server of $h did not start: $(printf '%s' "$r" | tr -cd 'A-Za-z0-9 .,:/()-' | cut -c1-200)"
      a=$2; key="$3 $4"
    fi
    case "$a" in *[!0-9.:]*|'') fail "$h has no valid lease address" ;; esac
    nodes="$nodes$sep{\"name\":\"$h\",\"address\":\"$a\",\"hostKey\":\"$key\",\"privateAddress\":\"$ip\"}"
    sep=,
  done
  nodes=",\"nodes\":[$nodes]"
}
ev running ",\"node\":\"$(hostname)\""
[ -n "${'$'}{WNOD_LEASE_ADDRESS:-}" ] && [ -n "${'$'}{WNOD_LEASE_GUEST_PORT:-}" ] || fail "this node gave the VM no forwarded ssh address (not a wnod lease node?)"
command -v dropbear >/dev/null 2>&1 || fail "the image has no ssh server (dropbear)"
k=$(mktemp -d) || fail "no temporary directory in the VM"
dropbearkey -t ed25519 -f "$k/hk" >/dev/null 2>&1 || fail "could not make an ssh host key"
hk=$(dropbearkey -y -f "$k/hk" 2>/dev/null | grep '^ssh-ed25519 ' | cut -d' ' -f1,2)
# key-only, as the user (no root needed above port 1024), no remote forwarding
dropbear -F -E -s -w -k -p "$WNOD_LEASE_GUEST_PORT" -r "$k/hk" -P "$k/pid" 2>"$k/log" &
srv=$!
hex=$(printf '%04X' "$WNOD_LEASE_GUEST_PORT")
i=0
# listening = the port in /proc/net/tcp with state 0A
until grep -q ":$hex 00000000:0000 0A" /proc/net/tcp 2>/dev/null; do
  kill -0 "$srv" 2>/dev/null || { srv=; fail "the ssh server did not start"; }
  i=$((i + 1)); [ "$i" -lt 300 ] || fail "the ssh server did not listen within 30 s"
  sleep 0.1
done
nodes=
# a lease group (a pilot on several nodes, vm0 here): every VM serves the user's ssh (groupNodes above)
[ -f /etc/wnod/job/hostfile.mpich ] && groupNodes
ev ready ",\"address\":\"$WNOD_LEASE_ADDRESS\",\"hostKey\":\"$hk\"$nodes"
wait "$srv"
srv=
fail "the ssh server stopped"
`;
