#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, for the SLURM executor's tests (they skip, saying why,
# without one). CI starts it before the tests and stops it after (.ci/run); docs/installation.md has the how.
#   scripts/local-slurm.sh start    install (Debian packages), configure and start munged, slurmctld, slurmd (root)
#   scripts/local-slurm.sh stop     shut the cluster down
#   scripts/local-slurm.sh status   exit 0 and print sinfo when the cluster answers, else exit 1
# The configuration is one that worked on a 2-core Debian 12 machine without cgroups:
# no cgroup plugins, no accounting database (sacct has nothing; squeue and scontrol work).
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARK="# written by kt-nnunet scripts/local-slurm.sh"
SPOOL=/var/spool/slurm
LOGS=/var/log/slurm
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGE_PID=/run/munge/munged.pid

say() { echo "local-slurm: $*"; }
fail() { echo "local-slurm: $*" >&2; exit 1; }

# `scontrol ping` fails at once without a controller, where sinfo retries for about 10 s.
controller_answers() { timeout 10 scontrol ping >/dev/null 2>&1; }

# The node states in which jobs run (or will run as soon as the node frees up).
node_usable() {
  local states
  controller_answers || return 1
  states=$(timeout 10 sinfo -h -o %T 2>/dev/null) || return 1
  grep -qE '^(idle|mixed|allocated|completing)$' <<<"$states"
}

