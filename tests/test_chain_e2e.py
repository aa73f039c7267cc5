"""On the testbed: train, then evaluate (then:) with SLURM dependencies, and a chain whose parent fails.

A child starts only after its parent succeeded (sacct: child Start >= parent End) and evaluates the
checkpoint its parent wrote. When the parent fails, the child never starts: SLURM cancels the one
hpc-run submitted (--kill-on-invalid-dep=yes) and holds one submitted by plain sbatch --dependency
pending forever; `hpc-run status` says which, and why.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from hpc_runner import job_control

from .conftest import ROOT, SMALL, hpc_run, render, sbatch

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CHAIN = str(ROOT / "jobs" / "train_then_evaluate.yaml")
EVALUATE = str(ROOT / "jobs" / "evaluate.yaml")


def submitted_ids(stdout: str) -> list[str]:
    """The job ids `hpc-run submit` printed, in order (the parent first)."""
    return re.findall(r"^submitted job (\d+) ", stdout, flags=re.MULTILINE)


def accounting(job_id: str, env: dict[str, str]) -> dict[str, str]:
    """sacct's State, Start and End of one job (allocation line only)."""
    out = subprocess.run(["sacct", "-j", job_id, "-X", "-n", "-P", "-o", "JobID,State,Start,End"], env=env,
                         capture_output=True, text=True, check=True).stdout
    row = next(line.split("|") for line in out.splitlines() if line.split("|")[0] == job_id)
    return {"State": row[1], "Start": row[2], "End": row[3]}


def test_the_child_starts_after_its_parent_succeeded_and_evaluates_its_checkpoint(
        testbed: dict[str, str], tmp_path: Path) -> None:
    done = hpc_run(["submit", CHAIN, "--executor", "slurm", "--set", f"output_dir={tmp_path / 'train'}", *SMALL],
                   testbed, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    parent, child = submitted_ids(done.stdout)
    assert f"then: {EVALUATE} waits for afterok:{parent}" in done.stdout
    assert job_control.wait_finished(child, poll_s=1, timeout_s=150).state == "COMPLETED", \
        hpc_run(["status", child], testbed).stdout
    trained, evaluated = accounting(parent, testbed), accounting(child, testbed)
    assert trained["State"] == "COMPLETED"
    assert evaluated["Start"] >= trained["End"], (trained, evaluated)  # ISO times compare as text
    evaluation = json.loads((tmp_path / "runs" / "evaluate" / "eval.json").read_text())
    metrics = json.loads((tmp_path / "train" / "metrics.json").read_text())
    assert evaluation["checkpoint"] == str(tmp_path / "train" / "checkpoint.pt")
    assert evaluation["parent_job_id"] == parent
    assert evaluation["checkpoint_epoch"] == metrics["epochs"] == 2
    assert evaluation["mse"] == pytest.approx(metrics["final_val_loss"], rel=1e-5)  # the parent's own last score
    status = hpc_run(["status", child], testbed).stdout
    assert status.startswith(f"job {child}: COMPLETED") and f"after: afterok:{parent}" in status


def test_a_child_whose_parent_failed_never_runs_and_status_says_why(testbed: dict[str, str], tmp_path: Path) -> None:
    bad_entry = ["--set", "entrypoint.function=hpc_runner.demo.no_such_module:train"]
    done = hpc_run(["submit", CHAIN, "--executor", "slurm", "--set", f"output_dir={tmp_path / 'train'}", *SMALL,
                    *bad_entry], testbed, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    parent, cancelled = submitted_ids(done.stdout)
    assert f"#SBATCH --dependency=afterok:{parent}" in render([EVALUATE, "--after", parent], testbed, tmp_path)
    # The same child by hand, with plain sbatch --dependency (no kill-on-invalid-dep): SLURM keeps it pending
    # with Reason=DependencyNeverSatisfied. (SLURM 22.05's `sbatch --kill-on-invalid-dep=no` does not undo the
    # rendered script's `=yes`: both flags are set and the kill wins.)
    held = sbatch(render([EVALUATE], testbed, tmp_path), testbed, tmp_path, f"--dependency=afterok:{parent}")
    try:
        assert job_control.wait_finished(parent, poll_s=1, timeout_s=120).state == "FAILED"
        assert job_control.wait_finished(cancelled, poll_s=1, timeout_s=60).state.startswith("CANCELLED")
        assert accounting(cancelled, testbed)["Start"] in ("None", "Unknown")  # it never started
        said = hpc_run(["status", cancelled], testbed)
        assert said.returncode == 0, said.stderr
        assert said.stdout.splitlines()[0] == \
            f"job {cancelled}: CANCELLED (never ran: it waited for afterok:{parent} and job {parent} ended FAILED)"
        pending = hpc_run(["status", held], testbed).stdout.splitlines()[0]
        assert pending == (f"job {held}: PENDING, will never start: job {parent} ended FAILED; "
                           f"cancel it with hpc-run cancel {held}")
        assert not (tmp_path / "runs" / "evaluate" / "eval.json").exists()
    finally:
        hpc_run(["cancel", held], testbed)
