"""Why a job that waited for another never ran (or never will): the sentence ``hpc-run status`` prints.

While SLURM holds the job, scontrol says why it is pending (``Reason=DependencyNeverSatisfied``) and
what it waits for (``Dependency=afterok:123(failed)``). Once SLURM cancelled it (``--kill-on-invalid-dep``)
and forgot it, sacct keeps only CANCELLED; the condition comes from hpc-run's record of the submission
(hpc_runner.ledger) and the parents' end states from sacct. ``explain`` is pure; ``never_runs`` asks SLURM.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import job_control
from .dependency import Dependency, from_directive
from .errors import HpcRunnerError
from .job_control import JobStatus
from .ledger import JobRecord

SUCCESS = "COMPLETED"
ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE")
NEVER_SATISFIED = "DependencyNeverSatisfied"


def _word(state: str) -> str:
    """``CANCELLED by 0`` -> ``CANCELLED``."""
    return state.split()[0] if state.strip() else "UNKNOWN"


def blocking(after: Dependency, parents: Mapping[str, str]) -> list[str]:
    """The parents whose end state breaks their condition (afterok: ended, not COMPLETED)."""
    return [job_id for job_id in after.job_ids
            if after.kind_of(job_id) == "afterok" and _word(parents.get(job_id, "")) in ENDED
            and _word(parents[job_id]) != SUCCESS]


def _ended(job_ids: list[str], parents: Mapping[str, str]) -> str:
    return " and ".join(f"job {job_id} ended {_word(parents[job_id])}" for job_id in job_ids)


def explain(job_id: str, state: str, started: bool, reason: str | None, after: Dependency | None,
            parents: Mapping[str, str]) -> str | None:
    """The status line of a job that never ran, or will never start, because of what it waited for; None otherwise.

    ``reason`` is scontrol's (None once SLURM forgot the job); ``parents`` maps each parent's id to its state.
    """
    state = _word(state)
    if after is None:
        if state == "PENDING" and reason == NEVER_SATISFIED:
            return (f"job {job_id}: PENDING, will never start: its dependency can never be satisfied; "
                    f"cancel it with hpc-run cancel {job_id}")
        return None
    broken = blocking(after, parents)
    why = _ended(broken, parents) if broken else f"its condition {after.directive()} can never hold"
    if state == "PENDING" and (reason == NEVER_SATISFIED or broken):
        return f"job {job_id}: PENDING, will never start: {why}; cancel it with hpc-run cancel {job_id}"
    if state == "PENDING" and reason == "Dependency":
        waiting = ", ".join(f"job {p} {_word(parents.get(p, 'UNKNOWN'))}" for p in after.job_ids)
        return f"job {job_id}: PENDING, waiting for {after.directive()} ({waiting})"
    if state == "CANCELLED" and not started:
        if broken:
            return f"job {job_id}: CANCELLED (never ran: it waited for {after.directive()} and {why})"
        known = ", ".join(f"job {p} {_word(parents.get(p, 'UNKNOWN'))}" for p in after.job_ids)
        return f"job {job_id}: CANCELLED (never ran: cancelled while it waited for {after.directive()}; {known})"
    return None


def never_runs(current: JobStatus, record: JobRecord | None) -> str | None:
    """``explain`` for a job as SLURM reports it now and as hpc-run recorded it."""
    state, job_id = current.state, current.job_id
    if _word(state) not in ("PENDING", "CANCELLED"):
        return None
    held = job_control.held_reason(job_id)
    reason, said = held if held is not None else (None, "(null)")
    after = from_directive(said) if said not in ("(null)", "") else None
    if after is None and record is not None and record.dependency:
        after = from_directive(record.dependency)
    parents: dict[str, str] = {}
    for parent in after.job_ids if after else ():
        try:
            parents[parent] = job_control.status(parent).state
        except HpcRunnerError:  # SLURM forgot it (or never knew it): the sentence says UNKNOWN
            continue
    started = bool(current.nodes) and current.nodes != "None assigned"
    return explain(job_id, state, started, reason, after, parents)
