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
    return list(config_check.check(spec.from_mapping(raw), str(tmp_path)).lines)


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
], ids=["all-given", "auto-resolved-from-the-spec", "accumulation-computed", "micro-computed", "train-batch-only",
        "micro-only"])
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
    # The same micro-batch, computed by DeepSpeed from train_batch_size (64 / (1 x 4) = 16), is refused the same way.
    ({"train_batch_size": 64}, {},
     "train_micro_batch_size_per_gpu is 16, computed as train_batch_size 64 / (gradient_accumulation_steps 1 x world size 4), "
     "but the spec's data.batch_size (the per-rank batch) is 8"),
    # DeepSpeed refuses a config with neither batch size; so does the check, rather than show "? (not set)".
    ({}, {}, "neither train_batch_size nor train_micro_batch_size_per_gpu is set, and DeepSpeed refuses such a config"),
    ({"zero_optimization": {"stage": 2}}, {}, "neither train_batch_size nor train_micro_batch_size_per_gpu is set"),
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
        assert checked(tmp_path, accelerate=text)[0] == f"accelerate {tmp_path}/acc.yaml: num_processes 4, num_machines 2, distributed_type (not set)"
        return
    with pytest.raises(SpecError, match="key 'accelerate_config'") as caught:
        checked(tmp_path, accelerate=text)
    assert words in str(caught.value)


def test_an_accelerate_deepspeed_section_is_checked_with_its_own_file(tmp_path: Path) -> None:
    (tmp_path / "zero.json").write_text(json.dumps({"train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto",
                                                    "gradient_accumulation_steps": 2, "zero_optimization": {"stage": 2}}))
    lines = checked(tmp_path, accelerate="distributed_type: DEEPSPEED\nnum_processes: 4\n"
                                         "deepspeed_config:\n  deepspeed_config_file: zero.json\n  zero3_init_flag: false\n",
                    launcher="accelerate")
    assert lines[1] == (f"deepspeed {tmp_path}/zero.json: train_batch_size 64 (computed) = train_micro_batch_size_per_gpu 8 "
                        "(auto: data.batch_size) x gradient_accumulation_steps 2 (from the file) x world size 4 (2 node(s) x 2 task(s))")


@pytest.mark.parametrize(("extra", "named"), [
    ("deepspeed_config:\n  deepspeed_config_file: zero.json\n  gradient_accumulation_steps: 2\n", "deepspeed_config.gradient_accumulation_steps"),
    ("deepspeed_config:\n  deepspeed_config_file: zero.json\n  zero_stage: 2\n", "deepspeed_config.zero_stage"),
    ("mixed_precision: bf16\ndeepspeed_config:\n  deepspeed_config_file: zero.json\n", "mixed_precision"),
], ids=["accumulation", "zero-stage", "mixed-precision"])
def test_settings_accelerate_refuses_beside_a_deepspeed_file_are_refused_before_the_job(extra: str, named: str, tmp_path: Path) -> None:
    # accelerate 1.15's DeepSpeedPlugin raises ValueError on every rank for these (ACCELERATE_CONFIG_DS_FIELDS).
    (tmp_path / "zero.json").write_text(json.dumps({"train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": 4}))
    with pytest.raises(SpecError, match=f"{named} given beside deepspeed_config.deepspeed_config_file; accelerate 1.15 refuses"):
        checked(tmp_path, accelerate="distributed_type: DEEPSPEED\n" + extra)


def test_an_accelerate_deepspeed_section_without_a_file_takes_the_micro_batch_from_the_spec(tmp_path: Path) -> None:
    lines = checked(tmp_path, accelerate="distributed_type: DEEPSPEED\ndeepspeed_config:\n  gradient_accumulation_steps: 4\n  zero_stage: 2\n",
                    launcher="accelerate")
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


def test_a_non_deepspeed_accelerate_config_gets_no_deepspeed_line_for_an_empty_section(tmp_path: Path) -> None:
    lines = checked(tmp_path, accelerate="distributed_type: MULTI_GPU\nnum_processes: 4\ndeepspeed_config: {}\nfsdp_config: {}\n")
    assert lines[0] == f"accelerate {tmp_path}/acc.yaml: num_processes 4, num_machines (not set), distributed_type MULTI_GPU"
    assert not any(line.startswith("deepspeed ") for line in lines)


@pytest.mark.parametrize("name", ["train_batch_size", "train_micro_batch_size_per_gpu"])
def test_batch_sizes_in_the_inline_deepspeed_section_are_refused_as_ignored_by_accelerate(name: str, tmp_path: Path) -> None:
    # accelerate 1.15 builds its DeepSpeed config with both batch sizes "auto" and never reads these keys.
    with pytest.raises(SpecError, match=f"deepspeed_config.{name} is ignored by accelerate") as caught:
        checked(tmp_path, accelerate=f"distributed_type: DEEPSPEED\nnum_processes: 4\ndeepspeed_config:\n  {name}: 1\n  zero_stage: 2\n")
    assert "DeepSpeed JSON and name it there as deepspeed_config_file" in str(caught.value)