munge_works() { command -v munge >/dev/null 2>&1 && munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

# The pid in a pid file, only when that process is still alive.
live_pid() {
  local pid
  [ -r "$1" ] || return 1
  pid=$(cat "$1" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  # An ended daemon that nobody reaped (no init process in some containers) is a zombie: it is gone.
  [[ "$(ps -o stat= -p "$pid" 2>/dev/null)" != Z* ]] && echo "$pid"
}

# Waits up to $1 seconds for the command that follows to succeed.
wait_for() {
  local seconds=$1; shift
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.5
  done
}

not_running() { ! live_pid "$1" >/dev/null; }

install_packages() {
  command -v slurmctld >/dev/null 2>&1 && command -v munged >/dev/null 2>&1 && return 0
  command -v apt-get >/dev/null 2>&1 || fail "slurmctld is missing and there is no apt-get to install it"
  say "installing slurm-wlm and munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  # The packages' own service start-up may fail (no slurm.conf yet, no init system): this script starts them.
  { apt-get update -qq && apt-get install -y -qq slurm-wlm munge; } >/tmp/local-slurm-apt.log 2>&1 \
    || { tail -n 20 /tmp/local-slurm-apt.log >&2; fail "apt-get install slurm-wlm munge failed"; }
  command -v slurmctld >/dev/null 2>&1 || fail "slurm-wlm is installed but slurmctld is not on PATH"
}

start_munge() {
  if munge_works; then return 0; fi
  install -d -o munge -g munge -m 700 /etc/munge
  install -d -o munge -g munge -m 755 /run/munge
  install -d -o munge -g munge -m 700 /var/log/munge /var/lib/munge
  if [ ! -s /etc/munge/munge.key ]; then
    say "creating /etc/munge/munge.key"
    (umask 077; head -c 1024 /dev/urandom >/etc/munge/munge.key)
  fi
  # munged refuses to run with a key or folders that others can read or write.
  chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
  chmod 400 /etc/munge/munge.key
  runuser -u munge -- munged || fail "munged did not start (see /var/log/munge/munged.log)"
  wait_for 10 munge_works || fail "munged started but does not answer (see /var/log/munge/munged.log)"
}

write_conf() {
  local host addr_ctld="" addr_node="" cpus mem_total mem
  if [ -e "$CONF" ] && [ "$(head -n 1 "$CONF")" != "$MARK" ]; then
    say "$CONF was not written by this script: using it as it is"
    return 0
  fi
  host=$(hostname -s)
  # Without a resolvable hostname slurmd cannot find the controller; everything is on this machine anyway.
  if ! getent hosts "$host" >/dev/null 2>&1; then addr_ctld="(127.0.0.1)"; addr_node=" NodeAddr=127.0.0.1"; fi
  cpus=$(nproc)
  mem_total=$(free -m | awk '/^Mem:/ {print $2}')
  # slurmd drains a node whose RealMemory is above what it measures itself: stay a little below.
  mem=$((mem_total * 95 / 100))
  install -d -m 755 /etc/slurm
  cat >"$CONF" <<EOF
$MARK
# A one-node cluster for kt-nnunet's tests; rewritten by every \`scripts/local-slurm.sh start\`.
ClusterName=ktlocal
SlurmctldHost=${host}${addr_ctld}
SlurmUser=root
AuthType=auth/munge
CryptoType=crypto/munge
# No cgroups here (containers, CI sandboxes): plain process tracking, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default, a job that asks for no memory is given all of the node's, and jobs run one at a time.
DefMemPerCPU=$((mem / cpus))
SchedulerType=sched/backfill
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
# A node that was down comes back by itself when slurmd registers again.
ReturnToService=2
# Finished jobs stay visible to squeue/scontrol for ten minutes (tests read their end state).
MinJobAge=600
KillWait=30
NodeName=${host}${addr_node} CPUs=${cpus} RealMemory=${mem} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP
EOF
}

smoke_job() {
  # "started" means a job really runs, not only that the daemons answer.
  timeout 60 srun -N1 -n1 -t 1 --job-name=local-slurm-smoke true
}

start() {
  [ "$(id -u)" = 0 ] || fail "start needs root (it installs packages and starts munged, slurmctld and slurmd)"
  install_packages
  if munge_works && node_usable; then
    say "already up"; sinfo; return 0
  fi
  local began=$SECONDS
  start_munge
  write_conf
  install -d -m 755 "$SPOOL" "$SPOOL/ctld" "$SPOOL/d" "$LOGS"
  if ! live_pid "$CTLD_PID" >/dev/null; then
    slurmctld || fail "slurmctld did not start (see $LOGS/slurmctld.log)"
  fi
  if ! live_pid "$SLURMD_PID" >/dev/null; then
    slurmd || fail "slurmd did not start (see $LOGS/slurmd.log)"
  fi
  if ! wait_for 30 node_usable; then
    echo "local-slurm: the node is not up after 30 s: $(timeout 10 sinfo -h -o '%T %E' 2>&1 | head -n 3)" >&2
    tail -n 5 "$LOGS/slurmctld.log" "$LOGS/slurmd.log" >&2 2>/dev/null || true
    exit 1
  fi
  smoke_job || fail "the cluster is up but a job (srun true) did not run (see $LOGS/slurmd.log)"
  say "up in $((SECONDS - began)) s"
  sinfo
}

stop() {
  local pid
  if command -v scontrol >/dev/null 2>&1 && { live_pid "$CTLD_PID" >/dev/null || live_pid "$SLURMD_PID" >/dev/null; }; then
    timeout 10 scontrol shutdown >/dev/null 2>&1 || true
    # A daemon that did not hear the shutdown (slurmd without a controller) is ended by its pid.
    for pidfile in "$CTLD_PID" "$SLURMD_PID"; do
      if ! wait_for 20 not_running "$pidfile"; then
        pid=$(live_pid "$pidfile") && kill "$pid" 2>/dev/null || true
        wait_for 10 not_running "$pidfile" || fail "could not stop the process in $pidfile"
      fi
    done
  fi
  if pid=$(live_pid "$MUNGE_PID"); then
    kill "$pid" 2>/dev/null || true
    wait_for 10 not_running "$MUNGE_PID" || fail "munged (pid $pid) did not stop"
  fi
  say "stopped"
}

status() {
  if command -v sinfo >/dev/null 2>&1 && controller_answers && timeout 10 sinfo >/dev/null 2>&1; then
    sinfo
  else
    say "no cluster answers" >&2
    exit 1
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
