"""Taking the trained emulator to C++ inference: `hpc-run export RUN_DIR` writes an AOTInductor
package; the C++ example, built against the torch wheel's libtorch, runs it with PyTorch's outputs
at any batch size. And every way it can go wrong says what to do."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from hpc_runner import checkpoint, cpp_example, export, request, sharded_checkpoint, tensor_file
from hpc_runner.cli import cli
from hpc_runner.demo import emulator
from hpc_runner.run_config import RunConfig
from hpc_runner.schema import Entry, ExportSpec, FunctionEntry, ScriptEntry
from hpc_runner.spec import from_mapping
from tests.conftest import EMULATOR, ROOT, SMALL, hpc_run

BATCHES = (1, 7, 64)
HIDDEN = 16  # SMALL's width
MISSING_TOOLS = [tool for tool in ("g++", "cmake") if shutil.which(tool) is None]


def needs_compilers() -> None:
    """AOTInductor and the C++ example need g++ and cmake; make test installs them as root."""
    if MISSING_TOOLS:
        pytest.skip(f"{' and '.join(MISSING_TOOLS)} missing: make test installs them as root (apt-get install g++ cmake)")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo emulator trained for real (2 epochs of SMALL), as a user would: hpc-run submit."""
    out = tmp_path_factory.mktemp("export") / "emulator"
    result = hpc_run(["submit", EMULATOR, "--executor", "local", "--nodes", "1", "--wait",
                      "--set", f"output_dir={out}", *SMALL])
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture(scope="session")
def exported(trained_run: Path) -> subprocess.CompletedProcess[str]:
    """`hpc-run export` of that run (it compiles for about a minute on 2 cores)."""
    needs_compilers()
    result = hpc_run(["export", str(trained_run)], timeout=900)
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="session")
def cpp_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/cpp built with the README's cmake lines, once per test session."""
    needs_compilers()
    return cpp_example.build(tmp_path_factory.mktemp("cpp-build"))


def trained_model(run_dir: Path) -> torch.nn.Module:
    """The emulator with the run's weights, rebuilt here by hand (not by the code under test)."""
    model = emulator.build_model(HIDDEN, 0, torch.float32)
    model.load_state_dict(checkpoint.load(run_dir / "checkpoint.pt")["model"])
    return model.eval()


@pytest.mark.slow
def test_export_says_what_it_wrote_and_that_it_matches_pytorch(trained_run: Path,
                                                               exported: subprocess.CompletedProcess[str]) -> None:
    assert f"wrote {trained_run / 'model.pt2'}" in exported.stdout
    assert "input: one float32 tensor [batch, 8], any batch size" in exported.stdout
    assert "checked against PyTorch at batch sizes 1, 3, 17" in exported.stdout
    assert "compiling it with AOTInductor" in exported.stderr  # progress while it takes a while


@pytest.mark.slow
def test_the_cpp_example_reproduces_python_at_several_batch_sizes(trained_run: Path, exported: object,
                                                                  cpp_program: Path) -> None:
    model = trained_model(trained_run)
    for batch in BATCHES:
        x = torch.randn(batch, emulator.IN_DIM, generator=torch.Generator().manual_seed(batch))
        from_cpp = cpp_example.infer(cpp_program, trained_run / "model.pt2", x)
        with torch.no_grad():
            from_python = model(x)
        assert from_cpp.shape == (batch, emulator.OUT_DIM)
        assert torch.allclose(from_cpp, from_python, rtol=0, atol=1e-5), (batch, (from_cpp - from_python).abs().max())


@pytest.mark.slow
def test_the_cpp_example_times_the_package(trained_run: Path, exported: object, cpp_program: Path) -> None:
    seconds = cpp_example.seconds_per_call(cpp_program, trained_run / "model.pt2", torch.ones(1, emulator.IN_DIM),
                                           iterations=10, threads=1)
    assert 0 < seconds < 1


