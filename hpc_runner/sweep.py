"""Hyper-parameter sweeps as one SLURM job array: the cartesian product of swept values, one task each.

A sweep comes from the spec's ``sweep:`` block and from ``--sweep KEY=V1,V2`` flags (a flag replaces
the block's list for the same key). Every task is the spec with its values set, exactly as ``--set``
would set them, and its own output directory (``RUN_DIR/<task>-<key>=<value>_...``): its own
checkpoints, metrics and run.json, so a requeued task resumes its own run and never a sibling's.

One array has one shape: every task must ask SLURM for the same resources and run under the same
script. The tasks are built as requests and compared; a swept key that changes anything beyond
the program's own arguments (nodes, tasks, time, partition, mode, environment, setup) is refused
with the key named.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import SpecError
from .request import ArrayJob, JobRequest, SweepTask
from .schema import SweepAxis, SweepSpec
from .spec import parse_set

TABLE_NAME = "sweep.json"
# Keys that name the job's resources or its place: refused before anything is built, with the reason.
RESOURCE_KEYS = ("name", "mode", "launcher", "nodes", "ntasks_per_node", "cpus_per_task", "gpus_per_node", "time",
                 "partition", "account", "qos", "mem", "python", "setup", "env")
_FOLDER_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]+")
_FLAG_HINT = "write --sweep KEY=V1,V2,... e.g. --sweep entrypoint.params.lr=0.1,0.01"


def parse_flag(item: str) -> SweepAxis:
    """``KEY=V1,V2``: the values split on commas, each read as a YAML scalar (as --set reads one)."""
    key, sep, text = item.partition("=")
    if not sep or not key or not text:
        raise SpecError(f"--sweep {item!r}: expected KEY=V1,V2,...\n  hint: {_FLAG_HINT}")
    pieces = text.split(",")
    if any(not piece.strip() for piece in pieces):
        raise SpecError(f"--sweep {item!r}: an empty value (two commas, or one at an end)\n  hint: {_FLAG_HINT}; "
                        "an empty string goes in the spec's sweep: block as ''")
    if any(piece.count('"') % 2 or piece.count("'") % 2 for piece in pieces):
        raise SpecError(f"--sweep {item!r}: a quote is split by a comma (values are split on every comma)\n  hint: "
                        "strings holding commas go in the spec's sweep: block, one YAML list per key")
    values = tuple(parse_set(f"{key}={piece}")[1] for piece in pieces)
    if any(isinstance(v, (list, dict)) or piece.lstrip().startswith(("[", "{")) for v, piece in zip(values, pieces)):
        raise SpecError(f"--sweep {item!r}: each value must be a scalar\n  hint: put lists or mappings in the spec's "
                        "sweep: block, which takes a YAML list per key")
    return SweepAxis(key=key, values=values)


def combine(from_spec: SweepSpec | None, flags: tuple[str, ...], throttle: int | None) -> SweepSpec | None:
    """The spec's sweep with the flags' axes (a flag replaces the spec's list for its key); None: no sweep."""
    axes = {axis.key: axis for axis in (from_spec.axes if from_spec else ())}
    seen: set[str] = set()
    for item in flags:
        axis = parse_flag(item)
        if axis.key in seen:
            raise SpecError(f"--sweep {axis.key} given twice\n  hint: list every value once: --sweep {axis.key}=V1,V2,...")
        seen.add(axis.key)
        axes[axis.key] = axis
    if throttle is not None and throttle < 1:
        raise SpecError(f"--throttle {throttle}: must be 1 or more (tasks running at once)")
    if not axes:
        if throttle is not None:
            raise SpecError("--throttle limits a sweep's tasks, but nothing is swept\n  hint: add --sweep KEY=V1,V2 "
                            "or a sweep: block to the spec")
        return None
    for axis in axes.values():
        _check_key(axis)
    return SweepSpec(axes=tuple(axes.values()), throttle=throttle if throttle is not None else
                     (from_spec.throttle if from_spec else None))


def _check_key(axis: SweepAxis) -> None:
    top = axis.key.split(".")[0]
    if top in ("output_dir", "sweep"):
        raise SpecError(f"sweep over {axis.key}: each task gets its own output directory inside the run's; "
                        f"{top} cannot vary\n  hint: set output_dir once (--set output_dir=...) for the whole sweep")
    if top in RESOURCE_KEYS:
        raise SpecError(f"sweep over {axis.key}: it changes the job's resources or script ({top}), and one job "
                        "array runs one shape of job\n  hint: sweep what the program reads (entrypoint params, "
                        f"data sizes); submit one sweep per {top} value instead")
    texts = [json.dumps(v, sort_keys=True, default=str) for v in axis.values]  # 1 and true differ here
    repeated = sorted({text for text in texts if texts.count(text) > 1})
    if repeated:
        raise SpecError(f"sweep over {axis.key}: value(s) {', '.join(repeated)} listed twice (two identical tasks)")


def combinations(sweep: SweepSpec) -> list[tuple[tuple[str, Any], ...]]:
    """The cartesian product, first axis slowest: task i's (key, value) pairs."""
    keys = [axis.key for axis in sweep.axes]
    return [tuple(zip(keys, values)) for values in itertools.product(*(axis.values for axis in sweep.axes))]


def short_names(keys: list[str]) -> dict[str, str]:
    """Each key's last part (``lr``), or the whole key where two keys share a last part."""
    last = [key.split(".")[-1] for key in keys]
    return {key: (name if last.count(name) == 1 else key) for key, name in zip(keys, last)}


def label(values: tuple[tuple[str, Any], ...], names: dict[str, str]) -> str:
    """``lr=0.1_hidden=32``: safe in a folder name."""
    def text(value: Any) -> str:
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)

    return "_".join(_FOLDER_UNSAFE.sub("-", f"{names[key]}={text(value)}") for key, value in values)[:120]


