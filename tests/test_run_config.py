"""The entrypoint's argv: every field round-trips, defaults live in the schema alone, bad argv says why."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpc_runner import request, spec
from hpc_runner.errors import InputError
from hpc_runner.run_config import RunConfig
from hpc_runner.schema import DataSpec, ExportSpec, FunctionEntry, JobSpec, ScriptEntry

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12)
JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3), max_leaves=8)
ENTRIES = st.one_of(
    st.builds(FunctionEntry, target=st.from_regex(r"[a-z_][a-z0-9_]{0,5}(\.[a-z_][a-z0-9_]{0,5}){0,2}:[a-z_][a-z0-9_]{0,8}", fullmatch=True),
              params=st.dictionaries(TEXT, JSONISH, max_size=4)),
    st.builds(ScriptEntry, path=TEXT.filter(bool), args=st.lists(TEXT, max_size=4).map(tuple)),
)
DATA = st.one_of(st.none(), st.builds(DataSpec, samples=st.integers(1, 10**9), batch_size=st.integers(1, 4096),
                                      val_samples=st.integers(0, 10**6), audit=st.booleans()))
EXPORTS = st.one_of(st.none(), st.builds(ExportSpec, model=st.sampled_from(["pkg.models:make", "m:f"]),
                                         input_shape=st.lists(st.integers(1, 4096), min_size=1, max_size=8).map(tuple)))


@settings(max_examples=300, deadline=None)
@given(mode=st.sampled_from(["threading", "gloo", "nccl"]), entry=ENTRIES, output_dir=TEXT.filter(bool), data=DATA,
       timeout=st.integers(1, 10**6), restarts=st.integers(0, 100), resume=st.sampled_from(["auto", "never", "force"]),
       handler=st.sampled_from(["auto", "hpc_runner", "framework", "none"]), export=EXPORTS)
def test_every_field_round_trips(mode: str, entry, output_dir: str, data, timeout: int, restarts: int, resume: str,
                                handler: str, export) -> None:
    config = RunConfig(mode=mode, entry=entry, output_dir=output_dir, init_timeout_s=timeout, data=data, max_restarts=restarts,
                       collective_timeout_s=timeout + 1, resume=resume, requeue_handler=handler, export=export)
    assert RunConfig.from_argv(config.to_argv()) == config


def test_the_argv_names_every_field_so_none_can_be_dropped() -> None:
    config = request.build(spec.from_mapping({"name": "j", "entrypoint": {"function": "a:b"},
                                              "data": {"samples": 10, "batch_size": 2, "audit": False}})).config
    argv = "\n".join(config.to_argv())
    for field in dataclasses.fields(RunConfig):
        if field.name != "entry":
            assert f"--{field.name.replace('_', '-')}=" in argv, field.name


def test_defaults_come_from_the_schema() -> None:
    config = request.build(spec.from_mapping({"name": "j", "entrypoint": {"function": "a:b"}})).config
    assert config.init_timeout_s == JobSpec.init_timeout_s
    assert config.max_restarts == JobSpec.requeue.max_restarts
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(RunConfig))


GOOD = ["--mode=gloo", "--output-dir=o", "--init-timeout-s=5", "--max-restarts=0", "--data=null", "--function=a:b", "--params={}",
        "--collective-timeout-s=60", "--resume=auto", "--requeue-handler=auto", "--export=null"]


@pytest.mark.parametrize(("change", "words"), [
    ({6: "--params={not json"}, "--params is not valid JSON"),
    ({6: "--params=[1, 2]"}, "--params must be a JSON object"),
    ({4: '--data={"samples": 1}'}, "--data does not describe a data spec"),
    ({2: "--init-timeout-s=soon"}, "is not a whole number"),
    ({0: "--mode=mpi"}, "choose one of threading, gloo, nccl"),
    ({0: "--mode"}, "is not --key=value"),
    ({11: "--lr=0.1"}, "unknown argument(s) --lr"),
    ({8: "--resume=maybe"}, "choose one of auto, never, force"),
    ({11: "--script=x.py"}, "exactly one of --function or --script"),
    ({10: '--export={"model": "m:f"}'}, "--export does not describe an export section"),
    ({10: '--export={"model": "no colon", "input_shape": [3]}'}, "--export does not describe an export section"),
    ({9: "--requeue-handler=me"}, "choose one of auto, hpc_runner, framework, none"),
    ({5: "--function=:run"}, "write it as 'package.module:function'"),
    ({5: "--function=..:run"}, "write it as 'package.module:function'"),
    ({2: "--init-timeout-s=-5"}, "must be >= 1"),
    ({3: "--max-restarts=-1"}, "must be >= 0"),
    ({4: '--data={"samples": "x", "batch_size": 1}'}, "--data does not describe a data spec"),
    ({4: '--data={"samples": 0, "batch_size": 1}'}, "must be >= 1"),
    ({1: "--output-dir="}, "--output-dir must not be empty"),
])
def test_bad_argv_names_the_argument(change: dict[int, str], words: str) -> None:
    argv = list(GOOD) + [""]
    for index, value in change.items():
        argv[index] = value
    with pytest.raises(InputError) as err:
        RunConfig.from_argv([a for a in argv if a])
    assert words in str(err.value)


def test_the_entrypoint_exits_2_on_bad_argv_without_a_traceback() -> None:
    result = subprocess.run([sys.executable, "-m", "hpc_runner.entrypoint", *GOOD[:6], "--params={oops", *GOOD[7:]],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "--params is not valid JSON" in result.stderr and "Traceback" not in result.stderr
