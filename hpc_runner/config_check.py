"""DeepSpeed and accelerate config files a spec points at, read and checked against the spec's world size.

DeepSpeed's rule is ``train_batch_size = train_micro_batch_size_per_gpu x gradient_accumulation_steps x
world size``; a config written for another cluster silently trains with another batch (or stops deep
inside the job). Here the dry run reads the files, resolves ``"auto"`` from the spec (``data.batch_size``
is the per-rank batch), computes what is missing the way DeepSpeed does, shows the arithmetic, and refuses
a file that contradicts the spec. Settings accelerate 1.15 would ignore or refuse at run time are refused
here; a config no launcher hands to the job is said to be "checked only". The accelerate config's
``distributed_type`` is kept (``Checked.accelerate``) for the launcher to choose accelerate's mode.
No DeepSpeed or accelerate import: only the files' own words.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import yaml

from .errors import SpecError
from .schema import JobSpec

TRAIN_BATCH = "train_batch_size"
MICRO_BATCH = "train_micro_batch_size_per_gpu"
GRAD_ACCUM = "gradient_accumulation_steps"
AUTO = "auto"


@dataclass(frozen=True)
class Value:
    """One batch number and where it came from, in words ("from the file", "auto: data.batch_size", "computed")."""

    number: int | None
    origin: str

    def show(self) -> str:
        """``8 (from the file)``, or ``? (auto, unresolved)``."""
        return f"{'?' if self.number is None else self.number} ({self.origin})"


@dataclass(frozen=True)
class BatchArithmetic:
    """DeepSpeed's three batch numbers for one world size, resolved as far as the spec allows."""

    source: str
    train_batch: Value
    micro_batch: Value
    grad_accum: Value
    world_size: int
    layout: str  # "2 node(s) x 2 task(s)"

    def line(self) -> str:
        """The arithmetic as the dry run prints it."""
        return (f"deepspeed {self.source}: {TRAIN_BATCH} {self.train_batch.show()} = {MICRO_BATCH} "
                f"{self.micro_batch.show()} x {GRAD_ACCUM} {self.grad_accum.show()} x world size {self.world_size} ({self.layout})")


# The distributed_type values hpc_runner's `launcher: accelerate` runs (None: the file does not say; MULTI_GPU).
DISTRIBUTED_TYPES = ("MULTI_GPU", "MULTI_CPU", "DEEPSPEED", "FSDP")
# accelerate 1.15 builds its own DeepSpeed config with both batch sizes "auto" and never reads these two
# from an accelerate config's deepspeed_config section (only from a deepspeed_config_file).
IGNORED_INLINE = (TRAIN_BATCH, MICRO_BATCH)
# Section keys (and the top-level mixed_precision) that accelerate 1.15 refuses next to a deepspeed_config_file:
# DeepSpeedPlugin raises ValueError on every rank (_deepspeed_config_checks); they belong in the JSON.
REFUSED_WITH_FILE = (GRAD_ACCUM, "gradient_clipping", "zero_stage", "offload_optimizer_device", "offload_param_device",
                     "offload_param_nvme_path", "offload_optimizer_nvme_path", "zero3_save_16bit_model")


@dataclass(frozen=True)
class AccelerateFile:
    """What an accelerate config says about the job's shape (and its DeepSpeed section, if any)."""

    source: str
    num_processes: int | None
    num_machines: int | None
    distributed_type: str | None  # one of DISTRIBUTED_TYPES, or None where the file does not say
    grad_accum: int | str | None  # deepspeed_config.gradient_accumulation_steps
    deepspeed_file: str | None  # deepspeed_config.deepspeed_config_file

    @property
    def has_deepspeed(self) -> bool:
        """accelerate runs DeepSpeed (distributed_type DEEPSPEED), whatever sections the file also holds."""
        return self.distributed_type == "DEEPSPEED"

    def line(self) -> str:
        """The accelerate config as the dry run prints it."""
        return (f"accelerate {self.source}: num_processes {self.num_processes if self.num_processes is not None else '(not set)'}, "
                f"num_machines {self.num_machines if self.num_machines is not None else '(not set)'}, "
                f"distributed_type {self.distributed_type or '(not set)'}")


@dataclass(frozen=True)
class Checked:
    """What the check found: the dry run's lines, and the accelerate config (if any) the launcher follows."""

    lines: tuple[str, ...]
    accelerate: AccelerateFile | None


