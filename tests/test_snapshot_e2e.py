"""Code snapshots on the real testbed: a queued job runs the code as it was at submit, not a later edit.

The `long` partition's two nodes are held by a blocker job of this test, so the jobs it submits wait
in the queue; the source file is edited while they wait; then the blocker goes. The snapshot job runs
the copy (and, requeued once, resumes its checkpoint from the same copy); the --no-snapshot job runs
the edit.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from hpc_runner import job_control

from .conftest import HPC_RUN

pytestmark = pytest.mark.slurm

TRAIN = '''import os
import subprocess
import time

MARKER = "{marker}"


def run(ctx, requeue=False):
    """Say which code ran, from where; with requeue, checkpoint and have SLURM rerun the job once."""
    state = ctx.load_checkpoint()
    with open(ctx.output_dir / "ran.txt", "a") as handle:
        handle.write(f"restart={{ctx.restart_count}} marker={{MARKER}} file={{__file__}} cwd={{os.getcwd()}} "
                     f"resumed={{state['step'] if state else None}}\\n")
    if requeue and ctx.restart_count == 0:
        ctx.save_checkpoint({{"step": 1}})
        subprocess.run(["scontrol", "requeue", os.environ["SLURM_JOB_ID"]], check=True)
        time.sleep(120)  # SLURM stops this run and starts the job again
    return MARKER
'''

SPEC = """name: frozen
mode: threading
time: 5
entrypoint:
  function: pkg.train:run
"""


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                   capture_output=True)


def state(job_id: str, env: dict[str, str]) -> str:
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], env=env, capture_output=True, text=True)
    return out.stdout.strip()


def submit(project: Path, env: dict[str, str], *args: str) -> tuple[str, str]:
    """``hpc-run submit`` from inside the project to the long partition; returns the job id and what it printed."""
    done = subprocess.run([HPC_RUN, "submit", "job.yaml", "--executor", "slurm", "--set", "partition=long", *args],
                          cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return re.search(r"submitted job (\d+)", done.stdout).group(1), done.stdout


def test_a_queued_job_runs_its_snapshot_not_a_later_edit(testbed: dict[str, str], tmp_path: Path) -> None:
    project = tmp_path / "proj"
    (project / "pkg").mkdir(parents=True)
    (project / "pkg" / "__init__.py").write_text("")
    train = project / "pkg" / "train.py"
    train.write_text(TRAIN.format(marker="submitted"))
    (project / "job.yaml").write_text(SPEC)
    (project / ".gitignore").write_text("runs/\n")
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "first")

    blocker = subprocess.run(["sbatch", "--parsable", "--partition=long", "--nodes=2", "--exclusive", "--time=5",
                              f"--output={tmp_path}/blocker.out", "--wrap", "sleep 300"],
                             env=testbed, capture_output=True, text=True, check=True).stdout.strip().split(";")[0]
    try:
        deadline = time.monotonic() + 180
        while state(blocker, testbed) != "RUNNING":  # other people's jobs may hold the nodes first
            assert time.monotonic() < deadline, f"blocker {blocker} never started: {state(blocker, testbed)}"
            time.sleep(1)
        frozen, said = submit(project, testbed, "--set", "entrypoint.params.requeue=true",
                              "--set", f"output_dir={tmp_path}/frozen")
        live, _ = submit(project, testbed, "--no-snapshot", "--set", f"output_dir={tmp_path}/live")
        assert re.search(r"code snapshot: [0-9a-f]{8} \(clean\), 4 files, ", said), said
        assert state(frozen, testbed) == "PENDING" and state(live, testbed) == "PENDING"
        train.write_text(TRAIN.format(marker="edited"))  # while both wait in the queue
        assert state(frozen, testbed) == "PENDING" and state(live, testbed) == "PENDING"
    finally:
        subprocess.run(["scancel", blocker], env=testbed, check=False)

    for job_id in (frozen, live):
        assert job_control.wait_finished(job_id, poll_s=1, timeout_s=240).state == "COMPLETED"
    copy = next((tmp_path / "frozen" / "code").iterdir())
    assert (tmp_path / "frozen" / "ran.txt").read_text().splitlines() == [
        f"restart=0 marker=submitted file={copy}/pkg/train.py cwd={copy} resumed=None",
        f"restart=1 marker=submitted file={copy}/pkg/train.py cwd={copy} resumed=1",  # requeued: same copy, resumed
    ]
    assert (tmp_path / "live" / "ran.txt").read_text().splitlines() == [
        f"restart=0 marker=edited file={project}/pkg/train.py cwd={project} resumed=None"]
    assert not (tmp_path / "live" / "code").exists()
    shown = subprocess.run([HPC_RUN, "status", frozen], env=testbed, capture_output=True, text=True, check=True).stdout
    assert re.search(rf"code: snapshot [0-9a-f]{{8}} \(clean\) in {re.escape(str(copy))}", shown), shown
