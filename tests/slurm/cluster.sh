#!/usr/bin/env bash
# A real single-node SLURM cluster (Debian slurm-wlm 22.05 + munge) for tests.
#
#   tests/slurm/install.sh            # once, as root: apt packages
#   tests/slurm/cluster.sh start      # write /etc/slurm/slurm.conf, start munged/slurmctld/slurmd
#   tests/slurm/cluster.sh status     # daemons, sinfo, squeue
#   tests/slurm/cluster.sh stop       # cancel jobs, stop what `start` started (idempotent)
#
# Environment:
#   SLURM_SCRATCH        state/spool/pid/log folder     [/tmp/goldilocks-slurm]
#   SLURM_MEM_MARGIN_MB  memory kept back from the node [2048]
#   SLURM_START_TIMEOUT  seconds to wait for node idle  [60]
#   SLURM_KEEP_STATE=1   keep slurmctld job state across restarts (default: clean start)
#
# slurm.conf must live at /etc/slurm/slurm.conf: the `srun` that the snakemake SLURM
# plugin runs inside each job ignores SLURM_CONF ("Could not establish a configuration
# source"). Daemons run as root without systemd; all traffic is on 127.0.0.1
# (SlurmctldHost=localhost, NodeAddr=127.0.0.1).
set -euo pipefail

SCRATCH=${SLURM_SCRATCH:-/tmp/goldilocks-slurm}
CONF=/etc/slurm/slurm.conf
MARKER="# written by tests/slurm/cluster.sh"
NODE=$(hostname -s)
TIMEOUT=${SLURM_START_TIMEOUT:-60}
MARGIN=${SLURM_MEM_MARGIN_MB:-2048}
MUNGE_SOCK=/run/munge/munge.socket.2
MUNGE_PIDFILE=/run/munge/munged.pid

log() { echo "cluster.sh: $*"; }
die() { echo "cluster.sh: ERROR: $*" >&2; exit 1; }

# PID recorded in $SCRATCH/<name>.pid, if that process is alive and is <name>.
live_pid() {
  local name=$1 f="$SCRATCH/$1.pid" pid
  [[ -s $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/comm ]] || return 1
  # comm is truncated to 15 chars; slurmctld/slurmd/munged all fit.
  [[ $(</proc/"$pid"/comm) == "$name" ]] || return 1
  echo "$pid"
}

munge_ok() { munge -n -S "$MUNGE_SOCK" 2>/dev/null | unmunge -S "$MUNGE_SOCK" >/dev/null 2>&1; }

node_state() { timeout 10 sinfo -h -n "$NODE" -o '%t' 2>/dev/null | head -n1; }

write_conf() {
  local cpus mem_total real_mem tmp
  cpus=$(nproc)
  mem_total=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))
  real_mem=$(( mem_total - MARGIN ))
  (( real_mem > 512 )) || die "MemTotal ${mem_total} MiB minus margin ${MARGIN} MiB is too small"
  mkdir -p /etc/slurm "$SCRATCH"/{state,spool,log}
  if [[ -f $CONF ]] && ! grep -qF "$MARKER" "$CONF"; then
    local bak="$CONF.bak.$(date +%Y%m%d%H%M%S)"
    cp -p "$CONF" "$bak"
    log "existing foreign $CONF backed up to $bak"
  fi
  tmp=$(mktemp)
  cat >"$tmp" <<EOF
$MARKER -- regenerated on every start; edits are lost.
ClusterName=goldilocks
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Finished jobs stay visible to squeue for an hour: the snakemake plugin polls squeue
# (no accounting -> no sacct), and a job that vanished would be reported as failed.
MinJobAge=3600
ReturnToService=2
MailProg=/bin/true
# Seconds between SIGTERM and SIGKILL for a job over its time limit.
KillWait=10
StateSaveLocation=$SCRATCH/state
SlurmdSpoolDir=$SCRATCH/spool
SlurmctldPidFile=$SCRATCH/slurmctld.daemon.pid
SlurmdPidFile=$SCRATCH/slurmd.daemon.pid
SlurmctldLogFile=$SCRATCH/log/slurmctld.log
SlurmdLogFile=$SCRATCH/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  install -m 0644 "$tmp" "$CONF"
  rm -f "$tmp"
  log "wrote $CONF (node $NODE, CPUs=$cpus, RealMemory=$real_mem MiB of $mem_total)"
}

start_munge() {
  if munge_ok; then
    log "munged already running (not started by us)"
    return
  fi
  [[ -s /etc/munge/munge.key ]] || die "/etc/munge/munge.key missing: run tests/slurm/install.sh"
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
  rm -f "$MUNGE_SOCK" "$MUNGE_SOCK.lock" "$MUNGE_PIDFILE"
  # munged forks into the background itself and writes its PID file.
  runuser -u munge -- munged --force --pid-file="$MUNGE_PIDFILE" \
    || die "munged failed to start; see /var/log/munge/munged.log"
  local i
  for i in $(seq 50); do munge_ok && break; sleep 0.2; done
  munge_ok || die "munged does not answer on $MUNGE_SOCK; see /var/log/munge/munged.log"
  cp "$MUNGE_PIDFILE" "$SCRATCH/munged.pid"
  log "munged started (pid $(<"$SCRATCH/munged.pid"))"
}

