"""Job specs: YAML plus overrides, validated once into the frozen dataclasses of ``schema``."""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from collections.abc import Mapping
from typing import Any

import yaml

from .dependency import then_section
from .errors import SpecError
from .schema import (FUNCTION_PATTERN, LAUNCHERS, MODES, REQUEUE_HANDLERS, RESUME_MODES, SIGNALS, DataSpec, Entry, ExportSpec, FunctionEntry, JobSpec,
                     RequeueSpec, ScriptEntry, SweepAxis, SweepSpec)
from .slurm_time import TimeFormatError, parse_time

__all__ = ["DataSpec", "Entry", "FunctionEntry", "JobSpec", "RequeueSpec", "ScriptEntry", "SpecError",
           "MODES", "LAUNCHERS", "SIGNALS", "from_mapping", "load", "parse_set", "apply_overrides", "read_yaml"]

# Values that end up on an ``#SBATCH`` line are read by sbatch, not bash: keep them plain.
_DIRECTIVE_VALUE = re.compile(r"^[A-Za-z0-9._+-]+(,[A-Za-z0-9._+-]+)*$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_MEM = re.compile(r"^[0-9]+[KMGT]?$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SWEEP_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$")
_FORBIDDEN_CHARS = ("\n", "\r", "\x00")
# SLURM's feature expressions: names joined by & (and), | (or) and , ; quoted on the #SBATCH line.
_CONSTRAINT = re.compile(r"^[A-Za-z0-9._+-]+([&|,][A-Za-z0-9._+-]+)*$")
_MODULE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+@:/%=-]*$")  # gcc/12.2, openmpi/4.1.5-cuda, py-torch@2.3


# Keys a YAML file may hold, mapped to the JobSpec field they fill.
_TOP_KEYS = {
    "name": "name",
    "mode": "mode",
    "nodes": "nodes",
    "ntasks_per_node": "ntasks_per_node",
    "cpus_per_task": "cpus_per_task",
    "gpus_per_node": "gpus_per_node",
    "time": "time_minutes",
    "partition": "partition",
    "account": "account",
    "qos": "qos",
    "mem": "mem",
    "env": "env",
    "setup": "setup",
    "launcher": "launcher",
    "output_dir": "output_dir",
    "python": "python",
    "socket_ifname": "socket_ifname",
    "nccl_debug": "nccl_debug",
    "init_timeout": "init_timeout_s",
    "collective_timeout": "collective_timeout_s",
    "resume": "resume",
    "data": "data",
    "requeue": "requeue",
    "entrypoint": "entrypoint",
    "export": "export",
    "accelerate_config": "accelerate_config",
    "deepspeed_config": "deepspeed_config",
    "sweep": "sweep",
    "constraint": "constraint",
    "modules": "modules",
    "templates": "templates",
    "then": "then",
}
SPEC_KEYS = _TOP_KEYS  # public: each YAML key and the JobSpec field it fills (render --explain walks them)
_ENTRY_KEYS = ("function", "params", "script", "args")
_DATA_KEYS = ("samples", "batch_size", "val_samples", "audit")
_REQUEUE_KEYS = ("signal", "seconds_before", "max_restarts", "handler")
_EXPORT_KEYS = ("model", "input_shape")
_EXPORT_HINT = "export: {model: 'package.module:make_model', input_shape: [8]} (one example's shape, no batch dimension)"


