"""hpc-run check and hpc-run scaling, on the local executor and on the testbed."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest

from hpc_runner import scaling
from hpc_runner.errors import InputError

from .conftest import HPC_RUN, ROOT

def test_scaling_rows_compute_speedup_and_efficiency() -> None:
    table = scaling.rows(2, {1: 100.0, 2: 180.0, 4: 300.0})
    assert [(r.nodes, r.ranks) for r in table] == [(1, 2), (2, 4), (4, 8)]
    assert [round(r.speedup, 2) for r in table] == [1.0, 1.8, 3.0]
    assert [round(r.efficiency, 2) for r in table] == [1.0, 0.9, 0.75]


@pytest.mark.parametrize("text", ["", "1,x", "0,2", "-1"])
def test_bad_sizes_are_rejected(text: str) -> None:
    with pytest.raises(InputError, match="--nodes"):
        scaling.parse_sizes(text)


@pytest.mark.slow
def test_check_local_two_ranks(tmp_path: Path) -> None:
    result = subprocess.run([HPC_RUN, "check", "--nodes", "2", "--executor", "local", "--set", f"output_dir={tmp_path}",
                             "--set", "entrypoint.params.sizes_kib=[1,64]"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "all-reduce OK; broadcast OK" in result.stdout
    data = json.loads((tmp_path / "check.json").read_text())
    assert [p["rank"] for p in data["placement"]] == [0, 1] and [r["size_kib"] for r in data["all_reduce"]] == [1, 64]


@pytest.mark.slow
def test_scaling_local_writes_table_csv_and_png(tmp_path: Path) -> None:
    result = subprocess.run([HPC_RUN, "scaling", str(ROOT / "jobs" / "emulator.yaml"), "--nodes", "1,2", "--executor", "local",
                             "--out", str(tmp_path), "--set", "data.samples=1024", "--set", "entrypoint.params.epochs=2"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "speed-up" in result.stdout and "efficiency" in result.stdout
    rows = list(csv.DictReader((tmp_path / "scaling.csv").open()))
    assert [int(r["nodes"]) for r in rows] == [1, 2] and float(rows[0]["speedup"]) == 1.0
    assert all(float(r["samples_per_second"]) > 0 for r in rows)
    assert (tmp_path / "scaling.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slurm
@pytest.mark.slow
def test_check_passes_on_the_testbed_with_4_nodes(testbed: dict[str, str], tmp_path: Path) -> None:
    result = subprocess.run([HPC_RUN, "check", "--nodes", "4", "--executor", "slurm", "--set", f"output_dir={tmp_path}"],
                            env=testbed, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "check.json").read_text())
    assert sorted(p["node"] for p in data["placement"]) == ["n1", "n2", "n3", "n4"]
    assert [r["size_kib"] for r in data["all_reduce"]] == [1, 16, 256, 4096, 65536]


@pytest.mark.slurm
@pytest.mark.slow
def test_scaling_on_the_testbed(testbed: dict[str, str], tmp_path: Path) -> None:
    result = subprocess.run([HPC_RUN, "scaling", str(ROOT / "jobs" / "emulator.yaml"), "--nodes", "1,2", "--executor", "slurm",
                             "--out", str(tmp_path), "--set", "data.samples=1024", "--set", "entrypoint.params.epochs=2"],
                            env=testbed, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert [int(r["nodes"]) for r in csv.DictReader((tmp_path / "scaling.csv").open())] == [1, 2]
    assert (tmp_path / "scaling.png").exists()
