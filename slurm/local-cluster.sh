#!/usr/bin/env bash
# A real single-node SLURM on this machine (Debian, root, no systemd): for the `slurm` tests and for trying
# the sbatch scripts on a laptop or a CI box.
#
#   bash slurm/local-cluster.sh start    # install munge + slurm (apt) if missing, write the config, start, wait idle
#   bash slurm/local-cluster.sh status   # daemons and `sinfo`
#   bash slurm/local-cluster.sh stop     # stop slurmd, slurmctld, munged
#
# One node (this host, at 127.0.0.1) with this machine's CPUs and memory, one partition `local`, requeue allowed.
# Settings that matter for preemption tests: AuthInfo=cred_expire=5 (else a requeued job waits ~121 s),
# SchedulerParameters=sched_interval=2,bf_interval=2 (jobs start within ~2 s), KillWait=5.
# `start` is idempotent: it leaves a running, healthy cluster alone. Environment knobs:
#   WANTRAIN_SLURM_PARTITION (default local), WANTRAIN_SLURM_TIMEOUT (seconds to wait for the node, default 60).
set -euo pipefail

PARTITION="${WANTRAIN_SLURM_PARTITION:-local}"
TIMEOUT="${WANTRAIN_SLURM_TIMEOUT:-60}"
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
STATE=/var/spool/slurmctld
SPOOL=/var/spool/slurmd
LOGS=/var/log/slurm
RUN=/run/slurm
MUNGE_SOCKET=/run/munge/munge.socket.2
MUNGE_PID=/run/munge/munged.pid

say() { echo "local-cluster: $*"; }
die() { echo "local-cluster: error: $*" >&2; exit 1; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
  local missing=()
  for bin in munged:munge slurmctld:slurmctld slurmd:slurmd sinfo:slurm-client; do
    command -v "${bin%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${bin%%:*}" ] || missing+=("${bin##*:}")
  done
  [ "${#missing[@]}" = 0 ] && return 0
  command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them (Debian/Ubuntu only)"
  say "installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

write_config() {
  local node cpus line tmp
  node="$(hostname -s)"
  # `slurmd -C` prints this machine's node line: NodeName=... CPUs=... Boards=... RealMemory=...
  line="$(/usr/sbin/slurmd -C | head -n1)"
  cpus="$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$line")"
  line="${line/NodeName=$node /NodeName=$node NodeAddr=127.0.0.1 NodeHostname=$node }"
  mkdir -p "$CONF_DIR" "$STATE" "$SPOOL" "$LOGS" "$RUN"
  tmp="$(mktemp)"
  cat >"$tmp" <<EOF
# Written by wantrain slurm/local-cluster.sh: one node, this host.
ClusterName=wantrain
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=5
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
JobRequeue=1
KillWait=5
MinJobAge=600
ReturnToService=2
StateSaveLocation=$STATE
SlurmdSpoolDir=$SPOOL
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
$line State=UNKNOWN
PartitionName=$PARTITION Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
  if ! cmp -s "$tmp" "$CONF"; then
    mv "$tmp" "$CONF"
    chmod 644 "$CONF"
    say "wrote $CONF (node $node, $cpus CPUs, partition $PARTITION)"
    return 0
  fi
  rm -f "$tmp"
  return 1
}

start_munge() {
  if pid_alive "$MUNGE_PID" && munge -n </dev/null | unmunge >/dev/null 2>&1; then
    return 0
  fi
  mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null 2>&1; then
      mungekey --create --keyfile=/etc/munge/munge.key
    else
      dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    fi
  fi
  chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
  chmod 700 /etc/munge
  chmod 400 /etc/munge/munge.key
  chmod 755 /run/munge
  rm -f "$MUNGE_SOCKET" "$MUNGE_PID"
  runuser -u munge -- /usr/sbin/munged --force
  for _ in $(seq 50); do
    munge -n </dev/null | unmunge >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "munged did not start (see /var/log/munge/munged.log)"
}

start_slurm() {
  local changed=$1
  if [ "$changed" = 1 ]; then
    stop_slurm  # a new config needs fresh daemons
  fi
  if ! pid_alive "$RUN/slurmctld.pid"; then
    /usr/sbin/slurmctld
  fi
  if ! pid_alive "$RUN/slurmd.pid"; then
    /usr/sbin/slurmd
  fi
}

node_state() { sinfo -h -N -o '%t' 2>/dev/null | head -n1; }

wait_idle() {
  local node state deadline=$((SECONDS + TIMEOUT))
  node="$(hostname -s)"
  while [ "$SECONDS" -lt "$deadline" ]; do
    state="$(node_state || true)"
    case "$state" in
      idle|mix|alloc) say "node $node is $state (partition $PARTITION)"; return 0 ;;
      down*|drain*|drng*|fail*) scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 1
  done
  die "node $node not idle after ${TIMEOUT}s (state: ${state:-none}); see $LOGS/slurmctld.log and $LOGS/slurmd.log"
}

stop_daemon() {  # stop_daemon PIDFILE NAME
  local pidfile=$1 pid
  pid_alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  pid="$(cat "$pidfile")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }
    sleep 0.2
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

stop_slurm() {
  stop_daemon "$RUN/slurmd.pid"
  stop_daemon "$RUN/slurmctld.pid"
}

cmd_start() {
  [ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts daemons)"
  install_packages
  local changed=0
  write_config && changed=1
  start_munge
  start_slurm "$changed"
  wait_idle
}

cmd_stop() {
  [ "$(id -u)" = 0 ] || die "run as root"
  stop_slurm
  stop_daemon "$MUNGE_PID"
  say "stopped"
}

cmd_status() {
  local name pidfile
  for name in munged:$MUNGE_PID slurmctld:$RUN/slurmctld.pid slurmd:$RUN/slurmd.pid; do
    pidfile="${name#*:}"
    if pid_alive "$pidfile"; then echo "${name%%:*}: running (pid $(cat "$pidfile"))"; else echo "${name%%:*}: stopped"; fi
  done
  if command -v sinfo >/dev/null 2>&1 && sinfo >/dev/null 2>&1; then
    sinfo
  else
    echo "sinfo: cluster not reachable"
    return 1
  fi
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: bash slurm/local-cluster.sh start|stop|status" >&2; exit 2 ;;
esac
