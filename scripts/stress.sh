#!/usr/bin/env bash
# Runs a test command N times while two bounded busy loops load the CPUs, and reports pass or fail per run.
# The loops stop when the runs end (or after --loop-secs, whatever comes first); a failing run does not stop the rest.
#
#   bash scripts/stress.sh [--runs N] [--loop-secs S] [--] [COMMAND ARGS...]
#   npm run test:stress -- --runs 5 -- cargo test -q -p sockmap-core --test 'engine_*'
#
# Without a command it runs `npm test`. Each run's output goes to $STRESS_LOG_DIR (default: a temporary directory).
set -uo pipefail
runs=20
loop_secs=7200
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --loop-secs) loop_secs="$2"; shift 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || set -- npm test
logs="${STRESS_LOG_DIR:-$(mktemp -d)}"
mkdir -p "$logs"

# One busy loop per core, each bounded by its own deadline.
loops=()
for _ in 1 2; do
  timeout "$loop_secs" sh -c 'while :; do :; done' &
  loops+=("$!")
done
stop_loops() {
  for pid in "${loops[@]}"; do kill "$pid" 2>/dev/null; done
  wait "${loops[@]}" 2>/dev/null
}
trap stop_loops EXIT

pass=0
fail=0
for i in $(seq 1 "$runs"); do
  start=$(date +%s)
  if "$@" >"$logs/run-$i.log" 2>&1; then
    pass=$((pass + 1))
    echo "run $i/$runs: pass ($(($(date +%s) - start)) s)"
  else
    fail=$((fail + 1))
    echo "run $i/$runs: FAIL ($(($(date +%s) - start)) s), log: $logs/run-$i.log"
  fi
done
echo "stress: $pass passed, $fail failed of $runs runs under two busy loops: $*"
[ "$fail" = 0 ]
