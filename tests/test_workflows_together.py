"""Where the workflow features meet: chains read with a site profile, sweeps and chains, follow-ups in
another project and their code snapshot, render --explain of a chain and a sweep."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from hpc_runner import chain, cli, dependency, snapshot

from .conftest import ROOT

JOBS = ROOT / "jobs"


def project(root: Path) -> Path:
    """A git work tree holding the chain's specs, with a site profile."""
    (root / "jobs").mkdir(parents=True)
    for name in ("train_then_evaluate.yaml", "evaluate.yaml"):
        shutil.copy(JOBS / name, root / "jobs" / name)
    (root / "hpc_runner.yaml").write_text(yaml.safe_dump({"profiles": {"cluster": {"partition": "long"}}}))
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def test_follow_ups_are_found_beside_their_spec_when_a_profile_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       runner: CliRunner) -> None:
    root = project(tmp_path / "proj")
    decoy = yaml.safe_load((JOBS / "evaluate.yaml").read_text()) | {"name": "decoy"}
    (root / "evaluate.yaml").write_text(yaml.safe_dump(decoy))  # beside the current directory, not beside the spec
    monkeypatch.chdir(root)
    result = runner.invoke(cli.cli, ["render", "jobs/train_then_evaluate.yaml", "--profile", "cluster"])
    assert result.exit_code == 0, result.output
    assert f"#  evaluate ({root}/jobs/evaluate.yaml): afterok on this job" in result.output
    assert "decoy" not in result.output and "#SBATCH --partition=long" in result.output


def test_a_sweep_with_follow_ups_is_refused_before_anything_runs(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli.cli, ["render", str(JOBS / "train_then_evaluate.yaml"), "--set", f"output_dir={tmp_path}",
                                     "--sweep", "entrypoint.params.lr=0.1,0.01"])
    assert result.exit_code == 2 and "a sweep's follow-ups would wait for all 2 tasks" in result.output
    assert "--after ARRAY_TASK" in result.output


def test_a_follow_up_with_a_sweep_block_is_refused(tmp_path: Path, runner: CliRunner) -> None:
    child = yaml.safe_load((JOBS / "emulator.yaml").read_text()) | {"sweep": {"entrypoint.params.lr": [0.1, 0.01]}}
    (tmp_path / "child.yaml").write_text(yaml.safe_dump(child))
    parent = yaml.safe_load((JOBS / "evaluate.yaml").read_text()) | {"then": [{"spec": "child.yaml"}]}
    (tmp_path / "parent.yaml").write_text(yaml.safe_dump(parent))
    result = runner.invoke(cli.cli, ["render", str(tmp_path / "parent.yaml")])
    assert result.exit_code == 2 and "has a sweep: block, and a follow-up runs as one job" in result.output


def test_a_follow_up_in_another_project_runs_a_snapshot_of_its_own_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, other = project(tmp_path / "a"), project(tmp_path / "b")
    spec = yaml.safe_load((JOBS / "train_then_evaluate.yaml").read_text())
    spec["then"] = [{"spec": str(other / "jobs" / "evaluate.yaml")}]
    (first / "jobs" / "train_then_evaluate.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.chdir(first)
    request = cli.load_request("jobs/train_then_evaluate.yaml", {}, ("output_dir=runs/a",), snapshot=True)
    link = chain.plan("jobs/train_then_evaluate.yaml", request, cli._child_loader({}))
    child = link.children[0].child_request(request, "77", None)
    assert request.code.source == str(first) and child.code.source == str(other)
    shutil.copy(JOBS / "train_then_evaluate.yaml", first / "jobs" / "same.yaml")  # its follow-up beside it
    same = cli.load_request("jobs/same.yaml", {}, ("output_dir=runs/a",), snapshot=True)
    assert chain.plan("jobs/same.yaml", same).children[0].child_request(same, "77", None).code == same.code


def test_explain_shows_a_chain_and_the_sweep_and_after_flags(runner: CliRunner) -> None:
    result = runner.invoke(cli.cli, ["render", str(JOBS / "train_then_evaluate.yaml"), "--explain", "--after", "123",
                                     "--sweep", "entrypoint.params.seed=1,2"])
    assert result.exit_code == 0, result.output
    assert "then[0].spec" in result.output and str(JOBS / "evaluate.yaml") in result.output
    assert "sweep.entrypoint.params.seed  [1, 2]  --sweep" in result.output and "after  afterok:123  --after" in result.output


def test_a_dependency_on_a_whole_array_reads_back_as_the_arrays_id() -> None:
    found = dependency.from_directive("afterok:4242_*(unfulfilled)")
    assert found is not None and found.job_ids == ("4242",)


def test_an_already_taken_snapshot_is_used_as_it_is(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    said: list[str] = []
    planned = snapshot.Snapshot(source=str(tmp_path), path=str(tmp_path / "code"), identity="x", commit=None, files=(),
                                size=0, python_path=())
    with snapshot.taken(planned, said.append):
        pass
    assert said == []  # nothing copied again (a chain's follow-ups share their first job's copy)