# What must be the same in every task: everything SLURM and the batch shell see.
_SHAPE = ("mode", "launcher", "nodes", "tasks_per_node", "ranks_per_node", "time_minutes", "directives", "srun",
          "before_setup", "setup", "env", "before_launch", "python", "signal", "launch_notes", "template_dirs")


def build(load: Callable[[list[tuple[str, Any]]], JobRequest], sweep: SweepSpec, run_dir: str, spec_path: str) -> JobRequest:
    """One request for the whole array. ``load(overrides)`` builds the spec's request with extra --set
    overrides; ``run_dir`` is the absolute folder that holds every task's own.

    The batch script writes the sweep's table where none is yet (a rendered script submitted with
    sbatch has nobody else to write it); ``hpc-run submit`` writes it with the job ids."""
    combos = combinations(sweep)
    names = short_names([axis.key for axis in sweep.axes])
    width = len(str(len(combos) - 1))
    tasks: list[SweepTask] = []
    requests: list[JobRequest] = []
    for index, values in enumerate(combos):
        name = label(values, names)
        folder = str(Path(run_dir) / f"{index:0{width}d}-{name}")
        task_request = load([("sweep", None), *values, ("output_dir", folder)])
        if requests:
            _same_shape(requests[0], task_request, combos[0], values)
        requests.append(task_request)
        tasks.append(SweepTask(index=index, values=values, label=name, output_dir=folder, program=task_request.program))
    first = requests[0]
    array = ArrayJob(tasks=tuple(tasks), throttle=sweep.throttle, table=str(Path(run_dir) / TABLE_NAME))
    return dataclasses.replace(first, array=array, output_dir=run_dir, summary=(*first.summary, *task_table(array)),
                               before_launch=(*first.before_launch, _write_table_line(first.name, array, spec_path)))


