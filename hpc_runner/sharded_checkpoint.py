"""Sharded checkpoints (``torch.distributed.checkpoint``): every rank writes its shard, a save counts
only once it is complete, and any world size can resume it.

Each save is a step folder, ``OUTPUT_DIR/checkpoints/step-00000064/``, holding DCP's shards (one
``__<rank>_0.distcp`` per rank), DCP's ``.metadata`` (written by rank 0 once every rank has written
its shard) and our ``commit.json`` (written by rank 0, atomically, after every rank has returned from
the save: the run's fingerprint, the world size that wrote it, the training progress). A folder
with both is **complete**; the latest complete folder is resumed and the others are ignored (and
removed by the next save). DCP reshards on load, so the world size may change between save and
resume; the fingerprint is checked as for ``checkpoint.pt`` (see :mod:`hpc_runner.checkpoint`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemWriter
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.checkpoint.storage import StorageWriter

from . import checkpoint
from .errors import LaunchError
from .run_context import RunContext
from .safe_dcp import SafeLoadPlanner, SafeReader

CHECKPOINTS_DIR = "checkpoints"
STEP_PREFIX = "step-"
METADATA_NAME = ".metadata"  # DCP's, written last by its coordinating rank
COMMIT_NAME = "commit.json"  # ours, written after every rank finished the save
KEEP = 2  # complete checkpoints kept; older ones and incomplete ones go at the next save


@dataclass(frozen=True)
class StepDir:
    """One save's folder and how far the save got."""

    path: Path
    step: int
    has_metadata: bool
    has_commit: bool

    @property
    def complete(self) -> bool:
        """Every shard, DCP's metadata and our commit are there."""
        return self.has_metadata and self.has_commit

    @property
    def missing(self) -> str:
        """What an incomplete folder lacks, in words ('' where complete)."""
        if not self.has_metadata:
            return f"no {METADATA_NAME} (the save stopped before every rank had written its shard)"
        return "" if self.has_commit else f"no {COMMIT_NAME} (the save stopped before every rank had finished)"


@dataclass(frozen=True)
class Commit:
    """What ``commit.json`` records about a complete save."""

    step: int
    world_size: int
    fingerprint: dict[str, Any]
    progress: dict[str, Any]  # the training loop's own position and history (plain JSON)


def step_path(root: Path, step: int) -> Path:
    """The folder of the save at optimizer step ``step``."""
    return Path(root) / f"{STEP_PREFIX}{step:08d}"


def folder(ctx: RunContext, step: int) -> Path:
    """The run's folder for the save at optimizer step ``step``: ``OUTPUT_DIR/checkpoints/step-<step>``."""
    return step_path(ctx.output_dir / CHECKPOINTS_DIR, step)


def step_dirs(root: Path) -> list[StepDir]:
    """Every step folder under ``root``, oldest first (other names are left alone)."""
    root = Path(root)
    found = []
    for path in root.glob(f"{STEP_PREFIX}*") if root.is_dir() else ():
        digits = path.name[len(STEP_PREFIX):]
        if path.is_dir() and digits.isdigit():
            found.append(StepDir(path=path, step=int(digits), has_metadata=(path / METADATA_NAME).is_file(),
                                 has_commit=(path / COMMIT_NAME).is_file()))
    return sorted(found, key=lambda d: d.step)


def latest_complete(root: Path) -> StepDir | None:
    """The complete save with the highest step, or None."""
    complete = [d for d in step_dirs(root) if d.complete]
    return complete[-1] if complete else None


def read_commit(folder: Path) -> Commit:
    """The commit record of a step folder; a damaged one is named with what to do."""
    path = Path(folder) / COMMIT_NAME
    try:
        return Commit(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise LaunchError(f"checkpoint commit {path} cannot be read: {exc}\n  hint: move the folder {folder} "
                          "away to resume from the save before it") from None


def _write_commit(folder: Path, commit: Commit) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{COMMIT_NAME}.", suffix=".tmp", dir=folder)
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(commit), handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, folder / COMMIT_NAME)


def prune(root: Path, keep: int = KEEP) -> list[Path]:
    """Remove incomplete folders and all but the ``keep`` latest complete ones; returns what went."""
    folders = step_dirs(root)
    kept = {d.path for d in [d for d in folders if d.complete][-keep:]}
    gone = [d.path for d in folders if d.path not in kept]
    for path in gone:
        shutil.rmtree(path, ignore_errors=True)
    return gone


def save(ctx: RunContext, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int,
         progress: dict[str, Any], extra: dict[str, Any] | None = None,
         storage_writer: Callable[[Path], StorageWriter] = FileSystemWriter) -> Path:
    """Every rank writes its shard of model and optimizer into the step folder; rank 0 commits it once all
    are done, then prunes. A collective: call it at the same step on every rank. ``storage_writer(folder)``
    makes DCP's writer (fault drills pass their own)."""
    path = folder(ctx, step)
    if ctx.is_main and path.exists():
        shutil.rmtree(path)  # an earlier save of this step: half-written by a crashed job, or being redone
    ctx.barrier()
    model_state, optim_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optim_state}, storage_writer=storage_writer(path))
    ctx.barrier()
    if ctx.is_main:
        _write_commit(path, Commit(step=step, world_size=ctx.env.world_size,
                                   fingerprint=ctx.fingerprint(extra), progress=progress))
        prune(path.parent)
    ctx.barrier()
    return path


def choose(ctx: RunContext, root: Path, extra: dict[str, Any] | None) -> tuple[Path, Commit] | None:
    """Rank 0: the latest complete save this run may resume (incomplete ones named and skipped)."""
    if ctx.config.resume == "never":
        if step_dirs(root):
            print(f"hpc_runner: resume: never, so the earlier checkpoints in {root} are removed", flush=True)
            shutil.rmtree(root)
        return None
    latest = latest_complete(root)
    for skipped in step_dirs(root):
        if not skipped.complete and (latest is None or skipped.step > latest.step):
            print(f"hpc_runner: skipping incomplete checkpoint {skipped.path}: {skipped.missing}", flush=True)
    if latest is None:
        return None
    commit = read_commit(latest.path)
    record = {checkpoint.FINGERPRINT_KEY: commit.fingerprint}
    checkpoint.check_resume(record, ctx.fingerprint(extra), latest.path, ctx.config.resume)  # refuses another run's
    return latest.path, commit


def load(ctx: RunContext, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
         extra: dict[str, Any] | None = None) -> Commit | None:
    """Load the latest complete save of this run into ``model`` and ``optimizer`` (resharded to this world
    size) and return its commit; None where there is none or ``resume: never``. A collective."""
    root = ctx.output_dir / CHECKPOINTS_DIR
    chosen = ctx.decided_by_main(lambda: choose(ctx, root, extra))
    if chosen is None:
        return None
    path, commit = chosen
    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optim_state}
    dcp.load(state, storage_reader=SafeReader(path), planner=SafeLoadPlanner())  # data only, no code
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
    return commit
