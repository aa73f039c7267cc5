"""A sweep's results: each task's metrics file, one table sorted by a metric, a plot per swept key.

``hpc-run submit --sweep ...`` writes ``sweep.json`` beside the tasks' folders (hpc_runner.sweep);
each task writes its own metrics file (the demo emulator: ``metrics.json``). Nothing here needs
SLURM: a results table can be read while tasks still run (theirs show as missing).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import HpcRunnerError, InputError
from .sweep import TABLE_NAME

METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class TaskResult:
    """One task of a sweep: its values and the metric it reported (None where it has none yet)."""

    index: int
    label: str
    values: dict[str, Any]
    output_dir: str
    value: float | None
    note: str  # why there is no value: no metrics file yet, or the metric is missing from it


@dataclass(frozen=True)
class Sweep:
    """sweep.json as written at submit."""

    path: Path
    name: str
    job_id: str
    keys: tuple[str, ...]
    tasks: tuple[dict[str, Any], ...]


def load(where: str | Path) -> Sweep:
    """A sweep's table from its folder (the run's output directory) or the sweep.json itself."""
    path = Path(where)
    if path.is_dir():
        path = path / TABLE_NAME
    try:
        raw = json.loads(path.read_text())
        return Sweep(path=path, name=str(raw["name"]), job_id=str(raw["job_id"] or "?"), keys=tuple(raw["keys"]),
                     tasks=tuple(raw["tasks"]))
    except FileNotFoundError:
        raise InputError(f"{path} does not exist: no sweep was submitted into {path.parent}\n  hint: give the "
                         "sweep's output directory (hpc-run submit prints it as 'table: .../sweep.json')") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path} is not a sweep table hpc-run wrote ({type(exc).__name__}: {exc})") from None


def task_labels(table: str | Path) -> dict[int, str]:
    """Task index -> its values as a label, for ``hpc-run status``; empty where the table is gone."""
    try:
        return {int(task["index"]): str(task["label"]) for task in load(table).tasks}
    except (InputError, KeyError, ValueError, TypeError):
        return {}


def metric(metrics: dict[str, Any], name: str) -> float | None:
    """``name`` in a metrics mapping (dotted for nesting: ``final.val_loss``), as a number; None where absent."""
    node: Any = metrics
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if isinstance(node, bool) or not isinstance(node, (int, float)) or not math.isfinite(node):
        return None
    return float(node)


def numeric_keys(metrics: dict[str, Any], prefix: str = "") -> list[str]:
    """Every number in a metrics mapping, dotted: what ``--metric`` can name."""
    found: list[str] = []
    for key, value in metrics.items():
        if isinstance(value, dict):
            found += numeric_keys(value, f"{prefix}{key}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            found.append(f"{prefix}{key}")
    return found


def collect(sweep: Sweep, name: str, metrics_file: str = METRICS_FILE) -> list[TaskResult]:
    """Each task's value of metric ``name``; a metric no finished task reports is an error naming those that exist."""
    results: list[TaskResult] = []
    available: set[str] = set()
    for task in sweep.tasks:
        folder = _folder(sweep, str(task["output_dir"]))
        path = folder / metrics_file
        value, note = None, ""
        try:
            metrics = json.loads(path.read_text())
        except FileNotFoundError:
            note = f"no {metrics_file} yet (running, failed or not started)"
        except (OSError, ValueError) as exc:
            note = f"{metrics_file} unreadable: {exc}"
        else:
            available.update(numeric_keys(metrics) if isinstance(metrics, dict) else [])
            value = metric(metrics, name) if isinstance(metrics, dict) else None
            note = "" if value is not None else _why_no_number(metrics, name, metrics_file)
            started = folder / "run.json"  # rewritten whenever the task (re)starts, before it trains
            if value is not None and started.exists() and started.stat().st_mtime > path.stat().st_mtime:
                value, note = None, f"{metrics_file} is from an earlier run: the latest start (run.json) has not finished"
        results.append(TaskResult(index=int(task["index"]), label=str(task["label"]), values=dict(task["values"]),
                                  output_dir=str(folder), value=value, note=note))
    if available and all(r.value is None for r in results):
        raise InputError(f"no task of {sweep.path} reports a metric '{name}'\n  hint: --metric takes one of "
                         f"{', '.join(sorted(available))}")
    return results


def _folder(sweep: Sweep, recorded: str) -> Path:
    """A task's folder: as recorded, or beside sweep.json where the sweep's folder was moved or copied."""
    path = Path(recorded)
    moved = sweep.path.parent / path.name
    return moved if not path.exists() and moved.exists() else path


def _why_no_number(metrics: Any, name: str, metrics_file: str) -> str:
    node: Any = metrics
    for part in name.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, float) and not math.isfinite(node):
        return f"'{name}' is {node} in {metrics_file} (diverged?)"
    return f"no number '{name}' in {metrics_file}"


def ordered(results: list[TaskResult], descending: bool) -> list[TaskResult]:
    """By the metric (best first: smallest, or largest with ``descending``); tasks without a value last."""
    with_value = sorted((r for r in results if r.value is not None), key=lambda r: r.value or 0.0, reverse=descending)
    return with_value + [r for r in results if r.value is None]


def table(sweep: Sweep, results: list[TaskResult], name: str) -> str:
    """The rows as aligned text: rank, task, each swept value, the metric, the folder or why it is missing."""
    def text(value: Any) -> str:
        return value if isinstance(value, str) else json.dumps(value)

    header = ["#", "task", *(key.split(".")[-1] for key in sweep.keys), name, "folder"]
    rows = [[str(n + 1) if r.value is not None else "-", str(r.index), *(text(r.values.get(k)) for k in sweep.keys),
             f"{r.value:.6g}" if r.value is not None else "-", r.output_dir if r.value is not None else r.note]
            for n, r in enumerate(results)]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    done = sum(r.value is not None for r in results)
    return "\n".join([f"sweep {sweep.name} (job {sweep.job_id}): {done} of {len(results)} task(s) report {name}", *lines])


def plot(sweep: Sweep, results: list[TaskResult], name: str, path: Path) -> Path:
    """One panel per swept key: the metric against that key's values (log axis where they span decades)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise HpcRunnerError("the sweep plot needs matplotlib: pip install 'hpc_runner[plot]'") from None
    matplotlib.rcParams["text.parse_math"] = False  # a swept string holding '$' is text, not TeX
    done = [r for r in results if r.value is not None]
    fig, axes = plt.subplots(1, len(sweep.keys), figsize=(4.2 * len(sweep.keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], sweep.keys):
        values = [r.values.get(key) for r in done]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if numeric:
            xs = [float(v) for v in values]
            if xs and min(xs) > 0 and max(xs) / min(xs) >= 100:
                ax.set_xscale("log")
        else:
            categories = sorted({json.dumps(v) for v in values})
            xs = [float(categories.index(json.dumps(v))) for v in values]
            ax.set_xticks(range(len(categories)), categories)
        ax.scatter(xs, [r.value for r in done], zorder=3)
        ax.set_xlabel(key)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{sweep.name}: {name} per swept value ({len(done)} task(s))")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path
