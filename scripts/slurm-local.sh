#!/usr/bin/env bash
# Copied from ../shared/recipes/slurm-local.sh (the tests start it through tests/src/lib.rs;
# scripts/test.sh starts it with SLURM_LOCAL_DBD=1 SLURM_LOCAL_NODES=3 and stops it on exit).
# slurm-local.sh — install, configure and start a one-host Slurm cluster on this
# machine (Debian 12 bookworm, root, no systemd), reachable on 127.0.0.1 only.
# Idempotent: re-running it leaves a running, healthy cluster untouched.
#
#   bash slurm-local.sh            # install (if needed) + configure + start
#   SLURM_LOCAL_DBD=1 bash slurm-local.sh   # also MariaDB + slurmdbd, so that `sacct` works
#   SLURM_LOCAL_CGROUP=1 bash slurm-local.sh  # enforce --mem/--cpus with cgroup v1
#                                           # (works on this VM: OOM -> JobState=OUT_OF_MEMORY)
#   SLURM_LOCAL_NODES=3 bash slurm-local.sh # emulate 3 nodes n1..n3: one slurmd each
#                                           # (slurmd -N nX, ports 6831..), all on 127.0.0.1
#   bash slurm-local-stop.sh       # stop what this started (by pid files)
#
# Checked on 2026-11-26: slurm-wlm 22.05.8-4+deb12u3, munge 0.5.15-2+deb12u1,
# (optional) slurmdbd 22.05.8-4+deb12u3 + mariadb-server 1:10.11.x.
# Ports: slurmctld 6817, slurmd 6818 (or 6831.. with SLURM_LOCAL_NODES>1),
# slurmdbd 6819, mariadb 3306 (loopback).
set -euo pipefail

DBD=${SLURM_LOCAL_DBD:-0}
CGROUP=${SLURM_LOCAL_CGROUP:-0}
NODES=${SLURM_LOCAL_NODES:-1}
HOST=$(hostname -s)                # slurmd identifies itself by this name unless -N is given
if [ "$NODES" -le 1 ]; then NAMES=("$HOST"); else NAMES=(); for i in $(seq "$NODES"); do NAMES+=("n$i"); done; fi
CONF=/etc/slurm/slurm.conf
LOG=/var/log/slurm

log() { printf '[slurm-local] %s\n' "$*" >&2; }

# Is the process named in pid file $1 alive (and is it program $2)?
alive() {
  local pf=$1 prog=$2 pid
  [ -s "$pf" ] || return 1
  pid=$(cat "$pf")
  [ -d "/proc/$pid" ] && grep -q "$prog" "/proc/$pid/comm" 2>/dev/null
}

# ---------------------------------------------------------------- install
pkgs=(slurm-wlm slurmctld slurmd slurm-client munge)
[ "$DBD" = 1 ] && pkgs+=(slurmdbd mariadb-server)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing: ${missing[*]}"
  # apt lists may be absent on a fresh machine
  apt-get update -qq
  # policy-rc.d on these machines denies service starts in postinst: that's fine,
  # we start the daemons ourselves below.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---------------------------------------------------------------- munge
if [ ! -s /etc/munge/munge.key ]; then
  log "creating munge key"
  mungekey --create --keyfile=/etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
if ! alive /run/munge/munged.pid munged; then
  log "starting munged"
  # as Debian's init script does: run as user munge, which owns the key and dirs
  runuser -u munge -- /usr/sbin/munged
fi
for _ in $(seq 50); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
munge -n </dev/null | unmunge >/dev/null || { log "munge self-test failed"; exit 1; }

# ---------------------------------------------------------------- slurmdbd (optional)
if [ "$DBD" = 1 ]; then
  install -d -o mysql -g mysql -m 0755 /run/mysqld
  if ! mysqladmin --protocol=socket ping >/dev/null 2>&1; then
    log "starting mariadb"
    [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >/dev/null
    # bind to loopback only; mysqld_safe keeps it running
    (setsid mysqld_safe --bind-address=127.0.0.1 >/dev/null 2>&1 &)
    touch /run/slurm-local.mariadb   # tells slurm-local-stop.sh that this script started it
    for _ in $(seq 100); do mysqladmin ping >/dev/null 2>&1 && break; sleep 0.2; done
  fi
  mysql -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
            CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmdbpass';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
  cat > /etc/slurm/slurmdbd.conf.new <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=slurm
LogFile=$LOG/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurmdbpass
StorageLoc=slurm_acct_db
EOF
  install -d -o slurm -g slurm -m 0755 $LOG
  install -o slurm -g slurm -m 0600 /etc/slurm/slurmdbd.conf.new /etc/slurm/slurmdbd.conf  # must be 0600, owned by SlurmUser
  rm -f /etc/slurm/slurmdbd.conf.new
  if ! alive /run/slurmdbd.pid slurmdbd; then
    log "starting slurmdbd"
    /usr/sbin/slurmdbd
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/6819) 2>/dev/null && break; sleep 0.2; done
  fi
fi

