#!/usr/bin/env bash
# Repeat the 2x2 demo emulator N times (default 20) on this machine and count clean exits:
# exit code 0 and every rank's atexit marker written. Prints one line per run and a summary.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${1:-20}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
ok=0
for i in $(seq 1 "$N"); do
  rc=0
  "$ROOT/.venv/bin/hpc-run" submit "$ROOT/jobs/emulator.yaml" --executor local --wait --mode gloo --nodes 2 \
    --ntasks-per-node 2 --set "output_dir=$WORK/run$i" --set "env.PYTHONPATH=$ROOT" \
    --set entrypoint.function=tests.fixtures.run_ends:emulator_with_atexit --set "entrypoint.params.marker=$WORK/m$i" \
    --set data.samples=2048 --set entrypoint.params.epochs=2 --set entrypoint.params.hidden=16 >/dev/null 2>"$WORK/err$i" || rc=$?
  markers=$(find "$WORK" -maxdepth 1 -name "m$i.*" | wc -l)
  aborts=$(cat "$WORK/run$i"/submitit/*/*_log.err 2>/dev/null | grep -c "terminate called" || true)
  echo "run $i: exit $rc, atexit markers $markers/4, aborts $aborts"
  if [ "$rc" = 0 ] && [ "$markers" = 4 ] && [ "$aborts" = 0 ]; then ok=$((ok + 1)); fi
done
echo "clean exits: $ok of $N"
[ "$ok" = "$N" ]
