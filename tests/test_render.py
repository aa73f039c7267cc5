"""Rendered scripts: golden files for every job in every valid mode, bash -n, shellcheck, quoting."""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hpc_runner import render, request, spec
from hpc_runner.run_config import RunConfig

from .conftest import JOBS, ROOT, run_with_fake_srun

GOLDEN = ROOT / "tests" / "golden"
# The overrides that make any job valid in each mode.
MODE_OVERRIDES = {
    "threading": [("mode", "threading"), ("nodes", 1), ("ntasks_per_node", 1), ("launcher", "srun")],
    "gloo": [("mode", "gloo"), ("nodes", 2), ("ntasks_per_node", 2)],
    "gloo-torchrun": [("mode", "gloo"), ("nodes", 2), ("ntasks_per_node", 2), ("launcher", "torchrun")],
    "gloo-accelerate": [("mode", "gloo"), ("nodes", 2), ("ntasks_per_node", 2), ("launcher", "accelerate")],
    "nccl": [("mode", "nccl"), ("nodes", 2), ("gpus_per_node", 4), ("ntasks_per_node", 4)],
}
CASES = [(job, mode) for job in JOBS for mode in MODE_OVERRIDES]


# Golden files hold no path of this machine: the request is built as if from this folder and venv.
SUBMIT_DIR = "/home/user/project"
PYTHON = "/home/user/project/.venv/bin/python"


def build(job: spec.JobSpec, python: str = PYTHON) -> request.JobRequest:
    return request.build(job, cwd=SUBMIT_DIR, python=python)


def rendered(job: Path, mode: str) -> str:
    return render.render(build(spec.load(job, MODE_OVERRIDES[mode])))


@pytest.mark.parametrize(("job", "mode"), CASES, ids=[f"{j.stem}-{m}" for j, m in CASES])
def test_golden_script(job: Path, mode: str) -> None:
    text = rendered(job, mode)
    golden = GOLDEN / f"{job.stem}-{mode}.sh"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert golden.exists(), f"{golden} missing: run UPDATE_GOLDEN=1 pytest tests/test_render.py and review it"
    expected = golden.read_text()
    diff = "".join(difflib.unified_diff(expected.splitlines(True), text.splitlines(True), str(golden), "rendered"))
    assert text == expected, f"rendered script differs from the golden file:\n{diff}"


