"""What hpc-run submitted, by job id: the spec, the run directory, the code snapshot, the dependency, the sweep.

SLURM keeps a job's state; it does not keep why the job exists. ``hpc-run submit`` writes one small
JSON record per job under ``$HPC_RUNNER_STATE`` (default ``~/.local/state/hpc_runner``, in ``jobs/``);
``hpc-run status`` reads it back beside SLURM's own state. A job submitted some other way simply
has no record.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from dataclasses import dataclass
from pathlib import Path

STATE_VAR = "HPC_RUNNER_STATE"


@dataclass(frozen=True)
class JobRecord:
    """One submission as hpc-run made it."""

    job_id: str                      # SLURM's id (an array's id for a sweep), or submitit's local id
    name: str
    spec: str                        # the spec file as given on the command line
    output_dir: str                  # absolute: where the run (or the sweep's tasks) write
    executor: str                    # slurm or local
    submitted: str = ""              # ISO time, filled in by ``record``
    snapshot: str | None = None      # the code's identity (commit and a hash of the changes); None: no snapshot
    snapshot_dir: str | None = None  # where the job runs its code from
    dependency: str | None = None    # SLURM's words: "afterok:123" or "afterany:123:124"
    parent: str | None = None        # the job id this one was chained after (`then:` or --after)
    sweep: str | None = None         # the sweep's table (sweep.json) where the job is an array


def folder() -> Path:
    """Where the records live."""
    base = os.environ.get(STATE_VAR) or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state"), "hpc_runner")
    return Path(base) / "jobs"


def _path(job_id: str) -> Path:
    return folder() / f"{job_id.split('_')[0]}.json"  # an array task's record is its array's


def record(entry: JobRecord) -> Path:
    """Write ``entry`` (stamped with the time now); a record that cannot be written is not fatal to the job."""
    entry = dataclasses.replace(entry, submitted=entry.submitted or datetime.datetime.now().isoformat(timespec="seconds"))
    path = _path(entry.job_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(entry), indent=1, sort_keys=True) + "\n")
        tmp.replace(path)
    except OSError:
        return path
    return path


def lookup(job_id: str) -> JobRecord | None:
    """The record of ``job_id`` (or of the array an array task belongs to), None where hpc-run made none."""
    path = _path(job_id)
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    known = {field.name for field in dataclasses.fields(JobRecord)}
    try:
        return JobRecord(**{k: v for k, v in raw.items() if k in known})
    except TypeError:  # a record from an older hpc-run missing a required field
        return None


def describe(entry: JobRecord) -> list[str]:
    """The record as ``status`` prints it, one fact per line."""
    lines = [f"spec: {entry.spec} (submitted {entry.submitted}, {entry.executor} executor)",
             f"output: {entry.output_dir}"]
    if entry.snapshot:
        lines.append(f"code: snapshot {entry.snapshot} in {entry.snapshot_dir}")
    if entry.dependency:
        lines.append(f"after: {entry.dependency}")
    if entry.sweep:
        lines.append(f"sweep: {entry.sweep}")
    return lines
