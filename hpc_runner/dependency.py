"""What a job waits for: ``--after`` job ids and a spec's ``then:`` steps, validated (pure: no I/O).

SLURM's words are kept: ``afterok:123`` (start once job 123 completed successfully) or
``afterany:123`` (once it ended, whatever its state). Several ids, and both kinds, may be
combined; the job starts when every condition holds. Jobs submitted with a dependency also get
``--kill-on-invalid-dep=yes``: when a condition can never hold (the parent failed under
afterok), SLURM cancels the job instead of keeping it pending forever; ``hpc-run status``
then says that it never ran, and why.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InputError, SpecError
from .schema import ThenStep

KINDS = ("afterok", "afterany")
DEFAULT_KIND = "afterok"
KILL_ON_INVALID_DEP = "yes"  # our decision: a job that can never start is cancelled, not left pending
PARENT_OUTPUT_DIR_VAR = "HPC_RUNNER_PARENT_OUTPUT_DIR"  # a `then:` child's view of its parent's output directory
PARENT_JOB_ID_VAR = "HPC_RUNNER_PARENT_JOB_ID"  # and of its job id (SLURM's, or the local executor's)
JOB_ID = re.compile(r"^[0-9]+(_[0-9]+)?$")  # a SLURM job id, or an array task 123_4 (job_control uses it too)
_THEN_KEYS = ("spec", "after", "set")
AFTER_HINT = "write --after 123, --after afterany:123 or --after afterok:123:124 (job ids, or array tasks 123_4)"
THEN_HINT = "then: [{spec: evaluate.yaml, after: afterok, set: {entrypoint.params.split: val}}]"


@dataclass(frozen=True)
class Dependency:
    """The jobs one job waits for, each with its condition, in the order given."""

    conditions: tuple[tuple[str, str], ...]  # (kind, job id): ("afterok", "123")

    def directive(self) -> str:
        """SLURM's ``--dependency`` value: ``afterok:1:2,afterany:3`` (comma: all must hold)."""
        groups: dict[str, list[str]] = {}
        for kind, job_id in self.conditions:
            groups.setdefault(kind, []).append(job_id)
        return ",".join(":".join((kind, *ids)) for kind, ids in groups.items())

    @property
    def job_ids(self) -> tuple[str, ...]:
        """The parent jobs, in order, each once."""
        return tuple(dict.fromkeys(job_id for _, job_id in self.conditions))

    def kind_of(self, job_id: str) -> str:
        """The condition on ``job_id`` (afterok wins where both were given)."""
        kinds = {kind for kind, parent in self.conditions if parent == job_id}
        return "afterok" if "afterok" in kinds else "afterany"


def check_job_id(job_id: str, where: str) -> str:
    """A SLURM job id: digits, or an array task ``123_4``."""
    if not JOB_ID.match(job_id):
        raise InputError(f"{where}: {job_id!r} is not a SLURM job id\n  hint: {AFTER_HINT}")
    return job_id


def parse_after(values: Iterable[str]) -> Dependency | None:
    """``--after`` values (``123``, ``afterany:123``, ``afterok:123:124``) as one Dependency; None for none."""
    conditions: list[tuple[str, str]] = []
    for value in values:
        words = value.strip().split(":")
        kind = DEFAULT_KIND
        if words[0] and not words[0][0].isdigit():
            kind = words.pop(0)
            if kind not in KINDS:
                raise InputError(f"--after {value!r}: {kind!r} is not a condition hpc-run submits "
                                 f"({' or '.join(KINDS)})\n  hint: {AFTER_HINT}")
        if not any(words):
            raise InputError(f"--after {value!r}: no job id after {kind!r}\n  hint: {AFTER_HINT}")
        conditions += [(kind, check_job_id(word, f"--after {value!r}")) for word in words]
    return Dependency(tuple(conditions)) if conditions else None


def from_directive(text: str) -> Dependency | None:
    """Read back a recorded ``afterok:1:2,afterany:3`` (SLURM's ``(failed)`` marks dropped); None if unreadable."""
    conditions: list[tuple[str, str]] = []
    for group in filter(None, re.split(r"[,?]", text or "")):
        kind, *ids = group.split(":")
        ids = [re.sub(r"_\*$", "", re.sub(r"\(.*\)$", "", job_id)) for job_id in ids]  # a whole array shows as 123_*
        if kind not in KINDS or not ids or not all(JOB_ID.match(job_id) for job_id in ids):
            return None
        conditions += [(kind, job_id) for job_id in ids]
    return Dependency(tuple(conditions)) if conditions else None


def then_section(raw: Any, source: str, path: str | None = None) -> tuple[ThenStep, ...]:
    """Validate a spec's ``then:`` list; each step's spec path is made absolute against the spec's folder."""
    if raw is None:
        return ()
    if isinstance(raw, (str, bytes)) or not isinstance(raw, (list, tuple)):
        raise SpecError(f"{source}: key 'then': expected a list of steps, got {type(raw).__name__}\n  hint: {THEN_HINT}")
    spec_file = path or source  # the file the steps are relative to (``source`` may be a label)
    folder = os.path.dirname(os.path.abspath(spec_file)) if os.path.exists(spec_file) else os.getcwd()
    return tuple(_then_step(item, f"then[{i}]", source, folder) for i, item in enumerate(raw))


def _then_step(raw: Any, key: str, source: str, folder: str) -> ThenStep:
    def fail(message: str) -> SpecError:
        return SpecError(f"{source}: key '{key}': {message}\n  hint: {THEN_HINT}")

    if not isinstance(raw, Mapping):
        raise fail(f"expected a mapping with 'spec', got {type(raw).__name__}")
    unknown = sorted(str(k) for k in raw if k not in _THEN_KEYS)
    if unknown:
        raise fail(f"unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(_THEN_KEYS)}")
    path = raw.get("spec")
    if not isinstance(path, str) or not path.strip() or any(c in path for c in "\n\r\x00"):
        raise fail("'spec' must name the follow-up job's spec file (relative to this spec)")
    after = raw.get("after", DEFAULT_KIND)
    if after not in KINDS:
        raise fail(f"after: {after!r} is not one of {', '.join(KINDS)}")
    sets = raw.get("set") or {}
    if not isinstance(sets, Mapping) or not all(isinstance(k, str) and k for k in sets):
        raise fail("'set' is a mapping of dotted spec keys to values, e.g. {entrypoint.params.split: val}")
    return ThenStep(spec=os.path.normpath(os.path.join(folder, os.path.expanduser(path))), after=after,
                    overrides=tuple((k, v) for k, v in sets.items()))


def directives(after: Dependency | None) -> tuple[tuple[str, str], ...]:
    """The ``#SBATCH`` settings a dependency adds: the condition, and cancel-when-it-can-never-hold."""
    if after is None:
        return ()
    return (("dependency", after.directive()), ("kill-on-invalid-dep", KILL_ON_INVALID_DEP))


def parent_output_dir(run_dir: str | None, environ: Mapping[str, str]) -> str:
    """The run directory a chain step works on: ``run_dir`` where given, else its parent's (a ``then:`` child)."""
    found = run_dir or environ.get(PARENT_OUTPUT_DIR_VAR)
    if not found:
        raise InputError(f"no run directory to work on: the params give no run_dir and {PARENT_OUTPUT_DIR_VAR} is not "
                         "set\n  hint: run this spec as a then: step of a training spec, or give it one: "
                         "--set entrypoint.params.run_dir=runs/emulator")
    return found
