"""Property-based: any string in any field is rejected with a SpecError or reaches the program exactly."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpc_runner import render, request, spec
from hpc_runner.errors import SpecError
from hpc_runner.run_config import RunConfig

from .conftest import make_fake_srun, provide_interpreter, run_with_fake_srun

# Text with shell metacharacters, quotes, whitespace, control characters and non-ASCII.
SHELLY = st.sampled_from(list("'\"`$(){};&|<>*?~!#\\ \t\n\r\x00-=,.%@") + ["$(touch PWNED)", "`touch PWNED`", "'; touch PWNED; '"])
TEXT = st.lists(st.one_of(SHELLY, st.characters(codec="utf-8", exclude_categories=("Cs",))), max_size=12).map("".join)
# Line breaks and NUL are always rejected (tested elsewhere); without them most specs are valid.
ONE_LINE = TEXT.map(lambda t: t.replace("\n", " ").replace("\r", " ").replace("\x00", " "))
STRING_FIELDS = ("name", "partition", "account", "qos", "mem", "output_dir", "python", "socket_ifname", "time")


def build(values: dict[str, str], env_value: str, arg: str, param: str, script: str) -> dict:
    raw = {"mode": "gloo", "nodes": 2, **values, "env": {"USER_VAR": env_value},
           "entrypoint": {"script": script, "args": [arg, param]}}
    raw.setdefault("name", "job")
    return raw


def test_any_string_is_rejected_or_round_trips() -> None:
    """1000 generated specs; most must really run (guards against passing by rejecting everything)."""
    outcomes = {"rejected": 0, "ran": 0}

    @settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(field=st.sampled_from(STRING_FIELDS), value=st.one_of(TEXT, ONE_LINE), env_value=ONE_LINE, arg=ONE_LINE,
           param=ONE_LINE, script=ONE_LINE)
    def check(field: str, value: str, env_value: str, arg: str, param: str, script: str) -> None:
        outcomes[one_spec(build({field: value}, env_value, arg, param, script), env_value)] += 1

    check()
    assert outcomes["ran"] >= 100, outcomes


def one_spec(raw: dict, env_value: str) -> str:
    """Reject with a SpecError, or render, run through bash and a fake srun, and compare what arrived."""
    try:
        job = request.build(spec.from_mapping(raw))
    except SpecError:
        return "rejected"
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        fake = make_fake_srun(tmp_path)
        text = render.render(job)
        if not provide_interpreter(job.python, fake, tmp_path):
            return "rejected"  # an absolute path that does not exist here: the script's own check stops it
        assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0
        argv, environ = run_with_fake_srun(text, fake, tmp_path)
        assert not (tmp_path / "PWNED").exists()
        assert environ["USER_VAR"] == env_value
        at = argv.index("hpc_runner.entrypoint")
        assert argv[at - 3] == job.python  # python, -u, -m, module
        if "python" in raw:
            assert job.python == raw["python"]
        assert RunConfig.from_argv(argv[at + 1:]) == job.config
        for line in text.splitlines():
            if line.startswith("#SBATCH"):
                assert all(c.isalnum() or c in "-=._+,:%#@/ " for c in line), line
    return "ran"
