#!/bin/sh
# A dx job under a real Slurm: starts munged, slurmctld and slurmd for this one machine, configured
# in a temporary folder, submits examples/deploy/slurm.sbatch-style job (three tasks of the test
# binary through sbatch and srun: task 0 is the head, tasks 1 and 2 its workers), waits for it,
# and checks what the head wrote. Stops only the daemons it started.
#
#   slurm_job.sh NET_TESTS_BINARY
#
# Exit codes: 0 passed; 1 failed; 77 skipped, with the reason printed, where the daemons cannot
# start (no Slurm or munge installed, not root, a daemon that exits).
set -u
binary=$1
skip() { echo "SKIPPED: $*"; exit 77; }
for tool in munged mungekey slurmctld slurmd sbatch sinfo; do
  command -v "$tool" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin"
  command -v "$tool" >/dev/null 2>&1 || skip "$tool is not installed (cmake/install-deps.sh installs slurm-wlm and munge)"
done
[ "$(id -u)" = 0 ] || skip "slurmd needs root to start job steps here"

tmp=$(mktemp -d /tmp/dx_slurm_XXXXXX)
host=$(hostname -s)
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null; done
  sleep 0.5
  for p in $pids; do kill -9 "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
fail() {
  echo "FAILED: $*"
  for log in "$tmp"/log/*; do echo "--- $log"; tail -n 20 "$log"; done
  exit 1
}
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_for() {  # seconds, command...
  n=$1; shift
  i=0
  while [ "$i" -lt $((n * 10)) ]; do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
    i=$((i + 1))
  done
  return 1
}

mkdir -p "$tmp/munge" "$tmp/state" "$tmp/spool" "$tmp/log" "$tmp/run" "$tmp/job"
chmod 700 "$tmp/munge"
mungekey -c -k "$tmp/munge/munge.key" >/dev/null 2>&1 || skip "mungekey cannot make a key"
chmod 600 "$tmp/munge/munge.key"
munged --force -S "$tmp/munge/munge.sock" --key-file "$tmp/munge/munge.key" \
  --pid-file "$tmp/run/munged.pid" --log-file "$tmp/log/munged.log" --seed-file "$tmp/munge/seed" \
  >/dev/null 2>&1 || skip "munged does not start: $(tail -n 3 "$tmp/log/munged.log" 2>/dev/null)"
wait_for 5 test -s "$tmp/run/munged.pid" || skip "munged wrote no pid file"
pids="$pids $(cat "$tmp/run/munged.pid")"

ctld_port=$(free_port)
slurmd_port=$(free_port)
cat > "$tmp/slurm.conf" <<EOF
ClusterName=dxtest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$tmp/munge/munge.sock
CredType=cred/munge
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/run/slurmctld.pid
SlurmdPidFile=$tmp/run/slurmd.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SlurmdTimeout=30
# Four CPUs whatever this machine has: the job's three tasks fit on it.
SlurmdParameters=config_overrides
NodeName=$host NodeAddr=127.0.0.1 CPUs=4 State=UNKNOWN
PartitionName=dx Nodes=$host Default=YES MaxTime=10 State=UP OverSubscribe=FORCE:4
EOF
export SLURM_CONF="$tmp/slurm.conf"
slurmctld -i >/dev/null 2>&1 || skip "slurmctld does not start: $(tail -n 3 "$tmp/log/slurmctld.log" 2>/dev/null)"
wait_for 10 test -s "$tmp/run/slurmctld.pid" || skip "slurmctld wrote no pid file: $(tail -n 3 "$tmp/log/slurmctld.log" 2>/dev/null)"
pids="$pids $(cat "$tmp/run/slurmctld.pid")"
slurmd >/dev/null 2>&1 || skip "slurmd does not start: $(tail -n 3 "$tmp/log/slurmd.log" 2>/dev/null)"
wait_for 10 test -s "$tmp/run/slurmd.pid" || skip "slurmd wrote no pid file: $(tail -n 3 "$tmp/log/slurmd.log" 2>/dev/null)"
pids="$pids $(cat "$tmp/run/slurmd.pid")"
node_up() { sinfo -h -N -o '%T' | grep -Eq '^(idle|mixed|allocated)'; }
wait_for 30 node_up || skip "the node did not come up: $(sinfo -h -N -o '%T %E' 2>&1)"

# The job: examples/deploy/slurm.sbatch with the test binary as the program, three tasks on this
# one node. Loopback only: the head listens there and
# the workers look for it there.
script=$(cd "$(dirname "$0")/../../examples/deploy" && pwd)/slurm.sbatch
port=$(free_port)
# Every link of the job is mutual TLS, from the environment the example's comment shows.
(
  cd "$tmp/job"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 1 \
    -subj "/CN=job authority" -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout node.key -out node.csr -subj "/CN=node"
  printf 'subjectAltName=IP:127.0.0.1\n' > ext
  openssl x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out node.pem -days 1 -extfile ext
) >"$tmp/log/openssl.log" 2>&1 || fail "openssl could not make the job's certificates"
export DX_TLS_CERT="$tmp/job/node.pem" DX_TLS_KEY="$tmp/job/node.key" DX_TLS_CA="$tmp/job/ca.pem"
export DX_JOB_PROGRAM="$binary" DX_TEST_OUT="$tmp/job/out" DX_PORT="$port" DX_HEAD_HOST=127.0.0.1 \
  DX_LISTEN="127.0.0.1:$port"
sbatch --wait --nodes=1 --ntasks=3 --ntasks-per-node=3 --cpus-per-task=1 --time=2 \
  -o "$tmp/job/slurm-%j.out" -D "$tmp/job" "$script" "slurm child: the head task runs remote calls on the other tasks" \
  >"$tmp/log/sbatch.log" 2>&1
rc=$?
cat "$tmp"/job/slurm-*.out 2>/dev/null | tail -n 20
[ "$rc" = 0 ] || fail "sbatch --wait exited with $rc: $(cat "$tmp/log/sbatch.log")"
read -r workers distinct < "$tmp/job/out" || fail "the head task wrote nothing"
[ "$workers" = 2 ] || fail "the head saw $workers workers, not 2"
[ "$distinct" = 2 ] || fail "the tasks ran on $distinct worker processes, not 2"
echo "PASSED: a 3-task srun step ran as one head and 2 workers over mutual TLS ($(cat "$tmp/log/sbatch.log"))"
