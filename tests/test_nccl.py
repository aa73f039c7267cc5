"""NCCL mode without a GPU: its logic with fakes, its failure message for real; GPU tests skip here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hpc_runner import entrypoint
from hpc_runner.environment import DistEnv
from hpc_runner.errors import LaunchError
from hpc_runner.run_config import RunConfig
from hpc_runner.spec import FunctionEntry



def config(mode: str, entry: FunctionEntry, output_dir: str) -> RunConfig:
    return RunConfig(mode=mode, entry=entry, output_dir=output_dir, init_timeout_s=60, data=None, max_restarts=0,
                     collective_timeout_s=60, resume="auto", requeue_handler="auto", export=None)


CONFIG = config("nccl", FunctionEntry("hpc_runner.demo.echo:run"), "out")


def env(local_rank: int) -> DistEnv:
    return DistEnv(source="slurm", rank=4 + local_rank, world_size=8, local_rank=local_rank, local_world_size=4,
                   node_rank=1, num_nodes=2, master_addr="10.0.0.1", master_port=12345, hosts=("g1", "g2"), cpus_per_task=8)


def test_missing_cuda_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(LaunchError, match=r"nccl mode needs CUDA.*is_available\(\) is False") as err:
        entrypoint._device(CONFIG, env(0))
    assert "hint:" in str(err.value)


def test_fewer_gpus_than_local_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(LaunchError, match="4 ranks on .* share 2 visible GPUs"):
        entrypoint._device(CONFIG, env(3))


def test_one_gpu_bound_per_task_is_device_0_for_every_local_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    """--gpus-per-task=1 / --gpu-bind: CUDA_VISIBLE_DEVICES holds one device, whatever the local rank."""
    chosen: list[int] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    assert [entrypoint._device(CONFIG, env(r)) for r in range(4)] == [torch.device("cuda", 0)] * 4
    assert chosen == [0, 0, 0, 0]


def test_each_rank_takes_the_gpu_of_its_local_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen: list[int] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    assert entrypoint._device(CONFIG, env(2)) == torch.device("cuda", 2)
    assert chosen == [2]


def test_gloo_and_threading_stay_on_cpu() -> None:
    for mode in ("gloo", "threading"):
        assert entrypoint._device(config(mode, CONFIG.entry, "o"), env(1)) == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA; the failure path is for CPU-only hosts")
def test_nccl_entrypoint_on_a_cpu_host_exits_1_with_the_reason(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "hpc_runner.entrypoint", *CONFIG.to_argv()], cwd=tmp_path,
                            env={**os.environ, "RANK": "0", "WORLD_SIZE": "1"}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "nccl mode needs CUDA" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; none is visible here")
def test_ddp_step_on_cuda_through_the_entrypoint(tmp_path: Path) -> None:
    on_gpu = config("nccl", FunctionEntry("hpc_runner.demo.check:run", {"sizes_kib": [1, 1024]}), str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "hpc_runner.entrypoint", *on_gpu.to_argv()], cwd=tmp_path,
                            env={**os.environ, "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
                                 "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29555"},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "cuda:0" in result.stdout