# ---------------------------------------------------------------- slurm.conf
# Read the real CPU/memory layout; RealMemory a little under what slurmd sees,
# otherwise the node is drained as "Low RealMemory" when memory fluctuates.
read -r CPUS SOCKETS CORES THREADS MEM < <(slurmd -C | awk '
  {for(i=1;i<=NF;i++){split($i,a,"="); v[a[1]]=a[2]}}
  END{print v["CPUs"], v["SocketsPerBoard"], v["CoresPerSocket"], v["ThreadsPerCore"], v["RealMemory"]}')
MEM=$(( MEM * 95 / 100 ))

if [ "$CGROUP" = 1 ]; then
  # cgroup v1 controllers are mounted under /sys/fs/cgroup here (hybrid layout, no systemd)
  PROCTRACK="ProctrackType=proctrack/cgroup
TaskPlugin=task/cgroup,task/affinity"
  cat > /etc/slurm/cgroup.conf.new <<EOF
CgroupPlugin=$([ -d /sys/fs/cgroup/memory ] && echo cgroup/v1 || echo autodetect)
ConstrainCores=yes
ConstrainRAMSpace=yes
EOF
  if cmp -s /etc/slurm/cgroup.conf.new /etc/slurm/cgroup.conf; then rm /etc/slurm/cgroup.conf.new
  else mv /etc/slurm/cgroup.conf.new /etc/slurm/cgroup.conf; fi
else
  # no cgroups: plain /proc based tracking, no task confinement (works in any container)
  PROCTRACK="ProctrackType=proctrack/linuxproc
TaskPlugin=task/none"
fi

if [ "$DBD" = 1 ]; then
  ACCT="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux"
else
  ACCT="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi

install -d -o slurm -g slurm -m 0755 /var/spool/slurmctld $LOG
NODELINES=""
if [ "$NODES" -le 1 ]; then
  NODELINES="NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS Sockets=$SOCKETS CoresPerSocket=$CORES ThreadsPerCore=$THREADS RealMemory=$MEM State=UNKNOWN"
else
  # several slurmd on one host: each has its own name (-N), port, spool, pid and log (%n)
  for i in $(seq "$NODES"); do
    NODELINES+="NodeName=n$i NodeHostname=$HOST NodeAddr=127.0.0.1 Port=$((6830 + i)) CPUs=$CPUS Sockets=$SOCKETS CoresPerSocket=$CORES ThreadsPerCore=$THREADS RealMemory=$((MEM / NODES)) State=UNKNOWN
"
  done
fi
for n in "${NAMES[@]}"; do install -d -m 0755 "/var/spool/slurmd-$n"; done
cat > $CONF.new <<EOF
# generated by slurm-local.sh — one host, loopback only
ClusterName=local
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=slurm
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd-%n
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd-%n.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
$PROCTRACK
$ACCT
# finished jobs stay visible to 'scontrol show job' for an hour (no slurmdbd needed)
MinJobAge=3600
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG/jobcomp.log
SchedulerType=sched/backfill
# batch_sched_delay: default 3 s adds ~2 s to every job start; 0 = schedule at once.
SchedulerParameters=batch_sched_delay=0
# kill_invalid_depend: cancel jobs whose afterok dependency failed (default: they sit
# PENDING forever with Reason=DependencyNeverSatisfied). Since Slurm 20.11 it belongs in
# DependencyParameters; in SchedulerParameters it is silently ignored.
DependencyParameters=kill_invalid_depend
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
$NODELINES
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
# rewrite (and restart daemons) only when the content changes
changed=0
if ! cmp -s $CONF.new $CONF; then mv $CONF.new $CONF; changed=1; log "wrote $CONF"; else rm -f $CONF.new; fi
chmod 0644 $CONF

if [ "$DBD" = 1 ]; then
  # register the cluster once (idempotent; -i = no prompt)
  sacctmgr -i add cluster local >/dev/null 2>&1 || true
fi

# ---------------------------------------------------------------- daemons
stop_pid() {  # stop_pid <pidfile> <comm>: TERM, wait, by pid only
  local pid; pid=$(cat "$1" 2>/dev/null) || return 0
  if [ -n "$pid" ] && grep -q "$2" "/proc/$pid/comm" 2>/dev/null; then
    kill -TERM "$pid"; for _ in $(seq 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
  fi
}
if [ $changed = 1 ]; then
  # 'scontrol reconfigure' cannot switch plugins (e.g. accounting storage) or nodes; a
  # restart can, and is safe: job state is saved in StateSaveLocation, running job steps
  # are held by slurmstepd and survive a slurmd restart.
  for pf in /run/slurmctld.pid /run/slurmd.pid /run/slurmd-*.pid; do
    [ -e "$pf" ] || continue
    log "config changed: stopping $(basename "$pf" .pid)"
    case $pf in *slurmctld*) stop_pid "$pf" slurmctld ;; *) stop_pid "$pf" slurmd; rm -f "$pf" ;; esac
  done
fi
if ! alive /run/slurmctld.pid slurmctld; then
  log "starting slurmctld"
  /usr/sbin/slurmctld            # daemonizes, writes /run/slurmctld.pid, drops to SlurmUser
fi
for n in "${NAMES[@]}"; do
  if ! alive "/run/slurmd-$n.pid" slurmd; then
    log "starting slurmd -N $n"
    /usr/sbin/slurmd -N "$n"     # runs as root (needed to launch jobs as their user)
  fi
done

# ---------------------------------------------------------------- wait until usable
for _ in $(seq 100); do
  ok=0
  for n in "${NAMES[@]}"; do
    st=$(sinfo -h -n "$n" -o %T 2>/dev/null || true)
    case "$st" in
      idle|mixed|allocated|completing) ok=$((ok + 1)) ;;
      down*|drain*|fail*) scontrol update NodeName="$n" State=RESUME 2>/dev/null || true ;;
    esac
  done
  [ $ok = ${#NAMES[@]} ] && break
  sleep 0.2
done
sinfo -h -N -o '%N %T' | while read -r n st; do log "node $n state: $st"; done
[ $ok = ${#NAMES[@]} ] || { log "not all nodes up; see $LOG/slurmctld.log and $LOG/slurmd-*.log"; exit 1; }
