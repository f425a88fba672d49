#!/bin/sh
# Runs tests/integration/mpi_job.cpp as an MPI job of 3 ranks: rank 0 the head, ranks 1 and 2
# its workers, over dx's MPI transport. Exit 77 (skipped) with the reason when mpirun is missing.
#   mpi_job.sh PROGRAM SCENARIO [TIMEOUT_SECONDS]
# SCENARIO: run; kill (rank 2 dies, under `mpirun --enable-recovery`, which lets the other ranks
# go on: the head must handle it as a lost worker); kill_default (the same under mpirun's
# default, which ends the whole job: it must end, within the limit, with mpirun's message naming
# the rank, and nothing may hang).
program="$1"
scenario="$2"
limit="${3:-90}"
if ! command -v mpirun >/dev/null 2>&1; then
  echo "skipped: mpirun not found (Debian: openmpi-bin)"
  exit 77
fi
set -- --oversubscribe -np 3
[ "$(id -u)" = 0 ] && set -- "$@" --allow-run-as-root
[ "$scenario" = kill ] && set -- "$@" --enable-recovery
# Loopback only, shared memory between the ranks: works in a container without other networks.
set -- "$@" --mca btl self,vader,tcp --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo
program_scenario="$scenario"
[ "$scenario" = kill_default ] && program_scenario=kill
out=$(mktemp)
# A cold cost model of this run's own: what other runs learned of workers named rank-1 and rank-2
# (one of which a kill scenario made look slow) must not steer this run's placement.
cost_dir=$(mktemp -d)
export DX_COSTMODEL="$cost_dir/cost_model.txt"
started=$(date +%s)
timeout -k 5 "$limit" mpirun "$@" "$program" "$program_scenario" >"$out" 2>&1
code=$?
cat "$out"
echo "mpirun exit code $code after $(($(date +%s) - started)) s"
if [ "$code" = 124 ] || [ "$code" = 137 ] && ! grep -q "exited on signal" "$out"; then
  echo "FAIL: the job did not end within $limit s"
  rm -rf "$out" "$cost_dir"
  exit 1
fi
case "$scenario" in
  kill_default)
    if grep -q "rank 2 with PID .* exited on signal 9" "$out"; then
      echo "mpirun ended the job when rank 2 died, naming it"
      code=0
    else
      echo "FAIL: mpirun did not name the rank that died"
      code=1
    fi
    ;;
  *)
    if grep -q "PASS $program_scenario" "$out"; then code=0; else code=1; fi
    ;;
esac
rm -rf "$out" "$cost_dir"
exit $code
