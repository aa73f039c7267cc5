"""Sharded checkpoints: which step folder counts as complete, another run's save refused, metadata
that cannot run code, and an FSDP save on 2 ranks loaded on 1 to the same weights and optimizer state."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from hpc_runner import sharded_checkpoint as sc
from hpc_runner.errors import LaunchError
from hpc_runner.safe_dcp import SafeReader

from .conftest import HPC_RUN, ROOT


def make_step(root: Path, step: int, *files: str) -> Path:
    """A step folder holding two shards and FILES (".metadata", "commit.json")."""
    folder = sc.step_path(root, step)
    folder.mkdir(parents=True)
    for name in ("__0_0.distcp", "__1_0.distcp", *files):
        (folder / name).write_text("x")
    return folder


BOTH = (sc.METADATA_NAME, sc.COMMIT_NAME)
# (what each step folder holds, the step resumed)
CASES = [
    ({}, None),
    ({16: BOTH}, 16),
    ({16: BOTH, 32: BOTH}, 32),
    ({16: BOTH, 32: ()}, 16),  # killed while ranks wrote shards, or before DCP's metadata
    ({16: BOTH, 32: (sc.METADATA_NAME,)}, 16),  # killed after the metadata, before every rank had finished
    ({16: BOTH, 32: (sc.COMMIT_NAME,)}, 16),  # a commit without metadata is not a checkpoint either
    ({16: (), 32: ()}, None),
    ({9: BOTH, 100: BOTH, 20: BOTH}, 100),  # by step number, not by name order or age
]


@pytest.mark.parametrize("folders, resumed", CASES)
def test_the_latest_complete_step_folder_is_resumed(tmp_path: Path, folders: dict[int, tuple[str, ...]],
                                                     resumed: int | None) -> None:
    for step, files in folders.items():
        make_step(tmp_path, step, *files)
    latest = sc.latest_complete(tmp_path)
    assert (latest.step if latest else None) == resumed


def test_an_incomplete_folder_says_what_it_lacks(tmp_path: Path) -> None:
    make_step(tmp_path, 1)
    make_step(tmp_path, 2, sc.METADATA_NAME)
    no_metadata, no_commit = sc.step_dirs(tmp_path)
    assert no_metadata.missing.startswith("no .metadata") and no_commit.missing.startswith("no commit.json")
    assert sc.step_dirs(tmp_path / "absent") == []


def test_other_names_beside_the_step_folders_are_left_alone(tmp_path: Path) -> None:
    make_step(tmp_path, 5, *BOTH)
    (tmp_path / "step-latest").mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    assert [d.step for d in sc.step_dirs(tmp_path)] == [5]
    sc.prune(tmp_path, keep=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "step-00000005", "step-latest"]


def test_prune_keeps_the_latest_complete_saves_and_drops_incomplete_ones(tmp_path: Path) -> None:
    for step in (10, 20, 30):
        make_step(tmp_path, step, *BOTH)
    make_step(tmp_path, 25)
    make_step(tmp_path, 40, sc.METADATA_NAME)
    gone = sc.prune(tmp_path, keep=2)
    assert sorted(p.name for p in gone) == ["step-00000010", "step-00000025", "step-00000040"]
    assert [d.step for d in sc.step_dirs(tmp_path)] == [20, 30]


def test_a_damaged_commit_names_the_folder_and_the_way_out(tmp_path: Path) -> None:
    folder = make_step(tmp_path, 7, *BOTH)
    (folder / sc.COMMIT_NAME).write_text("{not json")
    with pytest.raises(LaunchError, match=r"(?s)commit.json cannot be read.*move the folder .*step-00000007 away"):
        sc.read_commit(folder)


class _Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch PWNED",))


def test_metadata_that_would_run_code_is_refused_unrun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = make_step(tmp_path, 1, *BOTH)
    (folder / sc.METADATA_NAME).write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(LaunchError, match=r"cannot be loaded safely: posix.system is not part of a checkpoint"):
        SafeReader(folder).read_metadata()
    assert not (tmp_path / "PWNED").exists()


def submit_local(out: Path, nodes: int) -> None:
    """``hpc-run submit`` the round trip (save, or load where a save exists) on NODES local ranks, writing to OUT."""
    result = subprocess.run([HPC_RUN, "submit", str(ROOT / "jobs" / "fsdp.yaml"), "--executor", "local", "--wait",
                             "--nodes", str(nodes), "--ntasks-per-node", "1",
                             "--set", "entrypoint.function=tests.fixtures.fsdp_round_trip:save_or_load",
                             "--set", "entrypoint.params={}", "--set", f"env.PYTHONPATH={ROOT}",
                             "--set", f"output_dir={out}"],
                            capture_output=True, text=True, timeout=300, cwd=out.parent)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("saved_by, loaded_by", [(2, 1)])  # e2e: 4 -> 2 -> 4
def test_an_fsdp_save_loads_on_another_world_size_to_the_same_state(tmp_path: Path, saved_by: int, loaded_by: int) -> None:
    out = tmp_path / "out"
    submit_local(out, saved_by)
    submit_local(out, loaded_by)
    saved, loaded = (torch.load(out / f"{name}.pt", weights_only=True) for name in ("saved", "loaded"))
    assert saved["model"].keys() == loaded["model"].keys() and len(saved["model"]) == 6
    for name, tensor in saved["model"].items():
        assert torch.equal(tensor, loaded["model"][name]), name
    for name, moments in saved["optimizer"].items():  # AdamW's step count and both moments, every parameter
        assert all(torch.equal(value, loaded["optimizer"][name][key]) for key, value in moments.items()), name


@dataclass(frozen=True)
class _Config:
    resume: str


@dataclass(frozen=True)
class _Rank0:
    """What choosing a save needs of a RunContext: the resume mode and this run's fingerprint."""

    config: _Config
    params: dict[str, Any]

    def fingerprint(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"entry": "demo:train", "params": self.params}


def committed(root: Path, step: int, params: dict[str, Any]) -> None:
    folder = make_step(root, step, sc.METADATA_NAME)
    (folder / sc.COMMIT_NAME).write_text(json.dumps(asdict(sc.Commit(
        step=step, world_size=4, fingerprint={"entry": "demo:train", "params": params}, progress={}))))


def test_another_runs_save_is_refused_naming_what_changed(tmp_path: Path) -> None:
    committed(tmp_path, 8, {"lr": 0.01})
    with pytest.raises(LaunchError, match=r"belongs to another run; what changed: params.lr: 0.01 -> 0.1"):
        sc.choose(_Rank0(_Config("auto"), {"lr": 0.1}), tmp_path, None)
    assert sc.choose(_Rank0(_Config("force"), {"lr": 0.1}), tmp_path, None)[1].step == 8


def test_resume_never_starts_afresh_and_removes_the_earlier_saves(tmp_path: Path) -> None:
    committed(tmp_path, 8, {"lr": 0.01})
    assert sc.choose(_Rank0(_Config("never"), {"lr": 0.01}), tmp_path, None) is None
    assert sc.step_dirs(tmp_path) == []
