"""Job specs: what is accepted, and what every error says (file, key, hint)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hpc_runner import spec
from hpc_runner.errors import SpecError

BASE = {"name": "job", "entrypoint": {"function": "pkg.mod:main"}}


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_defaults_fill_an_minimal_spec(tmp_path: Path) -> None:
    job = spec.load(write(tmp_path, BASE))
    assert (job.mode, job.nodes, job.ntasks_per_node, job.cpus_per_task, job.launcher) == ("threading", 1, 1, 1, "srun")
    assert job.run_dir == "runs/job"
    assert job.entrypoint == spec.FunctionEntry("pkg.mod:main", {})


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        ({"nodes": 0}, "nodes", "must be >= 1"),
        ({"nodes": "two"}, "nodes", "whole number"),
        ({"mode": "mpi"}, "mode", "not one of threading, gloo, nccl"),
        ({"mode": "threading", "nodes": 2}, "nodes", "threading mode runs on one node"),
        ({"mode": "nccl"}, "gpus_per_node", "nccl mode needs GPUs"),
        ({"mode": "gloo", "gpus_per_node": 2}, "gpus_per_node", "runs on CPUs"),
        ({"time": "soon"}, "time", "not a time"),
        ({"partition": "a b"}, "partition", "not allowed"),
        ({"mem": "lots"}, "mem", "not allowed"),
        ({"name": "x\ny"}, "name", "newlines"),
        ({"env": {"A": "1\n2"}}, "env.A", "newlines"),
        ({"env": {"1BAD": "x"}}, "env key", "not allowed"),
        ({"entrypoint": {"function": "nocolon"}}, "entrypoint.function", "package.module:function"),
        ({"entrypoint": {"script": "a.py", "function": "a:b"}}, "entrypoint", "exactly one"),
        ({"entrypoint": {"script": "a.py", "params": {}}}, "entrypoint.params", "params go with 'function'"),
        ({"data": {"samples": 10}}, "data.batch_size", "is required"),
        ({"requeue": {"signal": "KILL"}}, "requeue.signal", "not one of"),
        ({"time": 1, "requeue": {"seconds_before": 90}}, "requeue.seconds_before", "before the time limit"),
    ],
)
def test_bad_values_name_file_and_key(tmp_path: Path, change: dict, key: str, words: str) -> None:
    path = write(tmp_path, {**BASE, **change})
    with pytest.raises(SpecError) as err:
        spec.load(path)
    message = str(err.value)
    assert str(path) in message
    assert f"'{key}" in message
    assert words in message


def test_unknown_key_lists_valid_keys(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"unknown key\(s\) nodez; valid keys: name, mode, nodes"):
        spec.load(write(tmp_path, {**BASE, "nodez": 2}))


def test_unknown_nested_key(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"unknown key\(s\) data.sample; valid keys in data: samples"):
        spec.load(write(tmp_path, {**BASE, "data": {"sample": 3, "batch_size": 1}}))


def test_malformed_yaml_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: job\nnodes: [1, 2\nmode: gloo\n")
    with pytest.raises(SpecError, match=rf"{path}: invalid YAML at line \d+, column \d+"):
        spec.load(path)


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read the job spec"):
        spec.load(tmp_path / "nope.yaml")


def test_overrides_win_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, {**BASE, "mode": "gloo", "nodes": 2, "entrypoint": {"function": "a:b", "params": {"lr": 0.1}}})
    job = spec.load(path, [("nodes", 4), spec.parse_set("entrypoint.params.lr=0.5"), spec.parse_set("data.samples=100"),
                           spec.parse_set("data.batch_size=10")])
    assert job.nodes == 4
    assert job.entrypoint.params == {"lr": 0.5}
    assert job.data == spec.DataSpec(samples=100, batch_size=10)


def test_set_without_equals_is_rejected() -> None:
    with pytest.raises(SpecError, match="expected KEY=VALUE"):
        spec.parse_set("nodes")


def test_nccl_runs_one_task_per_gpu(tmp_path: Path) -> None:
    job = spec.load(write(tmp_path, {**BASE, "mode": "nccl", "gpus_per_node": 4, "nodes": 2}))
    assert job.ntasks_per_node == 4 and job.world_size == 8


@pytest.mark.parametrize(("text", "minutes"), [("00:30:00", 30), ("1-00:00:00", 1440), ("01:30", 2), ("01:30:00", 90), (45, 45), ("00:00:30", 1)])
def test_time_formats(tmp_path: Path, text: object, minutes: int) -> None:
    assert spec.load(write(tmp_path, {**BASE, "time": text})).time_minutes == minutes


def test_validation_alone_already_gives_one_task_per_gpu() -> None:
    """Normalising lives in validation, so every caller (not only load) sees the same spec."""
    job = spec.from_mapping({**BASE, "mode": "nccl", "gpus_per_node": 2, "nodes": 2})
    assert job.ntasks_per_node == 2 and job.world_size == 4
