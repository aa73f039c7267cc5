"""Sweeps on the testbed: a 2x3 sweep of the demo emulator as one job array, six tasks in six folders,
the results table, `hpc-run status` per task, and one task requeued that resumes its own checkpoint."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import torch

from hpc_runner import job_control
from hpc_runner.checkpoint import FINGERPRINT_KEY

from .conftest import DRILLS, EMULATOR, SMALL, hpc_run, render, sbatch
from .test_faults_e2e import wait_for_line

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
SWEEP = ["--sweep", "entrypoint.params.lr=0.1,0.01", "--sweep", "entrypoint.params.hidden=8,16,32"]
EXPECTED = [(lr, hidden) for lr in (0.1, 0.01) for hidden in (8, 16, 32)]  # first key slowest


def task_dirs(out: Path) -> list[Path]:
    table = json.loads((out / "sweep.json").read_text())
    return [Path(task["output_dir"]) for task in table["tasks"]]


def own_values(folder: Path) -> tuple[float, int]:
    """The lr and width a task's checkpoint was trained with, from the fingerprint it carries."""
    params = torch.load(folder / "checkpoint.pt", weights_only=True)[FINGERPRINT_KEY]["params"]
    return params["lr"], params["hidden"]


def test_a_2x3_sweep_runs_as_one_array_of_six_tasks_each_in_its_own_folder(testbed: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = hpc_run(["submit", EMULATOR, *SMALL, "--set", f"output_dir={out}", *SWEEP, "--executor", "slurm", "--wait"],
                   testbed, tmp_path, timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    array_id = re.search(r"submitted job array (\d+): 6 task\(s\)", done.stdout).group(1)

    folders = task_dirs(out)
    assert len(set(folders)) == 6 and all(f.parent == out for f in folders)
    assert [own_values(f) for f in folders] == EXPECTED  # each checkpoint holds its own task's values
    assert all(json.loads((f / "run.json").read_text())["config"]["output_dir"] == str(f) for f in folders)

    tasks = job_control.array_tasks(array_id)
    assert [t.job_id for t in tasks] == [f"{array_id}_{i}" for i in range(6)]
    assert {t.state for t in tasks} == {"COMPLETED"}

    status = hpc_run(["status", array_id], testbed, tmp_path)
    assert status.returncode == 0 and "array of 6: 6 COMPLETED" in status.stdout
    assert len(re.findall(r"^  task \d+ +COMPLETED .* lr=0\.\d+_hidden=\d+$", status.stdout, re.M)) == 6, status.stdout

    results = hpc_run(["results", str(out), "--metric", "final_val_loss"], testbed, tmp_path)
    assert results.returncode == 0, results.stderr
    rows = [line for line in results.stdout.splitlines() if re.match(r"^\d+ +\d+ +0\.", line)]
    assert len(rows) == 6 and "6 of 6 task(s) report final_val_loss" in results.stdout
    losses = [float(row.split()[4]) for row in rows]
    assert losses == sorted(losses)  # best first
    assert (out / "sweep-final_val_loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_requeued_task_resumes_its_own_checkpoint_and_no_siblings(testbed: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    slow = [*DRILLS, *SMALL, "--set", "entrypoint.params.epochs=3", "--set", "entrypoint.params.step_sleep=0.05"]
    script = render([EMULATOR, *slow, "--set", f"output_dir={out}", *SWEEP], testbed, tmp_path)
    array_id = sbatch(script, testbed, tmp_path)
    # The task that carries the array's own id: `scontrol requeue <that id>` would requeue every task.
    for task in range(6):  # all started: a pending range would show the array's id too
        wait_for_line(tmp_path / f"emulator-{array_id}_{task}.out", r"hpc_runner: job")
    interrupted = next(i for i in range(6) if job_id_of(testbed, f"{array_id}_{i}") == array_id)
    log = tmp_path / f"emulator-{array_id}_{interrupted}.out"
    wait_for_line(log, r"epoch 2/3 - train")  # one checkpoint written, mid-run
    subprocess.run(["scancel", "--signal=USR1", f"{array_id}_{interrupted}"], env=testbed, check=True)

    final = job_control.wait_finished(array_id, poll_s=1, timeout_s=300)
    assert final.state.startswith("COMPLETED"), final
    text = log.read_text()
    assert "hpc_runner: requeueing job" in text and "(restart 1)" in text
    folders = task_dirs(tmp_path / "out")
    assert f"resuming from {folders[interrupted]}/checkpoint.pt" in text, text

    assert [own_values(f) for f in folders] == EXPECTED
    restarts = [json.loads((f / "metrics.json").read_text())["restart_count"] for f in folders]
    assert restarts == [int(i == interrupted) for i in range(6)]  # it alone came back, into its own folder


def job_id_of(testbed: dict[str, str], task: str) -> str:
    """An array task's own job id (SLURM_JOB_ID inside it)."""
    out = subprocess.run(["scontrol", "show", "job", "-o", task], env=testbed, capture_output=True, text=True, check=True)
    return re.search(r"\bJobId=(\d+)", out.stdout).group(1)
