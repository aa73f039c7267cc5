"""Faults on the real testbed: preemption and requeue, a dead rank, no srun, shared nodes, load."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import submitit
import torch

from hpc_runner import job_control as jobs
from hpc_runner.environment import expand_nodelist

from .conftest import CHECK, DRILLS, ECHO, EMULATOR, HPC_RUN, SMALL, entry_argv, render, sbatch

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
TRAIN = [*DRILLS, *SMALL, "--set", "entrypoint.params.epochs=3"]
JOBS = 20  # back-to-back submissions in the load drill (50 took two minutes of the suite for the same finding)


def wait_for_line(path: Path, pattern: str, timeout_s: float = 120) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and re.search(pattern, path.read_text(errors="replace")):
            return time.monotonic()
        time.sleep(0.2)
    raise AssertionError(f"{pattern!r} never appeared in {path}:\n{path.read_text() if path.exists() else '(no file)'}")


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def test_a_warning_to_rank_1_alone_checkpoints_requeues_once_and_ends_bitwise_equal(testbed: dict[str, str], tmp_path: Path) -> None:
    """The time-limit warning reaches one non-zero rank only: every rank stops at the same step, one
    checkpoint, one requeue, resume mid-epoch, COMPLETED with the weights of an uninterrupted run."""
    common = ["--mode", "gloo", "--nodes", "2", *TRAIN, "--set", "entrypoint.params.step_sleep=0.05"]
    ref_id = sbatch(render([EMULATOR, *common, "--set", f"output_dir={tmp_path}/ref"], testbed, tmp_path), testbed, tmp_path)
    int_id = sbatch(render([EMULATOR, *common, "--set", f"output_dir={tmp_path}/int"], testbed, tmp_path), testbed, tmp_path)
    log = tmp_path / f"emulator-{int_id}.out"
    wait_for_line(log, r"epoch 1/3 - train")
    os.kill(rank_pid(int_id, 1), signal.SIGUSR1)  # what --signal=USR1@60 sends, to rank 1 only
    sent = time.monotonic()
    requeued = wait_for_line(log, r"hpc_runner: requeueing job")
    assert jobs.wait_finished(ref_id, poll_s=0.5, timeout_s=240).state == "COMPLETED"
    final = jobs.wait_finished(int_id, poll_s=0.5, timeout_s=240)
    text = log.read_text()
    assert final.state == "COMPLETED", text
    assert text.count("requeueing job") == 1 and text.count("stopping at epoch") == 1
    assert re.search(r"resuming from .*step [1-9]\d* \(restart 1\)", text), text  # mid-epoch
    a, b = weights(tmp_path / "ref" / "checkpoint.pt"), weights(tmp_path / "int" / "checkpoint.pt")
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run diverged from the uninterrupted one"
    assert json.loads((tmp_path / "int" / "metrics.json").read_text())["restart_count"] == 1
    print(f"warning to rank 1 -> requeue requested {requeued - sent:.1f} s later")


def rank_pid(job_id: str, rank: int) -> int:
    """The pid of one rank of a testbed job (every node lives on this machine)."""
    for proc in Path("/proc").iterdir():
        try:
            environ = dict(item.split("=", 1) for item in (proc / "environ").read_text().split("\0") if "=" in item)
            cmdline = (proc / "cmdline").read_text()
        except (OSError, ValueError):
            continue
        if environ.get("SLURM_JOB_ID") == job_id and environ.get("SLURM_PROCID") == str(rank) and "hpc_runner.entrypoint" in cmdline:
            return int(proc.name)
    raise AssertionError(f"no rank {rank} of job {job_id} found")


def test_restart_bound_is_respected(testbed: dict[str, str], tmp_path: Path) -> None:
    script = render([EMULATOR, "--mode", "gloo", "--nodes", "1", *TRAIN, "--set", "entrypoint.params.step_sleep=0.05",
                     "--set", "requeue.max_restarts=0", "--set", f"output_dir={tmp_path}/out"], testbed, tmp_path)
    job_id = sbatch(script, testbed, tmp_path)
    log = tmp_path / f"emulator-{job_id}.out"
    wait_for_line(log, r"epoch 1/3 - train")
    subprocess.run(["scancel", "--signal=USR1", job_id], env=testbed, check=True)
    final = jobs.wait_finished(job_id, poll_s=0.5, timeout_s=120)
    assert final.state == "COMPLETED"
    assert "not requeueing job" in log.read_text() and "bound 0" in log.read_text()


def test_a_dead_rank_ends_the_whole_job_quickly(testbed: dict[str, str], tmp_path: Path) -> None:
    script = render([EMULATOR, "--mode", "gloo", "--nodes", "2", "--ntasks-per-node", "2", *TRAIN,
                     "--set", "entrypoint.params.epochs=50", "--set", "entrypoint.params.step_sleep=0.02",
                     "--set", "entrypoint.params.die_rank=3", "--set", "entrypoint.params.die_at_step=20",
                     "--set", f"output_dir={tmp_path}/out"], testbed, tmp_path)
    job_id = sbatch(script, testbed, tmp_path)
    log = tmp_path / f"emulator-{job_id}.out"
    killed_at = wait_for_line(log, r"fault drill, killing myself")
    final = jobs.wait_finished(job_id, poll_s=0.5, timeout_s=120)
    detected = time.monotonic() - killed_at
    text = log.read_text()
    assert final.state == "FAILED", text
    assert detected < 60
    second = expand_nodelist(final.nodes)[1]  # rank 3 is the second node's last task, wherever SLURM put the job
    assert re.search(rf"srun: error: {second}: task 3: Killed", text), text
    print(f"dead rank detected and job ended in {detected:.1f} s")


def test_entrypoint_in_the_batch_shell_fails_at_once(testbed: dict[str, str], tmp_path: Path) -> None:
    script = ("#!/bin/bash\n#SBATCH --nodes=2\n#SBATCH --ntasks-per-node=1\n#SBATCH --output=noshell-%j.out\n"
              f"{sys.executable} -m hpc_runner.entrypoint {shlex.join(entry_argv(tmp_path / 'out'))}\n")
    job_id = sbatch(script, testbed, tmp_path)
    final = jobs.wait_finished(job_id, poll_s=0.5, timeout_s=120)
    text = (tmp_path / f"noshell-{job_id}.out").read_text()
    assert final.state == "FAILED"
    assert "not a job step" in text and "launch the entrypoint with srun" in text


def test_two_jobs_on_one_node_get_different_ports(testbed: dict[str, str], tmp_path: Path) -> None:
    ids = []
    for name in ("a", "b"):
        script = render([CHECK, "--nodes", "1", "--set", "entrypoint.params.sizes_kib=[1,16,256,4096]",
                         "--set", "entrypoint.params.iterations=200", "--set", f"output_dir={tmp_path}/{name}"], testbed, tmp_path)
        ids.append(sbatch(script, testbed, tmp_path, "--nodelist=n3"))
    finals = [jobs.wait_finished(i, poll_s=0.5, timeout_s=180) for i in ids]
    assert [f.state for f in finals] == ["COMPLETED", "COMPLETED"]
    masters = [json.loads((tmp_path / n / "check.json").read_text())["master"] for n in ("a", "b")]
    assert masters[0] != masters[1]
    nodes = {json.loads((tmp_path / n / "check.json").read_text())["placement"][0]["node"] for n in ("a", "b")}
    assert nodes == {"n3"}


def test_twenty_jobs_back_to_back_none_lost_or_mixed(testbed: dict[str, str], tmp_path: Path) -> None:
    submitted = []
    for i in range(JOBS):
        result = subprocess.run([HPC_RUN, "submit", ECHO, "--executor", "slurm", "--set", f"output_dir={tmp_path}/run{i}",
                                 "--set", f"entrypoint.params.tag=job-{i}"], env=testbed, cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        job_id = re.search(r"submitted job (\d+)", result.stdout).group(1)
        log = Path(re.search(r"logs: (\S+)", result.stdout).group(1))
        submitted.append((i, job_id, log.parent))
    assert len({job_id for _, job_id, _ in submitted}) == JOBS
    completed = 0
    for i, job_id, folder in submitted:
        result = submitit.SlurmJob(folder=folder, job_id=job_id).result()
        assert result["tag"] == f"job-{i}" and result["output_dir"].endswith(f"run{i}")
        assert json.loads((tmp_path / f"run{i}" / "echo.json").read_text())["tag"] == f"job-{i}"
        completed += 1
    assert completed == JOBS


def test_submitit_job_requeued_on_signal_resumes_bitwise_equal(testbed: dict[str, str], tmp_path: Path) -> None:
    """hpc-run submit: the same signal as a rendered script (USR1), a checkpoint mid-epoch, one requeue, resume."""
    handles = {}
    for name in ("ref", "int"):
        result = subprocess.run([HPC_RUN, "submit", EMULATOR, "--executor", "slurm", "--nodes", "2", *TRAIN,
                                 "--set", "entrypoint.params.step_sleep=0.05", "--set", f"output_dir={tmp_path}/{name}"],
                                env=testbed, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        handles[name] = (re.search(r"submitted job (\d+)", result.stdout).group(1),
                         Path(re.search(r"logs: (\S+)", result.stdout).group(1)))
    job_id, log = handles["int"]
    wait_for_line(log, r"epoch 1/3 - train")
    subprocess.run(["scancel", "--signal=USR1", job_id], env=testbed, check=True)
    for jid, path in handles.values():
        results = submitit.SlurmJob(folder=path.parent, job_id=jid).results()
        assert results[0]["world_size"] == 2
    text = log.read_text()
    assert "stopping at epoch" in text and "requeueing job" in text and "resuming from" in text, text
    a, b = weights(tmp_path / "ref" / "checkpoint.pt"), weights(tmp_path / "int" / "checkpoint.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "int" / "metrics.json").read_text())["restart_count"] == 1
