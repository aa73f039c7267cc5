"""FSDP on the testbed: 2 nodes x 2 tasks, sharded checkpoints that survive a requeue, a crash in
the middle of a save, and a change of world size (4 -> 2 -> 4).

The jobs run the FSDP demo through tests/fixtures/fsdp_drills.py (slow steps, a save killed
before DCP's .metadata), on a small data set so that each takes seconds.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hpc_runner import job_control

from .conftest import ROOT, render, sbatch
from .fixtures.fsdp_drills import DIE_IN_SAVE_VAR, STEP_SLEEP_VAR
from .test_faults_e2e import wait_for_line

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
FSDP = str(ROOT / "jobs" / "fsdp.yaml")
DRILLS = ["--set", "entrypoint.function=tests.fixtures.fsdp_drills:train", "--set", f"env.PYTHONPATH={ROOT}"]
STEPS_PER_EPOCH = {4: 16, 2: 32}  # jobs/fsdp.yaml: 16384 samples, 256 per rank and step


@dataclass(frozen=True)
class Job:
    """One submitted job: its id, its log, and how it ended."""

    job_id: str
    log: Path
    state: str = ""

    def text(self) -> str:
        return self.log.read_text()


def submit(testbed: dict[str, str], tmp_path: Path, out: Path, *flags: str) -> Job:
    """Render jobs/fsdp.yaml with FLAGS, writing to OUT, and sbatch it."""
    script = render([FSDP, *DRILLS, "--set", f"output_dir={out}", *flags], testbed, tmp_path)
    job_id = sbatch(script, testbed, tmp_path)
    return Job(job_id, tmp_path / f"fsdp-{job_id}.out")


def finish(job: Job, timeout_s: float = 180) -> Job:
    """Wait for the job to end; the same job with its final state."""
    return Job(job.job_id, job.log, job_control.wait_finished(job.job_id, poll_s=0.5, timeout_s=timeout_s).state)


def val_loss_around(metrics: dict[str, Any], resume: dict[str, Any]) -> tuple[float, float]:
    """The validation loss after the last step before a resume and after the first step after it."""
    by_step = {point["step"]: point["val_loss"] for point in metrics["history"]}
    return by_step[resume["step"]], by_step[resume["step"] + 1]


@pytest.fixture(scope="module")
def run_across_sizes(testbed: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run in three jobs on one output_dir: 4 ranks (interrupted by the time-limit signal, requeued,
    6 epochs), then 2 ranks (epoch 7), then 4 ranks again (epoch 8)."""
    tmp_path = tmp_path_factory.mktemp("fsdp_sizes")
    out = tmp_path / "out"
    started = time.monotonic()
    first = submit(testbed, tmp_path, out, "--set", f"env.{STEP_SLEEP_VAR}=0.05")
    wait_for_line(first.log, r"epoch 1/6 - val")
    subprocess.run(["scancel", "--signal=USR1", first.job_id], env=testbed, check=True)
    first = finish(first)
    two = finish(submit(testbed, tmp_path, out, "--nodes", "2", "--ntasks-per-node", "1",
                        "--set", "entrypoint.params.epochs=7"))
    four = finish(submit(testbed, tmp_path, out, "--set", "entrypoint.params.epochs=8"))
    metrics = json.loads((out / "metrics.json").read_text())
    print(f"three FSDP jobs (one requeued) took {time.monotonic() - started:.0f} s; resumes: {metrics['resumes']}")
    return {"jobs": (first, two, four), "metrics": metrics, "out": out}


def test_the_time_limit_signal_checkpoints_every_shard_requeues_and_the_job_completes(run_across_sizes: dict[str, Any]) -> None:
    first = run_across_sizes["jobs"][0]
    text = first.text()
    assert first.state == "COMPLETED", text
    assert text.count("hpc_runner: requeueing job") == 1 and "sharded checkpoint saved" in text
    assert re.search(r"resuming from \S+/checkpoints/step-\d+ \(saved by 4 ranks, now 4\): epoch \d, step [1-9]\d* "
                     r"of 16 \(restart 1\)", text), text  # mid-epoch, same world size
    requeue = run_across_sizes["metrics"]["resumes"][0]
    assert (requeue["saved_world_size"], requeue["world_size"], requeue["restart_count"]) == (4, 4, 1)
    before, after = val_loss_around(run_across_sizes["metrics"], requeue)
    assert abs(after - before) <= 0.1 * before, (before, after)


@pytest.mark.parametrize("index, sizes", [(1, (4, 2)), (2, (2, 4))], ids=["4->2", "2->4"])
def test_another_world_size_continues_the_run(run_across_sizes: dict[str, Any], index: int, sizes: tuple[int, int]) -> None:
    """Saved by one world size, resumed by the other: the loss carries on, far below a fresh start's."""
    job = run_across_sizes["jobs"][index]
    assert job.state == "COMPLETED", job.text()
    assert f"(saved by {sizes[0]} ranks, now {sizes[1]})" in job.text()
    metrics = run_across_sizes["metrics"]
    resume = metrics["resumes"][index]
    assert (resume["saved_world_size"], resume["world_size"]) == sizes
    before, after = val_loss_around(metrics, resume)
    fresh = metrics["history"][0]["val_loss"]
    print(f"{sizes[0]} -> {sizes[1]} ranks: validation loss {before:.4f} before, {after:.4f} after; fresh start {fresh:.4f}")
    assert abs(after - before) <= 0.1 * before, (before, after)
    assert after < fresh / 2, (after, fresh)


def test_the_run_ends_with_every_epoch_trained_once(run_across_sizes: dict[str, Any]) -> None:
    metrics = run_across_sizes["metrics"]
    steps = [point["step"] for point in metrics["history"]]
    assert steps == list(range(1, len(steps) + 1))  # no step lost or repeated across the four starts
    assert metrics["steps"] == 6 * STEPS_PER_EPOCH[4] + STEPS_PER_EPOCH[2] + STEPS_PER_EPOCH[4]
    assert [p["world_size"] for p in metrics["history"]][-1] == metrics["world_size"] == 4


def test_a_save_killed_before_its_metadata_is_skipped_and_the_previous_one_resumed(testbed: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    crashed = finish(submit(testbed, tmp_path, out, "--set", "entrypoint.params.epochs=2",
                            "--set", f"env.{DIE_IN_SAVE_VAR}=2"))
    assert crashed.state == "FAILED", crashed.text()
    assert "fault drill: 4 ranks wrote their shards" in crashed.text()
    half_done, complete = out / "checkpoints" / "step-00000032", out / "checkpoints" / "step-00000016"
    assert sorted(p.name for p in half_done.glob("*.distcp")) == [f"__{rank}_0.distcp" for rank in range(4)]
    assert not (half_done / ".metadata").exists() and not (half_done / "commit.json").exists()
    assert (complete / ".metadata").exists() and (complete / "commit.json").exists()

    rerun = finish(submit(testbed, tmp_path, out, "--set", "entrypoint.params.epochs=2"))
    text = rerun.text()
    assert rerun.state == "COMPLETED", text
    assert f"skipping incomplete checkpoint {half_done}: no .metadata" in text
    assert re.search(rf"resuming from {complete} \(saved by 4 ranks, now 4\): epoch 2, step 0 of 16", text), text
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 32 and [r["step"] for r in metrics["resumes"]] == [16]
    assert (half_done / ".metadata").exists()  # saved again, complete this time
