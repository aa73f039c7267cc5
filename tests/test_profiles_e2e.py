"""On the testbed: a project's site profile moves a job to the `long` partition (nodes n3, n4), by both paths.

The project is a fresh git work tree whose hpc_runner.yaml holds profile `longq`; the user file
(HPC_RUNNER_USER_CONFIG, a temporary file) holds a `longq` too, which the project's overrides key by
key. The testbed has no module system: a stand-in `module` on PATH records each `module load`.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from hpc_runner import job_control
from hpc_runner.environment import expand_nodelist

from .conftest import ROOT, hpc_run, render, sbatch

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

LONG_NODES = {"n3", "n4"}  # the testbed's `long` partition


def project(tmp_path: Path, testbed: dict[str, str]) -> tuple[Path, dict[str, str]]:
    """A git work tree with hpc_runner.yaml and jobs/probe.yaml; the environment to run hpc-run in."""
    repo = tmp_path / "repo"
    (repo / "jobs").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "hpc_runner.yaml").write_text(yaml.safe_dump({"profiles": {"longq": {
        "partition": "long", "mode": "gloo", "modules": ["site/1.0"], "setup": ["echo project-setup-ran"],
        "env": {"PROFILE_MARK": "project"}}}}))
    user = tmp_path / "user-profiles.yaml"
    user.write_text(yaml.safe_dump({"profiles": {"longq": {
        "partition": "debug", "setup": ["echo user-setup-ran"], "env": {"PROFILE_MARK": "user", "USER_MARK": "user a b"}}}}))
    (repo / "jobs" / "probe.yaml").write_text(yaml.safe_dump({
        "name": "profiled", "nodes": 2, "ntasks_per_node": 1, "time": 5,
        "entrypoint": {"script": str(ROOT / "tests" / "fixtures" / "probe.py"), "args": [str(tmp_path / "run" / "dumps")]}}))
    fake_bin = tmp_path / "fakebin"
    fake_bin.mkdir()
    (fake_bin / "module").write_text('#!/bin/bash\necho "module $*" >> "$MODULE_LOG"\n')
    (fake_bin / "module").chmod(0o755)
    env = {**testbed, "PATH": f"{fake_bin}:{testbed['PATH']}", "MODULE_LOG": str(tmp_path / "module.log"),
           "HPC_RUNNER_USER_CONFIG": str(user)}
    return repo, env


def accounting(job_id: str, env: dict[str, str]) -> tuple[str, set[str], str]:
    """Partition, nodes and state of the job as slurmdbd recorded them."""
    out = subprocess.run(["sacct", "-j", job_id, "-X", "-n", "-P", "-o", "Partition,NodeList,State"], env=env,
                         capture_output=True, text=True, check=True).stdout.strip().splitlines()
    partition, nodelist, state = out[0].split("|")
    return partition, set(expand_nodelist(nodelist)), state


def check_ranks(dumps: Path) -> None:
    found = [json.loads(p.read_text())["env"] for p in sorted(dumps.glob("rank*.json"))]
    assert len(found) == 2
    for env in found:
        assert (env["PROFILE_MARK"], env["USER_MARK"]) == ("project", "user a b")  # env merged key by key, project wins
        assert env["SLURM_JOB_PARTITION"] == "long" and env["SLURMD_NODENAME"] in LONG_NODES


def test_profile_selects_the_long_partition_for_render_and_submit(testbed: dict[str, str], tmp_path: Path) -> None:
    repo, env = project(tmp_path, testbed)
    spec = str(repo / "jobs" / "probe.yaml")
    run_dir = tmp_path / "run"  # not in the repository: the project is found from the spec
    run_dir.mkdir(exist_ok=True)

    script = render([spec, "--profile", "longq", "--set", f"output_dir={tmp_path}/out"], env, run_dir)
    assert "#SBATCH --partition=long" in script and "module load site/1.0\n" in script
    job_id = sbatch(script, env, run_dir)
    final = job_control.wait_finished(job_id, poll_s=0.5, timeout_s=240)
    log = (run_dir / f"profiled-{job_id}.out").read_text()
    assert final.state == "COMPLETED", log
    assert log.index("user-setup-ran") < log.index("project-setup-ran")  # site lines in precedence order
    partition, nodes, state = accounting(job_id, env)
    assert (partition, state) == ("long", "COMPLETED") and nodes == LONG_NODES
    check_ranks(run_dir / "dumps")

    submitted = hpc_run(["submit", spec, "--profile", "longq", "--executor", "slurm", "--wait",
                         "--set", f"output_dir={tmp_path}/out2", "--set", f"entrypoint.args=[{run_dir}/dumps2]"], env, run_dir)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    job_id2 = re.search(r"submitted job (\d+)", submitted.stdout).group(1)
    partition, nodes, state = accounting(job_id2, env)
    assert (partition, state) == ("long", "COMPLETED") and nodes == LONG_NODES
    check_ranks(run_dir / "dumps2")
    assert (tmp_path / "module.log").read_text().splitlines() == ["module load site/1.0"] * 2  # one per job


def test_unknown_profile_submits_nothing_and_exits_2(testbed: dict[str, str], tmp_path: Path) -> None:
    repo, env = project(tmp_path, testbed)
    result = hpc_run(["submit", str(repo / "jobs" / "probe.yaml"), "--profile", "longqq", "--executor", "slurm"], env, tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "profile 'longqq' (--profile) is in no profiles file; known profiles: longq" in result.stderr
    assert "Traceback" not in result.stderr and "submitted job" not in result.stdout
