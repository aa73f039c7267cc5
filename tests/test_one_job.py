"""render and submit build one job: the rendered script and the sbatch file submitit writes, compared.

Not the request with itself: the two final texts, their #SBATCH lines parsed back, and both run
through a real bash with the one fake srun, recording srun's argv and the environment the ranks get.
"""

from __future__ import annotations

import shlex
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpc_runner import render, request, spec, submit

from .conftest import JOBS, make_fake_srun, provide_interpreter, run_with_fake_srun
from .test_render import MODE_OVERRIDES

# submitit's own bookkeeping, named: its log paths and mode, its wckey, and its srun wrapper.
SUBMITIT_DIRECTIVES = {"output", "error", "open-mode", "wckey"}
SUBMITIT_SRUN_PREFIX = ("--unbuffered", "--output", "--error")  # each of the last two takes a value
SUBMITIT_ENV = {"SUBMITIT_EXECUTOR"}
SHELL_ENV = {"PWD", "SHLVL", "_", "OLDPWD"}  # bash's own


def directives(text: str) -> dict[str, str | None]:
    """The #SBATCH lines of a script as sbatch reads them (key -> value, None for a bare flag)."""
    found: dict[str, str | None] = {}
    for line in text.splitlines():
        if line.startswith("#SBATCH --"):
            key, sep, value = line[len("#SBATCH --"):].partition("=")
            assert key not in found, f"{key} given twice: {text}"
            found[key] = value if sep else None
    return found


def strip_submitit_srun(argv: list[str], sub: submit.Submission) -> tuple[list[str], list[str]]:
    """submitit's srun argv less its wrapper: (our srun options, its command)."""
    rest = list(argv)
    assert rest[0] == "--unbuffered"
    rest = rest[1:]
    while rest[0] in SUBMITIT_SRUN_PREFIX[1:]:
        rest = rest[2:]
    command = shlex.split(sub.submitit_command())
    assert rest[-len(command):] == command
    return rest[:-len(command)], rest[-len(command):]


def compare(req: request.JobRequest, folder: Path) -> None:
    """Both texts: same directives (bookkeeping aside), same srun options, same rank environment and argv."""
    sub = submit.plan(req, "slurm")
    rendered, submitted = render.render(req), sub.sbatch_text()
    ours, theirs = directives(rendered), directives(submitted)
    for key in SUBMITIT_DIRECTIVES:
        ours.pop(key, None)
        theirs.pop(key, None)
    assert ours == theirs
    fake = make_fake_srun(folder)
    assert provide_interpreter(req.python, fake, folder)
    r_argv, r_env = run_with_fake_srun(rendered, fake, folder)
    s_argv, s_env = run_with_fake_srun(submitted, fake, folder)
    s_srun, _ = strip_submitit_srun(s_argv, sub)
    program = r_argv[len(s_srun):]
    assert r_argv[:len(s_srun)] == s_srun
    assert tuple(program) == sub.task.program  # what submitit's wrapper starts on every task
    for env in (r_env, s_env):
        for key in SHELL_ENV | SUBMITIT_ENV | {"ARGV_OUT", "ENV_OUT"}:
            env.pop(key, None)
    assert r_env == s_env


CASES = [(job, mode) for job in JOBS for mode in MODE_OVERRIDES]


@pytest.mark.parametrize(("job", "mode"), CASES, ids=[f"{j.stem}-{m}" for j, m in CASES])
def test_every_shipped_job_renders_and_submits_as_one_job(job: Path, mode: str, tmp_path: Path) -> None:
    compare(request.build(spec.load(job, MODE_OVERRIDES[mode])), tmp_path)


NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,12}", fullmatch=True)
VALUES = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\n\r\x00"), max_size=10)


@st.composite
def specs(draw: st.DrawFn) -> dict:
    mode = draw(st.sampled_from(["threading", "gloo", "nccl"]))
    raw: dict = {"name": draw(NAMES), "mode": mode, "entrypoint": {"script": draw(VALUES) or "x.py", "args": draw(st.lists(VALUES, max_size=3))}}
    if mode != "threading":
        raw["launcher"] = draw(st.sampled_from(["srun", "torchrun", "accelerate"]))
        raw["nodes"] = draw(st.integers(2 if raw["launcher"] == "accelerate" else 1, 64))  # accelerate: 2+ processes
        raw["socket_ifname"] = draw(st.one_of(st.none(), st.sampled_from(["eth0", "ib0"])))
    if mode == "nccl":
        raw["gpus_per_node"] = draw(st.integers(1, 8))
    elif mode == "gloo":
        raw["ntasks_per_node"] = draw(st.integers(1, 8))
    raw["cpus_per_task"] = draw(st.integers(1, 16))
    raw["time"] = draw(st.integers(2, 5000))
    raw["env"] = draw(st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True), VALUES, max_size=3))
    for key in ("partition", "account", "qos"):
        raw[key] = draw(st.one_of(st.none(), NAMES))
    raw["mem"] = draw(st.one_of(st.none(), st.sampled_from(["4G", "512M", "1T"])))
    raw["python"] = draw(st.one_of(st.none(), st.sampled_from(["python3", "venv a/bin/python"])))
    raw["setup"] = draw(st.lists(st.sampled_from(["true", "command -v module || true", "echo 'a b'"]), max_size=2))
    raw["requeue"] = {"signal": draw(st.sampled_from(["USR1", "USR2"])), "seconds_before": draw(st.integers(1, 60))}
    return raw


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=specs())
def test_generated_specs_render_and_submit_as_one_job(raw: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        compare(request.build(spec.from_mapping(raw)), Path(tmp))


def test_dry_run_slurm_asks_no_controller(monkeypatch: pytest.MonkeyPatch) -> None:
    """--dry-run with --executor slurm must not run sinfo (or anything): the controller may be down."""
    monkeypatch.setattr(submit, "controller_answers", lambda: pytest.fail("the dry run asked the controller"))
    assert submit.choose_executor("slurm", dry_run=True) == "slurm"
