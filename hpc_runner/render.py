"""A JobRequest printed as an sbatch script through the mode's template (no torch, no subprocess)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import jinja2

from .errors import InputError
from .request import JobRequest
from .shipped import template_search_path

# A rendered script's own bookkeeping: where SLURM writes its log. submitit writes its own.
LOG_DIRECTIVES = (("open-mode", "append"),)


@dataclass(frozen=True)
class ScriptContext:
    """Everything a template prints, already formatted and shell-quoted."""

    header: list[str]
    directives: list[str]
    before_setup: list[str]
    setup: list[str]
    exports: list[str]
    code: list[str]
    before_launch: list[str]
    launch: str


def log_name(request: JobRequest) -> str:
    """The rendered script's log file, in the directory sbatch was run from (a sweep's: one per array task)."""
    return f"{request.name}-%A_%a.out" if request.array else f"{request.name}-%j.out"


def context(request: JobRequest) -> ScriptContext:
    """What the template prints, taken from the request as it is."""
    return ScriptContext(
        header=list(request.summary),
        directives=request.directive_lines((("output", log_name(request)), *LOG_DIRECTIVES)),
        before_setup=list(request.before_setup),
        setup=list(request.setup),
        exports=request.export_lines(),
        code=request.code_lines(),
        before_launch=list(request.before_launch),
        launch=request.launch_line(),
    )


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Compiled templates cached per user (render is latency-sensitive); none where it cannot be written."""
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = os.path.join(cache_home, "hpc_runner", "jinja2")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(folder)


def _environment(first: tuple[str, ...] = ()) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([*first, *template_search_path()]),
        bytecode_cache=_bytecode_cache(),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(request: JobRequest) -> str:
    """The sbatch script for ``request``, deterministic for golden tests."""
    try:
        template = _environment(request.template_dirs).get_template(f"{request.mode}.sh.j2")
        return template.render(ctx=context(request))
    except jinja2.TemplateError as exc:
        raise InputError(f"template for mode {request.mode!r} failed: {exc}") from exc
