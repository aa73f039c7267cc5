"""Chains without a cluster: --after parsing, then: validation, what render and dry runs say, local chains,
the evaluate step's refusals, and the status sentence of a job that never ran (fake scontrol and sacct)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from hpc_runner import chain, chain_status, dependency, render, request, spec, submit
from hpc_runner.cli import cli
from hpc_runner.dependency import Dependency
from hpc_runner.errors import InputError, SpecError
from hpc_runner.job_control import JobStatus
from hpc_runner.ledger import JobRecord

from .conftest import HPC_RUN, ROOT, SMALL
from .test_one_job import compare, directives

CHAIN = str(ROOT / "jobs" / "train_then_evaluate.yaml")
EVALUATE = str(ROOT / "jobs" / "evaluate.yaml")


# --- --after: SLURM's dependency grammar --------------------------------------------------------------

@pytest.mark.parametrize(("values", "directive"), [
    (["123"], "afterok:123"),
    (["afterok:123"], "afterok:123"),
    (["afterany:123"], "afterany:123"),
    (["123_4"], "afterok:123_4"),
    (["afterok:1:2"], "afterok:1:2"),
    (["1", "2", "afterany:3"], "afterok:1:2,afterany:3"),
    ([" 7 "], "afterok:7"),
])
def test_after_values_become_one_dependency(values: list[str], directive: str) -> None:
    after = dependency.parse_after(values)
    assert after is not None and after.directive() == directive
    assert dependency.from_directive(directive) == after  # what the record keeps reads back the same


@pytest.mark.parametrize(("value", "said"), [
    ("12x", "'12x' is not a SLURM job id"),
    ("afterok:", "no job id after 'afterok'"),
    ("afternotok:12", "'afternotok' is not a condition hpc-run submits"),
    ("singleton", "'singleton' is not a condition"),
    ("123_", "'123_' is not a SLURM job id"),
    ("1;rm -rf ~", "is not a SLURM job id"),
    ("afterok:1,afterany:2", "is not a SLURM job id"),
    ("", "no job id after 'afterok'"),
])
def test_bad_after_values_are_refused_with_the_grammar(value: str, said: str) -> None:
    with pytest.raises(InputError, match="hint: write --after 123") as caught:
        dependency.parse_after([value])
    assert said in str(caught.value)


def test_no_after_is_no_dependency() -> None:
    assert dependency.parse_after([]) is None
    assert dependency.directives(None) == ()


def test_scontrols_marks_are_read_past() -> None:
    assert dependency.from_directive("afterok:662(failed)") == Dependency((("afterok", "662"),))
    assert dependency.from_directive("afterok:5(unfulfilled),afterany:6(unfulfilled)").directive() == "afterok:5,afterany:6"
    assert dependency.from_directive("(null)") is None
    assert dependency.from_directive("singleton") is None


def test_render_prints_the_dependency_and_cancel_when_it_can_never_hold(runner) -> None:
    result = runner.invoke(cli, ["render", EVALUATE, "--after", "123", "--after", "afterany:45_6"])
    assert result.exit_code == 0, result.output
    found = directives(result.output)
    assert found["dependency"] == "afterok:123,afterany:45_6"
    assert found["kill-on-invalid-dep"] == "yes"
    plain = directives(runner.invoke(cli, ["render", EVALUATE]).output)
    assert "dependency" not in plain and "kill-on-invalid-dep" not in plain


def test_a_bad_after_exits_2_without_a_traceback(runner) -> None:
    result = runner.invoke(cli, ["submit", EVALUATE, "--after", "abc", "--dry-run", "--executor", "slurm"])
    assert result.exit_code == 2
    assert "--after 'abc': 'abc' is not a condition" in result.output and "Traceback" not in result.output


def test_dry_run_shows_the_dependency_submitit_would_send(runner) -> None:
    result = runner.invoke(cli, ["submit", EVALUATE, "--after", "afterany:77", "--dry-run", "--executor", "slurm"])
    assert result.exit_code == 0, result.output
    assert "#SBATCH --dependency=afterany:77" in result.output
    assert "#SBATCH --kill-on-invalid-dep=yes" in result.output


def test_render_and_submit_build_one_job_with_a_dependency(tmp_path: Path) -> None:
    after = dependency.parse_after(["afterok:10:11_2"])
    req = request.build(spec.load(EVALUATE), after=after)
    assert submit.slurm_parameters(req)["additional_parameters"]["dependency"] == "afterok:10:11_2"
    compare(req, tmp_path)  # directives, srun options, rank environment and argv: the same in both texts


def test_the_local_executor_refuses_after(runner) -> None:
    result = runner.invoke(cli, ["submit", EVALUATE, "--after", "12", "--executor", "local", "--dry-run"])
    assert result.exit_code == 2
    assert "the local executor runs no SLURM jobs" in result.output


# --- then: follow-up specs ------------------------------------------------------------------------------

def write(folder: Path, name: str, extra: str = "") -> Path:
    path = folder / name
    path.write_text(f"name: {path.stem}\nmode: threading\ntime: 5\nentrypoint:\n  function: hpc_runner.demo.echo:run\n{extra}")
    return path


@pytest.mark.parametrize(("then", "said"), [
    ("then: evaluate.yaml\n", "expected a list of steps"),
    ("then: [evaluate.yaml]\n", "then[0]': expected a mapping with 'spec'"),
    ("then: [{after: afterok}]\n", "'spec' must name the follow-up job's spec file"),
    ("then: [{spec: e.yaml, after: afternotok}]\n", "after: 'afternotok' is not one of afterok, afterany"),
    ("then: [{spec: e.yaml, when: later}]\n", "unknown key(s) when"),
    ("then: [{spec: e.yaml, set: [a, b]}]\n", "'set' is a mapping of dotted spec keys"),
])
def test_bad_then_steps_are_refused_by_key(tmp_path: Path, then: str, said: str) -> None:
    path = write(tmp_path, "train.yaml", then)
    with pytest.raises(SpecError) as caught:
        spec.load(path)
    assert str(path) in str(caught.value) and said in str(caught.value)
    assert "hint: then: [{spec:" in str(caught.value)


def test_then_paths_are_relative_to_the_spec_and_overrides_reach_the_child(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "child.yaml", "  params: {tag: from-file}\n")
    parent = write(tmp_path, "train.yaml", "then:\n  - spec: sub/child.yaml\n    after: afterany\n"
                                           "    set: {entrypoint.params.tag: from-parent}\n")
    job = spec.load(parent)
    assert job.then[0].spec == str(tmp_path / "sub" / "child.yaml") and job.then[0].after == "afterany"
    links = chain.plan(str(parent), request.build(job, cwd=str(tmp_path)))
    (child,) = links.children
    assert child.after == "afterany"
    assert child.request.config.entry.params == {"tag": "from-parent"}
    assert dict(child.request.env)[dependency.PARENT_OUTPUT_DIR_VAR] == links.request.output_dir


def test_a_child_learns_its_parents_output_directory_and_job_id(tmp_path: Path) -> None:
    write(tmp_path, "child.yaml")
    parent = write(tmp_path, "train.yaml", "then: [{spec: child.yaml}]\n")
    links = chain.plan(str(parent), request.build(spec.load(parent)))
    req = links.children[0].child_request(links.request, "4242", Dependency((("afterok", "4242"),)))
    script = render.render(req)
    assert f"export {dependency.PARENT_JOB_ID_VAR}=4242" in script
    assert f"export {dependency.PARENT_OUTPUT_DIR_VAR}={links.request.output_dir}" in script
    assert "#SBATCH --dependency=afterok:4242" in script


def test_a_missing_then_file_is_named_with_its_key(tmp_path: Path) -> None:
    parent = write(tmp_path, "train.yaml", "then: [{spec: gone.yaml}]\n")
    with pytest.raises(SpecError, match=r"key 'then\[0\].spec': .*gone.yaml does not exist"):
        chain.plan(str(parent), request.build(spec.load(parent)))


@pytest.mark.parametrize("loop", ["self", "two", "three"])
def test_a_chain_that_comes_back_is_refused(tmp_path: Path, loop: str) -> None:
    if loop == "self":
        write(tmp_path, "a.yaml", "then: [{spec: a.yaml}]\n")
    elif loop == "two":
        write(tmp_path, "a.yaml", "then: [{spec: b.yaml}]\n")
        write(tmp_path, "b.yaml", "then: [{spec: a.yaml}]\n")
    else:
        write(tmp_path, "a.yaml", "then: [{spec: b.yaml}]\n")
        write(tmp_path, "b.yaml", "then: [{spec: c.yaml}]\n")
        write(tmp_path, "c.yaml", "then: [{spec: b.yaml}]\n")
    first = tmp_path / "a.yaml"
    with pytest.raises(SpecError, match="the chain comes back to") as caught:
        chain.plan(str(first), request.build(spec.load(first)))
    assert {"self": "a.yaml -> a.yaml", "two": "a.yaml -> b.yaml -> a.yaml",
            "three": "b.yaml -> c.yaml -> b.yaml"}[loop] in str(caught.value)


def test_the_same_spec_twice_in_one_chain_is_no_cycle(tmp_path: Path) -> None:
    write(tmp_path, "leaf.yaml")
    write(tmp_path, "b.yaml", "then: [{spec: leaf.yaml}]\n")
    first = write(tmp_path, "a.yaml", "then: [{spec: b.yaml}, {spec: leaf.yaml, after: afterany}]\n")
    links = chain.plan(str(first), request.build(spec.load(first)))
    assert [c.request.name for c in links.children] == ["b", "leaf"]
    assert [c.request.name for c in links.children[0].children] == ["leaf"]


def test_render_says_what_then_would_submit(runner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["render", CHAIN])
    assert result.exit_code == 0, result.output
    script, _, notes = result.output.partition("# then: `hpc-run submit` submits")
    assert "srun " in script and "#SBATCH --dependency" not in script  # the parent's own script, unchanged
    assert f"evaluate ({EVALUATE}): afterok on this job" in notes
    child = subprocess.run(["bash", "-n"], input=result.output, text=True, capture_output=True)
    assert child.returncode == 0, child.stderr  # still a script sbatch can take


def test_nested_then_is_described_under_its_parent(tmp_path: Path) -> None:
    write(tmp_path, "c.yaml")
    write(tmp_path, "b.yaml", "then: [{spec: c.yaml, after: afterany}]\n")
    first = write(tmp_path, "a.yaml", "then: [{spec: b.yaml}]\n")
    lines = chain.notes(chain.plan(str(first), request.build(spec.load(first))))
    assert lines[1].startswith("#  b (") and "afterok on this job" in lines[1]
    assert lines[2].startswith("#    c (") and "afterany on job b" in lines[2]


def test_a_job_without_then_renders_no_notes(runner) -> None:
    assert "# then:" not in runner.invoke(cli, ["render", EVALUATE]).output


# --- local chains: one step after another --------------------------------------------------------------

def submit_chain(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HPC_RUN, "submit", CHAIN, "--executor", "local", "--set", f"output_dir={tmp_path / 'train'}",
                           *SMALL, "--set", "entrypoint.params.epochs=1", *extra],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)


@pytest.mark.slow
def test_a_local_chain_evaluates_the_checkpoint_its_parent_wrote(tmp_path: Path) -> None:
    done = submit_chain(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    parent_id = done.stdout.split("submitted job ")[1].split()[0]
    assert f"then: starting {EVALUATE} now that job {parent_id} ended COMPLETED" in done.stdout
    evaluation = json.loads((tmp_path / "runs" / "evaluate" / "eval.json").read_text())
    trained = json.loads((tmp_path / "train" / "metrics.json").read_text())
    assert evaluation["checkpoint"] == str(tmp_path / "train" / "checkpoint.pt")
    assert evaluation["parent_job_id"] == parent_id and evaluation["samples"] == 256
    assert evaluation["mse"] == pytest.approx(trained["final_val_loss"], rel=1e-5)


@pytest.mark.slow
def test_a_local_chain_stops_where_its_parent_failed(tmp_path: Path) -> None:
    done = submit_chain(tmp_path, "--set", "entrypoint.function=hpc_runner.demo.missing:train")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"then: not starting {EVALUATE}: it runs afterok, and job" in done.stdout
    assert "ended FAILED" in done.stdout and "cannot load entrypoint function" in done.stderr
    assert not (tmp_path / "runs" / "evaluate").exists()


# --- the evaluate and export steps ---------------------------------------------------------------------

class FakeContext:
    """What evaluate needs of a RunContext: rank 0 of one, an output directory, print."""

    def __init__(self, out: Path) -> None:
        self.output_dir, self.is_main = out, True

    def print(self, *args: object) -> None:
        print(*args)


def test_evaluate_refuses_a_run_without_a_checkpoint(tmp_path: Path) -> None:
    from hpc_runner.demo.evaluate import evaluate

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"config": {"entry": {"target": "hpc_runner.demo.emulator:train", "params": {}},
                                                         "export": None}}))
    with pytest.raises(InputError, match=r"has no checkpoint \(checkpoint.pt\)"):
        evaluate(FakeContext(tmp_path / "out"), run_dir=str(run))
    assert not (tmp_path / "out" / "eval.json").exists()


def test_evaluate_refuses_a_directory_that_is_no_run(tmp_path: Path) -> None:
    from hpc_runner.demo.evaluate import evaluate

    with pytest.raises(InputError, match="it has no run.json"):
        evaluate(FakeContext(tmp_path / "out"), run_dir=str(tmp_path))


@pytest.mark.parametrize(("run_dir", "environ", "found"), [
    ("runs/a", {}, "runs/a"),
    (None, {dependency.PARENT_OUTPUT_DIR_VAR: "/x/train"}, "/x/train"),
    ("runs/a", {dependency.PARENT_OUTPUT_DIR_VAR: "/x/train"}, "runs/a"),  # the params win
])
def test_a_step_finds_the_run_it_works_on(run_dir: str | None, environ: dict[str, str], found: str) -> None:
    assert dependency.parent_output_dir(run_dir, environ) == found


def test_a_step_with_no_run_says_how_to_give_one() -> None:
    with pytest.raises(InputError, match="--set entrypoint.params.run_dir="):
        dependency.parent_output_dir(None, {})


# --- why a child never ran: the status sentence ----------------------------------------------------------

AFTER_123 = Dependency((("afterok", "123"),))


@pytest.mark.parametrize(("state", "started", "reason", "after", "parents", "said"), [
    ("CANCELLED", False, "DependencyNeverSatisfied", AFTER_123, {"123": "FAILED"},
     "job 124: CANCELLED (never ran: it waited for afterok:123 and job 123 ended FAILED)"),
    ("CANCELLED by 0", False, None, AFTER_123, {"123": "TIMEOUT"},  # forgotten by scontrol: sacct's words
     "job 124: CANCELLED (never ran: it waited for afterok:123 and job 123 ended TIMEOUT)"),
    ("PENDING", False, "DependencyNeverSatisfied", AFTER_123, {"123": "FAILED"},
     "job 124: PENDING, will never start: job 123 ended FAILED; cancel it with hpc-run cancel 124"),
    ("PENDING", False, "DependencyNeverSatisfied", None, {},
     "job 124: PENDING, will never start: its dependency can never be satisfied; cancel it with hpc-run cancel 124"),
    ("PENDING", False, "Dependency", AFTER_123, {"123": "RUNNING"},
     "job 124: PENDING, waiting for afterok:123 (job 123 RUNNING)"),
    ("CANCELLED", False, None, AFTER_123, {"123": "COMPLETED"},
     "job 124: CANCELLED (never ran: cancelled while it waited for afterok:123; job 123 COMPLETED)"),
    ("CANCELLED", False, None, Dependency((("afterok", "1"), ("afterok", "2"))), {"1": "COMPLETED", "2": "OUT_OF_MEMORY"},
     "job 124: CANCELLED (never ran: it waited for afterok:1:2 and job 2 ended OUT_OF_MEMORY)"),
])
def test_status_says_why_a_child_never_ran(state, started, reason, after, parents, said) -> None:
    assert chain_status.explain("124", state, started, reason, after, parents) == said


@pytest.mark.parametrize(("state", "started", "reason", "after", "parents", "said"), [
    ("COMPLETED", True, "None", AFTER_123, {"123": "COMPLETED"}, None),
    ("CANCELLED", True, "None", AFTER_123, {"123": "COMPLETED"}, None),   # it ran, then was cancelled
    ("PENDING", False, "Resources", None, {}, None),                      # waits for nodes, not for a job
    ("PENDING", False, "Dependency", Dependency((("afterany", "123"),)), {"123": "FAILED"},  # afterany: it will start
     "job 124: PENDING, waiting for afterany:123 (job 123 FAILED)"),
])
def test_status_of_a_job_that_runs_or_will_run_says_no_never(state, started, reason, after, parents, said) -> None:
    assert chain_status.explain("124", state, started, reason, after, parents) == said


def fake_slurm(folder: Path, scontrol: dict[str, str], sacct: str) -> dict[str, str]:
    """scontrol (one -o line per job id it still holds) and sacct (pipe-separated rows) answering from tables."""
    bin_dir = folder / "fakeslurm"
    bin_dir.mkdir()
    for job_id, line in scontrol.items():
        (bin_dir / f"scontrol-{job_id}").write_text(line + "\n")
    (bin_dir / "sacct.out").write_text(sacct)
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\nf="{bin_dir}/scontrol-$4"\n[ -f "$f" ] && cat "$f" && exit 0\n'
                                      'echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1\n')
    (bin_dir / "sacct").write_text(f'#!/bin/sh\ncat "{bin_dir}/sacct.out"\n')
    for name in ("scontrol", "sacct"):
        (bin_dir / name).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def scontrol_line(job_id: str, state: str, reason: str, dependency_text: str, nodes: str = "") -> str:
    return (f"JobId={job_id} JobName=evaluate JobState={state} Reason={reason} Dependency={dependency_text} "
            f"RunTime=00:00:00 NodeList={nodes} ExitCode=0:0")


def test_status_of_a_pending_child_asks_scontrol_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = fake_slurm(tmp_path, {"124": scontrol_line("124", "PENDING", "DependencyNeverSatisfied", "afterok:123(failed)"),
                                "123": scontrol_line("123", "FAILED", "NonZeroExitCode", "(null)", "n1")}, "")
    monkeypatch.setenv("PATH", env["PATH"])
    current = JobStatus("124", "PENDING", "", "00:00:00", "0:0")
    assert chain_status.never_runs(current, None) == \
        "job 124: PENDING, will never start: job 123 ended FAILED; cancel it with hpc-run cancel 124"


def test_status_of_a_forgotten_child_reads_the_record_and_sacct(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = "124|CANCELLED by 0|None assigned|00:00:00|0:0\n123|FAILED|n2|00:00:07|1:0\n"
    monkeypatch.setenv("PATH", fake_slurm(tmp_path, {}, rows)["PATH"])
    record = JobRecord(job_id="124", name="evaluate", spec=EVALUATE, output_dir="/x", executor="slurm",
                       dependency="afterok:123", parent="123")
    result = subprocess.run([HPC_RUN, "status", "124"], capture_output=True, text=True,
                            env={**os.environ, "HPC_RUNNER_STATE": str(tmp_path / "state")})
    assert result.returncode == 0, result.stderr
    assert "job 124: CANCELLED by 0  nodes None assigned" in result.stdout  # no record: nothing to say why
    from hpc_runner import ledger

    monkeypatch.setenv(ledger.STATE_VAR, str(tmp_path / "state"))
    ledger.record(record)
    result = subprocess.run([HPC_RUN, "status", "124"], capture_output=True, text=True, env=dict(os.environ))
    assert result.stdout.splitlines()[0] == \
        "job 124: CANCELLED (never ran: it waited for afterok:123 and job 123 ended FAILED)"
    assert "  after: afterok:123" in result.stdout
