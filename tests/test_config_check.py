"""DeepSpeed and accelerate configs checked against the spec: the batch arithmetic, shown or refused.

train_batch_size = train_micro_batch_size_per_gpu x gradient_accumulation_steps x world size, where the
world size is the spec's (nodes x ntasks_per_node) and "auto" micro-batches are data.batch_size.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from hpc_runner import config_check, render, request, spec
from hpc_runner.errors import SpecError

from .conftest import hpc_run

# 2 nodes x 2 tasks = world size 4; 8 samples per rank and step.
SPEC = {"name": "ds", "mode": "gloo", "nodes": 2, "ntasks_per_node": 2, "data": {"samples": 1024, "batch_size": 8},
        "entrypoint": {"script": "train.py"}}


def checked(tmp_path: Path, deepspeed: dict | None = None, accelerate: str | None = None, **changes: object) -> list[str]:
    raw = {**SPEC, **changes}
    if deepspeed is not None:
        (tmp_path / "ds.json").write_text(json.dumps(deepspeed))
        raw["deepspeed_config"] = "ds.json"
    if accelerate is not None:
        (tmp_path / "acc.yaml").write_text(accelerate)
        raw["accelerate_config"] = "acc.yaml"
    return config_check.check(spec.from_mapping(raw), str(tmp_path))


def arithmetic(lines: list[str]) -> str:
    """The arithmetic part of the DeepSpeed line (the file name left out)."""
    return next(line for line in lines if line.startswith("deepspeed ")).split(": ", 1)[1]


@pytest.mark.parametrize(("config", "expected"), [
    ({"train_batch_size": 64, "train_micro_batch_size_per_gpu": 8, "gradient_accumulation_steps": 2},
     "train_batch_size 64 (from the file) = train_micro_batch_size_per_gpu 8 (from the file) x gradient_accumulation_steps 2 (from the file)"),
    ({"train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": 4},
     "train_batch_size 128 (computed) = train_micro_batch_size_per_gpu 8 (auto: data.batch_size) x gradient_accumulation_steps 4 (from the file)"),
    ({"train_batch_size": 96, "train_micro_batch_size_per_gpu": "auto"},
     "train_batch_size 96 (from the file) = train_micro_batch_size_per_gpu 8 (auto: data.batch_size) x gradient_accumulation_steps 3 (computed)"),
    ({"train_batch_size": 64, "gradient_accumulation_steps": 2},
     "train_batch_size 64 (from the file) = train_micro_batch_size_per_gpu 8 (computed) x gradient_accumulation_steps 2 (from the file)"),
    ({"train_batch_size": 32},
     "train_batch_size 32 (from the file) = train_micro_batch_size_per_gpu 8 (computed) x gradient_accumulation_steps 1 (default)"),
    ({"train_micro_batch_size_per_gpu": 8},
     "train_batch_size 32 (computed) = train_micro_batch_size_per_gpu 8 (from the file) x gradient_accumulation_steps 1 (default)"),
    ({"zero_optimization": {"stage": 2}},
     "train_batch_size ? (not set) = train_micro_batch_size_per_gpu ? (not set) x gradient_accumulation_steps ? (not set)"),
], ids=["all-given", "auto-resolved-from-the-spec", "accumulation-computed", "micro-computed", "train-batch-only",
        "micro-only", "nothing-to-check"])
def test_the_arithmetic_is_resolved_and_shown(config: dict, expected: str, tmp_path: Path) -> None:
    assert arithmetic(checked(tmp_path, config)) == expected + " x world size 4 (2 node(s) x 2 task(s))"


def test_auto_without_a_data_section_is_shown_unresolved_not_guessed(tmp_path: Path) -> None:
    line = arithmetic(checked(tmp_path, {"train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto"}, data=None))
    assert line.startswith("train_batch_size ? (auto, unresolved) = train_micro_batch_size_per_gpu ? "
                           "(auto, unresolved: the spec has no data.batch_size) x gradient_accumulation_steps ? (not set)")


@pytest.mark.parametrize(("config", "changes", "words"), [
    # Written for 8 ranks (64 = 8 x 1 x 8), run on 4: the seed of silent half-batches.
    ({"train_batch_size": 64, "train_micro_batch_size_per_gpu": 8, "gradient_accumulation_steps": 1}, {},
     "train_batch_size 64 != train_micro_batch_size_per_gpu 8 x gradient_accumulation_steps 1 x world size 4 (= 32)"),
    ({"train_batch_size": 64, "train_micro_batch_size_per_gpu": "auto"}, {"nodes": 3},
     "train_batch_size 64 is not a multiple of train_micro_batch_size_per_gpu 8 x world size 6 (= 48)"),
    ({"train_batch_size": 16, "train_micro_batch_size_per_gpu": 8}, {},
     "train_batch_size 16 is not a multiple of train_micro_batch_size_per_gpu 8 x world size 4 (= 32)"),
    ({"train_batch_size": 30, "gradient_accumulation_steps": 2}, {},
     "train_batch_size 30 does not divide into gradient_accumulation_steps 2 x world size 4 (= 8)"),
    ({"train_micro_batch_size_per_gpu": 16}, {},
     "train_micro_batch_size_per_gpu is 16 but the spec's data.batch_size (the per-rank batch) is 8"),
    ({"train_batch_size": 0}, {}, "train_batch_size is 0; expected a whole number >= 1 or \"auto\""),
    ({"gradient_accumulation_steps": "2"}, {}, "gradient_accumulation_steps is '2'; expected a whole number"),
])
def test_a_config_that_contradicts_the_spec_is_refused_with_the_numbers(config: dict, changes: dict, words: str, tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        checked(tmp_path, config, **changes)
    text = str(caught.value)
    assert text.startswith(f"key 'deepspeed_config': {tmp_path}/ds.json: ")
    assert words in text and "hint: " in text


def test_the_hint_gives_the_number_that_fits_this_world_size(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r'set train_batch_size to "auto" \(computed: 32 for this world size\)'):
        checked(tmp_path, {"train_batch_size": 64, "train_micro_batch_size_per_gpu": 8, "gradient_accumulation_steps": 1})


@pytest.mark.parametrize(("text", "words"), [
    ("num_processes: 4\nnum_machines: 2\n", None),
    ("num_processes: 8\nnum_machines: 2\n", "num_processes is 8 but the spec asks for 4, the world size (nodes x ntasks_per_node) = 2 node(s) x 2 task(s)"),
    ("num_processes: 4\nnum_machines: 1\n", "num_machines is 1 but the spec asks for 2, nodes"),
    ("num_processes: many\n", "num_processes is 'many'; expected a whole number >= 1"),
    ("- a list\n", "expected a mapping of keys (accelerate YAML), got list"),
    ("num_processes: [4\n", "not a valid accelerate YAML config"),
], ids=["agrees", "other-world-size", "other-machine-count", "not-a-number", "not-a-mapping", "bad-yaml"])
def test_an_accelerate_config_must_describe_the_specs_job(text: str, words: str | None, tmp_path: Path) -> None:
    if words is None:
        assert checked(tmp_path, accelerate=text) == [f"accelerate {tmp_path}/acc.yaml: num_processes 4, num_machines 2"]
        return
    with pytest.raises(SpecError, match="key 'accelerate_config'") as caught:
        checked(tmp_path, accelerate=text)
    assert words in str(caught.value)


def test_an_accelerate_deepspeed_section_is_checked_with_its_own_file_and_accumulation(tmp_path: Path) -> None:
    (tmp_path / "zero.json").write_text(json.dumps({"train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto",
                                                    "gradient_accumulation_steps": "auto"}))
    lines = checked(tmp_path, accelerate="distributed_type: DEEPSPEED\nnum_processes: 4\n"
                                         "deepspeed_config:\n  deepspeed_config_file: zero.json\n  gradient_accumulation_steps: 2\n")
    assert lines[1] == (f"deepspeed {tmp_path}/zero.json: train_batch_size 64 (computed) = train_micro_batch_size_per_gpu 8 "
                        "(auto: data.batch_size) x gradient_accumulation_steps 2 (from the file) x world size 4 (2 node(s) x 2 task(s))")


def test_accumulation_given_differently_in_both_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "zero.json").write_text(json.dumps({"train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": 4}))
    with pytest.raises(SpecError, match="gradient_accumulation_steps is 4 here but 2 in the accelerate config"):
        checked(tmp_path, accelerate="deepspeed_config:\n  deepspeed_config_file: zero.json\n  gradient_accumulation_steps: 2\n")


def test_an_accelerate_deepspeed_section_without_a_file_takes_the_micro_batch_from_the_spec(tmp_path: Path) -> None:
    lines = checked(tmp_path, accelerate="deepspeed_config:\n  gradient_accumulation_steps: 4\n  zero_stage: 2\n")
    assert "train_batch_size 128 (computed) = train_micro_batch_size_per_gpu 8 (auto: data.batch_size)" in lines[1]


@pytest.mark.parametrize(("write", "words"), [
    (None, "cannot read the DeepSpeed JSON config (No such file or directory)"),
    ("{not json", "not a valid DeepSpeed JSON config: Expecting property name"),
    ("[1, 2]", "expected a mapping of keys (DeepSpeed JSON), got list"),
], ids=["missing", "bad-json", "not-a-mapping"])
def test_an_unreadable_deepspeed_config_names_the_file_and_the_key(write: str | None, words: str, tmp_path: Path) -> None:
    if write is not None:
        (tmp_path / "ds.json").write_text(write)
    raw = {**SPEC, "deepspeed_config": "ds.json"}
    with pytest.raises(SpecError) as caught:
        request.build(spec.from_mapping(raw), cwd=str(tmp_path), python=sys.executable)
    assert str(caught.value).startswith(f"key 'deepspeed_config': {tmp_path}/ds.json: {words}")


def test_the_dry_run_shows_the_arithmetic_in_the_script_header(tmp_path: Path) -> None:
    (tmp_path / "ds.json").write_text(json.dumps({"train_batch_size": "auto", "gradient_accumulation_steps": 2,
                                                  "train_micro_batch_size_per_gpu": "auto"}))
    text = render.render(request.build(spec.from_mapping({**SPEC, "deepspeed_config": "ds.json"}), cwd=str(tmp_path),
                                       python=sys.executable))
    assert f"# deepspeed {tmp_path}/ds.json: train_batch_size 64 (computed) = " in text


def test_render_and_submit_dry_run_refuse_a_contradicting_config_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "ds.json").write_text(json.dumps({"train_batch_size": 64, "train_micro_batch_size_per_gpu": 8,
                                                  "gradient_accumulation_steps": 1}))
    (tmp_path / "job.yaml").write_text(json.dumps({**SPEC, "deepspeed_config": "ds.json"}))
    for args in (["render", "job.yaml"], ["submit", "job.yaml", "--dry-run", "--executor", "slurm"]):
        done = hpc_run(args, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert "train_batch_size 64 != train_micro_batch_size_per_gpu 8 x gradient_accumulation_steps 1 x world size 4" in done.stderr
        assert "Traceback" not in done.stderr
    done = hpc_run(["submit", "job.yaml", "--dry-run", "--executor", "slurm", "--nodes", "4"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr  # 8 ranks: the file's own world size
    assert "train_batch_size 64 (from the file) = train_micro_batch_size_per_gpu 8 (from the file) x " \
           "gradient_accumulation_steps 1 (from the file) x world size 8" in done.stdout
