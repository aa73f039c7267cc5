"""Submission through submitit: the same JobRequest that ``render`` prints, in submitit's words.

Under SLURM, submitit writes an sbatch file with the request's directives (its own log paths
aside), setup and export lines, and srun arguments; on every launch task its wrapper runs
``LaunchTask``, which starts the request's program as a child process, exactly the argv that
a rendered script's srun line starts. Under submitit's local executor the same program runs
once per launch task with torchrun-style variables on 127.0.0.1.
"""

from __future__ import annotations

import datetime
import shlex
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit
from submitit.slurm.slurm import _make_sbatch_string  # private: submitit is pinned in setup.cfg

from . import launch_task
from .errors import HpcRunnerError, InputError, JobFailed, SchedulerError
from .request import JobRequest

EXECUTORS = ("auto", "slurm", "local")
SUBMITIT_COMMAND = "-u -m submitit.core._submit"


def slurm_installed() -> bool:
    """SLURM's client commands are on PATH."""
    return shutil.which("sbatch") is not None and shutil.which("sinfo") is not None


def controller_answers() -> tuple[bool, str]:
    """Whether ``sinfo`` gets an answer from slurmctld within 10 s, and what it said otherwise."""
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%D"], capture_output=True, text=True, timeout=10, check=False)
    except subprocess.TimeoutExpired:
        return False, "sinfo did not answer within 10 s"
    except OSError as exc:
        return False, str(exc)
    return done.returncode == 0, (done.stderr or done.stdout).strip()


def choose_executor(name: str, dry_run: bool = False) -> str:
    """``auto`` is local only where SLURM is not installed; a controller that does not answer is an error.

    A dry run asks no controller anything: SLURM's commands on PATH are enough to pick ``slurm``.
    """
    if name not in EXECUTORS:
        raise InputError(f"--executor {name!r}: choose one of {', '.join(EXECUTORS)}")
    if name == "local" or (name == "auto" and not slurm_installed()):
        return "local"
    if dry_run:
        return "slurm"
    if not slurm_installed():
        raise SchedulerError("--executor slurm: SLURM's commands (sbatch, sinfo) are not on PATH here\n"
                             "  hint: run on a login node, use --executor local, or start the testbed with make cluster-up")
    answers, said = controller_answers()
    if not answers:
        raise SchedulerError(f"SLURM is installed here but its controller does not answer ({said or 'no output'}); "
                             "nothing was submitted.\n  hint: check slurmctld (scontrol ping), or run on this machine "
                             "on purpose with --executor local")
    return "slurm"


