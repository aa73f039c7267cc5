"""Faults without a cluster: a node that never arrives, a port already taken."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import entry_argv

pytestmark = pytest.mark.slow


def entrypoint(env: dict[str, str], tmp_path: Path, timeout_s: int = 2) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "hpc_runner.entrypoint", *entry_argv(tmp_path / "out", init_timeout_s=timeout_s)],
        env={**os.environ, "TORCH_CPP_LOG_LEVEL": "FATAL", **env}, capture_output=True, text=True, timeout=120)
    return result, time.monotonic() - started


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_node_that_never_arrives_is_named_after_the_timeout(tmp_path: Path) -> None:
    """Seed 001: the worker misses the rendezvous. Rank 0 stops after init_timeout and says who is missing."""
    result, seconds = entrypoint({"RANK": "0", "WORLD_SIZE": "3", "MASTER_ADDR": "127.0.0.1",
                                  "MASTER_PORT": str(free_port())}, tmp_path)
    assert result.returncode == 1
    assert "2 of 3 rank(s) never arrived: 1-2" in result.stderr
    assert "hint:" in result.stderr and "Traceback" not in result.stderr
    assert seconds < 30


def test_a_worker_whose_master_never_comes_gives_up(tmp_path: Path) -> None:
    result, seconds = entrypoint({"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                                  "MASTER_PORT": str(free_port())}, tmp_path)
    assert result.returncode == 1
    assert "could not reach rank 0's store" in result.stderr
    assert seconds < 60


def test_port_already_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result, seconds = entrypoint({"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                                      "MASTER_PORT": str(port)}, tmp_path, timeout_s=30)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: the port is already in use" in result.stderr
    assert seconds < 25  # fails at once, not after the 30 s timeout


def slurm_rank(job_id: str, rank: int, port: int) -> dict[str, str]:
    """A task of a 2-rank SLURM step on this host, with an explicit master address and port."""
    return {"SLURM_JOB_ID": job_id, "SLURM_STEP_ID": "0", "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank),
            "SLURM_NODEID": "0", "SLURM_NTASKS": "2", "SLURM_STEP_NUM_TASKS": "2", "SLURM_STEP_NODELIST": "localhost",
            "SLURM_STEP_TASKS_PER_NODE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}


def test_a_rank_of_another_job_is_refused_at_once(tmp_path: Path) -> None:
    """Two jobs given one port by mistake: job 2's rank 1 reaches job 1's store and is told so, no hang."""
    port = free_port()
    owner = subprocess.Popen([sys.executable, "-m", "hpc_runner.entrypoint", *entry_argv(tmp_path / "a", init_timeout_s=60)],
                             env={**os.environ, **slurm_rank("1", 0, port)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:  # wait until job 1's rank 0 listens
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "job 1's rank 0 never listened"
            time.sleep(0.1)
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "hpc_runner.entrypoint", *entry_argv(tmp_path / "b", init_timeout_s=60)],
                                env={**os.environ, "TORCH_CPP_LOG_LEVEL": "FATAL", **slurm_rank("2", 1, port)},
                                capture_output=True, text=True, timeout=120)
        refused_in = time.monotonic() - started
    finally:
        owner.kill()
        owner.wait()
    assert result.returncode == 1
    assert "belongs to slurm-1.0, not to this job (slurm-2.0)" in result.stderr, result.stderr
    assert refused_in < 20  # the init timeout is 60 s: refused on arrival, not after waiting
    print(f"foreign rank refused in {refused_in:.2f} s (includes interpreter and torch start)")