def _fail(key: str, source: str, message: str, hint: str) -> SpecError:
    return SpecError(f"key '{key}': {source}: {message}\n  hint: {hint}")


def _read(key: str, path: str, parse: Any, kind: str) -> dict[str, Any]:
    """A config file as a mapping; unreadable or malformed files name the spec key and the file."""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = parse(handle.read())
    except OSError as exc:
        raise _fail(key, path, f"cannot read the {kind} config ({exc.strerror})",
                    "check the path (relative to where you submit) or remove the key") from None
    except (ValueError, yaml.YAMLError) as exc:
        raise _fail(key, path, f"not a valid {kind} config: {str(exc).splitlines()[0]}",
                    f"fix the file's syntax (it must hold one {kind} mapping)") from None
    if not isinstance(raw, dict):
        raise _fail(key, path, f"expected a mapping of keys ({kind}), got {type(raw).__name__}", "fix the file")
    return raw


def _batch_number(key: str, source: str, raw: dict[str, Any], name: str) -> int | str | None:
    """A batch field: a whole number >= 1, "auto", or absent."""
    value = raw.get(name)
    if value is None or value == AUTO:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail(key, source, f"{name} is {value!r}; expected a whole number >= 1 or \"auto\"",
                    f"write {name}: \"auto\" to take it from the spec, or a number")
    return value


def _given(value: int | str | None, auto_number: int | None = None, auto_origin: str = "auto, unresolved") -> Value:
    if isinstance(value, int):
        return Value(value, "from the file")
    if value == AUTO:
        return Value(auto_number, auto_origin)
    return Value(None, "not set")


def resolve(source: str, train: int | str | None, micro: int | str | None, grad: int | str | None,
            spec: JobSpec, key: str = "deepspeed_config") -> BatchArithmetic:
    """Resolve "auto" from the spec, compute what is missing as DeepSpeed does, refuse a contradiction."""
    per_rank = spec.data.batch_size if spec.data is not None else None
    world = spec.world_size
    t = _given(train)
    m = _given(micro, per_rank, "auto: data.batch_size" if per_rank is not None else "auto, unresolved: the spec has no data.batch_size")
    g = _given(grad)
    if per_rank is not None and isinstance(micro, int) and micro != per_rank:
        raise _fail(key, source, f"{MICRO_BATCH} is {micro} but the spec's data.batch_size (the per-rank batch) is {per_rank}",
                    f"set {MICRO_BATCH} to \"auto\" (or {per_rank}), or data.batch_size to {micro}")
    t, m, g = _complete(key, source, t, m, g, world)
    if per_rank is not None and m.number is not None and m.number != per_rank:  # computed from train_batch_size
        raise _fail(key, source, f"{MICRO_BATCH} is {m.number}, computed as {TRAIN_BATCH} {t.number} / ({GRAD_ACCUM} "
                    f"{g.number} x world size {world}), but the spec's data.batch_size (the per-rank batch) is {per_rank}",
                    f"set {TRAIN_BATCH} to \"auto\" (or {per_rank * (g.number or 1) * world}), or data.batch_size to {m.number}")
    if t.number is not None and m.number is not None and g.number is not None:
        product = m.number * g.number * world
        if t.number != product:
            raise _fail(key, source, f"{TRAIN_BATCH} {t.number} != {MICRO_BATCH} {m.number} x {GRAD_ACCUM} {g.number} x "
                        f"world size {world} (= {product}); the file was written for another world size",
                        _fix_hint(m.number, g.number, world))
    return BatchArithmetic(source, t, m, g, world, f"{spec.nodes} node(s) x {spec.ntasks_per_node} task(s)")


def _complete(key: str, source: str, t: Value, m: Value, g: Value, world: int) -> tuple[Value, Value, Value]:
    """DeepSpeed's own rules for the numbers left out (gradient accumulation defaults to 1)."""
    if t.number is not None and m.number is not None and g.number is None:
        steps, rest = divmod(t.number, m.number * world)
        if steps < 1 or rest:
            raise _fail(key, source, f"{TRAIN_BATCH} {t.number} is not a multiple of {MICRO_BATCH} {m.number} x world size "
                        f"{world} (= {m.number * world}), so no whole {GRAD_ACCUM} fits", _fix_hint(m.number, 1, world))
        return t, m, Value(steps, "computed")
    if t.number is not None and m.number is None:
        steps = g.number if g.number is not None else 1
        micro, rest = divmod(t.number, steps * world)
        if micro < 1 or rest:
            raise _fail(key, source, f"{TRAIN_BATCH} {t.number} does not divide into {GRAD_ACCUM} {steps} x world size {world} "
                        f"(= {steps * world}) whole micro-batches", f"make {TRAIN_BATCH} a multiple of {steps * world}, or \"auto\"")
        return t, Value(micro, "computed"), g if g.number is not None else Value(1, "default")
    if t.number is None and m.number is not None:
        steps = g.number if g.number is not None else 1
        return Value(m.number * steps * world, "computed"), m, g if g.number is not None else Value(1, "default")
    return t, m, g


