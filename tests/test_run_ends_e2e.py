"""How runs end on the testbed: a signal to one rank, SIGTERM from `scontrol requeue`, a late signal, scancel.

Each job trains the demo emulator slowly enough (fault-drill sleeps) to be signalled mid-run.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from hpc_runner import job_control

from .conftest import DRILLS, EMULATOR, ROOT, SMALL, render, sbatch
from .test_faults_e2e import wait_for_line

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
SLOW = [*DRILLS, *SMALL, "--set", "entrypoint.params.epochs=3", "--set", "entrypoint.params.step_sleep=0.05"]


def start(testbed: dict[str, str], tmp_path: Path, *extra: str) -> tuple[str, Path]:
    job_id = sbatch(render([EMULATOR, "--mode", "gloo", "--nodes", "2", *SLOW, "--set", f"output_dir={tmp_path}/out", *extra],
                           testbed, tmp_path), testbed, tmp_path)
    return job_id, tmp_path / f"emulator-{job_id}.out"


def test_sigterm_from_scontrol_requeue_checkpoints_and_slurm_requeues(testbed: dict[str, str], tmp_path: Path) -> None:
    job_id, log = start(testbed, tmp_path)
    wait_for_line(log, r"epoch 1/3 - train")
    subprocess.run(["scontrol", "requeue", job_id], env=testbed, check=True)
    final = job_control.wait_finished(job_id, poll_s=0.5, timeout_s=240)
    text = log.read_text()
    assert final.state == "COMPLETED", text
    assert "stopping at epoch" in text and "hpc_runner: requeueing job" not in text  # SLURM requeued it, not us
    assert re.search(r"resuming from .*\(restart 1\)", text), text
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["restart_count"] == 1


def test_a_signal_after_the_last_epoch_does_not_requeue_a_finished_job(testbed: dict[str, str], tmp_path: Path) -> None:
    job_id, log = start(testbed, tmp_path, "--set", "entrypoint.function=tests.fixtures.run_ends:emulator_then_linger",
                        "--set", "entrypoint.params.linger_s=4", "--set", f"env.PYTHONPATH={ROOT}")
    wait_for_line(log, r"training finished; lingering")
    subprocess.run(["scancel", "--signal=USR1", job_id], env=testbed, check=True)
    final = job_control.wait_finished(job_id, poll_s=0.5, timeout_s=240)
    text = log.read_text()
    assert final.state == "COMPLETED", text
    assert "requeueing job" not in text and "(restart 1)" not in text
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["restart_count"] == 0


def test_a_plain_scancel_stays_cancelled(testbed: dict[str, str], tmp_path: Path) -> None:
    job_id, log = start(testbed, tmp_path)
    wait_for_line(log, r"epoch 1/3 - train")
    subprocess.run(["scancel", job_id], env=testbed, check=True)
    assert job_control.wait_finished(job_id, poll_s=0.5, timeout_s=120).state == "CANCELLED"
    time.sleep(5)
    assert job_control.status(job_id).state == "CANCELLED"  # nobody requeued it
    assert "requeueing job" not in log.read_text()


def script_job(testbed: dict[str, str], tmp_path: Path, script: str, args: list[str], *extra: str) -> tuple[str, Path]:
    spec = tmp_path / "script.yaml"
    spec.write_text(f"name: script\nmode: gloo\nnodes: 2\ntime: 10\noutput_dir: {tmp_path}/out\nenv: {{PYTHONPATH: {ROOT}}}\n"
                    f"entrypoint:\n  script: {ROOT / 'tests' / 'fixtures' / script}\n  args: {json.dumps(args)}\n")
    job_id = sbatch(render([str(spec), *extra], testbed, tmp_path), testbed, tmp_path)
    return job_id, tmp_path / f"script-{job_id}.out"


def test_a_plain_script_is_never_killed_by_the_warning_we_asked_for(testbed: dict[str, str], tmp_path: Path) -> None:
    job_id, log = script_job(testbed, tmp_path, "plain_script.py", [str(tmp_path / "out"), "4"])
    wait_for_line(log, r"plain script started")
    subprocess.run(["scancel", "--signal=USR1", job_id], env=testbed, check=True)
    assert job_control.wait_finished(job_id, poll_s=0.5, timeout_s=120).state == "COMPLETED", log.read_text()
    assert (tmp_path / "out" / "done").exists() and "requeueing" not in log.read_text()


def test_a_script_that_asks_for_our_requeue_gets_it(testbed: dict[str, str], tmp_path: Path) -> None:
    job_id, log = script_job(testbed, tmp_path, "polite_script.py", [str(tmp_path / "out"), "200"],
                             "--set", "requeue.handler=hpc_runner")
    time.sleep(3)
    wait_for_line(log, r"hpc_runner: job \d+ \(restart 0\)")
    time.sleep(2)
    subprocess.run(["scancel", "--signal=USR1", job_id], env=testbed, check=True)
    final = job_control.wait_finished(job_id, poll_s=0.5, timeout_s=240)
    text = log.read_text()
    assert final.state == "COMPLETED", text
    assert text.count("hpc_runner: requeueing job") == 1
    assert re.search(r"script stopped at step \d+ of 200 \(restart 0\)", text)
    assert "script stopped at step 200 of 200 (restart 1)" in text


def test_lightnings_own_auto_requeue_works_unchanged(testbed: dict[str, str], tmp_path: Path) -> None:
    pytest.importorskip("lightning", reason="PyTorch Lightning is an optional test extra (make test installs it)")
    job_id, log = script_job(testbed, tmp_path, "lightning_train.py", [str(tmp_path / "out"), "2", "1", "4"])
    wait_for_line(log, r"lightning epoch 0 done \(restart 0\)", timeout_s=180)
    subprocess.run(["scancel", "--signal=USR1", job_id], env=testbed, check=True)
    final = job_control.wait_finished(job_id, poll_s=0.5, timeout_s=300)
    text = log.read_text()
    assert final.state == "COMPLETED", text
    assert "hpc_runner: requeueing job" not in text  # one party: Lightning requeued, not us
    assert "lightning epoch 3 done (restart 1)" in text, text
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result == {"epochs": 4, "global_step": result["global_step"], "restart": 1, "world_size": 2}
    assert list((tmp_path / "out").glob("hpc_ckpt_*.ckpt")), "Lightning saved no checkpoint of its own"
