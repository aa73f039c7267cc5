"""What submitit runs on each launch task: the request's program, as a child, exactly as srun would.

The child is the rank (or, with the torchrun launcher, the node's torchrun); this wrapper only
supervises it. It survives the time-limit signal (the child handles it), leaves no result when
SLURM stops the job (a requeue or a cancel: SLURM's state is the truth), and reads back the
rank's return value from the small JSON file the entrypoint writes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import JobFailed
from .variables import RESULT_FILE_VAR

if TYPE_CHECKING:
    from .request import JobRequest

REQUEUE_GRACE_S = 600  # how long a task whose job asked for a requeue waits for SLURM to stop it


def local_variables(request: JobRequest, index: int, port: int) -> dict[str, str]:
    """torchrun-style variables for launch task ``index`` of a local run (127.0.0.1, nodes emulated)."""
    per_node = request.tasks_per_node
    port = int(dict(request.env).get("MASTER_PORT", port))  # a port the spec chose wins, as on SLURM
    variables = {"RANK": str(index), "WORLD_SIZE": str(request.launch_tasks), "LOCAL_RANK": str(index % per_node),
                 "LOCAL_WORLD_SIZE": str(per_node), "GROUP_RANK": str(index // per_node),
                 "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    if request.launcher == "torchrun":  # one torchrun per emulated node shares its cores among its ranks
        variables["OMP_NUM_THREADS"] = str(int(dict(request.env)["OMP_NUM_THREADS"]) * request.ranks_per_node)
    return variables


def without_slurm(environ: dict[str, str]) -> dict[str, str]:
    """The environment less what a surrounding SLURM allocation or step left behind."""
    return {k: v for k, v in environ.items() if not k.startswith(("SLURM_", "SLURMD_", "SRUN_"))}


@dataclass(frozen=True)
class LaunchTask:
    """The picklable callable submitit runs once per launch task."""

    program: tuple[str, ...]
    signal: str
    ranks_per_task: int  # 1, or the ranks of one node's torchrun
    local: JobRequest | None = None  # set under the local executor
    local_port: int | None = None

    def __call__(self) -> Any:
        import submitit

        job_env = submitit.JobEnvironment()
        index = job_env.global_rank
        environ = dict(os.environ)
        if self.local is not None:
            environ = without_slurm(environ) | local_variables(self.local, index, self.local_port or 0)
        # One file per rank of this task; several only under torchrun, keyed by local rank (torchrun
        # numbers the nodes in its own order, so global ranks say nothing about which task ran them).
        name = f"{job_env.job_id}_task{index}" + ("_local{rank}" if self.ranks_per_task > 1 else "")
        template = str(Path(job_env.paths.folder) / f"{name}_result.json")
        files = [Path(template.replace("{rank}", str(local))) for local in range(self.ranks_per_task)]
        for path in files:
            path.unlink(missing_ok=True)
        environ[RESULT_FILE_VAR] = template
        signal.signal(getattr(signal, f"SIG{self.signal}"), lambda *_: None)  # the child acts on it
        stopped: list[int] = []
        signal.signal(signal.SIGTERM, lambda signum, _frame: stopped.append(signum))
        code = subprocess.run(self.program, env=environ, check=False).returncode
        if stopped:
            os._exit(128 + signal.SIGTERM)  # SLURM stopped the job (cancel, requeue, preemption): no result
        return _outcome(files, code, index, stopped)


def _outcome(files: list[Path], code: int, task: int, stopped: list[int]) -> Any:
    outcomes = [json.loads(path.read_text()) if path.exists() else {} for path in files]
    failed = [o for o in outcomes if o.get("error")]
    if failed:
        raise JobFailed(f"rank {failed[0].get('rank', '?')} (task {task}) failed: {failed[0]['error']}")
    if code < 0:
        raise JobFailed(f"task {task}: its process was killed by {signal.Signals(-code).name}; its log says where")
    if code != 0:
        raise JobFailed(f"task {task} exited with code {code}; its log says why")
    if any(o.get("requeue") for o in outcomes):
        # The job asked SLURM for a requeue: SLURM will stop this task; leaving a result now would
        # make submitit report the job finished before its rerun.
        deadline = time.monotonic() + REQUEUE_GRACE_S
        while time.monotonic() < deadline:
            if stopped:
                os._exit(128 + signal.SIGTERM)
            time.sleep(0.2)
        raise JobFailed(f"task {task}: a requeue was requested but SLURM did not stop the job within {REQUEUE_GRACE_S} s")
    results = sorted((o for o in outcomes if "result" in o), key=lambda o: o.get("rank", 0))
    return results[0]["result"] if results else None