def slurm_parameters(request: JobRequest) -> dict[str, Any]:
    """The request in submitit's SlurmExecutor words; every directive travels as it is."""
    array = {"map_count": len(request.array.tasks), "array_parallelism": request.array.throttle or len(request.array.tasks)} \
        if request.array else {}
    return {
        **array,  # a sweep: submitit writes --array=0-N%throttle, as render does
        "job_name": request.name,
        "nodes": request.nodes,
        "ntasks_per_node": request.tasks_per_node,  # submitit counts its tasks (and result files) with this
        "time": request.time_minutes,
        "setup": ["set -euo pipefail", *request.shell_lines()],  # as strict as a rendered script
        "srun_args": list(request.srun),
        # Last word on every #SBATCH line (the signal and task counts included): exactly the request's.
        "additional_parameters": {key.replace("-", "_"): True if value is None else value
                                  for key, value in request.directives},
    }


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Submission:
    """A request bound to an executor and a folder: printable before anything is submitted."""

    request: JobRequest
    executor: str
    folder: Path
    task: launch_task.LaunchTask
    array_tasks: tuple[launch_task.LaunchTask, ...] = ()  # a sweep: one per array task, in task order

    def sbatch_text(self) -> str:
        """The sbatch file submitit writes for this submission (``%j`` in place of the job id)."""
        return _make_sbatch_string(command=self.submitit_command(), folder=self.folder,
                                   **slurm_parameters(self.request))

    def submitit_command(self) -> str:
        """What submitit's srun line starts on each task: its wrapper, which runs our LaunchTask."""
        return " ".join([shlex.quote(self.request.python), SUBMITIT_COMMAND, shlex.quote(str(self.folder))])

    def describe(self) -> str:
        """The dry run: the sbatch file (slurm), or the processes and environment (local)."""
        request = self.request
        head = [*(f"# {line}" for line in request.summary),  # the resource and batch arithmetic, as render shows it
                f"# executor: {self.executor}; submitit folder: {self.folder}",
                f"# output directory: {request.output_dir}"]
        if self.executor == "slurm":
            if request.array:
                head += [f"# submitit's wrapper starts on every task of array task {task.index}: " + shlex.join(task.program)
                         for task in request.array.tasks]
            else:
                head.append("# submitit's wrapper starts on every task: " + shlex.join(request.program))
            return "\n".join(head) + "\n" + self.sbatch_text()
        if request.array:
            head.append(f"# the sweep's {len(request.array.tasks)} task(s) run as separate local jobs, "
                        f"{request.array.throttle or len(request.array.tasks)} at a time, each as:")
        lines = head + [f"# local processes on this machine: {request.launch_tasks}, emulating {request.nodes} "
                        f"node(s) x {request.ranks_per_node} rank(s), Gloo on 127.0.0.1",
                        "# setup (run once, before the processes start):"]
        lines += [f"  {line}" for line in request.shell_lines()]
        for index in range(request.launch_tasks):
            added = launch_task.local_variables(request, index, self.task.local_port or 0)
            lines.append(f"# process {index}: " + " ".join(f"{k}={shlex.quote(v)}" for k, v in added.items()))
            lines.append("  " + shlex.join(request.program))
        return "\n".join(lines)


