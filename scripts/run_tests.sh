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
"$PY" -m pytest -q -rs "$@"
