# hpc_runner: every target installs what it needs itself (venv, torch CPU wheel, apt packages).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
TORCH := torch==2.13.0

.PHONY: demo test test-unit bench cluster-up cluster-down cluster-status clean install

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev,plot,test-lightning,accelerate]' --config-settings editable_mode=compat
	$(PY) -m compileall -q hpc_runner
	touch $(STAMP)

## The main job: the demo emulator trained by 2 ranks over Gloo on this machine (no SLURM needed).
demo: $(STAMP)
	$(VENV)/bin/hpc-run submit jobs/emulator.yaml --nodes 2 --executor local --wait --set output_dir=runs/demo

## Every test; as root it brings the 4-node SLURM testbed up for the end-to-end tests and down after.
test: $(STAMP)
	bash scripts/run_tests.sh

## Unit tests only (no testbed).
test-unit: $(STAMP)
	$(PY) -m pytest -q -m "not slurm"

bench: $(STAMP)
	bash scripts/bench.sh $(ARGS)

cluster-up:
	bash scripts/testbed.sh up

cluster-down:
	bash scripts/testbed.sh down

cluster-status:
	bash scripts/testbed.sh status

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