def plan(request: JobRequest, executor: str) -> Submission:
    """Bind the request to an executor and a fresh folder; nothing is submitted or written."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = Path(request.output_dir) / "submitit" / f"{stamp}-{uuid.uuid4().hex[:6]}"
    local = executor == "local"

    def task_for(program: tuple[str, ...]) -> launch_task.LaunchTask:
        return launch_task.LaunchTask(program=program, signal=request.signal,
                                      ranks_per_task=request.world_size // request.launch_tasks,
                                      local=request if local else None, local_port=_free_port() if local else None)

    tasks = tuple(task_for(task.program) for task in request.array.tasks) if request.array else ()
    return Submission(request=request, executor=executor, folder=folder, task=tasks[0] if tasks else task_for(request.program),
                      array_tasks=tasks)


def submit(submission: Submission) -> submitit.Job:
    """Submit through submitit and return its job handle (one job; a sweep goes through ``submit_array``)."""
    request = submission.request
    if submission.array_tasks:  # a local sweep's tasks come here one by one, each a Submission of its own
        raise InputError(f"{request.name} is a sweep of {len(request.array.tasks)} tasks, and this command runs one job\n"
                         "  hint: submit the sweep with hpc-run submit, or remove the spec's sweep: block here")
    executor: submitit.Executor
    if submission.executor == "local":
        executor = submitit.LocalExecutor(folder=submission.folder)
        executor.update_parameters(tasks_per_node=request.launch_tasks, timeout_min=request.time_minutes,
                                   setup=[f". {shlex.quote(str(_local_setup_file(submission)))}"])
    else:
        executor = submitit.SlurmExecutor(folder=submission.folder, max_num_timeout=0,
                                          python=shlex.quote(request.python))
        executor.update_parameters(**slurm_parameters(request))
    try:
        return executor.submit(submission.task)
    except (subprocess.CalledProcessError, submitit.core.utils.FailedJobError) as exc:
        raise _refused("the job", exc, submission.folder) from None


def _refused(what: str, exc: Exception, folder: Path) -> SchedulerError:
    """sbatch said no (submitit raises FailedJobError with its stderr): what it said; nothing left behind."""
    output = getattr(exc, "output", None)
    said = output.decode(errors="replace").strip() if isinstance(output, bytes) and output else str(exc).strip()
    shutil.rmtree(folder, ignore_errors=True)  # the pickles of a job that does not exist
    hint = ("\n  hint: the array is larger than the cluster's MaxArraySize (scontrol show config); split the sweep"
            if "array" in said.lower() else "")
    return SchedulerError(f"sbatch refused {what}: {said}{hint}")


def submit_array(submission: Submission, say: Callable[[str], None]) -> list[submitit.Job]:
    """A sweep: one SLURM job array (its jobs' ids are ARRAY_TASK), or local jobs, ``throttle`` at a time.

    Locally there is no scheduler to hold tasks back: with a throttle below the task count this
    waits for each group of tasks before starting the next (and says so).
    """
    request = submission.request
    assert request.array is not None
    if submission.executor == "slurm":
        executor = submitit.SlurmExecutor(folder=submission.folder, max_num_timeout=0, python=shlex.quote(request.python))
        parameters = slurm_parameters(request)
        parameters.pop("map_count")  # submitit counts the array's jobs itself
        executor.update_parameters(**parameters)
        try:
            with executor.batch():
                jobs = [executor.submit(task) for task in submission.array_tasks]
        except (subprocess.CalledProcessError, submitit.core.utils.FailedJobError) as exc:
            raise _refused("the job array", exc, submission.folder) from None
        return jobs
    group = request.array.throttle or len(submission.array_tasks)
    jobs = []
    for start in range(0, len(submission.array_tasks), group):
        if start:
            say(f"local sweep: waiting for tasks {start - group}-{start - 1} before starting {start}-"
                f"{min(start + group, len(submission.array_tasks)) - 1} (throttle {group})")
            for job in jobs[start - group:start]:
                job.wait()
        for index in range(start, min(start + group, len(submission.array_tasks))):
            jobs.append(submit(Submission(request=request, executor="local", folder=submission.folder / f"task-{index}",
                                          task=submission.array_tasks[index])))
    return jobs


def _local_setup_file(submission: Submission) -> Path:
    """The shell lines as one file the local executor sources (it would join lines with '&&' under sh)."""
    path = submission.folder / "setup.sh"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(["set -eu", *submission.request.shell_lines()]) + "\n")
    return path


def printable(result: Any) -> Any:
    """A rank's result for the terminal: per-epoch lists (the history) stay in the run's metrics file."""
    if isinstance(result, dict):
        return {k: v for k, v in result.items() if not isinstance(v, list)}
    return result


def wait(job: submitit.Job) -> list[Any]:
    """Wait for every task; a failed job becomes a JobFailed naming its final state and its log."""
    try:
        return list(job.results())
    except (submitit.core.utils.FailedJobError, submitit.core.utils.UncompletedJobError) as exc:
        raise JobFailed(f"job {job.job_id} failed (final state {final_state(job)}): {_reason(str(exc))}\n"
                        f"  log: {job.paths.stdout} (and .err beside it)") from None


def _reason(text: str) -> str:
    """What went wrong, from submitit's report: our own error's message, else its last lines."""
    lines = text.strip().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("hpc_runner.errors.")]
    if not starts:
        return "\n".join(lines[-5:])
    return "\n".join([lines[starts[-1]].split(": ", 1)[1], *lines[starts[-1] + 1:]])


def final_state(job: submitit.Job) -> str:
    """The job's terminal state as the scheduler reports it (not submitit's cached one)."""
    if isinstance(job, submitit.SlurmJob):
        from .job_control import wait_finished

        try:
            return wait_finished(str(job.job_id), poll_s=0.5, timeout_s=60).state
        except HpcRunnerError:  # the scheduler could not tell: say what submitit last saw
            return job.state
    return "FAILED"  # the local executor knows FINISHED only
