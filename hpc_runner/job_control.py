"""Job state, logs and cancellation through SLURM's own commands (squeue, sacct, scontrol, scancel)."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .dependency import JOB_ID
from .errors import InputError, JobFailed, SchedulerError

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
            "BOOT_FAIL", "DEADLINE")


@dataclass(frozen=True)
class JobStatus:
    """One job's state as SLURM reports it."""

    job_id: str
    state: str
    nodes: str
    elapsed: str
    exit_code: str

    @property
    def finished(self) -> bool:
        """The job reached a terminal state."""
        return self.state.split()[0] in TERMINAL


def check_job_id(job_id: str) -> str:
    """Job ids are digits (``123`` or an array task ``123_4``)."""
    if not JOB_ID.match(job_id):
        raise InputError(f"{job_id!r} is not a SLURM job id (expected digits such as 1234 or 1234_5)")
    return job_id


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        raise SchedulerError(f"{argv[0]} not found: is this a SLURM login node? (make cluster-up starts a testbed)") from None
    except subprocess.TimeoutExpired:
        raise SchedulerError(f"{' '.join(argv)} did not answer within 60 s; is slurmctld up?") from None


def _scontrol_rows(job_id: str) -> list[dict[str, str]]:
    """``scontrol show job -o`` as one mapping per line (an array shows one line per task or pending range)."""
    out = _run(["scontrol", "show", "job", "-o", job_id])
    if out.returncode != 0:
        return []
    return [dict(item.split("=", 1) for item in line.split() if "=" in item) for line in out.stdout.splitlines() if line.strip()]


def _from_scontrol(job_id: str) -> JobStatus | None:
    rows = _scontrol_rows(job_id)
    if len(rows) != 1:
        return None
    fields = rows[0]
    if fields.get("JobId") != job_id.split("_")[0] and fields.get("ArrayJobId") is None:
        return None
    if "_" not in job_id and fields.get("ArrayJobId") == job_id:
        return None  # an array's id: its tasks, summed up by status()
    nodes = fields.get("NodeList", "")
    return JobStatus(job_id=job_id, state=fields.get("JobState", "UNKNOWN"),
                     nodes="" if nodes == "(null)" else nodes, elapsed=fields.get("RunTime", "-"),
                     exit_code=fields.get("ExitCode", "-"))


def expand_task_ids(text: str) -> list[int]:
    """An array's task ids as SLURM prints them: ``3``, ``[2-5%2]``, ``0,3-4`` -> [...]."""
    text = text.strip("[]").split("%")[0]
    found: list[int] = []
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        found += list(range(int(first), int(last or first) + 1))
    return found


def array_tasks(job_id: str) -> list[JobStatus]:
    """Every task of job array ``job_id``, in task order (pending ranges expanded); [] where it is no array.

    scontrol while SLURM holds the array, sacct afterwards (or for tasks scontrol has forgotten).
    """
    check_job_id(job_id)
    if "_" in job_id:
        return []
    found: dict[int, JobStatus] = {}
    for fields in _scontrol_rows(job_id):
        if fields.get("ArrayJobId") != job_id or "ArrayTaskId" not in fields:
            continue
        nodes = fields.get("NodeList", "")
        for task in expand_task_ids(fields["ArrayTaskId"]):
            found[task] = JobStatus(job_id=f"{job_id}_{task}", state=fields.get("JobState", "UNKNOWN"),
                                    nodes="" if nodes == "(null)" else nodes, elapsed=fields.get("RunTime", "-"),
                                    exit_code=fields.get("ExitCode", "-"))
    out = _run(["sacct", "-j", job_id, "-X", "-n", "-P", "-o", "JobID,State,NodeList,Elapsed,ExitCode"])
    for line in out.stdout.splitlines():
        row = line.split("|")
        if len(row) != 5 or not row[0].startswith(f"{job_id}_"):
            continue
        for task in expand_task_ids(row[0].split("_", 1)[1]):
            found.setdefault(task, JobStatus(f"{job_id}_{task}", row[1], "" if row[2] == "None assigned" else row[2],
                                             row[3], row[4]))
    return [found[task] for task in sorted(found)]


def _array_summary(job_id: str, tasks: list[JobStatus]) -> JobStatus:
    """An array as one status: running while any task is, else the worst end state; counts per state."""
    states = [task.state.split()[0] for task in tasks]
    counts = ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states)))
    unfinished = [s for s in states if s not in TERMINAL]
    if unfinished:
        state = "RUNNING" if "RUNNING" in unfinished else unfinished[0]
    else:
        state = next((s for s in states if s != "COMPLETED"), "COMPLETED")
    nodes = ",".join(sorted({t.nodes for t in tasks if t.nodes}))
    return JobStatus(job_id=job_id, state=f"{state} (array of {len(tasks)}: {counts})", nodes=nodes,
                     elapsed=max((t.elapsed for t in tasks), key=_elapsed_seconds, default="-"), exit_code="-")


def _elapsed_seconds(text: str) -> int:
    """SLURM's [D-]HH:MM:SS (or MM:SS) as seconds; anything else 0."""
    days, _, clock = text.rpartition("-")
    try:
        parts = [int(p) for p in clock.split(":")]
        return int(days or 0) * 86400 + sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    except ValueError:
        return 0


