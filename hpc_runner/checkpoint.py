"""Checkpoints that belong to their run: atomic writes, safe loads, and a fingerprint checked on resume.

A checkpoint records a fingerprint of what changes the computation: the entry (function or
script) and its parameters, the data spec, and any fields the user adds. How long to train
(``epochs`` and the other DURATION_KEYS), the world size, the audit and logging switches are
not in it: raising ``epochs`` continues a run. A checkpoint whose fingerprint differs is
resumed only with ``resume: force``; ``resume: never`` starts afresh. Loading never runs code
(``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from .errors import LaunchError

CHECKPOINT_NAME = "checkpoint.pt"
FINGERPRINT_KEY = "hpc_runner_fingerprint"
# Parameters that say how long to train, not what: left out of the fingerprint.
DURATION_KEYS = frozenset({"epochs", "max_epochs", "max_steps", "total_steps", "steps"})


def fingerprint(entry: dict[str, Any], data: dict[str, Any] | None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: entry, its params (less durations), data, the user's fields."""
    params = {k: v for k, v in entry.get("params", {}).items() if k not in DURATION_KEYS}
    found: dict[str, Any] = {"entry": entry.get("target") or entry.get("path"), "params": params,
                             "args": list(entry.get("args", ())), "data": data}
    return {**found, **(extra or {})}


def differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The fingerprint keys whose values differ, each as 'key: stored -> current'."""
    flat_a, flat_b = _flatten(stored), _flatten(current)
    return [f"{k}: {flat_a.get(k, '(absent)')!r} -> {flat_b.get(k, '(absent)')!r}"
            for k in sorted(flat_a.keys() | flat_b.keys()) if flat_a.get(k) != flat_b.get(k)]


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value}


def save_atomic(state: dict[str, Any], path: str | Path) -> Path:
    """Save ``state`` so that ``path`` always holds a complete checkpoint, even if killed midway."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | Path) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (tensors, numbers, strings, lists, dicts only), or None where there is none."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LaunchError(
            f"checkpoint {path} cannot be loaded safely: {first}\n  hint: it is corrupt or holds more than "
            "tensors and plain data (nothing in it was run); move it away or use a new output_dir") from None
    if not isinstance(state, dict):
        raise LaunchError(f"checkpoint {path} holds a {type(state).__name__}, not a mapping of state")
    return state


def check_resume(state: dict[str, Any], current: dict[str, Any], path: Path, mode: str) -> dict[str, Any] | None:
    """The state to resume from, None to start afresh, or an error where the run changed (mode ``auto``)."""
    if mode == "never":
        return None
    changed = differences(state.get(FINGERPRINT_KEY) or {}, current)
    if not changed or mode == "force":
        return state
    raise LaunchError(
        f"checkpoint {path} belongs to another run; what changed: " + "; ".join(changed)
        + ".\n  hint: write this run to a new output_dir, or set resume: never (start afresh, the old "
        "checkpoint is replaced) or resume: force (load it anyway) in the spec or with --set resume=...")


def save_for_run(state: dict[str, Any], path: str | Path, fields: dict[str, Any]) -> Path:
    """For scripts: save ``state`` atomically with a fingerprint of ``fields`` (what changes the computation)."""
    return save_atomic({**state, FINGERPRINT_KEY: dict(fields)}, path)


def load_for_run(path: str | Path, fields: dict[str, Any], mode: str = "auto") -> dict[str, Any] | None:
    """For scripts: the checkpoint at ``path`` if its fingerprint matches ``fields``; None where there is none
    (or ``mode="never"``); another run's is refused with the keys that differ (``mode="force"`` loads it)."""
    state = load(path)
    return None if state is None else check_resume(state, dict(fields), Path(path), mode)
