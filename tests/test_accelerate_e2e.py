"""A script written for `accelerate launch` runs unchanged on the testbed, 2 nodes x 2 tasks, as one job.

Once under srun (one rank per task, gloo mode) and once under `launcher: accelerate` (one
`accelerate launch` per node). Each process of tests/fixtures/accelerate_train.py records what
accelerate told it, the sample ids it trained on and its final weights; only together do these
prove one job of four processes rather than four jobs of one: num_processes 4 everywhere, four
distinct indices, shards that are disjoint and cover the data, and equal weights after training.
The two jobs run side by side (2 nodes each) to keep the suite short.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from hpc_runner import job_control

from .conftest import ROOT, hpc_run, render, sbatch

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
pytest.importorskip("accelerate", reason="accelerate is an optional extra (make test installs hpc_runner[accelerate])")

SCRIPT = ROOT / "tests" / "fixtures" / "accelerate_train.py"
SAMPLES = 256  # the script's data set


@dataclass(frozen=True)
class Job:
    """A submitted job, where its processes write, and when it was submitted."""

    job_id: str
    out: Path
    log: Path
    submitted: float


def spec_file(folder: Path, launcher: str) -> Path:
    """The job spec a user writes for the unchanged script: 2 nodes x 2 tasks, gloo."""
    path = folder / f"{launcher}.yaml"
    path.write_text(f"name: acc-{launcher}\nmode: gloo\nnodes: 2\nntasks_per_node: 2\ntime: 5\nlauncher: {launcher}\n"
                    f"output_dir: {folder}/run\nentrypoint:\n  script: {SCRIPT}\n  args: [{folder}/processes]\n")
    return path


def rendered_job(testbed: dict[str, str], folder: Path, launcher: str) -> Job:
    folder.mkdir()
    started = time.monotonic()
    job_id = sbatch(render([str(spec_file(folder, launcher))], testbed, folder), testbed, folder)
    return Job(job_id, folder / "processes", folder / f"acc-{launcher}-{job_id}.out", started)


@pytest.fixture(scope="module")
def jobs(testbed: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Job]:
    """Both jobs submitted at once with `hpc-run render | sbatch`; each test waits for its own."""
    folder = tmp_path_factory.mktemp("accelerate")
    return {launcher: rendered_job(testbed, folder / launcher, launcher) for launcher in ("srun", "accelerate")}


def finished(job: Job) -> tuple[list[dict], str]:
    """Wait for the job; its processes' records by process index, and its log."""
    state = job_control.wait_finished(job.job_id, poll_s=0.5, timeout_s=240).state
    print(f"job {job.job_id}: {state} after {time.monotonic() - job.submitted:.1f} s from submission")
    log = job.log.read_text()
    assert state == "COMPLETED", log
    records = [json.loads(path.read_text()) for path in sorted(job.out.glob("process-*.json"))]
    return sorted(records, key=lambda r: r["process_index"]), log


def assert_one_job_of_four(records: list[dict]) -> None:
    """num_processes 4 on every rank, distinct indices, Gloo on CPU, disjoint covering shards, equal weights."""
    assert [r["process_index"] for r in records] == [0, 1, 2, 3], records  # each wrote its own file: four distinct
    assert {r["num_processes"] for r in records} == {4}
    assert sorted(r["local_process_index"] for r in records) == [0, 0, 1, 1]
    assert {(r["backend"], r["distributed_type"], r["device"]) for r in records} == {("gloo", "DistributedType.MULTI_CPU", "cpu")}
    shards = [set(r["seen"]) for r in records]
    assert sum(len(s) for s in shards) == SAMPLES and set().union(*shards) == set(range(SAMPLES))  # disjoint, covering
    assert all(r["weights"] == records[0]["weights"] for r in records)  # one model, trained together


@pytest.mark.parametrize("launcher", ["srun", "accelerate"])
def test_an_unchanged_accelerate_script_trains_as_one_job_of_four(jobs: dict[str, Job], launcher: str) -> None:
    records, log = finished(jobs[launcher])
    assert_one_job_of_four(records)
    assert log.count("accelerate script done: 4 process(es)") == 2  # accelerator.print: each node's local main process
    if launcher == "accelerate":
        assert re.search(r"node 0/2 -> accelerate launch, rendezvous at \S+:\d+", log), log
        assert re.search(r"node 1/2 -> accelerate launch", log), log


def test_hpc_run_submit_runs_the_accelerate_launcher_as_the_same_job(testbed: dict[str, str], tmp_path: Path) -> None:
    started = time.monotonic()
    done = hpc_run(["submit", str(spec_file(tmp_path, "accelerate")), "--executor", "slurm", "--wait"],
                   testbed, tmp_path)
    print(f"hpc-run submit --wait: exit {done.returncode} after {time.monotonic() - started:.1f} s")
    assert done.returncode == 0, done.stdout + done.stderr
    records = sorted((json.loads(p.read_text()) for p in (tmp_path / "processes").glob("process-*.json")),
                     key=lambda r: r["process_index"])
    assert_one_job_of_four(records)
