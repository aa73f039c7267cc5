"""FSDP on the testbed: one run of jobs/fsdp.yaml (2 nodes x 2 tasks) carried across three jobs and
four starts, its sharded checkpoints surviving a requeue, a change of world size (4 -> 2 -> 4) and
a crash in the middle of a save.

1. 4 ranks, 6 epochs: the time-limit signal (``scancel --signal=USR1``) stops it mid-epoch; every
   rank writes its shard, the job requeues itself, resumes and completes.
2. 2 ranks (2 nodes x 1 task), 8 epochs: resumes the 4-rank save, completes epoch 7 (a complete
   save), and is killed in the save of epoch 8 after every shard, before DCP's ``.metadata``.
3. 4 ranks, 8 epochs: skips the half-written save, resumes the 2-rank one, completes.

The jobs run the demo through tests/fixtures/fsdp_drills.py (slow steps, a save killed midway),
switched on through the job's environment so that all three jobs are one run (one fingerprint).
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
STEPS_AT = {6: 6 * 16, 7: 6 * 16 + 32, 8: 6 * 16 + 2 * 32}  # the optimizer steps done after each epoch, in this run


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


def finish(job: Job, timeout_s: float = 300) -> Job:
    """Wait for the job to end; the same job with its final state."""
    return Job(job.job_id, job.log, job_control.wait_finished(job.job_id, poll_s=0.5, timeout_s=timeout_s).state)


def val_loss_around(metrics: dict[str, Any], resume: dict[str, Any]) -> tuple[float, float]:
    """The validation loss after the last step before a resume and after the first step after it."""
    by_step = {point["step"]: point["val_loss"] for point in metrics["history"]}
    return by_step[resume["step"]], by_step[resume["step"] + 1]


@pytest.fixture(scope="module")
def run(testbed: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The three jobs of the module's docstring, one after the other on one output_dir."""
    tmp_path = tmp_path_factory.mktemp("fsdp")
    out = tmp_path / "out"
    started = time.monotonic()
    first = submit(testbed, tmp_path, out, "--set", f"env.{STEP_SLEEP_VAR}=0.05")
    wait_for_line(first.log, r"epoch 1/6 - val")
    subprocess.run(["scancel", "--signal=USR1", first.job_id], env=testbed, check=True)
    first = finish(first)
    crashed = finish(submit(testbed, tmp_path, out, "--nodes", "2", "--ntasks-per-node", "1",
                            "--set", "entrypoint.params.epochs=8", "--set", f"env.{DIE_IN_SAVE_VAR}=2"))
    half_done = sorted(p.name for p in (out / "checkpoints" / f"step-{STEPS_AT[8]:08d}").iterdir())  # before the rerun
    last = finish(submit(testbed, tmp_path, out, "--set", "entrypoint.params.epochs=8"))
    metrics = json.loads((out / "metrics.json").read_text())
    print(f"three FSDP jobs, four starts: {time.monotonic() - started:.0f} s; resumes: {metrics['resumes']}")
    return {"jobs": (first, crashed, last), "metrics": metrics, "out": out, "half_done": half_done}


def test_the_time_limit_signal_checkpoints_every_shard_requeues_and_the_job_completes(run: dict[str, Any]) -> None:
    first = run["jobs"][0]
    text = first.text()
    assert first.state == "COMPLETED", text
    assert text.count("hpc_runner: requeueing job") == 1 and "sharded checkpoint saved" in text
    assert re.search(r"resuming from \S+/checkpoints/step-\d+ \(saved by 4 ranks, now 4\): epoch \d, step [1-9]\d* "
                     r"of 16 \(restart 1\)", text), text  # mid-epoch, same world size
    requeue = run["metrics"]["resumes"][0]
    assert (requeue["saved_world_size"], requeue["world_size"], requeue["restart_count"]) == (4, 4, 1)
    before, after = val_loss_around(run["metrics"], requeue)
    assert abs(after - before) <= 0.1 * before, (before, after)


def test_a_save_killed_before_its_metadata_is_skipped_and_the_previous_one_resumed(run: dict[str, Any]) -> None:
    crashed, last = run["jobs"][1:]
    assert crashed.state == "FAILED", crashed.text()
    assert "fault drill: 2 ranks wrote their shards" in crashed.text()
    assert run["half_done"] == ["__0_0.distcp", "__1_0.distcp"]  # no .metadata, no commit.json
    half_done, previous = (run["out"] / "checkpoints" / f"step-{STEPS_AT[epochs]:08d}" for epochs in (8, 7))
    text = last.text()
    assert last.state == "COMPLETED", text
    assert f"skipping incomplete checkpoint {half_done}: no .metadata" in text
    assert f"resuming from {previous} (saved by 2 ranks, now 4): epoch 8, step 0 of 16" in text
    assert not half_done.exists()  # removed by the rerun's first complete save


@pytest.mark.parametrize("index, sizes", [(1, (4, 2)), (2, (2, 4))], ids=["4->2", "2->4"])
def test_another_world_size_continues_the_run(run: dict[str, Any], index: int, sizes: tuple[int, int]) -> None:
    """Saved by one world size, resumed by the other: the loss carries on, far below a fresh start's."""
    metrics = run["metrics"]
    resume = metrics["resumes"][index]
    assert (resume["saved_world_size"], resume["world_size"]) == sizes
    assert f"(saved by {sizes[0]} ranks, now {sizes[1]})" in run["jobs"][index].text()
    before, after = val_loss_around(metrics, resume)
    fresh = metrics["history"][0]["val_loss"]
    print(f"{sizes[0]} -> {sizes[1]} ranks: validation loss {before:.4f} before, {after:.4f} after; fresh start {fresh:.4f}")
    assert abs(after - before) <= 0.1 * before, (before, after)
    assert after < fresh / 2, (after, fresh)


def test_the_run_ends_with_every_step_trained_once(run: dict[str, Any]) -> None:
    """The steps after the last complete save of a crashed job are trained again, and only they."""
    metrics = run["metrics"]
    assert [point["step"] for point in metrics["history"]] == list(range(1, STEPS_AT[7] + STEPS_PER_EPOCH[4] + 1))
    assert [point["world_size"] for point in metrics["history"]][STEPS_AT[6]:STEPS_AT[6] + 1] == [2]
    assert metrics["world_size"] == metrics["history"][-1]["world_size"] == 4
