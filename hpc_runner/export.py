"""``hpc-run export``: a trained run's model as an AOTInductor package (.pt2) that C++ loads.

The run directory says what was trained (``run.json``: the entry and its params) and holds the
weights (``checkpoint.pt``, under ``"model"``). The model is rebuilt by a factory: the demo
emulator's is built in; any other comes from the job spec's ``export:`` section
(``model: package.module:function`` and one example's ``input_shape``). The program is captured
by ``torch.export`` with a dynamic batch dimension, compiled ahead of time by AOTInductor, and
checked against eager PyTorch at several batch sizes before the command says it is done.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import os
import shlex
import shutil
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import checkpoint, sharded_checkpoint, snapshot
from . import spec as spec_mod
from .demo import emulator_export
from .errors import HpcRunnerError, InputError, SpecError
from .schema import ExportSpec, FunctionEntry, ScriptEntry

PACKAGE_NAME = "model.pt2"
EXAMPLE_BATCH = 8  # >= 2: torch.export takes an example size of 1 as a constant and would freeze the batch
CHECK_BATCHES = (1, 3, 17)  # the package must match eager PyTorch at these batch sizes before export succeeds
TOLERANCE = 1e-5
SPEC_HINT = "export: {model: 'package.module:make_model', input_shape: [8]}"
Say = Callable[[str], None]


class ExportError(HpcRunnerError):
    """The model could not be captured or compiled (exit 1); the message says what to try."""


@dataclass(frozen=True)
class TrainedRun:
    """What a run directory says about its model: the entry that trained it, its params, its checkpoint."""

    run_dir: Path
    entry: str  # the function's 'package.module:function', or the script's path
    params: dict[str, Any]
    checkpoint: Path
    recipe: ExportSpec | None = None  # the spec's export section, as the run recorded it


@dataclass(frozen=True)
class Exported:
    """A written package and what was checked about it."""

    package: Path
    input_shape: tuple[int, ...]
    dtype: torch.dtype
    max_difference: float  # largest |package - eager| over CHECK_BATCHES
    compile_seconds: float

    def summary(self) -> str:
        """What to tell the user: the file, its input, the check, and how to run it from C++."""
        shape = ", ".join(["batch", *map(str, self.input_shape)])
        return (f"wrote {self.package}\n"
                f"  input: one {str(self.dtype).removeprefix('torch.')} tensor [{shape}], any batch size\n"
                f"  checked against PyTorch at batch sizes {', '.join(map(str, CHECK_BATCHES))}: largest difference "
                f"{self.max_difference:.1e}\n"
                f"  run it from C++: see examples/cpp (torch::inductor::AOTIModelPackageLoader)")


def read_run(run_dir: Path) -> TrainedRun:
    """The run recorded in ``run_dir``; an InputError says what is missing and how to get it."""
    if not run_dir.is_dir():
        raise InputError(f"run directory {run_dir} does not exist\n  hint: pass the output_dir of a finished "
                         "training run, e.g. runs/emulator (hpc-run submit prints it as 'output:')")
    record = run_dir / "run.json"
    if not record.is_file():
        raise InputError(f"{run_dir} is not a run directory: it has no run.json\n  hint: hpc_runner writes run.json "
                         "when training starts; pass the output_dir of a run started by hpc-run")
    try:
        recorded = json.loads(record.read_text())
        config = recorded["config"]
        entry = config["entry"]
        target, params = entry.get("target") or entry["path"], dict(entry.get("params") or {})
        target = snapshot.original(target, recorded.get("code"))  # a script run from its code snapshot: the project's file
        recipe = spec_mod.export_section(config.get("export"), source=str(record))
    except (ValueError, KeyError, TypeError, AttributeError, SpecError):
        raise InputError(f"{record} does not say which entry trained the run\n  hint: it is damaged or was not "
                         "written by hpc_runner; pass the output_dir of a run started by hpc-run") from None
    weights = run_dir / checkpoint.CHECKPOINT_NAME
    if not weights.is_file():
        raise _no_checkpoint(run_dir)
    return TrainedRun(run_dir=run_dir, entry=target, params=params, checkpoint=weights, recipe=recipe)


def _no_checkpoint(run_dir: Path) -> InputError:
    """Why ``run_dir`` has no checkpoint.pt to export, and what to do: sharded saves are gathered first."""
    name = checkpoint.CHECKPOINT_NAME
    sharded = _sharded_save(run_dir)
    if sharded is not None:
        gather = _python_command("from torch.distributed.checkpoint.format_utils import dcp_to_torch_save; "
                                 f"dcp_to_torch_save({json.dumps(str(sharded))}, {json.dumps(str(run_dir / name))})")
        return InputError(f"{run_dir} holds a sharded checkpoint ({sharded}) but no {name}, and export cannot read "
                          f"sharded (DCP) checkpoints yet\n  hint: gather it into one file with its 'model' entry, "
                          f"then export again: {gather}")
    full = _accelerate_weights(run_dir)
    if full is not None:
        read = "safetensors.torch.load_file" if full.suffix == ".safetensors" else "torch.load"
        source, target = json.dumps(str(full)), json.dumps(str(run_dir / name))
        write = _python_command(f"import torch, safetensors.torch; torch.save({{'model': {read}({source})}}, {target})")
        return InputError(f"{run_dir} holds accelerate save_state weights ({full}) but no {name}, which export reads"
                          f"\n  hint: write them as its 'model' entry, then export again: {write}")
    return InputError(f"{run_dir} has no checkpoint ({name})\n  hint: it is written by ctx.save_checkpoint({{'model': "
                      "model.state_dict(), ...}) (the demo calls it at the end of every epoch): let the run finish "
                      "an epoch (or resume it), or, if its entry never calls save_checkpoint, add that call")


def _python_command(code: str) -> str:
    """A shell line that runs ``code`` with the interpreter running hpc-run (it has torch), quoted."""
    return shlex.join([sys.executable, "-c", code])


def _sharded_save(run_dir: Path) -> Path | None:
    """The latest complete DCP save in the run (ours under checkpoints/, or accelerate's), if any."""
    ours = sharded_checkpoint.latest_complete(run_dir / sharded_checkpoint.CHECKPOINTS_DIR)
    if ours is not None:
        return ours.path
    found = [p.parent for p in _within(run_dir, sharded_checkpoint.METADATA_NAME)
             if not p.parent.name.startswith("optimizer")]  # accelerate keeps the optimizer's shards apart
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _accelerate_weights(run_dir: Path) -> Path | None:
    """A full state dict that accelerate's ``save_state`` wrote in the run, if any."""
    found = [p for name in ("model.safetensors", "pytorch_model.bin") for p in _within(run_dir, name)]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _within(run_dir: Path, name: str, depth: int = 3) -> list[Path]:
    """Files called ``name`` at most ``depth`` folders below ``run_dir``."""
    return [p for level in range(depth + 1) for p in run_dir.glob("/".join(["*"] * level + [name])) if p.is_file()]


def recipe_for(run: TrainedRun, spec_path: str | None) -> ExportSpec:
    """The factory and input shape: the spec's ``export:`` section, else the built-in one of the demo emulator."""
    if spec_path is not None:
        job = spec_mod.load(spec_path, [])
        trained_by = _trained_by(job.entrypoint)
        if trained_by != run.entry:
            raise InputError(f"{spec_path} runs {trained_by}, but {run.run_dir} was trained by {run.entry}"
                             "\n  hint: pass the spec the run was trained from (a relative script path is found "
                             "from the current directory, as hpc-run submit does: export from where you submitted)")
        if job.export is not None:
            return job.export
    if run.recipe is not None:
        return run.recipe
    if run.entry == emulator_export.ENTRY:
        return emulator_export.EXPORT
    if spec_path is not None:
        raise InputError(f"{spec_path}: no 'export' section, so no model factory to rebuild the model from"
                         f"\n  hint: add {SPEC_HINT} (a function returning the untrained nn.Module)")
    raise InputError(f"{run.run_dir} was trained by {run.entry}, and hpc-run does not know how to rebuild its model"
                     f"\n  hint: add {SPEC_HINT} to its job spec (runs started from it record it), or pass that spec: "
                     f"hpc-run export {run.run_dir} --spec SPEC")


def _trained_by(entry: FunctionEntry | ScriptEntry) -> str:
    """What run.json records as the entry: the function, or the script's absolute path (as submit makes it)."""
    if isinstance(entry, FunctionEntry):
        return entry.target
    return os.path.abspath(os.path.join(os.getcwd(), os.path.expanduser(entry.path)))


def rebuild(run: TrainedRun, recipe: ExportSpec) -> nn.Module:
    """The factory's model with the run's trained weights, in eval mode."""
    model = _call_factory(_import_factory(recipe.model), run.params)
    if not isinstance(model, nn.Module):
        raise InputError(f"export.model {recipe.model} returned a {type(model).__name__}, not a torch.nn.Module")
    state = checkpoint.load(run.checkpoint) or {}
    weights = state.get("model")
    if not isinstance(weights, dict):
        raise InputError(f"{run.checkpoint} holds no 'model' entry (it has: {', '.join(sorted(state)) or 'nothing'})"
                         "\n  hint: save the weights as ctx.save_checkpoint({'model': model.state_dict(), ...})")
    weights = dict(weights)
    torch.nn.modules.utils.consume_prefix_in_state_dict_if_present(weights, "module.")  # saved from a DDP wrapper
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:  # torch lists each missing, unexpected or mis-sized tensor on a line of its own
        details = "; ".join(line.strip() for line in str(exc).splitlines()[1:4] if line.strip())
        raise InputError(f"the weights in {run.checkpoint} do not fit the model {recipe.model} builds: "
                         f"{details or _first_line(exc)}\n  hint: the factory must build the model the run trained, "
                         "from the same params") from None
    return model.eval()


def _import_factory(target: str) -> Callable[..., Any]:
    module_name, _, name = target.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise InputError(f"export.model {target} cannot be imported: {exc}\n  hint: install its package or put "
                         "its folder on PYTHONPATH") from None
    return factory


def _call_factory(factory: Callable[..., Any], params: dict[str, Any]) -> Any:
    """Call the factory with the entry's params it names (all of them where it takes ``**kwargs``)."""
    signature = inspect.signature(factory)
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        params = {k: v for k, v in params.items() if k in signature.parameters}
    try:
        signature.bind(**params)
    except TypeError as exc:
        raise InputError(f"the model factory {factory.__module__}:{factory.__qualname__} cannot be called with the "
                         f"run's params {sorted(params)}: {exc}\n  hint: give its other arguments defaults") from None
    return factory(**params)


def example_input(model: nn.Module, recipe: ExportSpec, batch: int) -> torch.Tensor:
    """A seeded random input of ``batch`` examples, in the dtype of the model's weights."""
    dtypes = [p.dtype for p in model.parameters() if p.is_floating_point()]
    generator = torch.Generator().manual_seed(batch)
    return torch.randn((batch, *recipe.input_shape), generator=generator, dtype=dtypes[0] if dtypes else torch.float32)


def check_input_shape(model: nn.Module, recipe: ExportSpec) -> None:
    """Run the model eagerly on the example input, so a wrong ``export.input_shape`` is named as such."""
    x = example_input(model, recipe, EXAMPLE_BATCH)
    try:
        with torch.no_grad():
            model(x)
    except Exception as exc:  # a model may raise anything on an input that does not fit; all mean "not this shape"
        shape = list(recipe.input_shape)
        raise InputError(f"the model fails on an example input of shape {list(x.shape)} (batch {EXAMPLE_BATCH}, then "
                         f"export.input_shape {shape}): {_first_line(exc)}\n  hint: check export.input_shape "
                         f"({shape}) against the model's first layer: one example's shape, without the batch "
                         "dimension") from None


def capture(model: nn.Module, recipe: ExportSpec) -> torch.export.ExportedProgram:
    """``torch.export`` of the model with the batch dimension dynamic (1 and up)."""
    check_input_shape(model, recipe)
    batch = torch.export.Dim("batch", min=1)
    try:
        return torch.export.export(model, (example_input(model, recipe, EXAMPLE_BATCH),), dynamic_shapes=({0: batch},))
    except Exception as exc:  # torch.export raises many kinds; each is a model it cannot capture
        raise ExportError(f"torch.export could not capture the model: {_first_line(exc)}\n  hint: torch.export needs "
                          "code without data-dependent Python control flow, and a batch size the model does not fix "
                          "(no reshape to a constant batch); see https://pytorch.org/docs/stable/export.html") from exc


def compile_package(program: torch.export.ExportedProgram, package: Path, say: Say) -> float:
    """Compile with AOTInductor into ``package``; returns the seconds it took."""
    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler) is None:
        raise ExportError(f"AOTInductor compiles C++ and needs {compiler}, which is not on PATH\n  hint: install it "
                          "(apt-get install g++) or point CXX at a C++ compiler")
    package.parent.mkdir(parents=True, exist_ok=True)  # check_destination found it creatable
    started = time.monotonic()
    try:
        with _heartbeat(say, "compiling"), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch-internal deprecation chatter
            torch._inductor.aoti_compile_and_package(program, package_path=str(package))
    except Exception as exc:  # inductor and the C++ compiler fail in many ways; all mean "not compiled"
        raise ExportError(f"AOTInductor could not compile the model: {_first_line(exc)}\n  hint: rerun with "
                          "TORCH_LOGS=output_code to see the generated code; check that the C++ compiler works "
                          f"({compiler} --version) and the disk has space under {package.parent}") from exc
    return time.monotonic() - started


