"""Code snapshots (hpc_runner.snapshot): what is copied, the identity of the copy, and the lines that run the job from it.

A snapshot is the project's code as it was at submit: in a git work tree, tracked files as they are on
disk and untracked files git does not ignore; elsewhere, the folder without hidden folders and
__pycache__, up to a limit. The job cds into the copy and puts it first on PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hpc_runner import environment, ledger, render, request, snapshot, spec
from hpc_runner.errors import InputError, LaunchError
from hpc_runner.run_config import RunConfig
from hpc_runner.run_context import RunContext

from .conftest import make_fake_srun, provide_interpreter, run_with_fake_srun
from .test_one_job import compare

SPEC = "name: frozen\nmode: threading\ntime: 5\noutput_dir: runs/frozen\nentrypoint:\n  function: {function}\n"


def git(root: Path, *args: str) -> str:
    """git in ``root`` with a fixed author, so that commits need no global configuration."""
    return subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          check=True, capture_output=True, text=True).stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git work tree with a committed package, a spec, a .gitignore and one commit."""
    root = tmp_path / "proj"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "train.py").write_text("def run(ctx):\n    return 'committed'\n")
    (root / "pkg" / "old.py").write_text("OLD = 1\n")
    (root / "job.yaml").write_text(SPEC.format(function="pkg.train:run"))
    (root / ".gitignore").write_text("runs/\n*.log\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "first")
    return root


def planned(root: Path, output_dir: Path | None = None, **kwargs: object) -> snapshot.Snapshot:
    return snapshot.plan(str(root / "job.yaml"), str(root), str(output_dir or root / "runs" / "frozen"),
                         stamp="stamp", **kwargs)  # type: ignore[arg-type]


# What is copied ---------------------------------------------------------------------------------------


def test_git_tree_copies_edits_untracked_files_and_leaves_out_ignored_and_deleted(project: Path) -> None:
    (project / "pkg" / "train.py").write_text("def run(ctx):\n    return 'edited, not committed'\n")
    (project / "pkg" / "new.py").write_text("NEW = 1\n")           # untracked, not ignored
    (project / "debug.log").write_text("ignored\n")                # ignored by *.log
    (project / "pkg" / "old.py").unlink()                          # tracked, deleted on disk
    code = snapshot.take(planned(project))
    copy = Path(code.path)
    assert code.path == str(project / "runs" / "frozen" / "code" / "stamp")
    assert set(code.files) == {".gitignore", "job.yaml", "pkg/__init__.py", "pkg/train.py", "pkg/new.py"}
    assert (copy / "pkg" / "train.py").read_text() == "def run(ctx):\n    return 'edited, not committed'\n"
    assert (copy / "pkg" / "new.py").exists()
    assert not (copy / "debug.log").exists() and not (copy / "pkg" / "old.py").exists()
    assert code.size == sum((project / rel).stat().st_size for rel in code.files)


def test_the_runs_own_output_directory_is_never_copied_into_itself(project: Path) -> None:
    """An output directory inside the project that git does not ignore: its files (earlier snapshots too) stay out."""
    out = project / "results"
    (out / "code" / "earlier").mkdir(parents=True)
    (out / "code" / "earlier" / "train.py").write_text("an earlier snapshot\n")
    (out / "metrics.json").write_text("{}\n")
    code = snapshot.take(planned(project, out))
    assert not any(rel.startswith("results/") for rel in code.files)
    assert sorted(p.name for p in (out / "code").iterdir()) == ["earlier", "stamp"]
    assert not (out / "code" / "stamp" / "results").exists()


def test_an_output_directory_that_holds_the_project_is_refused(project: Path) -> None:
    with pytest.raises(InputError, match="holds the whole project") as caught:
        planned(project, project)
    assert "--no-snapshot" in str(caught.value)


def test_a_folder_that_is_not_a_git_work_tree_is_copied_without_hidden_folders_and_caches(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    for rel in ("train.py", "lib/util.py", ".env", ".venv/lib/big.so", "lib/__pycache__/util.pyc", "runs/frozen/old.pt"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    (root / "job.yaml").write_text(SPEC.format(function="train:run"))
    code = snapshot.take(planned(root))
    assert set(code.files) == {"train.py", "lib/util.py", ".env", "job.yaml"}  # hidden files stay, hidden folders go
    assert code.identity.startswith("no git, files:") and code.commit is None
    assert (Path(code.path) / "lib" / "util.py").read_text() == "lib/util.py"


def test_a_large_folder_that_is_not_a_git_work_tree_is_refused_with_a_way_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "home"
    root.mkdir()
    for i in range(6):
        (root / f"f{i}.txt").write_text("x")
    monkeypatch.setattr(snapshot, "MAX_FILES", 5)
    with pytest.raises(InputError, match="not a git work tree and holds more than 5 files") as caught:
        snapshot.plan(None, str(root), str(root / "runs" / "x"))
    assert "git init" in str(caught.value) and "--no-snapshot" in str(caught.value)
    monkeypatch.setattr(snapshot, "MAX_FILES", 6)
    assert len(snapshot.plan(None, str(root), str(root / "runs" / "x")).files) == 6


def test_the_project_is_the_git_work_tree_holding_the_spec_not_the_current_directory(project: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = snapshot.plan(str(project / "job.yaml"), str(elsewhere), str(tmp_path / "out"))
    assert code.source == str(project.resolve()) and "pkg/train.py" in code.files


def test_a_failed_submission_removes_its_copy(project: Path) -> None:
    code = planned(project)
    said: list[str] = []
    with pytest.raises(RuntimeError), snapshot.taken(code, said.append):
        assert Path(code.path, "pkg", "train.py").exists()
        raise RuntimeError("sbatch refused the job")
    assert not Path(code.path).exists()
    assert said == [code.summary()] and said[0].startswith(f"code snapshot: {code.identity}, 5 files, ")


# The identity: the commit and a hash of the changes -------------------------------------------------------


def test_identity_is_the_commit_when_clean_and_changes_change_its_hash(project: Path) -> None:
    head = git(project, "rev-parse", "HEAD").strip()
    clean = planned(project)
    assert clean.identity == f"{head[:8]} (clean)" and clean.commit == head
    train = project / "pkg" / "train.py"
    original = train.read_text()
    train.write_text("def run(ctx):\n    return 'edit one'\n")
    one = planned(project).identity
    train.write_text("def run(ctx):\n    return 'edit two'\n")
    two = planned(project).identity
    assert one.startswith(f"{head[:8]}+changes:") and two.startswith(f"{head[:8]}+changes:") and one != two
    train.write_text(original)
    (project / "pkg" / "extra.py").write_text("X = 1\n")  # an untracked file is a change too
    untracked = planned(project).identity
    assert untracked.startswith(f"{head[:8]}+changes:") and untracked not in (one, two)
    (project / "pkg" / "extra.py").write_text("X = 2\n")
    assert planned(project).identity not in (untracked, one, two)


def test_nothing_but_the_code_changes_the_identity(project: Path, tmp_path: Path) -> None:
    """Times, ignored files, the output directory, where the copy goes and where hpc-run runs from do not count."""
    (project / "pkg" / "train.py").write_text("def run(ctx):\n    return 'edited'\n")
    before = planned(project).identity
    os.utime(project / "pkg" / "train.py", (1, 1))
    (project / "debug.log").write_text("ignored\n")
    (project / "runs" / "frozen").mkdir(parents=True)
    (project / "runs" / "frozen" / "checkpoint.pt").write_text("outputs\n")
    assert planned(project).identity == before
    assert snapshot.plan(str(project / "job.yaml"), str(tmp_path), str(tmp_path / "other")).identity == before
    results = project / "results"  # an output directory git does not ignore: its files are outputs, not code
    results.mkdir()
    (results / "metrics.json").write_text("{}\n")
    assert planned(project, results).identity == before


def test_before_the_first_commit_every_file_is_a_change(tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    root.mkdir()
    git(root, "init", "-q")
    (root / "train.py").write_text("A = 1\n")
    (root / "job.yaml").write_text(SPEC.format(function="train:run"))
    first = planned(root)
    (root / "train.py").write_text("A = 2\n")
    assert first.identity.startswith("no commit+changes:") and first.commit is None
    assert planned(root).identity != first.identity


# The job runs from the copy ----------------------------------------------------------------------------------


def test_python_path_puts_the_copy_first_and_maps_entries_inside_the_project(project: Path, tmp_path: Path) -> None:
    """A src/ layout or an editable install's folder inside the project is the copy's; a venv git ignores is not."""
    (project / "src" / "lib").mkdir(parents=True)
    (project / "src" / "lib" / "__init__.py").write_text("")
    (project / ".venv" / "site-packages").mkdir(parents=True)
    (project / ".gitignore").write_text("runs/\n*.log\n.venv/\n")
    sys_path = ["", str(project / "src"), str(project / ".venv" / "site-packages"), str(tmp_path), str(project)]
    code = planned(project, sys_path=sys_path)
    assert code.python_path == (code.path, os.path.join(code.path, "src"))


def test_the_request_cds_into_the_snapshot_and_puts_it_first_on_pythonpath(project: Path, tmp_path: Path) -> None:
    """Rendered through a real bash with the fake srun: the ranks start in the copy with the copy first, and a
    script entry inside the project is the copy's file. The output directory stays where it was."""
    out = tmp_path / "it's out"  # a path to quote
    (project / "train.py").write_text("print('script')\n")
    job = spec.load(project / "job.yaml", [("entrypoint", {"script": "train.py"}), ("output_dir", str(out))])
    code = snapshot.take(planned(project, out))
    req = request.build(job, cwd=str(project), code=code)
    assert req.output_dir == str(out) and req.config.output_dir == str(out)
    assert req.config.entry.path == os.path.join(code.path, "train.py")
    fake = make_fake_srun(tmp_path)
    assert provide_interpreter(req.python, fake, tmp_path)
    script = render.render(req)
    assert f"# code: snapshot {code.identity} of {project}" in script
    argv, environ = run_with_fake_srun(script, fake, tmp_path)
    assert environ["PWD"] == code.path
    assert environ["PYTHONPATH"].split(":")[0] == code.path
    assert environ["HPC_RUNNER_CODE"] == code.identity and environ["HPC_RUNNER_CODE_DIR"] == code.path
    assert f"--script={code.path}/train.py" in argv and f"--output-dir={out}" in argv


def test_a_relative_interpreter_path_still_names_the_submitters_interpreter(project: Path, tmp_path: Path) -> None:
    """The job starts inside the copy, where a git-ignored .venv is absent: python: .venv/bin/python is made absolute."""
    job = spec.load(project / "job.yaml", [("python", ".venv/bin/python"), ("output_dir", str(tmp_path / "out"))])
    req = request.build(job, cwd=str(project), code=planned(project, tmp_path / "out"))
    assert req.python == str(project / ".venv" / "bin" / "python") == req.program[0]
    assert request.build(job, cwd=str(project)).python == ".venv/bin/python"  # no snapshot: as before


def test_render_and_submit_build_one_job_with_a_snapshot(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = snapshot.take(planned(project, out))
    job = spec.load(project / "job.yaml", [("output_dir", str(out))])
    compare(request.build(job, cwd=str(project), code=code), tmp_path)


def test_without_a_snapshot_the_script_says_it_runs_the_code_as_it_is_at_start(project: Path) -> None:
    req = request.build(spec.load(project / "job.yaml"), cwd=str(project))
    assert req.code is None
    script = render.render(req)
    assert "# code: no snapshot: the job runs the code as it is when it starts" in script
    assert "hpc-run submit freezes a copy at submit" in script
    assert "cd " not in script and "HPC_RUNNER_CODE" not in script


# The identity in the checkpoint fingerprint ----------------------------------------------------------------------


def context(tmp_path: Path, code: str | None) -> RunContext:
    config = RunConfig.from_spec(spec.from_mapping({"name": "x", "entrypoint": {"function": "pkg.train:run"}}), str(tmp_path))
    return RunContext(env=environment.from_environ({}, lambda host: host), config=config, device=torch.device("cpu"), code=code)


def test_a_checkpoint_of_other_code_is_refused_under_resume_auto_and_the_same_code_resumes(tmp_path: Path) -> None:
    saved = context(tmp_path, "3f2a1c9b+changes:5e6f7a8b")
    saved.save_checkpoint({"step": 3})
    assert context(tmp_path, "3f2a1c9b+changes:5e6f7a8b").load_checkpoint()["step"] == 3  # a requeue: the same snapshot
    with pytest.raises(LaunchError, match=r"code: '3f2a1c9b\+changes:5e6f7a8b' -> '3f2a1c9b \(clean\)'") as caught:
        context(tmp_path, "3f2a1c9b (clean)").load_checkpoint()
    assert "resume: force" in str(caught.value)
    forced = dataclass_replace_resume(context(tmp_path, "3f2a1c9b (clean)"), "force")
    assert forced.load_checkpoint()["step"] == 3
    assert "code" not in context(tmp_path, None).fingerprint()  # no snapshot: the fingerprint of before


def dataclass_replace_resume(ctx: RunContext, resume: str) -> RunContext:
    import dataclasses

    ctx.config = dataclasses.replace(ctx.config, resume=resume)
    return ctx


# The command line ---------------------------------------------------------------------------------------------------


def hpc_run_in(cwd: Path, *args: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", ""), ledger.STATE_VAR: str(state)}
    return subprocess.run([sys.executable, "-m", "hpc_runner.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_dry_run_shows_the_snapshot_lines_and_copies_nothing(project: Path, tmp_path: Path) -> None:
    done = hpc_run_in(project, "submit", "job.yaml", "--executor", "local", "--dry-run", state=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "# dry run, nothing copied: code snapshot: " in done.stdout and "  cd " in done.stdout
    assert not (project / "runs").exists()
    plain = hpc_run_in(project, "submit", "job.yaml", "--executor", "local", "--dry-run", "--no-snapshot", state=tmp_path)
    assert "# code: no snapshot" in plain.stdout and "  cd " not in plain.stdout


def test_refused_snapshot_exits_2_with_the_reason(project: Path, tmp_path: Path) -> None:
    done = hpc_run_in(project, "submit", "job.yaml", "--executor", "local", "--set", f"output_dir={project}", state=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "holds the whole project" in done.stderr


def test_local_submit_runs_the_snapshot_and_records_it(project: Path, tmp_path: Path) -> None:
    """The local executor, for real: the function reports where it ran from; the job's record names the snapshot."""
    (project / "pkg" / "train.py").write_text(
        "import os\nfrom pkg import train\n\ndef run(ctx):\n    return {'cwd': os.getcwd(), 'module': train.__file__}\n")
    done = hpc_run_in(project, "submit", "job.yaml", "--executor", "local", "--wait", state=tmp_path)
    assert done.returncode == 0, done.stderr
    copy = next((project / "runs" / "frozen" / "code").iterdir())
    result = json.loads(done.stdout[done.stdout.index("{"):])
    assert result == {"cwd": str(copy), "module": str(copy / "pkg" / "train.py")}
    job_id = done.stdout.split("submitted job ")[1].split()[0]
    record = json.loads((tmp_path / "jobs" / f"{job_id}.json").read_text())
    run = json.loads((project / "runs" / "frozen" / "run.json").read_text())
    assert record["snapshot"] == run["code"]["snapshot"] == run["fingerprint"]["code"]
    assert record["snapshot"].endswith("+changes:" + record["snapshot"].split(":")[-1])
    assert record["snapshot_dir"] == run["code"]["dir"] == str(copy)
    assert run["code"]["source"] == str(project)


def test_export_reads_a_script_entry_run_from_its_snapshot_as_the_projects_file(tmp_path: Path) -> None:
    """run.json records the copy's script; `hpc-run export --spec` compares it with the spec's, the project's file."""
    record = {"snapshot": "3f2a1c9b (clean)", "dir": str(tmp_path / "out" / "code" / "s"), "source": str(tmp_path / "proj")}
    assert snapshot.original(str(tmp_path / "out" / "code" / "s" / "sub" / "train.py"), record) == str(tmp_path / "proj" / "sub" / "train.py")
    assert snapshot.original("/elsewhere/train.py", record) == "/elsewhere/train.py"
    assert snapshot.original(str(tmp_path / "out" / "code" / "s" / "train.py"), None).endswith("/code/s/train.py")