start_daemon() {  # name, extra args...
  local name=$1; shift
  # setsid: own session, so the caller's Ctrl-C / SIGHUP does not reach the daemon.
  setsid "$name" -D "$@" </dev/null >"$SCRATCH/log/$name.out" 2>&1 &
  local pid=$! i
  echo "$pid" >"$SCRATCH/$name.pid"
  # Until setsid has exec'd, the child's comm is still "setsid"/"bash".
  for i in $(seq 25); do live_pid "$name" >/dev/null && break; sleep 0.2; done
  log "$name started (pid $pid)"
}

fail_start() {
  echo "cluster.sh: ERROR: $*" >&2
  local base f
  for base in "$SCRATCH"/log/slurmctld "$SCRATCH"/log/slurmd; do
    # .log holds the daemon log; .out (stderr) matters if it died before opening it.
    f=$base.log; [[ -s $f ]] || f=$base.out
    if [[ -s $f ]]; then echo "---- tail $f" >&2; grep -v pmix "$f" | tail -n 8 >&2; fi
  done
  timeout 5 sinfo -R >&2 2>/dev/null || true
  cmd_stop >&2 || true
  exit 1
}

cmd_start() {
  [[ $(id -u) -eq 0 ]] || die "must run as root"
  command -v slurmctld >/dev/null || die "slurmctld not installed: run tests/slurm/install.sh"
  mkdir -p "$SCRATCH"/log
  if live_pid slurmctld >/dev/null && live_pid slurmd >/dev/null && munge_ok \
     && [[ $(node_state) =~ ^(idle|mix|alloc)$ ]]; then
    log "already running (node $NODE $(node_state)); nothing to do"
    return 0
  fi
  # Partially running or stale: start from a clean slate.
  cmd_stop
  write_conf
  # Fresh logs per start, so a failure shows this start's lines.
  : >"$SCRATCH/log/slurmctld.log"; : >"$SCRATCH/log/slurmd.log"
  start_munge
  local t0=$SECONDS clean=(-c)
  [[ ${SLURM_KEEP_STATE:-0} == 1 ]] && clean=()
  start_daemon slurmctld "${clean[@]}"
  start_daemon slurmd
  local st=""
  while (( SECONDS - t0 < TIMEOUT )); do
    live_pid slurmctld >/dev/null || fail_start "slurmctld exited during start-up"
    live_pid slurmd >/dev/null || fail_start "slurmd exited during start-up"
    st=$(node_state || true)
    case $st in
      idle) log "node $NODE idle after $(( SECONDS - t0 )) s"; timeout 10 sinfo; return 0 ;;
      *drain*|inval*|fail*) fail_start "node $NODE is '$st' (see reason below)" ;;
    esac
    sleep 1
  done
  fail_start "node $NODE not idle within ${TIMEOUT} s (last state: '${st:-no answer}')"
}

stop_pid() {  # name pid
  local name=$1 pid=$2 i
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 50); do [[ -d /proc/$pid ]] || break; sleep 0.2; done
  if [[ -d /proc/$pid ]]; then
    log "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  log "$name (pid $pid) stopped"
}

cmd_stop() {
  local pid name i
  if live_pid slurmctld >/dev/null; then
    # Cancel our jobs first so no slurmstepd / job processes outlive the daemons.
    if [[ -n $(timeout 10 squeue -h -t PD,R,CG,S -o %i 2>/dev/null) ]]; then
      log "cancelling remaining jobs"
      timeout 10 scancel --state=PENDING 2>/dev/null || true
      timeout 10 squeue -h -o %i 2>/dev/null | xargs -r timeout 10 scancel 2>/dev/null || true
      for i in $(seq 30); do
        [[ -z $(timeout 5 squeue -h -t PD,R,CG,S -o %i 2>/dev/null) ]] && break
        sleep 1
      done
    fi
  fi
  for name in slurmd slurmctld munged; do
    if pid=$(live_pid "$name"); then stop_pid "$name" "$pid"; fi
    rm -f "$SCRATCH/$name.pid"
  done
  if pgrep -x slurmstepd >/dev/null 2>&1; then
    log "WARNING: slurmstepd still running: $(pgrep -x slurmstepd | tr '\n' ' ')"
  fi
  return 0
}

cmd_status() {
  local name pid rc=0
  for name in munged slurmctld slurmd; do
    if pid=$(live_pid "$name"); then log "$name running (pid $pid)"
    else log "$name not running (by our pid files)"; [[ $name == munged ]] || rc=1; fi
  done
  munge_ok && log "munge answers on $MUNGE_SOCK" || { log "munge does not answer"; rc=1; }
  if (( rc == 0 )); then timeout 10 sinfo || rc=1; timeout 10 squeue || rc=1; fi
  return $rc
}

case ${1:-} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  restart) cmd_stop; cmd_start ;;
  *) echo "usage: $0 {start|stop|status|restart}" >&2; exit 2 ;;
esac
