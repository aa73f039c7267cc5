#!/usr/bin/env bash
# A real 4-node SLURM cluster on this one machine, as root, from Debian's packages:
# munge, MariaDB + slurmdbd (real accounting, so sacct works), slurmctld and one `slurmd -N nX`
# per node. All state lives under one folder ($HPC_TESTBED_DIR, default .testbed/).
#
# Like a real cluster, every node has its own network: slurmd nX runs in network namespace
# hpc-nX with its own address (NET.1X on a bridge the testbed creates, hpcbr0), its own
# loopback, and a name that DNS does not know. The controller listens on the bridge (NET.1),
# reachable from every node and from this machine. The namespaces, the veth pairs and the
# bridge are the testbed's own, created by `up` and removed by `down`.
#
#   scripts/testbed.sh up       # install packages if missing, start everything, wait for 4 idle nodes
#   scripts/testbed.sh down     # stop everything (by pid files, never by name)
#   scripts/testbed.sh status   # sinfo + sacct
#   scripts/testbed.sh env      # print the export line for SLURM_CONF
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${HPC_TESTBED_DIR:-$ROOT/.testbed}
NODES=${HPC_TESTBED_NODES:-4}
CONF=$STATE/etc/slurm.conf
export SLURM_CONF=$CONF
NET=${HPC_TESTBED_NET:-10.250.77}  # a private /24 used only on the testbed's own bridge
BRIDGE=hpcbr0
node_addr() { echo "$NET.$((10 + $1))"; }

log() { printf '[testbed] %s\n' "$*" >&2; }
die() { printf '[testbed] error: %s\n' "$*" >&2; exit 1; }

need_root() {
  [ "$(id -u)" -eq 0 ] || die "the testbed starts daemons as root; run as root (CI does)"
}

install_packages() {
  local missing=()
  command -v slurmctld >/dev/null || missing+=(slurmctld)
  command -v slurmd >/dev/null || missing+=(slurmd)
  command -v sbatch >/dev/null || missing+=(slurm-client)
  command -v munged >/dev/null || missing+=(munge)
  command -v slurmdbd >/dev/null || missing+=(slurmdbd)
  command -v mariadbd >/dev/null || missing+=(mariadb-server)
  command -v ip >/dev/null || missing+=(iproute2)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

write_configs() {
  mkdir -p "$STATE"/{etc,state,log,mysql,run}
  for i in $(seq 1 "$NODES"); do mkdir -p "$STATE/spool/n$i"; done
  local pass
  if [ -f "$STATE/etc/dbpass" ]; then pass=$(cat "$STATE/etc/dbpass"); else
    pass=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9'); echo "$pass" > "$STATE/etc/dbpass"; chmod 600 "$STATE/etc/dbpass"
  fi
  cat > "$CONF" <<CONF
ClusterName=testbed
SlurmctldHost=localhost($NET.1)
SlurmctldPort=6817
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=10
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool/%n
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd-%n.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd-%n.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=5,bf_interval=5
MpiDefault=none
MpiParams=ports=12000-12999
GresTypes=gpu
ReturnToService=2
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
$(for i in $(seq 1 "$NODES"); do
  echo "NodeName=n$i NodeHostname=localhost NodeAddr=$(node_addr "$i") Port=$((17000 + i)) Gres=gpu:4 CPUs=2 Sockets=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=2048 State=UNKNOWN"
done)
PartitionName=debug Nodes=n[1-$NODES] Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
# A second partition on the last two nodes, as sites have (a site profile selects it by name).
PartitionName=long Nodes=n[$((NODES - 1))-$NODES] Default=NO MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
  # Four GPUs per node on paper (plain files stand in for devices): lets sbatch --test-only
  # check nccl directives. Nothing runs on them.
  mkdir -p "$STATE/dev" && touch "$STATE"/dev/gpu{0..3}
  echo "NodeName=n[1-$NODES] Name=gpu File=$STATE/dev/gpu[0-3]" > "$STATE/etc/gres.conf"
  cat > "$STATE/etc/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3307
StorageUser=slurm
StoragePass=$pass
StorageLoc=slurm_acct_db
CONF
  chmod 600 "$STATE/etc/slurmdbd.conf"
  # Plain `sinfo` reads /etc/slurm/slurm.conf: point it here unless a real config lives there.
  if [ ! -e /etc/slurm/slurm.conf ] || [ -L /etc/slurm/slurm.conf ]; then
    mkdir -p /etc/slurm && ln -sfn "$CONF" /etc/slurm/slurm.conf
  fi
}

net_up() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$NET.1/24" dev "$BRIDGE"
  fi
  ip link set "$BRIDGE" up
  for i in $(seq 1 "$NODES"); do
    local ns=hpc-n$i veth=hpcv$i
    ip netns list | grep -qw "$ns" || ip netns add "$ns"
    if ! ip link show "$veth" >/dev/null 2>&1; then
      ip link add "$veth" type veth peer name eth0 netns "$ns"
      ip link set "$veth" master "$BRIDGE"
      ip -n "$ns" addr add "$(node_addr "$i")/24" dev eth0
    fi
    ip link set "$veth" up
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route replace default via "$NET.1"
    # The nodes reach no DNS server: without this every name lookup in a node (the job's master
    # address, torch's store naming each client) waits 10 s to time out. Unreachable fails at once,
    # and node names stay unresolvable as on clusters whose DNS does not know them.
    awk '$1 == "nameserver" && $2 ~ /^[0-9.]+$/ {print $2}' /etc/resolv.conf | while read -r server; do
      ip -n "$ns" route replace unreachable "$server/32"
    done
  done
}

