"""``render --explain``: each spec key's final value and the source it came from, as a table."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from .profiles import LayeredSpec
from .request import JobRequest
from .slurm_time import format_time
from .spec import SPEC_KEYS

PRECEDENCE = "default < user file < project file < spec < --set < named flags (--partition, --nodes, ...)"
_YAML_NAMES = {"target": "function", "path": "script"}  # entrypoint fields under their spec keys


def rows(layered: LayeredSpec, request: JobRequest) -> list[tuple[str, str, str]]:
    """(key, final value, source) for every spec key; lists and mappings one row per item."""
    spec = layered.spec
    found: list[tuple[str, str]] = []
    for key, name in SPEC_KEYS.items():
        value = getattr(spec, name)
        if key == "time":
            value = format_time(spec.time_minutes)
        elif key == "python" and value is None:
            value = f"{request.python} (the interpreter running hpc-run)"
        elif key == "output_dir":
            value = request.output_dir
        elif key == "templates" and request.template_dirs:
            value = request.template_dirs[0]
        found += _flatten(key, value)
    return [(path, text, layered.merged.origin(path)) for path, text in found]


def _flatten(path: str, value: Any) -> list[tuple[str, str]]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [row for f in dataclasses.fields(value)
                for row in _flatten(f"{path}.{_YAML_NAMES.get(f.name, f.name)}", getattr(value, f.name))]
    if isinstance(value, dict) and value:
        return [row for k, v in value.items() for row in _flatten(f"{path}.{k}", v)]
    if isinstance(value, tuple) and value and all(dataclasses.is_dataclass(v) for v in value):  # then: steps, sweep axes
        return [row for i, v in enumerate(value) for row in _flatten(f"{path}[{i}]", v)]
    if path in ("setup", "modules") and value:
        return [(f"{path}[{i}]", str(line)) for i, line in enumerate(value)]
    return [(path, _text(value))]


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, tuple):
        value = list(value)
    return json.dumps(value, default=str)


def table(layered: LayeredSpec, request: JobRequest) -> str:
    """The explanation: which profile and files, the precedence, then one aligned row per key."""
    selection = layered.selection
    profile = f"{selection.name} ({selection.chosen_by})" if selection.name else "none"
    files = ", ".join(f"{label} ({'read' if ok else 'not found'})" for label, ok in selection.files)
    found = rows(layered, request)
    width = max(len(key) for key, _, _ in found)
    values = max((len(value) for _, value, _ in found if len(value) <= 48), default=5)
    lines = [f"# spec: {layered.spec_label}", f"# profile: {profile}", f"# profile files: {files}",
             f"# precedence: {PRECEDENCE}", f"{'KEY':{width}}  {'VALUE':{values}}  FROM"]
    lines += [f"{key:{width}}  {value:{values}}  {source}" for key, value, source in found]
    return "\n".join(lines) + "\n"
