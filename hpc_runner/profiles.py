"""Site profiles: named partial specs (partition, account, modules, ...) kept in one place, chosen with --profile.

Two files may hold them; the project's wins over the user's:

* user: ``$HPC_RUNNER_USER_CONFIG``, else ``$XDG_CONFIG_HOME/hpc_runner/profiles.yaml``
  (default ``~/.config/hpc_runner/profiles.yaml``);
* project: ``hpc_runner.yaml`` at the root of the project (``project.find``: the git work tree
  holding the spec, else the one holding the current directory, else the current directory).

A profile named in both files is merged key by key, project last. The chosen profile's keys go
under the spec: defaults < user file < project file < spec < command line (``hpc_runner.layers``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import layers, project
from .errors import SpecError
from .schema import JobSpec
from .spec import check_partial, from_mapping, parse_file, read_yaml

USER_CONFIG_VAR = "HPC_RUNNER_USER_CONFIG"
PROJECT_FILE = "hpc_runner.yaml"
PROFILE_KEYS = ("partition", "account", "qos", "constraint", "modules", "env", "setup", "templates", "mode", "launcher")
FILE_KEYS = ("default_profile", "profiles")
_EXAMPLE = "profiles:\n    cluster:\n      partition: long\n      modules: [gcc/12.2]"


@dataclass(frozen=True)
class ConfigFile:
    """One profiles file as read: its name for messages, its default profile, its validated profiles."""

    label: str
    default_profile: str | None
    profiles: dict[str, dict[str, Any]]  # templates: made absolute against the file's folder


@dataclass(frozen=True)
class Selection:
    """The profile chosen (if any), why, and the files looked at, in precedence order (user, project)."""

    name: str | None
    chosen_by: str                        # "--profile", "default_profile in FILE", or "" when none
    layers: tuple[layers.Layer, ...]      # the profile as each file holds it, user first
    files: tuple[tuple[str, bool], ...]   # (label, found) for the user file and the project file


@dataclass(frozen=True)
class LayeredSpec:
    """A validated spec and where each of its values came from (``render --explain`` prints it)."""

    spec: JobSpec
    merged: layers.Merged
    selection: Selection
    spec_label: str
    spec_file: str = ""  # the spec's path (then: steps are relative to it); spec_label is how errors name it


def user_config_path(environ: Mapping[str, str]) -> str:
    """The user's profiles file: ``$HPC_RUNNER_USER_CONFIG``, else under ``$XDG_CONFIG_HOME`` (or ``~/.config``)."""
    if environ.get(USER_CONFIG_VAR):
        return environ[USER_CONFIG_VAR]
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "hpc_runner", "profiles.yaml")


def project_config_path(spec_path: str | None, cwd: str) -> str:
    """``hpc_runner.yaml`` at the root of the spec's project (project.find)."""
    return os.path.join(str(project.find(spec_path, cwd).root), PROJECT_FILE)


def display(path: str, cwd: str) -> str:
    """A path as messages show it: relative below ``cwd``, ``~/...`` below the home folder, else absolute."""
    path = os.path.abspath(os.path.join(cwd, path))
    for base, shown in ((os.path.realpath(cwd), ""), (os.path.abspath(cwd), ""), (os.path.expanduser("~"), "~/")):
        if path.startswith(base.rstrip(os.sep) + os.sep):
            return shown + os.path.relpath(path, base)
    return path


def read_config(path: str, label: str) -> ConfigFile | None:
    """Read and validate one profiles file; None where there is no such file."""
    if not os.path.isfile(path):
        return None
    raw = _yaml(path, label)
    if raw is None:
        return ConfigFile(label=label, default_profile=None, profiles={})
    if not isinstance(raw, Mapping):
        raise SpecError(f"{label}: a profiles file is a YAML mapping, got {type(raw).__name__}\n  hint: {_EXAMPLE}")
    unknown = sorted(str(k) for k in raw if k not in FILE_KEYS)
    if unknown:
        raise SpecError(f"{label}: unknown key(s) {', '.join(unknown)}; a profiles file holds {' and '.join(FILE_KEYS)}\n"
                        f"  hint: {_EXAMPLE}")
    default = raw.get("default_profile")
    if default is not None and not isinstance(default, str):
        raise SpecError(f"{label}: key 'default_profile': expected a profile name, got {default!r}")
    found = raw.get("profiles") or {}
    if not isinstance(found, Mapping):
        raise SpecError(f"{label}: key 'profiles': expected a mapping of profile names to keys, got {type(found).__name__}\n"
                        f"  hint: {_EXAMPLE}")
    folder = os.path.dirname(os.path.abspath(path))
    return ConfigFile(label=label, default_profile=default,
                      profiles={str(name): _profile(body, f"{label}: profile {name}", folder) for name, body in found.items()})


