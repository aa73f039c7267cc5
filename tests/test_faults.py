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