def status(job_id: str) -> JobStatus:
    """State, nodes, elapsed time and exit code: scontrol while SLURM holds the job, then sacct.

    A job array's id gives the array as one status (running while any task runs, else the worst end
    state, with counts); ``array_tasks`` lists each task."""
    check_job_id(job_id)
    live = _from_scontrol(job_id)
    if live is not None:
        return live
    tasks = array_tasks(job_id)
    if tasks:
        return _array_summary(job_id, tasks)
    out = _run(["sacct", "-j", job_id, "-X", "-n", "-P", "-o", "JobID,State,NodeList,Elapsed,ExitCode"])
    rows = [line.split("|") for line in out.stdout.splitlines()]
    matching = [row for row in rows if len(row) == 5 and row[0] == job_id]
    if matching:
        return JobStatus(*matching[-1])
    raise InputError(f"SLURM knows no job {job_id} (scontrol and sacct are empty)")


def wait_finished(job_id: str, poll_s: float = 1.0, timeout_s: float | None = None) -> JobStatus:
    """Poll until the job reaches a terminal state."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        current = status(job_id)
        if current.finished:
            return current
        if deadline is not None and time.monotonic() > deadline:
            raise JobFailed(f"job {job_id} still {current.state} after {timeout_s:.0f} s")
        time.sleep(poll_s)


def cancel(job_id: str) -> None:
    """scancel the job; an unknown job is an error."""
    check_job_id(job_id)
    out = _run(["scancel", job_id])
    if out.returncode != 0:
        raise SchedulerError(f"scancel {job_id} failed: {out.stderr.strip()}")


def log_path(job_id: str) -> Path:
    """The job's standard output file, from scontrol (kept MinJobAge seconds after the end)."""
    check_job_id(job_id)
    out = _run(["scontrol", "show", "job", "-o", job_id])
    match = re.search(r"\bStdOut=(\S+)", out.stdout)
    if out.returncode != 0 or not match:
        raise InputError(f"no log known for job {job_id}: {out.stderr.strip() or 'scontrol shows no StdOut'}\n"
                       "  hint: SLURM forgets finished jobs after MinJobAge; look for *-<jobid>.out in the submit directory")
    return Path(match.group(1))


def rank_log_path(job_id: str, rank: int) -> Path:
    """A submitit job's log of one task (submitit's own naming); a rendered script's single labelled log."""
    from submitit.core.utils import JobPaths

    path = log_path(job_id)
    if path.name != JobPaths(path.parent, job_id=job_id, task_id=0).stdout.name:
        return path  # a rendered script: one log, lines labelled by srun
    return JobPaths(path.parent, job_id=job_id, task_id=rank).stdout


def select_rank(lines: Iterator[str], rank: int | None) -> Iterator[str]:
    """Lines of one rank from srun --label output (``'3: text'``); all lines where rank is None."""
    prefix = re.compile(r"^\s*(\d+): ")
    for line in lines:
        match = prefix.match(line)
        if rank is None or (match and int(match.group(1)) == rank):
            yield line


def follow(path: Path, done: Callable[[], bool], poll_s: float = 0.5) -> Iterator[str]:
    """Yield lines of ``path`` as they are written, until ``done()`` and the file is drained."""
    while not path.exists():
        if done():
            return
        time.sleep(poll_s)
    with path.open(errors="replace") as handle:
        finished = False
        while True:
            line = handle.readline()
            if line:
                yield line
                continue
            if finished:
                return
            finished = done()
            if not finished:
                time.sleep(poll_s)


def log_lines(job_id: str, rank: int | None, follow_: bool) -> Iterator[str]:
    """JOB_ID's log lines, of one rank where ``rank`` is given, until the job ends where ``follow_``.
    A job array has one log per task: its id alone is refused, naming the tasks."""
    tasks = array_tasks(job_id) if "_" not in job_id else []
    if tasks:
        raise InputError(f"job {job_id} is a job array of {len(tasks)} task(s), one log each\n  hint: name one task, "
                         f"e.g. hpc-run logs {tasks[0].job_id}")
    path = log_path(job_id)
    per_task = rank_log_path(job_id, rank) if rank is not None else path
    labelled = rank if per_task == path else None  # a per-task file holds one rank already
    if follow_:
        lines: Iterator[str] = follow(per_task, lambda: status(job_id).finished)
    else:
        if not per_task.exists():
            raise InputError(f"log {per_task} does not exist (yet)")
        lines = iter(per_task.read_text(errors="replace").splitlines(keepends=True))
    return select_rank(lines, labelled)


def held_reason(job_id: str) -> tuple[str, str] | None:
    """scontrol's Reason and Dependency for a job SLURM still holds (``("Dependency", "afterok:123(unfulfilled)")``);
    None once it has forgotten the job (MinJobAge after its end)."""
    out = _run(["scontrol", "show", "job", "-o", check_job_id(job_id)])
    if out.returncode != 0:
        return None
    fields = dict(item.split("=", 1) for item in out.stdout.split() if "=" in item)
    return fields.get("Reason", "None"), fields.get("Dependency", "(null)")
