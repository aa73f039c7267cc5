#!/usr/bin/env bash
# make bench: TorchX only in its own venv, the SLURM testbed (as root) for the launch figure.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
if [ ! -x .venv-bench/bin/torchx ]; then
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install -q torchx==0.7.0
fi
started=0
if [ "$(id -u)" -eq 0 ] && ! sinfo >/dev/null 2>&1; then
  bash scripts/testbed.sh up && started=1
fi
trap '[ "$started" = 1 ] && bash scripts/testbed.sh down' EXIT
eval "$(bash scripts/testbed.sh env)"
# Byte-compile what an editable install left as source (pip does this for regular installs);
# PYTHONDONTWRITEBYTECODE, set on some machines, would otherwise recompile it on every start.
.venv/bin/python -m compileall -q hpc_runner
.venv/bin/python benchmarks/bench.py "$@"
