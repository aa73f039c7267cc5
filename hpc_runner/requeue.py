"""How a run stops and comes back: stop signals remembered from the first moment, a stop every rank
agrees on, and one party that acts on it (chosen by the spec's ``requeue.handler``).

- ``hpc_runner`` (function entries by default): the time-limit warning (USR1/USR2) and SIGTERM are
  caught; training calls :func:`stop_requested` (``ctx.stop_requested()``) at the same step on every
  rank, checkpoints and returns; rank 0 then runs ``scontrol requeue`` (not after SIGTERM: SLURM
  requeues preempted jobs itself, and a plain scancel stays cancelled). A script takes part the
  same way: ``from hpc_runner import requeue; if requeue.stop_requested(): save and leave``.
- ``framework`` (script entries by default): the script's framework handles the warning (PyTorch
  Lightning's SLURM auto-requeue: its checkpoint, its ``scontrol requeue``). Lightning installs its
  handler only over the default one, so ours stands in for the default and reports itself as such;
  a script with no framework is still never killed by the warning we asked SLURM for.
- ``none``: SLURM is asked for no warning signal at all.
"""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any

WARNINGS = (signal.SIGUSR1, signal.SIGUSR2)
HANDLERS = ("auto", "hpc_runner", "framework", "none")

received: list[int] = []  # every stop signal this process got, in order
_agreed: list[bool] = [False]  # all ranks agreed to stop (sticky)


def _remember(signum: int, _frame: Any) -> None:
    received.append(signum)


class _StandIn:
    """Our handler where the script's framework should take over: remembers, and passes for SIG_DFL."""

    def __call__(self, signum: int, frame: Any) -> None:
        _remember(signum, frame)


STAND_IN = _StandIn()
_real_getsignal = signal.getsignal


def _getsignal(signalnum: int) -> Any:
    handler = _real_getsignal(signalnum)
    return signal.SIG_DFL if handler is STAND_IN else handler


def install(handler: str, function_entry: bool) -> None:
    """Put the handlers for ``handler`` in place (call before anything slow; again once the entry is known)."""
    if resolve(handler, function_entry) == "hpc_runner":
        for sig in WARNINGS:
            signal.signal(sig, _remember)
        signal.signal(signal.SIGTERM, _remember if function_entry else signal.SIG_DFL)
        return
    for sig in WARNINGS:
        signal.signal(sig, STAND_IN)
    signal.getsignal = _getsignal  # frameworks that look for "no handler yet" see the default
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def resolve(handler: str, function_entry: bool) -> str:
    """``auto`` means ours for function entries and the framework's for scripts."""
    if handler == "auto":
        return "hpc_runner" if function_entry else "framework"
    return handler


def terminating() -> bool:
    """SIGTERM arrived: SLURM is stopping the job (preemption, ``scontrol requeue``, scancel)."""
    return signal.SIGTERM in received


def stop_requested(device: Any = None) -> bool:
    """True on every rank once any rank got a stop signal. A collective where a process group is up:
    call it at the same step on every rank (every few steps is enough)."""
    import torch
    import torch.distributed as dist

    flag = torch.tensor([1.0 if received else 0.0], device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    _agreed[0] = _agreed[0] or bool(flag.item() > 0)
    return _agreed[0]


def agreed() -> bool:
    """The ranks agreed to stop (the last :func:`stop_requested` said so)."""
    return _agreed[0]


def requeue_expected(restart_count: int, max_restarts: int) -> bool:
    """Training stopped for a time-limit warning and we ask SLURM to run it again (the same on every rank)."""
    return agreed() and not terminating() and bool(os.environ.get("SLURM_JOB_ID")) and restart_count < max_restarts


def this_job(environ: dict[str, str] | os._Environ[str] = os.environ) -> str | None:
    """The id that names this job alone to scontrol: ``ARRAY_TASK`` in a job array, else SLURM_JOB_ID.

    In an array, one task's SLURM_JOB_ID is the array's own id, and ``scontrol requeue`` of that id
    requeues every task of the array, finished ones included."""
    array, task = environ.get("SLURM_ARRAY_JOB_ID"), environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else environ.get("SLURM_JOB_ID")


def requeue_if_asked(is_main: bool, restart_count: int, max_restarts: int) -> bool:
    """Rank 0 asks SLURM to requeue the job (in an array: its own task) once, within the restart bound;
    says why not otherwise."""
    job_id = this_job()
    if not (agreed() and not terminating() and is_main and job_id):
        return False
    if not requeue_expected(restart_count, max_restarts):
        print(f"hpc_runner: not requeueing job {job_id}: {restart_count} restart(s) reached the bound {max_restarts}",
              flush=True)
        return False
    print(f"hpc_runner: requeueing job {job_id} (restart {restart_count + 1} of at most {max_restarts})", flush=True)
    subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=60)
    return True