@pytest.mark.parametrize(("launcher", "lines_said"), [
    ("srun", ["accelerate_config: checked only: launcher srun does not pass it on; use launcher: accelerate, or load it in your script"]),
    ("accelerate", []),
])
def test_an_accelerate_config_the_launcher_does_not_pass_on_is_said_to_be_checked_only(launcher: str, lines_said: list[str],
                                                                                      tmp_path: Path) -> None:
    lines = checked(tmp_path, accelerate="num_processes: 4\n", launcher=launcher)
    assert [line for line in lines if "checked only" in line] == lines_said


def test_a_deepspeed_config_no_launcher_passes_on_is_said_to_be_checked_only(tmp_path: Path) -> None:
    for launcher in ("srun", "torchrun", "accelerate"):
        lines = checked(tmp_path, {"train_micro_batch_size_per_gpu": "auto"}, launcher=launcher)
        assert lines[-1].startswith("deepspeed_config: checked only: no launcher passes it on; load it in your script")


def test_a_deepspeed_config_the_accelerate_config_names_is_passed_on_not_checked_only(tmp_path: Path) -> None:
    lines = checked(tmp_path, {"train_micro_batch_size_per_gpu": "auto", "zero_optimization": {"stage": 2}}, launcher="accelerate",
                    accelerate="distributed_type: DEEPSPEED\ndeepspeed_config:\n  deepspeed_config_file: ds.json\n")
    assert not any("checked only" in line for line in lines)
    assert [line.split(":")[0] for line in lines] == [f"accelerate {tmp_path}/acc.yaml", f"deepspeed {tmp_path}/ds.json"]


def test_two_different_deepspeed_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "other.json").write_text(json.dumps({"train_batch_size": 999, "train_micro_batch_size_per_gpu": 8}))
    with pytest.raises(SpecError, match=f"names another DeepSpeed file, {tmp_path}/other.json, as its deepspeed_config_file") as caught:
        checked(tmp_path, {"train_micro_batch_size_per_gpu": "auto"}, launcher="accelerate",
                accelerate="distributed_type: DEEPSPEED\ndeepspeed_config:\n  deepspeed_config_file: other.json\n")
    assert str(caught.value).startswith(f"key 'deepspeed_config': {tmp_path}/ds.json: ")


@pytest.mark.parametrize("kind", ["'NO'", "XLA", "MEGATRON_LM"])
def test_a_distributed_type_the_accelerate_launcher_does_not_run_is_refused(kind: str, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=f"distributed_type is '{kind.strip(chr(39))}'; launcher: accelerate runs MULTI_GPU, MULTI_CPU, DEEPSPEED, FSDP"):
        checked(tmp_path, accelerate=f"distributed_type: {kind}\n", launcher="accelerate")


def test_a_spec_deepspeed_file_beside_an_inline_accelerate_section_shows_both_and_says_which_runs(tmp_path: Path) -> None:
    lines = checked(tmp_path, {"train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": 2}, launcher="accelerate",
                    accelerate="distributed_type: DEEPSPEED\ndeepspeed_config:\n  gradient_accumulation_steps: 4\n")
    assert [line.split(": ", 1)[0] for line in lines] == [f"accelerate {tmp_path}/acc.yaml", f"deepspeed {tmp_path}/ds.json",
                                                          "deepspeed_config", f"deepspeed {tmp_path}/acc.yaml"]
    assert "gradient_accumulation_steps 4 (from the file)" in lines[3]


@pytest.mark.parametrize("spec_names_it_too", [False, True])
def test_a_deepspeed_file_for_accelerate_without_zero_optimization_is_refused(spec_names_it_too: bool, tmp_path: Path) -> None:
    # accelerate 1.15's DeepSpeedPlugin: "Please specify the ZeRO optimization config in the DeepSpeed config."
    (tmp_path / "ds.json").write_text(json.dumps({"train_micro_batch_size_per_gpu": "auto"}))
    changes = {"deepspeed_config": "ds.json"} if spec_names_it_too else {}
    with pytest.raises(SpecError, match="no zero_optimization section; accelerate 1.15 refuses a deepspeed_config_file without one"):
        checked(tmp_path, launcher="accelerate", **changes,
                accelerate="distributed_type: DEEPSPEED\ndeepspeed_config:\n  deepspeed_config_file: ds.json\n")