def _fix_hint(micro: int, grad: int, world: int) -> str:
    return (f"set {TRAIN_BATCH} to \"auto\" (computed: {micro * grad * world} for this world size), "
            f"or change nodes / ntasks_per_node to the world size the file was written for")


def deepspeed(spec: JobSpec, path: str, key: str = "deepspeed_config", for_accelerate: bool = False) -> BatchArithmetic:
    """Read a DeepSpeed JSON and resolve its batch arithmetic for ``spec`` (``for_accelerate``: a deepspeed_config_file)."""
    raw = _read(key, path, json.loads, "DeepSpeed JSON")
    if for_accelerate and "zero_optimization" not in raw:
        raise _fail(key, path, "no zero_optimization section; accelerate 1.15 refuses a deepspeed_config_file without one "
                    "when the job starts (a ValueError on every rank)",
                    'add "zero_optimization": {"stage": 0} (or the stage you want) to the file')
    train, micro, grad = (_batch_number(key, path, raw, name) for name in (TRAIN_BATCH, MICRO_BATCH, GRAD_ACCUM))
    if train is None and micro is None:
        raise _fail(key, path, f"neither {TRAIN_BATCH} nor {MICRO_BATCH} is set, and DeepSpeed refuses such a config",
                    f"add \"{MICRO_BATCH}\": \"auto\" (the spec's data.batch_size; accelerate fills it from the prepared "
                    f"dataloader) or a number, or \"{TRAIN_BATCH}\"")
    return resolve(path, train, micro, grad, spec, key)


def accelerate(spec: JobSpec, path: str) -> AccelerateFile:
    """Read an accelerate YAML and refuse a process or machine count other than the spec's."""
    key = "accelerate_config"
    raw = _read(key, path, yaml.safe_load, "accelerate YAML")
    section = raw.get("deepspeed_config") or {}
    if not isinstance(section, dict):
        raise _fail(key, path, f"deepspeed_config is {type(section).__name__}, expected a mapping", "fix the file")
    found = AccelerateFile(source=path, num_processes=_count(path, raw, "num_processes"), num_machines=_count(path, raw, "num_machines"),
                           distributed_type=_distributed_type(spec, path, raw),
                           grad_accum=_batch_number(key, path, section, GRAD_ACCUM),
                           deepspeed_file=_text(path, section, "deepspeed_config_file"))
    for name, number, wanted, words in (("num_processes", found.num_processes, spec.world_size, "the world size (nodes x ntasks_per_node)"),
                                        ("num_machines", found.num_machines, spec.nodes, "nodes")):
        if number is not None and number != wanted:
            raise _fail(key, path, f"{name} is {number} but the spec asks for {wanted}, {words} = "
                        f"{spec.nodes} node(s) x {spec.ntasks_per_node} task(s)",
                        f"set {name}: {wanted} in the file (or remove it: hpc_runner passes the spec's counts to accelerate launch), "
                        "or change the spec's nodes / ntasks_per_node")
    if found.has_deepspeed:
        _refuse_ignored_batch_keys(path, section)
        if found.deepspeed_file is not None:
            _refuse_keys_beside_a_file(path, raw, section)
    return found


def _refuse_keys_beside_a_file(path: str, raw: dict[str, Any], section: dict[str, Any]) -> None:
    """accelerate stops every rank when a deepspeed_config_file comes with settings it would have to ignore."""
    refused = [f"deepspeed_config.{name}" for name in REFUSED_WITH_FILE if name in section]
    refused += ["mixed_precision"] if raw.get("mixed_precision") is not None else []
    if refused:
        raise _fail("accelerate_config", path, f"{', '.join(refused)} given beside deepspeed_config.deepspeed_config_file; "
                    "accelerate 1.15 refuses that combination when the job starts (a ValueError on every rank)",
                    "move these settings into the DeepSpeed JSON and remove them from the accelerate config")


