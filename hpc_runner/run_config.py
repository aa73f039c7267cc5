"""What the entrypoint needs from a spec, derived in one place, with an argv form that round-trips.

Every field is required: the defaults live in ``schema`` alone, and ``from_spec`` is the only
way a RunConfig is made from a spec. ``to_argv`` writes one ``--field=value`` per field (JSON
for structured values, script arguments after ``--``); ``from_argv`` reads exactly that back,
and says which argument is wrong instead of raising a parser traceback.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from .errors import InputError, SpecError
from .schema import FUNCTION_PATTERN, MODES, REQUEUE_HANDLERS, RESUME_MODES, DataSpec, Entry, ExportSpec, FunctionEntry, JobSpec, ScriptEntry

ARGV_USAGE = ("python -m hpc_runner.entrypoint --mode=M --output-dir=D --init-timeout-s=S --max-restarts=N "
              "--collective-timeout-s=S --resume=auto|never|force --requeue-handler=H --data=JSON|null --export=JSON|null (--function=MOD:FUNC --params=JSON | --script=PATH [-- ARGS...])")


@dataclass(frozen=True)
class RunConfig:
    """Backend, timeouts, output directory, data and user entry for one run of the entrypoint."""

    mode: str
    entry: Entry
    output_dir: str
    init_timeout_s: int
    data: DataSpec | None
    max_restarts: int
    collective_timeout_s: int
    resume: str
    requeue_handler: str
    export: ExportSpec | None  # recorded in run.json, so `hpc-run export RUN_DIR` can rebuild the model

    @classmethod
    def from_spec(cls, spec: JobSpec, output_dir: str) -> RunConfig:
        """Take the entrypoint's part of a validated spec (``output_dir`` as the request resolved it)."""
        return cls(mode=spec.mode, entry=spec.entrypoint, output_dir=output_dir,
                   init_timeout_s=spec.init_timeout_s, data=spec.data, max_restarts=spec.requeue.max_restarts,
                   collective_timeout_s=spec.collective_timeout_s, resume=spec.resume,
                   requeue_handler=spec.requeue.handler, export=spec.export)

    def to_argv(self) -> list[str]:
        """Arguments for ``python -m hpc_runner.entrypoint`` ("--key=value" keeps "-x" values from reading as options)."""
        data = None if self.data is None else dataclasses.asdict(self.data)
        export = None if self.export is None else dataclasses.asdict(self.export)
        argv = [f"--mode={self.mode}", f"--output-dir={self.output_dir}", f"--init-timeout-s={self.init_timeout_s}",
                f"--max-restarts={self.max_restarts}", f"--collective-timeout-s={self.collective_timeout_s}",
                f"--resume={self.resume}", f"--requeue-handler={self.requeue_handler}",
                f"--data={json.dumps(data, sort_keys=True)}", f"--export={json.dumps(export, sort_keys=True)}"]
        if isinstance(self.entry, FunctionEntry):
            return argv + [f"--function={self.entry.target}", f"--params={json.dumps(self.entry.params, sort_keys=True)}"]
        return argv + [f"--script={self.entry.path}", "--", *self.entry.args]

    @classmethod
    def from_argv(cls, argv: list[str]) -> RunConfig:
        """Inverse of :meth:`to_argv`; an InputError names the argument that is wrong."""
        script_args: tuple[str, ...] = ()
        if "--" in argv:
            cut = argv.index("--")
            argv, script_args = argv[:cut], tuple(argv[cut + 1:])
        values = _options(argv)
        if ("function" in values) == ("script" in values):
            raise InputError(f"give exactly one of --function or --script\n  usage: {ARGV_USAGE}")
        mode = _take(values, "mode")
        if mode not in MODES:
            raise InputError(f"--mode={mode!r}: choose one of {', '.join(MODES)}")
        entry: Entry
        if "function" in values:
            if script_args:
                raise InputError("arguments after '--' go with --script, not --function")
            params = _json(values, "params", dict)
            entry = FunctionEntry(target=_checked_function(_take(values, "function")), params=params)
        else:
            entry = ScriptEntry(path=_take(values, "script"), args=script_args)
        data = _json(values, "data", (dict, type(None)))
        export = _json(values, "export", (dict, type(None)))
        config = cls(mode=mode, entry=entry, output_dir=_take(values, "output-dir"),
                     init_timeout_s=_integer(values, "init-timeout-s", 1), max_restarts=_integer(values, "max-restarts", 0),
                     collective_timeout_s=_integer(values, "collective-timeout-s", 1), resume=_choice(values, "resume", RESUME_MODES),
                     requeue_handler=_choice(values, "requeue-handler", REQUEUE_HANDLERS),
                     data=_data_spec(data), export=_export_spec(export))
        if not config.output_dir:
            raise InputError("--output-dir must not be empty")
        if values:
            raise InputError(f"unknown argument(s) {', '.join('--' + k for k in sorted(values))}\n  usage: {ARGV_USAGE}")
        return config


def _options(argv: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in argv:
        key, sep, value = item.partition("=")
        if not key.startswith("--") or not sep:
            raise InputError(f"argument {item!r} is not --key=value\n  usage: {ARGV_USAGE}")
        if key[2:] in values:
            raise InputError(f"argument {key} given twice")
        values[key[2:]] = value
    return values


def _take(values: dict[str, str], key: str) -> str:
    if key not in values:
        raise InputError(f"argument --{key} is required\n  usage: {ARGV_USAGE}")
    return values.pop(key)


def _integer(values: dict[str, str], key: str, minimum: int) -> int:
    text = _take(values, key)
    try:
        number = int(text)
    except ValueError:
        raise InputError(f"--{key}={text!r} is not a whole number") from None
    if number < minimum:
        raise InputError(f"--{key}={number} must be >= {minimum}")
    return number


def _choice(values: dict[str, str], key: str, choices: tuple[str, ...]) -> str:
    value = _take(values, key)
    if value not in choices:
        raise InputError(f"--{key}={value!r}: choose one of {', '.join(choices)}")
    return value


def _checked_function(target: str) -> str:
    """The spec's own rule for a function entry: 'package.module:function'."""
    if not FUNCTION_PATTERN.match(target):
        raise InputError(f"--function={target!r}: write it as 'package.module:function'")
    return target


def _json(values: dict[str, str], key: str, kinds: type | tuple[type, ...]) -> Any:
    text = _take(values, key)
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InputError(f"--{key} is not valid JSON ({exc.msg} at character {exc.pos}): {text[:80]!r}") from None
    if not isinstance(value, kinds):
        raise InputError(f"--{key} must be a JSON object, got {type(value).__name__}")
    return value


def _data_spec(data: dict[str, Any] | None) -> DataSpec | None:
    """The spec's own validation of a data section (types, minimums)."""
    if data is None:
        return None
    from . import spec

    try:
        return spec.data_section(data, source="the entrypoint's --data")
    except SpecError as exc:
        raise InputError(f"--data does not describe a data spec: {exc}") from None


def _export_spec(export: dict[str, Any] | None) -> ExportSpec | None:
    """The spec's own validation of an export section."""
    from . import spec

    try:
        return spec.export_section(export, source="the entrypoint's --export")
    except SpecError as exc:
        raise InputError(f"--export does not describe an export section: {exc}") from None