@pytest.mark.parametrize(("job", "mode"), CASES, ids=[f"{j.stem}-{m}" for j, m in CASES])
def test_script_passes_bash_n_and_shellcheck(job: Path, mode: str, tmp_path: Path) -> None:
    path = tmp_path / "job.sh"
    path.write_text(rendered(job, mode))
    subprocess.run(["bash", "-n", str(path)], check=True)
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (make test installs it as root)")
    result = subprocess.run(["shellcheck", "--severity=style", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_header_states_resource_math() -> None:
    text = render.render(build(spec.load(ROOT / "jobs" / "emulator.yaml", [("mode", "gloo"), ("nodes", 4)])))
    assert "#SBATCH --nodes=4" in text
    assert "4 node(s) x 1 task(s) = 4 rank(s); 1 thread(s) per rank; 4 core(s) in total" in text
    assert "8192 samples / 4 rank(s) = 2048 samples per rank; batch 64 per rank -> 32 steps per epoch; effective batch 256" in text


def test_srun_gets_cpus_per_task_explicitly() -> None:
    text = render.render(build(spec.load(ROOT / "jobs" / "emulator.yaml", [("mode", "gloo"), ("cpus_per_task", 2)])))
    assert "--cpus-per-task=2" in text.split("srun ", 1)[1]
    assert "export OMP_NUM_THREADS=2" in text


def test_nccl_sets_gpu_and_nccl_environment() -> None:
    text = rendered(ROOT / "jobs" / "emulator.yaml", "nccl")
    for line in ("#SBATCH --gpus-per-node=4", "#SBATCH --ntasks-per-node=4", "export NCCL_DEBUG=WARN",
                 "export TORCH_NCCL_ASYNC_ERROR_HANDLING=1"):
        assert line in text


HOSTILE = ["a'; echo pwned", "$(touch /tmp/hpc_runner_pwned)", "`id`", "x && y", 'dq"uote', "back\\slash",
           "  spaced  ", "*", "~", "$HOME", "-flag", "ünïcode ✓", "semi;colon", "--", ""]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_strings_round_trip_through_a_real_shell(value: str, tmp_path: Path, fake_srun: Path) -> None:
    job = build(spec.from_mapping({
        "name": "hostile", "mode": "gloo", "nodes": 2,
        "env": {"USER_VALUE": value},
        "output_dir": f"out/{value}",
        "entrypoint": {"script": f"train {value}.py", "args": [value, "--lr", value]},
    }), python=sys.executable)
    argv, environ = run_with_fake_srun(render.render(job), fake_srun, tmp_path)
    assert environ["USER_VALUE"] == value
    program = argv[argv.index("hpc_runner.entrypoint") + 1:]
    assert RunConfig.from_argv(program) == job.config
    assert job.config.output_dir == os.path.normpath(f"{SUBMIT_DIR}/out/{value}")
    assert not Path("/tmp/hpc_runner_pwned").exists()


def test_hostile_params_round_trip(tmp_path: Path, fake_srun: Path) -> None:
    params = {"text": "'; rm -rf / #", "nested": {"k": "$(id)"}, "list": ["`x`", 1, 2.5, None, True]}
    job = build(spec.from_mapping({"name": "p", "mode": "gloo", "entrypoint": {"function": "a.b:c", "params": params}}),
                python=sys.executable)
    argv, _ = run_with_fake_srun(render.render(job), fake_srun, tmp_path)
    config = RunConfig.from_argv(argv[argv.index("hpc_runner.entrypoint") + 1:])
    assert config.entry.params == params


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\x00b"])
def test_line_breaks_and_nul_are_rejected_everywhere(value: str) -> None:
    for field in ("name", "output_dir", "python"):
        with pytest.raises(spec.SpecError, match="newlines"):
            spec.from_mapping({"name": "n", field: value, "entrypoint": {"function": "a:b"}})
    with pytest.raises(spec.SpecError, match="newlines"):
        spec.from_mapping({"name": "n", "entrypoint": {"script": "x.py", "args": [value]}})


def test_a_site_template_folder_comes_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A site overrides one mode's template (HPC_RUNNER_TEMPLATES) and still extends our base."""
    (tmp_path / "gloo.sh.j2").write_text('{% extends "base.sh.j2" %}\n{% block mode_notes %}\n# site: use ib0\n{% endblock %}\n')
    monkeypatch.setenv("HPC_RUNNER_TEMPLATES", str(tmp_path))
    text = rendered(ROOT / "jobs" / "echo.yaml", "gloo")
    assert "# site: use ib0" in text and "#SBATCH --nodes=2" in text
    assert "# site: use ib0" not in rendered(ROOT / "jobs" / "echo.yaml", "nccl")


def test_a_missing_interpreter_stops_the_script_before_srun(tmp_path: Path, fake_srun: Path) -> None:
    job = request.build(spec.from_mapping({"name": "j", "mode": "gloo", "python": "/nowhere/bin/python",
                                           "entrypoint": {"function": "a:b"}}))
    path = tmp_path / "job.sh"
    path.write_text(render.render(job))
    result = subprocess.run(["bash", str(path)], env={"PATH": f"{fake_srun}:/usr/bin:/bin", "ARGV_OUT": str(tmp_path / "argv"),
                                                      "ENV_OUT": str(tmp_path / "env")}, capture_output=True, text=True)
    assert result.returncode == 1 and not (tmp_path / "argv").exists()  # srun never ran
    assert "the interpreter /nowhere/bin/python does not exist on" in result.stderr


def test_the_default_interpreter_is_the_one_rendering() -> None:
    job = request.build(spec.from_mapping({"name": "j", "entrypoint": {"function": "a:b"}}))
    assert job.python == sys.executable and job.program[0] == sys.executable


def test_an_inherited_master_address_is_dropped_with_a_warning_unless_the_spec_sets_it(tmp_path: Path, fake_srun: Path) -> None:
    inherited = {"MASTER_ADDR": "10.0.0.99", "MASTER_PORT": "29500"}
    plain = build(spec.from_mapping({"name": "j", "mode": "gloo", "entrypoint": {"function": "a:b"}}), python=sys.executable)
    chosen = build(spec.from_mapping({"name": "j", "mode": "gloo", "env": {"MASTER_ADDR": "10.1.1.1"},
                                      "entrypoint": {"function": "a:b"}}), python=sys.executable)
    path = tmp_path / "job.sh"
    seen = []
    for job in (plain, chosen):
        path.write_text(render.render(job))
        env = {"PATH": f"{fake_srun}:/usr/bin:/bin", "ARGV_OUT": str(tmp_path / "argv"), "ENV_OUT": str(tmp_path / "env"), **inherited}
        result = subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True, check=True)
        environ = dict(item.split("=", 1) for item in (tmp_path / "env").read_text().split("\0") if "=" in item)
        seen.append((environ.get("MASTER_ADDR"), environ.get("MASTER_PORT"), result.stderr))
    assert seen[0][:2] == (None, None) and "ignoring MASTER_ADDR=10.0.0.99 inherited" in seen[0][2]
    assert seen[1][:2] == ("10.1.1.1", None) and "ignoring MASTER_ADDR" not in seen[1][2]