class _Reader:
    """Validates raw values and names the source and key in every error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str, hint: str = "") -> SpecError:
        text = f"{self.source}: key '{key}': {message}"
        return SpecError(f"{text}\n  hint: {hint}" if hint else text)

    def check_keys(self, where: str, raw: Mapping[str, Any], valid: tuple[str, ...]) -> None:
        unknown = sorted(str(k) for k in raw if k not in valid)
        if unknown:
            label = f"{where}." if where else ""
            raise SpecError(
                f"{self.source}: unknown key(s) {', '.join(label + k for k in unknown)}; "
                f"valid keys{' in ' + where if where else ''}: {', '.join(valid)}"
            )

    def text(self, key: str, value: Any, pattern: re.Pattern[str] | None = None, hint: str = "") -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.fail(key, f"expected a string, got {type(value).__name__} {value!r}", hint)
        value = str(value)
        if any(c in value for c in _FORBIDDEN_CHARS):
            raise self.fail(key, "newlines, carriage returns and NUL bytes are not allowed", hint)
        if pattern is not None and not pattern.match(value):
            raise self.fail(key, f"{value!r} is not allowed here", hint)
        return value

    def integer(self, key: str, value: Any, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and value.strip().isdigit():
                value = int(value)
            else:
                raise self.fail(key, f"expected a whole number >= {minimum}, got {value!r}")
        if value < minimum:
            raise self.fail(key, f"must be >= {minimum}, got {value}")
        return value

    def boolean(self, key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r}")
        return value

    def choice(self, key: str, value: Any, choices: tuple[str, ...]) -> str:
        if value not in choices:
            raise self.fail(key, f"{value!r} is not one of {', '.join(choices)}")
        return str(value)

    def minutes(self, key: str, value: Any) -> int:
        """A time limit in SLURM's grammar (slurm_time.parse_time); an int is minutes."""
        try:
            return parse_time(value)
        except TimeFormatError as exc:
            raise self.fail(key, str(exc)) from None

    def mapping(self, key: str, value: Any) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(key, f"expected a mapping, got {type(value).__name__}")
        return value

    def sequence(self, key: str, value: Any) -> list[Any]:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise self.fail(key, f"expected a list, got {type(value).__name__}")
        return list(value)

    def plain_data(self, key: str, value: Any) -> Any:
        """Params go to user code as JSON: only YAML scalars, lists and mappings, no newlines."""
        if isinstance(value, Mapping):
            return {self.text(key, k): self.plain_data(f"{key}.{k}", v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.plain_data(f"{key}[{i}]", v) for i, v in enumerate(value)]
        if isinstance(value, str):
            return self.text(key, value)
        if value is None or isinstance(value, (bool, int, float)):
            return value
        raise self.fail(key, f"unsupported value {value!r}; use strings, numbers, lists or mappings")


def _entry(r: _Reader, raw: Any) -> Entry:
    raw = r.mapping("entrypoint", raw)
    r.check_keys("entrypoint", raw, _ENTRY_KEYS)
    has_function, has_script = "function" in raw, "script" in raw
    if has_function == has_script:
        raise r.fail("entrypoint", "give exactly one of 'function' or 'script'",
                     "function: 'package.module:func' with params, or script: path/to/train.py with args")
    if has_function:
        if "args" in raw:
            raise r.fail("entrypoint.args", "args go with 'script'; a function takes 'params'")
        target = r.text("entrypoint.function", raw["function"], FUNCTION_PATTERN, "write it as 'package.module:function'")
        params = r.plain_data("entrypoint.params", r.mapping("entrypoint.params", raw.get("params") or {}))
        return FunctionEntry(target=target, params=params)
    if "params" in raw:
        raise r.fail("entrypoint.params", "params go with 'function'; a script takes 'args'")
    path = r.text("entrypoint.script", raw["script"])
    if not path:
        raise r.fail("entrypoint.script", "must not be empty")
    args = tuple(r.text(f"entrypoint.args[{i}]", a) for i, a in enumerate(r.sequence("entrypoint.args", raw.get("args") or [])))
    return ScriptEntry(path=path, args=args)


def _data(r: _Reader, raw: Any) -> DataSpec | None:
    if raw is None:
        return None
    raw = r.mapping("data", raw)
    r.check_keys("data", raw, _DATA_KEYS)
    for key in ("samples", "batch_size"):
        if key not in raw:
            raise r.fail(f"data.{key}", "is required when 'data' is given")
    return DataSpec(
        samples=r.integer("data.samples", raw["samples"], 1),
        batch_size=r.integer("data.batch_size", raw["batch_size"], 1),
        val_samples=r.integer("data.val_samples", raw.get("val_samples", 0), 0),
        audit=r.boolean("data.audit", raw.get("audit", True)),
    )


def data_section(raw: Any, source: str) -> DataSpec | None:
    """Validate a ``data:`` section on its own (the entrypoint's argv carries one)."""
    return _data(_Reader(source), raw)


def export_section(raw: Any, source: str) -> ExportSpec | None:
    """Validate an ``export:`` section on its own (the entrypoint's argv carries one into run.json)."""
    return _export(_Reader(source), raw)


def _export(r: _Reader, raw: Any) -> ExportSpec | None:
    """The model factory and example input shape that ``hpc-run export`` rebuilds a run's model from."""
    if raw is None:
        return None
    raw = r.mapping("export", raw)
    r.check_keys("export", raw, _EXPORT_KEYS)
    for key in _EXPORT_KEYS:
        if key not in raw:
            raise r.fail(f"export.{key}", "is required when 'export' is given", _EXPORT_HINT)
    shape = r.sequence("export.input_shape", raw["input_shape"])
    if not 1 <= len(shape) <= 8:
        raise r.fail("export.input_shape", f"needs 1 to 8 sizes, got {len(shape)}", _EXPORT_HINT)
    return ExportSpec(model=r.text("export.model", raw["model"], FUNCTION_PATTERN, _EXPORT_HINT),
                      input_shape=tuple(r.integer(f"export.input_shape[{i}]", n, 1) for i, n in enumerate(shape)))


_SWEEP_HINT = "sweep: {entrypoint.params.lr: [0.1, 0.01], throttle: 2} (dotted keys as --set writes them, each with a list)"


def _sweep(r: _Reader, raw: Any) -> SweepSpec | None:
    """Swept keys with their lists of values, and an optional throttle; which keys may vary is checked
    where the tasks are built (hpc_runner.sweep), against the jobs they make."""
    if raw is None:
        return None
    raw = r.mapping("sweep", raw)
    axes = []
    for key, values in raw.items():
        if key == "throttle":
            continue
        name = r.text("sweep key", key, _SWEEP_KEY, _SWEEP_HINT)
        listed = r.sequence(f"sweep.{name}", values)
        if not listed:
            raise r.fail(f"sweep.{name}", "needs at least one value", _SWEEP_HINT)
        axes.append(SweepAxis(key=name, values=tuple(r.plain_data(f"sweep.{name}[{i}]", v) for i, v in enumerate(listed))))
    if not axes:
        raise r.fail("sweep", "names no key to sweep", _SWEEP_HINT)
    throttle = r.integer("sweep.throttle", raw["throttle"], 1) if raw.get("throttle") is not None else None
    return SweepSpec(axes=tuple(axes), throttle=throttle)


def _requeue(r: _Reader, raw: Any, time_minutes: int) -> RequeueSpec:
    raw = r.mapping("requeue", raw or {})
    r.check_keys("requeue", raw, _REQUEUE_KEYS)
    default = RequeueSpec()
    # A short job gets its warning half-way through the limit unless the spec says otherwise.
    seconds_default = min(default.seconds_before, time_minutes * 30)
    return RequeueSpec(
        signal=r.choice("requeue.signal", raw.get("signal", default.signal), SIGNALS),
        seconds_before=r.integer("requeue.seconds_before", raw.get("seconds_before", seconds_default), 1),
        max_restarts=r.integer("requeue.max_restarts", raw.get("max_restarts", default.max_restarts), 0),
        handler=r.choice("requeue.handler", raw.get("handler", default.handler), REQUEUE_HANDLERS),
    )


def from_mapping(raw: Any, source: str = "<spec>", path: str | None = None) -> JobSpec:
    """Validate a raw mapping (parsed YAML with overrides applied) into a JobSpec.

    ``source`` names the spec in errors; ``path`` is its file where the two differ (a profile's label):
    then: steps are found relative to it."""
    r = _Reader(source)
    if not isinstance(raw, Mapping):
        raise SpecError(f"{source}: a job spec is a YAML mapping of keys, got {type(raw).__name__}")
    r.check_keys("", raw, tuple(_TOP_KEYS))
    for key in ("name", "entrypoint"):
        if key not in raw:
            raise r.fail(key, "is required")
    values: dict[str, Any] = {
        "name": r.text("name", raw["name"], _NAME, "letters, digits, '.', '_' and '-', at most 64"),
        "entrypoint": _entry(r, raw["entrypoint"]),
        "data": _data(r, raw.get("data")),
        "export": _export(r, raw.get("export")),
        "sweep": _sweep(r, raw.get("sweep")),
        **_resources(r, raw),
        **_strings(r, raw),
    }
    values["then"] = then_section(raw.get("then"), source, path)
    values["requeue"] = _requeue(r, raw.get("requeue"), values.get("time_minutes", JobSpec.time_minutes))
    values["env"] = _env(r, raw)
    values["setup"] = _setup(r, raw)
    values.update(_site(r, raw))
    spec = JobSpec(**values)
    _check_combination(r, spec)
    return _normalise(spec)


def _resources(r: _Reader, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Mode, launcher, counts, time limit and timeouts."""
    values: dict[str, Any] = {}
    if "mode" in raw:
        values["mode"] = r.choice("mode", raw["mode"], MODES)
    if "launcher" in raw:
        values["launcher"] = r.choice("launcher", raw["launcher"], LAUNCHERS)
    for key, minimum in (("nodes", 1), ("ntasks_per_node", 1), ("cpus_per_task", 1), ("gpus_per_node", 0)):
        if key in raw:
            values[key] = r.integer(key, raw[key], minimum)
    if "init_timeout" in raw:
        values["init_timeout_s"] = r.integer("init_timeout", raw["init_timeout"], 1)
    if "collective_timeout" in raw:
        values["collective_timeout_s"] = r.integer("collective_timeout", raw["collective_timeout"], 1)
    if "resume" in raw:
        values["resume"] = r.choice("resume", raw["resume"], RESUME_MODES)
    if "time" in raw:
        values["time_minutes"] = r.minutes("time", raw["time"])
    return values


def _strings(r: _Reader, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Scheduler names, memory, interface, NCCL level, output folder and interpreter."""
    values: dict[str, Any] = {}
    for key in ("partition", "account", "qos"):
        if raw.get(key) is not None:
            values[key] = r.text(key, raw[key], _DIRECTIVE_VALUE, "letters, digits, '.', '_', '+', '-' (comma-separated)")
    if raw.get("mem") is not None:
        values["mem"] = r.text("mem", raw["mem"], _MEM, "a number with an optional K, M, G or T suffix, e.g. 4G")
    if raw.get("socket_ifname") is not None:
        values["socket_ifname"] = r.text("socket_ifname", raw["socket_ifname"], _DIRECTIVE_VALUE, "an interface name such as eth0 or ib0")
    if "nccl_debug" in raw:
        values["nccl_debug"] = r.choice("nccl_debug", raw["nccl_debug"], ("VERSION", "WARN", "INFO", "TRACE"))
    if "output_dir" in raw:
        values["output_dir"] = r.text("output_dir", raw["output_dir"])
    for key in ("accelerate_config", "deepspeed_config"):  # read and checked when the request is built (paths are the submitter's)
        if raw.get(key) is not None:
            values[key] = r.text(key, raw[key], hint="a path to the config file, relative to where you submit")
            if not values[key]:
                raise r.fail(key, "must not be empty", "a path to the config file, or leave the key out")
    if raw.get("python") is not None:
        python = values["python"] = r.text("python", raw["python"])
        if not python.strip() or python.startswith("-"):
            raise r.fail("python", f"{python!r} is not a program (srun would read it as an option)",
                         "a path or name such as python3 or /opt/venv/bin/python; leave it out to use the "
                         "interpreter that runs hpc-run")
    return values


def _site(r: _Reader, raw: Mapping[str, Any]) -> dict[str, Any]:
    """What a site profile usually holds beyond scheduler names: node features, modules, a template folder."""
    values: dict[str, Any] = {}
    if raw.get("constraint") is not None:
        values["constraint"] = r.text("constraint", raw["constraint"], _CONSTRAINT,
                                      "feature names joined by & (and), | (or) or ',', e.g. skylake or ib&skylake")
    if raw.get("modules") is not None:
        values["modules"] = tuple(r.text(f"modules[{i}]", name, _MODULE, "a module name such as gcc/12.2 (no spaces, "
                                         "not starting with '-')") for i, name in enumerate(r.sequence("modules", raw["modules"])))
    if raw.get("templates") is not None:
        values["templates"] = r.text("templates", raw["templates"], hint="a folder of *.sh.j2 templates")
        if not values["templates"]:
            raise r.fail("templates", "must not be empty", "a folder of *.sh.j2 templates, or leave the key out")
    return values


def check_partial(raw: Any, source: str, keys: tuple[str, ...]) -> None:
    """Validate a partial spec (a site profile) that may hold only ``keys``: a spec's rules and errors, key by key."""
    r = _Reader(source)
    if not isinstance(raw, Mapping):
        raise SpecError(f"{source}: expected a mapping of spec keys ({', '.join(keys)}), got {type(raw).__name__}")
    r.check_keys("", raw, keys)
    _resources(r, raw)
    _strings(r, raw)
    _site(r, raw)
    _env(r, raw)
    _setup(r, raw)


def _env(r: _Reader, raw: Mapping[str, Any]) -> dict[str, str]:
    """``env:``: variable names and values every rank gets."""
    env = r.mapping("env", raw.get("env") or {})
    for k in env:
        r.text(f"env key {k!r}", k, _ENV_KEY, "environment variable names are letters, digits and '_'")
    return {str(k): r.text(f"env.{k}", v) for k, v in env.items()}


def _setup(r: _Reader, raw: Mapping[str, Any]) -> tuple[str, ...]:
    """``setup:``: shell lines the batch script runs before the ranks start."""
    return tuple(r.text(f"setup[{i}]", line) for i, line in enumerate(r.sequence("setup", raw.get("setup") or [])))


def _check_combination(r: _Reader, spec: JobSpec) -> None:
    if spec.mode == "threading":
        if spec.nodes > 1:
            raise r.fail("nodes", f"threading mode runs on one node, got nodes={spec.nodes}",
                         "use mode: gloo (CPU) or nccl (GPU) for several nodes, or set nodes: 1")
        if spec.ntasks_per_node > 1:
            raise r.fail("ntasks_per_node", f"threading mode runs one process, got {spec.ntasks_per_node}",
                         "use mode: gloo for several processes, or raise cpus_per_task instead")
        if spec.launcher != "srun":
            raise r.fail("launcher", f"{spec.launcher} launches distributed ranks; threading mode has none", "use launcher: srun")
    if spec.mode == "nccl":
        if spec.gpus_per_node < 1:
            raise r.fail("gpus_per_node", "nccl mode needs GPUs, got gpus_per_node=0",
                         "set gpus_per_node to the GPUs per node (one rank per GPU), or use mode: gloo on CPUs")
        if spec.ntasks_per_node not in (1, spec.gpus_per_node):
            raise r.fail("ntasks_per_node", f"nccl mode runs one rank per GPU: ntasks_per_node must equal gpus_per_node ({spec.gpus_per_node})",
                         "leave ntasks_per_node out in nccl mode")
    elif spec.gpus_per_node:
        raise r.fail("gpus_per_node", f"{spec.mode} mode runs on CPUs, got gpus_per_node={spec.gpus_per_node}",
                     "use mode: nccl for GPUs, or remove gpus_per_node")
    if spec.launcher == "accelerate" and spec.world_size < 2:
        raise r.fail("launcher", f"accelerate launch's multi-process path (--multi_gpu) needs 2 or more processes, got {spec.world_size}",
                     "raise nodes or ntasks_per_node, or use launcher: srun for one process")
    if spec.requeue.seconds_before >= spec.time_minutes * 60:
        raise r.fail("requeue.seconds_before", f"the warning ({spec.requeue.seconds_before}s) must come before the time limit ({spec.time_minutes} min)")


def _normalise(spec: JobSpec) -> JobSpec:
    """Fill values derived from others (nccl: one task per GPU)."""
    if spec.mode == "nccl" and spec.ntasks_per_node != spec.gpus_per_node:
        return dataclasses.replace(spec, ntasks_per_node=spec.gpus_per_node)
    return spec


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1's base-60 numbers: ``2:00:00`` stays the string SLURM reads.

    Under plain SafeLoader an unquoted ``time: 2:00:00`` is the int 7200 and ``10:00`` is 600.
    Here the int and float implicit resolvers refuse any scalar holding a colon (only their
    sexagesimal branches could match one), so such scalars resolve to str; all else is unchanged.
    """


_SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, re.compile(r"(?![^:]*:)" + regexp.pattern, regexp.flags)
             if tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float") else regexp)
            for tag, regexp in resolvers]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
# YAML 1.2's floats without a dot: `lr: 1e-3` is the number 0.001, not the string "1e-3" (YAML 1.1 wants `1.0e-3`).
_SpecLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9]+[eE][-+]?[0-9]+$"),
                                  list("-+0123456789"))


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - _SpecLoader is a SafeLoader


def parse_set(item: str) -> tuple[str, Any]:
    """Turn ``KEY=VALUE`` (dotted keys allowed) into a key path and a YAML-parsed value."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise SpecError(f"--set {item!r}: expected KEY=VALUE, e.g. --set data.samples=4096")
    try:
        parsed = _yaml_load(value) if value else ""
    except yaml.YAMLError:
        parsed = value
    return key, parsed


def apply_overrides(raw: Mapping[str, Any], overrides: list[tuple[str, Any]]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each dotted ``key`` set to its value (flags win over the file)."""
    result: dict[str, Any] = copy.deepcopy(dict(raw))
    for key, value in overrides:
        parts = key.split(".")
        node = result
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise SpecError(f"override {key}: '{part}' is not a mapping")
            node = child
        node[parts[-1]] = value
    return result


def parse_file(path: str, label: str, what: str) -> Any:
    """A YAML file read with the spec's loader (``2:00:00`` a string, ``1e-3`` a number); errors name the
    file as ``label``, say it is a ``what``, and give the line and column."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise SpecError(f"{label}: cannot read the {what} ({exc.strerror})") from None
    try:
        return _yaml_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise SpecError(f"{label}: invalid YAML at {where}: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{label}: invalid YAML: {exc}") from None


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse a spec file safely; YAML errors name the file and line."""
    path = os.fspath(path)  # os.path, not pathlib: render must start fast
    raw = parse_file(path, path, "job spec")
    if raw is None:
        raise SpecError(f"{path}: the file is empty; a job spec needs at least 'name' and 'entrypoint'")
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a job spec is a YAML mapping of keys, got {type(raw).__name__}")
    return raw


def load(path: str | os.PathLike[str], overrides: list[tuple[str, Any]] | None = None) -> JobSpec:
    """Read a YAML spec, apply overrides (flags win) and validate it."""
    raw = apply_overrides(read_yaml(path), overrides or [])
    return from_mapping(raw, source=str(path))