def _distributed_type(spec: JobSpec, path: str, raw: dict[str, Any]) -> str | None:
    """The file's distributed_type, one the accelerate launcher runs (any is only checked under another launcher)."""
    value = raw.get("distributed_type")
    if value is None:
        return None
    if not isinstance(value, str) or (spec.launcher == "accelerate" and value not in DISTRIBUTED_TYPES):
        raise _fail("accelerate_config", path, f"distributed_type is {value!r}; launcher: accelerate runs "
                    f"{', '.join(DISTRIBUTED_TYPES)} (one process per rank, on every node)",
                    "set distributed_type to one of those (MULTI_GPU for plain DDP, on CPUs too in gloo mode), or remove it")
    return value


def _refuse_ignored_batch_keys(path: str, section: dict[str, Any]) -> None:
    """accelerate 1.15 ignores batch sizes in the inline section: refuse them rather than show numbers nobody uses."""
    ignored = [name for name in IGNORED_INLINE if name in section]
    if ignored:
        raise _fail("accelerate_config", path, f"deepspeed_config.{ignored[0]} is ignored by accelerate (1.15 reads neither "
                    f"{TRAIN_BATCH} nor {MICRO_BATCH} from an accelerate config; it sets both to \"auto\", the micro-batch "
                    "being the prepared dataloader's batch, here data.batch_size)",
                    f"remove {' and '.join(ignored)} from deepspeed_config, or put the batch sizes in a DeepSpeed JSON "
                    "and name it there as deepspeed_config_file")


def _text(path: str, raw: dict[str, Any], name: str) -> str | None:
    value = raw.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise _fail("accelerate_config", path, f"deepspeed_config.{name} is {value!r}; expected a path", f"fix {name} in the file")
    return value


def _count(path: str, raw: dict[str, Any], name: str) -> int | None:
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail("accelerate_config", path, f"{name} is {value!r}; expected a whole number >= 1", f"fix {name} in the file")
    return value


CHECKED_ONLY_SRUN = ("checked only: launcher {launcher} does not pass it on; use launcher: accelerate, "
                     "or load it in your script")
CHECKED_ONLY_DS = ("checked only: no launcher passes it on; load it in your script, or name it as deepspeed_config_file "
                   "in an accelerate_config with distributed_type: DEEPSPEED under launcher: accelerate")


def check(spec: JobSpec, cwd: str) -> Checked:
    """The dry run's lines for every config the spec points at, and the accelerate config; SpecError on a contradiction.

    Relative paths are taken against ``cwd``, where the job starts: the spec's own paths (the request
    makes them absolute first) and a ``deepspeed_config_file`` inside an accelerate config alike.
    """
    lines: list[str] = []
    found = None if spec.accelerate_config is None else accelerate(spec, _path(cwd, spec.accelerate_config))
    if found is not None:
        lines.append(found.line())
    spec_file = None if spec.deepspeed_config is None else _path(cwd, spec.deepspeed_config)
    accelerate_file = None if found is None or not found.has_deepspeed or found.deepspeed_file is None \
        else _path(cwd, found.deepspeed_file)
    if found is not None and spec_file is not None and accelerate_file is not None and spec_file != accelerate_file:
        raise _fail("deepspeed_config", spec_file, f"the accelerate config {found.source} names another DeepSpeed file, "
                    f"{accelerate_file}, as its deepspeed_config_file; the job would run with that one",
                    "point both at the same file, or remove deepspeed_config from the spec")
    if spec_file is not None:
        lines.append(deepspeed(spec, spec_file, for_accelerate=spec_file == accelerate_file).line())
        if not (spec.launcher == "accelerate" and spec_file == accelerate_file):
            lines.append(f"deepspeed_config: {CHECKED_ONLY_DS}")
    if accelerate_file is not None and accelerate_file != spec_file:
        lines.append(deepspeed(spec, accelerate_file, "accelerate_config", for_accelerate=True).line())
    elif found is not None and found.has_deepspeed and accelerate_file is None:
        # accelerate takes the micro-batch from the prepared dataloader, the accumulation from the section
        lines.append(resolve(found.source, None, AUTO, found.grad_accum, spec, "accelerate_config").line())
    if found is not None and spec.launcher != "accelerate":
        lines.append(f"accelerate_config: {CHECKED_ONLY_SRUN.format(launcher=spec.launcher)}")
    return Checked(tuple(lines), found)


def _path(cwd: str, path: str) -> str:
    return os.path.normpath(os.path.join(cwd, os.path.expanduser(path)))