def _yaml(path: str, label: str) -> Any:
    return parse_file(path, label, "profiles file")  # the spec's own YAML reading and errors


def _profile(body: Any, source: str, folder: str) -> dict[str, Any]:
    """One profile, validated as a spec's keys are; its template folder made absolute against the file's folder."""
    body = {} if body is None else body
    check_partial(body, source, PROFILE_KEYS)
    profile = dict(body)
    if profile.get("templates") is not None:
        profile["templates"] = os.path.join(folder, os.path.expanduser(str(profile["templates"])))
    return profile


def select(name: str | None, user: ConfigFile | None, project_file: ConfigFile | None,
           files: tuple[tuple[str, bool], ...]) -> Selection:
    """The profile ``name`` (else the project's, else the user's default_profile) as each file holds it."""
    present = [f for f in (user, project_file) if f is not None]
    chosen_by = "--profile"
    if name is None:
        holder = next((f for f in reversed(present) if f.default_profile), None)
        if holder is None:
            return Selection(name=None, chosen_by="", layers=(), files=files)
        name, chosen_by = holder.default_profile, f"default_profile in {holder.label}"
    found = tuple(layers.Layer(f"{f.label}: profile {name}", f.profiles[name]) for f in present if name in f.profiles)
    if not found:
        known = sorted({p for f in present for p in f.profiles})
        read = ", ".join(f"{label} ({'read' if ok else 'not found'})" for label, ok in files)
        raise SpecError(f"profile {name!r} ({chosen_by}) is in no profiles file; "
                        f"known profiles: {', '.join(known) or 'none'}; files: {read}\n"
                        f"  hint: pick a known profile, or add it under 'profiles:' in {PROJECT_FILE} at the project's "
                        f"root or in the user file (${USER_CONFIG_VAR}, default ~/.config/hpc_runner/profiles.yaml)")
    return Selection(name=name, chosen_by=chosen_by, layers=found, files=files)


def load(spec_path: str, overrides: list[tuple[str, Any, str]], profile: str | None, cwd: str,
         environ: Mapping[str, str], shipped: bool = False) -> LayeredSpec:
    """Profile, spec file, then command-line overrides ``(key, value, label)``, merged and validated once.

    The project file is looked for in the spec's project; for a spec that ships with hpc_runner
    (``shipped``: hpc-run check's), in the current directory's.
    """
    user_path = user_config_path(environ)
    project_path = project_config_path(None if shipped else spec_path, cwd)
    user_label, project_label = display(user_path, cwd), display(project_path, cwd)
    user, project_file = read_config(user_path, user_label), read_config(project_path, project_label)
    files = ((user_label, user is not None), (project_label, project_file is not None))
    selection = select(profile, user, project_file, files)
    merged = layers.merge([*selection.layers, layers.Layer(spec_path, read_yaml(os.path.join(cwd, spec_path)))])
    merged = layers.override(merged, overrides)
    source = f"{spec_path} (with profile {selection.name})" if selection.name else spec_path
    return LayeredSpec(spec=from_mapping(merged.raw, source=source, path=os.path.join(cwd, spec_path)), merged=merged,
                       selection=selection, spec_label=spec_path, spec_file=os.path.join(cwd, spec_path))


def with_overrides(layered: LayeredSpec, overrides: list[tuple[str, Any, str]]) -> JobSpec:
    """``layered``'s spec with more overrides applied last (a sweep task's values), validated again;
    no file is read twice."""
    merged = layers.override(layered.merged, overrides)
    name = layered.selection.name
    return from_mapping(merged.raw, source=f"{layered.spec_label} (with profile {name})" if name else layered.spec_label,
                        path=layered.spec_file or None)