def _same_shape(first: JobRequest, other: JobRequest, first_values: tuple[tuple[str, Any], ...],
                values: tuple[tuple[str, Any], ...]) -> None:
    for field in _SHAPE:
        a, b = getattr(first, field), getattr(other, field)
        if a != b:
            keys = [key for (key, v0), (_, v) in zip(first_values, values) if v0 != v] or [key for key, _ in values]
            before, after = _difference(a, b)
            raise SpecError(f"sweep over {', '.join(keys)}: the tasks differ in {field} ({before} -> {after}), and "
                            "one job array runs one shape of job\n  hint: sweep what the program reads (entrypoint "
                            "params, data sizes); submit one sweep per setting of this key instead")


def _difference(a: Any, b: Any) -> tuple[str, str]:
    """What differs, shortly: for sequences, only the items one side has."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        a, b = tuple(x for x in a if x not in b), tuple(x for x in b if x not in a)
    return _short(a), _short(b)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


def task_table(array: ArrayJob) -> list[str]:
    """The task table for the script header and the dry run."""
    throttle = f", at most {array.throttle} at once" if array.throttle else ""
    lines = [f"sweep: {len(array.tasks)} task(s) as one job array (--array={array.array}){throttle}; table: {array.table}"]
    lines += [f"  task {task.index}: {task.label} -> {task.output_dir}" for task in array.tasks]
    return lines


_JOB_ID_MARK = "@ARRAY_JOB_ID@"


def table_text(name: str, array: ArrayJob, spec_path: str, job_id: str | None, indent: int | None = 1) -> str:
    """sweep.json's text: the tasks, their values and folders, and the array's job id where known."""
    record = {"name": name, "spec": spec_path, "job_id": job_id, "throttle": array.throttle,
              "keys": [key for key, _ in array.tasks[0].values],
              "tasks": [{"index": t.index, "label": t.label, "values": dict(t.values), "output_dir": t.output_dir}
                        for t in array.tasks]}
    return json.dumps(record, indent=indent, separators=None if indent else (",", ":"))


def _write_table_line(name: str, array: ArrayJob, spec_path: str) -> str:
    """The batch shell writes the table (atomically), with SLURM's array id: a rendered script submitted by
    sbatch has nobody else to write it. Every task writes the same text; outside SLURM (the local
    executor, which wrote it at submit) nothing."""
    before, after = table_text(name, array, spec_path, _JOB_ID_MARK, indent=None).split(f'"{_JOB_ID_MARK}"')
    table, tmp = shlex.quote(array.table), shlex.quote(f"{array.table}.tmp")
    return (f'if [ -n "${{SLURM_ARRAY_JOB_ID:-}}" ]; then mkdir -p {shlex.quote(str(Path(array.table).parent))} && '
            f'printf \'%s"%s"%s\\n\' {shlex.quote(before)} "$SLURM_ARRAY_JOB_ID" {shlex.quote(after)} > {tmp}."$$" && '
            f'mv -f {tmp}."$$" {table}; fi')


def check_folder(array: ArrayJob) -> None:
    """Refuse a folder that holds another sweep's table: two sweeps there would mix their tables and results.
    The same sweep again is fine (each task resumes its own checkpoint, as a single run does)."""
    path = Path(array.table)
    try:
        old = json.loads(path.read_text())["tasks"]
        found = [(t["label"], t["output_dir"]) for t in old]
    except (OSError, ValueError, KeyError, TypeError):
        return  # none yet (or unreadable: it is rewritten)
    if found != [(t.label, t.output_dir) for t in array.tasks]:
        raise SpecError(f"{path} belongs to another sweep ({len(found)} task(s): {', '.join(label for label, _ in found[:3])}"
                        f"{', ...' if len(found) > 3 else ''}); two sweeps in one folder would mix their tables and "
                        f"results\n  hint: give this sweep its own folder (--set output_dir=...), or move the old one away")


def write_table(request: JobRequest, spec_path: str, job_id: str | None) -> Path:
    """sweep.json beside the tasks' folders, at submit: what `hpc-run results` and `hpc-run status` read."""
    assert request.array is not None
    path = Path(request.array.table)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    tmp.write_text(table_text(request.name, request.array, spec_path, job_id) + "\n")
    tmp.replace(path)
    return path