@pytest.mark.slow
def test_the_cpp_example_names_a_wrong_input_without_a_stack(trained_run: Path, exported: object, cpp_program: Path,
                                                              tmp_path: Path) -> None:
    wrong = tensor_file.write(torch.ones(2, 3), tmp_path / "x.tensor")
    result = subprocess.run([str(cpp_program), str(trained_run / "model.pt2"), str(wrong), str(tmp_path / "y.tensor")],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "aoti_infer: mat1 and mat2 shapes cannot be multiplied" in result.stderr
    assert "Exception raised from" not in result.stderr


def test_the_exported_program_keeps_the_batch_dimension_dynamic() -> None:
    recipe = ExportSpec(model="tests.fixtures.export_models:small_mlp", input_shape=(3,))
    program = export.capture(torch.nn.Linear(3, 2), recipe)
    batch = program.graph_module.graph.find_nodes(op="placeholder")[-1].meta["val"].shape[0]
    assert isinstance(batch, torch.SymInt)  # an example batch of 1 would have made it the constant 1
    assert program.module()(torch.ones(5, 3)).shape == (5, 2)


# --- a model of your own: the spec's export section names its factory ---------------------------

def recorded_run(folder: Path, function: str, params: dict[str, object], weights: dict | None = None,
                 recipe: ExportSpec | None = None, entry: Entry | None = None) -> Path:
    """A run directory as the entrypoint records it (run.json) with, optionally, a checkpoint."""
    entry = entry or FunctionEntry(function, params)
    config = RunConfig(mode="gloo", entry=entry, output_dir=str(folder), init_timeout_s=300,
                       data=None, max_restarts=0, collective_timeout_s=1800, resume="auto", requeue_handler="auto",
                       export=recipe)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.json").write_text(json.dumps({"config": dataclasses.asdict(config), "world_size": 1}))
    if weights is not None:
        checkpoint.save_atomic({"model": weights, "epoch": 1}, folder / "checkpoint.pt")
    return folder


def spec_file(folder: Path, function: str, export_section: str | None) -> str:
    path = folder / "job.yaml"
    path.write_text(f"name: mine\nentrypoint:\n  function: {function}\n  params: {{width: 6, lr: 0.1}}\n"
                    + (f"export: {export_section}\n" if export_section else ""))
    return str(path)


def test_a_spec_factory_rebuilds_the_trained_model_with_its_params(tmp_path: Path) -> None:
    from tests.fixtures.export_models import small_mlp

    trained = small_mlp(width=6)
    run = export.read_run(recorded_run(tmp_path / "run", "mine.train:main", {"width": 6, "lr": 0.1}, trained.state_dict()))
    spec = spec_file(tmp_path, "mine.train:main", "{model: 'tests.fixtures.export_models:small_mlp', input_shape: [3]}")
    rebuilt = export.rebuild(run, export.recipe_for(run, spec))
    x = torch.randn(4, 3)
    assert torch.equal(rebuilt(x), trained(x))  # width 6 from the run's params, lr left out, weights loaded


def test_a_run_records_its_spec_export_section_for_later() -> None:
    job = from_mapping({"name": "mine", "entrypoint": {"function": "mine.train:main"},
                        "export": {"model": "tests.fixtures.export_models:grid_mlp", "input_shape": [2, 3]}})
    config = request.build(job).config  # what every rank's argv carries, and rank 0 writes to run.json
    assert RunConfig.from_argv(config.to_argv()).export == ExportSpec("tests.fixtures.export_models:grid_mlp", (2, 3))


@pytest.mark.slow
def test_a_model_of_your_own_goes_to_cpp_from_its_run_record(tmp_path: Path, cpp_program: Path) -> None:
    from tests.fixtures.export_models import grid_mlp

    needs_compilers()
    trained = grid_mlp(width=6).eval()
    run = recorded_run(tmp_path / "run", "mine.train:main", {"width": 6, "lr": 0.1}, trained.state_dict(),
                       ExportSpec("tests.fixtures.export_models:grid_mlp", (2, 3)))  # as the spec's export: recorded it
    result = hpc_run(["export", str(run), "-o", str(tmp_path / "serve" / "grid.pt2")],
                     env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=900)
    assert result.returncode == 0, result.stderr
    assert "input: one float32 tensor [batch, 2, 3], any batch size" in result.stdout
    x = torch.randn(5, 2, 3)
    with torch.no_grad():
        assert torch.allclose(cpp_example.infer(cpp_program, tmp_path / "serve" / "grid.pt2", x), trained(x), rtol=0, atol=1e-5)


def test_the_demo_emulator_needs_no_export_section(tmp_path: Path) -> None:
    run = export.read_run(recorded_run(tmp_path / "run", "hpc_runner.demo.emulator:train", {"hidden": 16}, {}))
    built_in = ExportSpec(model="hpc_runner.demo.emulator_export:model", input_shape=(emulator.IN_DIM,))
    assert export.recipe_for(run, None) == export.recipe_for(run, EMULATOR) == built_in


# --- what goes wrong says what to do -------------------------------------------------------------

def run_export(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["export", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_a_missing_run_directory_is_named(tmp_path: Path) -> None:
    code, output = run_export(str(tmp_path / "nope"))
    assert code == 2 and "does not exist" in output and "output_dir of a finished training run" in output


def test_a_folder_that_is_no_run_is_named(tmp_path: Path) -> None:
    code, output = run_export(str(tmp_path))
    assert code == 2 and "has no run.json" in output


def test_a_run_without_checkpoint_says_to_finish_an_epoch(tmp_path: Path) -> None:
    code, output = run_export(str(recorded_run(tmp_path / "run", "hpc_runner.demo.emulator:train", {})))
    assert code == 2 and "has no checkpoint" in output and "finish an epoch" in output


def test_a_model_without_factory_asks_for_the_export_section(tmp_path: Path) -> None:
    run = recorded_run(tmp_path / "run", "mine.train:main", {}, {})
    code, output = run_export(str(run))
    assert code == 2 and "does not know how to rebuild its model" in output
    assert "export: {model: 'package.module:make_model', input_shape: [8]}" in output and "--spec" in output
    code, output = run_export(str(run), "--spec", spec_file(tmp_path, "mine.train:main", None))
    assert code == 2 and "no 'export' section" in output


def test_the_spec_of_another_run_is_refused(tmp_path: Path) -> None:
    run = recorded_run(tmp_path / "run", "mine.train:main", {}, {})
    spec = spec_file(tmp_path, "other.train:main", "{model: 'tests.fixtures.export_models:small_mlp', input_shape: [3]}")
    code, output = run_export(str(run), "--spec", spec)
    assert code == 2 and "runs other.train:main, but" in output


def test_weights_that_do_not_fit_the_factory_are_named(tmp_path: Path) -> None:
    from tests.fixtures.export_models import small_mlp

    run = recorded_run(tmp_path / "run", "mine.train:main", {"width": 5}, small_mlp(width=6).state_dict())
    spec = spec_file(tmp_path, "mine.train:main", "{model: 'tests.fixtures.export_models:small_mlp', input_shape: [3]}")
    code, output = run_export(str(run), "--spec", spec)
    assert code == 2 and "do not fit the model" in output and "size mismatch" in output


def test_a_model_torch_export_cannot_capture_says_why(tmp_path: Path) -> None:
    from tests.fixtures.export_models import data_dependent

    run = recorded_run(tmp_path / "run", "mine.train:main", {}, data_dependent().state_dict())
    spec = spec_file(tmp_path, "mine.train:main", "{model: 'tests.fixtures.export_models:data_dependent', input_shape: [3]}")
    code, output = run_export(str(run), "--spec", spec)
    assert code == 1 and "torch.export could not capture the model" in output and "data-dependent" in output


def test_a_missing_compiler_is_named_before_compiling(tmp_path: Path) -> None:
    from tests.fixtures.export_models import small_mlp

    run = recorded_run(tmp_path / "run", "mine.train:main", {}, small_mlp().state_dict())
    spec = spec_file(tmp_path, "mine.train:main", "{model: 'tests.fixtures.export_models:small_mlp', input_shape: [3]}")
    result = hpc_run(["export", str(run), "--spec", spec], env={**os.environ, "CXX": "no-such-c++", "PYTHONPATH": str(ROOT)})
    assert result.returncode == 1 and "needs no-such-c++, which is not on PATH" in result.stderr
    assert "apt-get install g++" in result.stderr and "Traceback" not in result.stderr
    assert not (run / "model.pt2").exists()


def test_a_damaged_run_record_is_named(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text("{not json")
    code, output = run_export(str(tmp_path))
    assert code == 2 and "does not say which entry trained the run" in output


def test_a_factory_that_needs_more_than_the_run_recorded_is_named(tmp_path: Path) -> None:
    run = recorded_run(tmp_path / "run", "mine.train:main", {}, {})
    spec = spec_file(tmp_path, "mine.train:main", "{model: 'tests.fixtures.export_models:needs_depth', input_shape: [3]}")
    code, output = run_export(str(run), "--spec", spec)
    assert code == 2 and "cannot be called with the run's params" in output and "'depth'" in output


# --- review findings: each was a wrong answer or a traceback ---------------------------------------

SMALL_MLP_EXPORT = "{model: 'tests.fixtures.export_models:small_mlp', input_shape: [3]}"


def test_a_spec_with_a_relative_script_path_matches_the_run_it_trained(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "train.py"  # run.json records the absolute path submit made of `script: train.py`
    run = export.read_run(recorded_run(tmp_path / "run", "", {}, {}, entry=ScriptEntry(str(script))))
    spec = tmp_path / "job.yaml"
    spec.write_text(f"name: mine\nentrypoint:\n  script: train.py\nexport: {SMALL_MLP_EXPORT}\n")
    monkeypatch.chdir(tmp_path)  # where it was submitted from, as the README's own form
    assert export.recipe_for(run, "job.yaml") == ExportSpec("tests.fixtures.export_models:small_mlp", (3,))
    monkeypatch.chdir(tmp_path / "run")  # elsewhere, train.py is another file: refused, saying why
    with pytest.raises(export.InputError, match="from the current directory, as hpc-run submit does"):
        export.recipe_for(run, str(spec))


def run_hint(run: Path) -> str:
    """Export the run, which must refuse it (exit 2); returns the shell command its hint gives."""
    code, output = run_export(str(run))
    assert code == 2 and "finish an epoch" not in output, output
    return output.split("then export again: ", 1)[1].strip()


def follow(command: str) -> None:
    """Run a hint's command in a shell, as the user would paste it."""
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_sharded_checkpoint_is_named_with_the_command_that_gathers_it(tmp_path: Path) -> None:
    import torch.distributed.checkpoint as dcp
    from tests.fixtures.export_models import small_mlp

    trained = small_mlp()
    run = recorded_run(tmp_path / "my run's", "mine.train:main", {}, recipe=ExportSpec(
        "tests.fixtures.export_models:small_mlp", (3,)))  # a quote in the path: the hint must still run
    step = sharded_checkpoint.step_path(run / sharded_checkpoint.CHECKPOINTS_DIR, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no process group: DCP saves as one process
        dcp.save({"model": trained.state_dict(), "optimizer": {}}, checkpoint_id=step)
    (step / sharded_checkpoint.COMMIT_NAME).write_text("{}")
    command = run_hint(run)
    assert "dcp_to_torch_save" in command and str(step) in " ".join(shlex.split(command))
    follow(command)
    rebuilt = export.rebuild(export.read_run(run), export.recipe_for(export.read_run(run), None))
    x = torch.randn(4, 3)
    assert torch.equal(rebuilt(x), trained(x))


def test_accelerate_save_state_weights_are_named_with_the_command_that_converts_them(tmp_path: Path) -> None:
    from safetensors.torch import save_file
    from tests.fixtures.export_models import small_mlp

    trained = small_mlp()
    run = recorded_run(tmp_path / "run", "mine.train:main", {}, recipe=ExportSpec(
        "tests.fixtures.export_models:small_mlp", (3,)))
    (run / "checkpoints" / "checkpoint_0").mkdir(parents=True)
    save_file(trained.state_dict(), run / "checkpoints" / "checkpoint_0" / "model.safetensors")
    command = run_hint(run)
    assert "safetensors.torch.load_file" in command
    follow(command)
    rebuilt = export.rebuild(export.read_run(run), export.recipe_for(export.read_run(run), None))
    x = torch.randn(4, 3)
    assert torch.equal(rebuilt(x), trained(x))


def test_a_run_without_any_checkpoint_says_to_call_save_checkpoint(tmp_path: Path) -> None:
    code, output = run_export(str(recorded_run(tmp_path / "run", "mine.train:main", {})))
    assert code == 2 and "has no checkpoint" in output and "never calls save_checkpoint" in output


@pytest.mark.parametrize("where, says", [
    ("a file/m.pt2", "is a file, not a folder"),
    ("/proc/hpc-runner-test/m.pt2", "no file can be made in /proc"),
])
def test_an_output_that_cannot_be_written_is_named_before_any_work(tmp_path: Path, where: str, says: str) -> None:
    from tests.fixtures.export_models import small_mlp

    (tmp_path / "a file").write_text("")
    run = recorded_run(tmp_path / "run", "mine.train:main", {}, small_mlp().state_dict(),
                       ExportSpec("tests.fixtures.export_models:small_mlp", (3,)))
    code, output = run_export(str(run), "-o", str(tmp_path / where))
    assert code == 2 and says in output and "--output" in output, output
    assert "rebuilding" not in output  # refused before the model is rebuilt, let alone compiled


@pytest.mark.slow
@pytest.mark.parametrize("args, says", [
    (["--bench"], "--bench needs one ITERATIONS count"),
    (["--bench", "-5"], "--bench needs a positive integer, got '-5'"),
    (["--bench", "0"], "--bench needs a positive integer, got '0'"),
    (["--bench", "abc"], "--bench needs a positive integer, got 'abc'"),
    (["--bench", "3", "--threads", "x"], "--threads needs a positive integer, got 'x'"),
    (["--bench", "3", "--threads"], "--threads needs a positive integer"),
    (["out.tensor", "extra"], "unexpected argument 'extra'"),
    ([], "expected MODEL.pt2 INPUT.tensor"),
])
def test_the_cpp_example_refuses_bad_arguments_with_its_usage(cpp_program: Path, tmp_path: Path, args: list[str],
                                                              says: str) -> None:
    argv = [str(cpp_program), *([str(tmp_path / "m.pt2"), str(tmp_path / "x.tensor")] if args else []), *args]
    result = subprocess.run(argv, capture_output=True, text=True)
    assert result.returncode == 2 and says in result.stderr and "usage: aoti_infer" in result.stderr, result
    assert result.stdout == ""  # no half JSON line


def test_a_wrong_input_shape_is_named_without_torch_noise(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from tests.fixtures.export_models import small_mlp

    run = recorded_run(tmp_path / "run", "mine.train:main", {}, small_mlp().state_dict())
    spec = spec_file(tmp_path, "mine.train:main", "{model: 'tests.fixtures.export_models:small_mlp', input_shape: [7]}")
    code, output = run_export(str(run), "--spec", spec)
    printed = output + capfd.readouterr().err
    assert code == 2 and "check export.input_shape ([7]) against the model's first layer" in output
    assert "data-dependent" not in printed and "fake_tensor" not in printed and "meta for" not in printed
