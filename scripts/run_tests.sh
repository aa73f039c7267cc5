#!/usr/bin/env bash
# make test: install shellcheck where we can, bring the SLURM testbed up (as root), run pytest,
# take the testbed down again whatever happened. Without root the end-to-end tests skip, saying why.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY=${PY:-$ROOT/.venv/bin/python}

if [ "$(id -u)" -eq 0 ]; then
  if ! command -v shellcheck >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null
  fi
  if ! command -v cmake >/dev/null || ! command -v g++ >/dev/null; then  # hpc-run export and examples/cpp
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ cmake >/dev/null
  fi
  started=0
  if [ "${HPC_TESTBED:-1}" != 0 ]; then
    bash scripts/testbed.sh up && started=1
    trap '[ "$started" = 1 ] && bash scripts/testbed.sh down' EXIT
    eval "$(bash scripts/testbed.sh env)"
    export HPC_TESTBED_UP=1
  fi
else
  echo "[tests] not root: the SLURM testbed cannot start; end-to-end tests will be skipped" >&2
fi
export PATH="$ROOT/.venv/bin:$PATH"
# Two runs side by side: the end-to-end tests mostly wait on SLURM, the others mostly compute.
# The testbed's tests run in two workers (pytest-xdist, whole files to one worker): two jobs at a
# time on the 4 nodes, most of them on 2; a job that needs all 4 waits in SLURM's queue.
LOGS=$(mktemp -d)
"$PY" -m pytest -q -rs -m "not slurm" -p no:cacheprovider "$@" > "$LOGS/local.log" 2>&1 &
local_pid=$!
e2e_rc=0
"$PY" -m pytest -q -rs -m slurm -p no:cacheprovider -n "${HPC_E2E_WORKERS:-2}" --dist loadfile --durations=15 "$@" \
  || e2e_rc=$?
local_rc=0
wait "$local_pid" || local_rc=$?
echo "[tests] the tests that need no testbed (run alongside):"
cat "$LOGS/local.log"
rm -rf "$LOGS"
[ "$e2e_rc" = 0 ] && [ "$local_rc" = 0 ]
