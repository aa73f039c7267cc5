"""Spec keys from several sources merged in order, remembering which source gave each final value.

The order is the precedence: site profiles (user file, then project file), the spec file, then the
command line. A later source replaces a scalar; mappings (``env``) merge key by key; the lists
``setup`` and ``modules`` are concatenated (site lines first). Pure: no I/O.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .spec import apply_overrides

CONCATENATED = ("setup", "modules")  # lists that grow layer by layer instead of being replaced
DEFAULT = "default"  # the origin of a value no source gave (the schema's default)


@dataclass(frozen=True)
class Layer:
    """One source of spec keys and the name ``render --explain`` gives it (a file, a profile, a flag)."""

    label: str
    raw: Mapping[str, Any]


@dataclass(frozen=True)
class Merged:
    """The merged raw spec and, for each leaf (``partition``, ``env.X``, ``setup[0]``, ``data.samples``), its source."""

    raw: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)

    def origin(self, path: str) -> str:
        """The source of ``path`` or of the nearest enclosing key that was set whole; ``default`` if none."""
        while path:
            if path in self.origins:
                return self.origins[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return DEFAULT


def merge(layers: list[Layer] | tuple[Layer, ...]) -> Merged:
    """Merge ``layers`` in order (later wins): scalars replaced, mappings key by key, setup/modules concatenated."""
    raw: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for layer in layers:
        _merge_into(raw, origins, "", layer.raw, layer.label)
    return Merged(raw=raw, origins=origins)


def override(merged: Merged, overrides: list[tuple[str, Any, str]]) -> Merged:
    """Apply command-line overrides ``(dotted key, value, label)`` in order; each replaces the value at its key.

    ``--set setup=[...]`` replaces the merged list (the way to drop a site's lines for one run);
    ``--set env.X=1`` sets one variable and keeps the others.
    """
    raw, origins = merged.raw, dict(merged.origins)
    for key, value, label in overrides:
        raw = apply_overrides(raw, [(key, value)])
        _forget(origins, key)
        _mark(origins, key, value, label)
    return Merged(raw=raw, origins=origins)


def _merge_into(target: dict[str, Any], origins: dict[str, str], prefix: str, raw: Mapping[str, Any], label: str) -> None:
    for key, value in raw.items():
        path = f"{prefix}{key}"
        current = target.get(key)
        if not prefix and key in CONCATENATED and isinstance(value, list) and isinstance(current, list):
            origins.update({f"{path}[{len(current) + i}]": label for i in range(len(value))})
            target[key] = [*current, *copy.deepcopy(value)]
        elif isinstance(value, Mapping) and isinstance(current, dict):
            _merge_into(current, origins, f"{path}.", value, label)
        else:
            target[key] = copy.deepcopy(dict(value)) if isinstance(value, Mapping) else copy.deepcopy(value)
            _forget(origins, path)
            _mark(origins, path, value, label)


def _forget(origins: dict[str, str], path: str) -> None:
    for known in [k for k in origins if k == path or k.startswith((f"{path}.", f"{path}["))]:
        del origins[known]


def _mark(origins: dict[str, str], path: str, value: Any, label: str) -> None:
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            _mark(origins, f"{path}.{key}", item, label)
    elif path in CONCATENATED and isinstance(value, list) and value:
        origins.update({f"{path}[{i}]": label for i in range(len(value))})
    else:
        origins[path] = label