def check_destination(package: Path) -> None:
    """Refuse, before any work, a package path whose folder cannot be made or written."""
    if package.is_dir():
        raise InputError(f"--output {package} is a folder\n  hint: name the file to write, e.g. "
                         f"{package / PACKAGE_NAME}")
    existing = next(p for p in (package.parent, *package.parent.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise InputError(f"--output {package} cannot be written: {existing} is a file, not a folder"
                         "\n  hint: choose a path under a folder (or one that can be made)")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise InputError(f"--output {package} cannot be written: no file can be made in {existing} "
                         f"({exc.strerror or exc})\n  hint: choose a folder you can write to") from None


def check_package(package: Path, model: nn.Module, recipe: ExportSpec) -> float:
    """Largest difference between the package and eager PyTorch over CHECK_BATCHES; an error past TOLERANCE."""
    compiled = torch._inductor.aoti_load_package(str(package))
    worst = 0.0
    with torch.no_grad():
        for batch in CHECK_BATCHES:
            x = example_input(model, recipe, batch)
            worst = max(worst, float((compiled(x) - model(x)).abs().max()))
    if worst > TOLERANCE:
        raise ExportError(f"{package} differs from the PyTorch model by {worst:.1e} (more than {TOLERANCE:.0e})"
                          "\n  hint: this is a compiler problem; please report it with the model")
    return worst


def export_run(run_dir: Path, package: Path | None = None, spec_path: str | None = None,
               say: Say = print) -> Exported:
    """Rebuild the run's trained model, export it with a dynamic batch, compile it, check it, write it."""
    run = read_run(run_dir)
    package = package or run_dir / PACKAGE_NAME
    if package.suffix != ".pt2":
        raise InputError(f"--output {package}: an AOTInductor package's name ends in .pt2")
    check_destination(package)
    recipe = recipe_for(run, spec_path)
    say(f"rebuilding {recipe.model} with the weights in {run.checkpoint}")
    model = rebuild(run, recipe)
    say(f"capturing it with torch.export (batch dimension dynamic, example batch {EXAMPLE_BATCH})")
    program = capture(model, recipe)
    say("compiling it with AOTInductor into C++ (often a minute)")
    seconds = compile_package(program, package, say)
    say(f"compiled in {seconds:.0f} s; checking it against PyTorch")
    worst = check_package(package, model, recipe)
    return Exported(package=package, input_shape=recipe.input_shape, dtype=example_input(model, recipe, 1).dtype,
                    max_difference=worst, compile_seconds=seconds)


@contextlib.contextmanager
def _heartbeat(say: Say, doing: str, every_s: float = 15.0) -> Iterator[None]:
    """Say every ``every_s`` seconds that the work goes on, so a long compile does not look hung."""
    started, done = time.monotonic(), threading.Event()

    def beat() -> None:
        while not done.wait(every_s):
            say(f"  still {doing} ({time.monotonic() - started:.0f} s)")

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
