"""Submission through submitit: SLURM where there is one, submitit's local executor where not."""

from __future__ import annotations

import dataclasses
import datetime
import os
import shutil
import socket
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit

from .errors import JobError, SpecError
from .run_config import RunConfig
from .spec import JobSpec

EXECUTORS = ("auto", "slurm", "local")


def slurm_answers() -> bool:
    """True where a SLURM controller answers (``sinfo`` exits 0 within 10 s)."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return False
    try:
        return subprocess.run(["sinfo", "-h", "-o", "%D"], capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def choose_executor(name: str) -> str:
    """Resolve ``auto`` to ``slurm`` or ``local``; refuse ``slurm`` where there is none."""
    if name not in EXECUTORS:
        raise SpecError(f"--executor {name!r}: choose one of {', '.join(EXECUTORS)}")
    if name == "auto":
        return "slurm" if slurm_answers() else "local"
    if name == "slurm" and not slurm_answers():
        raise SpecError("--executor slurm: no SLURM controller answers here (sinfo failed)\n"
                        "  hint: use --executor local, or start the testbed with make cluster-up")
    return name


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class SpecTask:
    """The callable submitit pickles: sets the job's environment, then runs the entrypoint.

    Under the local executor it turns submitit's task ids into torchrun-style variables on
    127.0.0.1; under SLURM the entrypoint reads the SLURM step itself. Checkpointable: on
    preemption or time-out submitit requeues it and training resumes from the checkpoint.
    """

    config: RunConfig
    env: dict[str, str]
    cpus_per_task: int
    local_port: int | None = None

    def __call__(self) -> Any:
        os.environ.update(self.env)
        os.environ.update(OMP_NUM_THREADS=str(self.cpus_per_task), MKL_NUM_THREADS=str(self.cpus_per_task))
        if self.local_port is not None:
            job_env = submitit.JobEnvironment()
            os.environ.update(RANK=str(job_env.global_rank), WORLD_SIZE=str(job_env.num_tasks),
                              LOCAL_RANK=str(job_env.local_rank), LOCAL_WORLD_SIZE=str(job_env.num_tasks),
                              MASTER_ADDR="127.0.0.1", MASTER_PORT=str(self.local_port))
        from . import entrypoint

        return entrypoint.run(self.config)

    def checkpoint(self) -> submitit.helpers.DelayedSubmission:
        """Requeue the same task; the entrypoint resumes from the run's checkpoint."""
        return submitit.helpers.DelayedSubmission(self)


@dataclass(frozen=True)
class Submission:
    """What a submission is, printable before it happens (``--dry-run``)."""

    spec: JobSpec
    executor: str
    folder: Path
    parameters: dict[str, Any]
    task: SpecTask

    def describe(self) -> str:
        """Human-readable summary of what would be submitted."""
        lines = [f"executor: {self.executor}" + (
            f" (local processes: {self.spec.world_size} rank(s) over Gloo on 127.0.0.1, "
            f"emulating {self.spec.nodes} node(s) x {self.spec.ntasks_per_node})" if self.executor == "local" else ""),
            f"submitit folder: {self.folder}", f"output directory: {self.task.config.output_dir}", "parameters:"]
        lines += [f"  {k} = {v!r}" for k, v in sorted(self.parameters.items())]
        lines.append("entrypoint argv: " + " ".join(self.task.config.to_argv()))
        return "\n".join(lines)


def plan(spec: JobSpec, executor: str) -> Submission:
    """Build the submission without submitting anything."""
    # Absolute, so that results land in the same place whatever directory a task starts in.
    config = dataclasses.replace(RunConfig.from_spec(spec), output_dir=str(Path(spec.run_dir).resolve()))
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = Path(spec.run_dir) / "submitit" / f"{stamp}-{uuid.uuid4().hex[:6]}"
    if executor == "slurm":
        exports = [f"export OMP_NUM_THREADS={spec.cpus_per_task}", f"export MKL_NUM_THREADS={spec.cpus_per_task}"]
        params: dict[str, Any] = {
            "slurm_job_name": spec.name,
            "nodes": spec.nodes,
            "tasks_per_node": spec.ntasks_per_node,
            "cpus_per_task": spec.cpus_per_task,
            "timeout_min": spec.time_minutes,
            "slurm_signal_delay_s": spec.requeue.seconds_before,
            "slurm_srun_args": ["--cpus-per-task", str(spec.cpus_per_task), "--kill-on-bad-exit=1", "--mpi=none"],
            "slurm_setup": [*spec.setup, *exports],
        }
        if spec.gpus_per_node:
            params["gpus_per_node"] = spec.gpus_per_node
        for key in ("partition", "account", "qos", "mem"):
            if getattr(spec, key) is not None:
                params[f"slurm_{key}"] = getattr(spec, key)
        task = SpecTask(config=config, env=dict(spec.env), cpus_per_task=spec.cpus_per_task)
    else:
        params = {"tasks_per_node": spec.world_size, "timeout_min": spec.time_minutes}
        if spec.setup:
            params["local_setup"] = list(spec.setup)
        task = SpecTask(config=config, env=dict(spec.env), cpus_per_task=spec.cpus_per_task,
                        local_port=_free_port())
    return Submission(spec=spec, executor=executor, folder=folder, parameters=params, task=task)


def submit(submission: Submission) -> submitit.Job:
    """Submit through submitit and return its job handle."""
    executor = submitit.AutoExecutor(folder=submission.folder, cluster=submission.executor,
                                     slurm_max_num_timeout=submission.spec.requeue.max_restarts)
    executor.update_parameters(**submission.parameters)
    try:
        return executor.submit(submission.task)
    except subprocess.CalledProcessError as exc:
        raise JobError(f"sbatch refused the job: {exc.output.decode(errors='replace') if exc.output else exc}") from None


def wait(job: submitit.Job) -> list[Any]:
    """Wait for every task; a failed task becomes a JobError naming the job and its log."""
    try:
        return list(job.results())
    except (submitit.core.utils.FailedJobError, submitit.core.utils.UncompletedJobError) as exc:
        text = str(exc).strip().splitlines()
        tail = "\n".join(text[-15:])
        raise JobError(f"job {job.job_id} failed (state {job.state}); log: {job.paths.stdout}\n{tail}") from None