net_down() {
  for i in $(seq 1 "$NODES"); do
    ip netns del "hpc-n$i" 2>/dev/null || true
    ip link del "hpcv$i" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
}

start_munge() {
  install -d -o munge -g munge -m 0755 /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
  fi
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
  fi
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "munged did not start"
}

mysql_sock() { echo "$STATE/mysql/mysqld.sock"; }

start_mariadb() {
  local data=$STATE/mysql/data
  chown -R mysql:mysql "$STATE/mysql"
  if [ ! -d "$data/mysql" ]; then
    mariadb-install-db --no-defaults --user=mysql --datadir="$data" --skip-test-db \
      --auth-root-authentication-method=socket >"$STATE/log/mariadb-install.log" 2>&1
  fi
  if ! pid_alive "$STATE/mysql/mariadbd.pid"; then
    setsid mariadbd --no-defaults --user=mysql --datadir="$data" --socket="$(mysql_sock)" --port=3307 \
      --bind-address=127.0.0.1 --skip-name-resolve --pid-file="$STATE/mysql/mariadbd.pid" \
      --log-error="$STATE/mysql/mariadbd.err" --innodb-buffer-pool-size=512M --innodb-log-file-size=64M \
      --innodb-lock-wait-timeout=900 </dev/null >/dev/null 2>&1 &
  fi
  for _ in $(seq 100); do
    mariadb --no-defaults -S "$(mysql_sock)" -u root -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.1
  done
  mariadb --no-defaults -S "$(mysql_sock)" -u root -e 'SELECT 1' >/dev/null 2>&1 || die "MariaDB did not start; see $STATE/mysql/mariadbd.err"
  local pass; pass=$(cat "$STATE/etc/dbpass")
  mariadb --no-defaults -S "$(mysql_sock)" -u root -e \
    "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass'; ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}

start_slurmdbd() {
  if ! pid_alive "$STATE/run/slurmdbd.pid"; then
    slurmdbd  # reads slurmdbd.conf beside $SLURM_CONF
  fi
  for _ in $(seq 100); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.1; done
  if ! sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -qx testbed; then
    sacctmgr -i add cluster testbed >/dev/null
  fi
}

start_slurm() {
  if ! pid_alive "$STATE/run/slurmctld.pid"; then slurmctld -i; fi
  for i in $(seq 1 "$NODES"); do
    # nsenter, not `ip netns exec`: the latter remounts /sys, hiding the cgroup fs slurmd probes.
    pid_alive "$STATE/run/slurmd-n$i.pid" || nsenter --net="/run/netns/hpc-n$i" slurmd -N "n$i"
  done
  local resumed=0
  for _ in $(seq 300); do
    # Exactly "idle": `sinfo -t idle` would also count idle+drain nodes that take no job.
    # One line per node: with two partitions `sinfo -N` lists a node once per partition.
    [ "$(sinfo -h -N -o '%N %T' 2>/dev/null | sort -u | grep -c ' idle$')" = "$NODES" ] && return 0
    if [ $resumed = 0 ] && sinfo -h -N -o %T 2>/dev/null | grep -qE 'drain|down|inval'; then
      # A node drained in an earlier bring-up (saved state) would stay drained: this is a testbed.
      scontrol update nodename="n[1-$NODES]" state=resume 2>/dev/null && resumed=1
    fi
    sleep 0.1
  done
  sinfo >&2 || true
  die "nodes did not become idle; see $STATE/log/"
}

up() {
  need_root
  local t0=$EPOCHREALTIME
  install_packages
  local t1=$EPOCHREALTIME
  write_configs
  net_up
  start_munge
  start_mariadb
  start_slurmdbd
  start_slurm
  for _ in $(seq 100); do sacct -n -X >/dev/null 2>&1 && break; sleep 0.1; done
  sacct -n -X >/dev/null || die "sacct does not answer"
  log "$NODES idle nodes, accounting up in $(awk "BEGIN{printf \"%.1f\", $EPOCHREALTIME - $t1}") s (package check/install: $(awk "BEGIN{printf \"%.1f\", $t1 - $t0}") s)"
  log "clients: export SLURM_CONF=$CONF"
}

kill_pidfile() {
  local f=$1
  if pid_alive "$f"; then
    local pid; pid=$(cat "$f"); kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

down() {
  need_root
  [ -f "$CONF" ] || { log "not up (no $CONF)"; return 0; }
  scancel --quiet --user=root 2>/dev/null || true
  if pid_alive "$STATE/run/slurmctld.pid"; then scontrol shutdown >/dev/null 2>&1 || true; fi
  for f in "$STATE"/run/slurmd-*.pid "$STATE/run/slurmctld.pid"; do [ -e "$f" ] && kill_pidfile "$f"; done
  kill_pidfile "$STATE/run/slurmdbd.pid"
  kill_pidfile "$STATE/mysql/mariadbd.pid"
  kill_pidfile /run/munge/munged.pid
  net_down
  log "down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) sinfo; sacct -X; ip -br addr show "$BRIDGE" 2>/dev/null || true ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
