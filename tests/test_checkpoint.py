"""Atomic checkpoints: a process killed while saving leaves the previous checkpoint loadable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hpc_runner import checkpoint

SAVER = """
import sys, torch
from hpc_runner.checkpoint import save_atomic
path = sys.argv[1]
big = torch.randn(4_000_000)
i = 0
while True:
    i += 1
    save_atomic({"step": i, "weights": big + i}, path)
    print(i, flush=True)
"""


def test_sigkill_while_saving_leaves_a_loadable_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    for attempt in range(5):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        first = int(proc.stdout.readline())  # one complete save exists
        time.sleep(0.05 + 0.037 * attempt)  # land somewhere inside a later save
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = torch.load(path, weights_only=True)
        assert state["step"] >= first
        assert state["weights"].numel() == 4_000_000


def test_failed_rename_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoint.pt"
    checkpoint.save_atomic({"step": 1}, path)

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_atomic({"step": 2}, path)
    assert checkpoint.load(path) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary left behind


def test_load_of_a_missing_checkpoint_is_none(tmp_path: Path) -> None:
    assert checkpoint.load(tmp_path / "none.pt") is None


def test_a_script_gets_the_same_fingerprint_check_with_its_own_fields(tmp_path: Path) -> None:
    from hpc_runner.checkpoint import load_for_run, save_for_run
    from hpc_runner.errors import LaunchError

    path = tmp_path / "ckpt.pt"
    assert load_for_run(path, {"lr": 0.1}) is None  # nothing yet
    save_for_run({"step": 7}, path, {"lr": 0.1, "model": "mlp"})
    assert load_for_run(path, {"lr": 0.1, "model": "mlp"})["step"] == 7
    with pytest.raises(LaunchError, match=r"belongs to another run; what changed: lr: 0.1 -> 0.2"):
        load_for_run(path, {"lr": 0.2, "model": "mlp"})
    assert load_for_run(path, {"lr": 0.2, "model": "mlp"}, mode="never") is None
    assert load_for_run(path, {"lr": 0.2, "model": "mlp"}, mode="force")["step"] == 7
