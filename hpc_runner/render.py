"""Spec -> context of pre-quoted strings -> sbatch script text (no torch, no subprocess)."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass

import jinja2

from .errors import SpecError
from .layout import data_plan, format_time
from .resources import shipped
from .run_config import RunConfig
from .spec import JobSpec

ENTRYPOINT_MODULE = "hpc_runner.entrypoint"
TORCHRUN_MODULE = "hpc_runner.torchrun_launch"


def templates_dir() -> str:
    """The shipped ``templates/`` folder."""
    return shipped("templates", "base.sh.j2")


@dataclass(frozen=True)
class ScriptContext:
    """Everything a template prints, already formatted and shell-quoted."""

    header: list[str]
    directives: list[str]
    setup: list[str]
    exports: list[str]
    launch: str


def resource_summary(spec: JobSpec) -> list[str]:
    """Human-readable resource math for the script header and the CLI."""
    ranks = spec.world_size
    lines = [
        f"hpc_runner job {spec.name!s}: mode {spec.mode}, launcher {spec.launcher}",
        f"resources: {spec.nodes} node(s) x {spec.ntasks_per_node} task(s) = {ranks} rank(s); "
        f"{spec.cpus_per_task} thread(s) per rank; {ranks * spec.cpus_per_task} core(s) in total"
        + (f"; {spec.gpus_per_node} GPU(s) per node, one per rank" if spec.mode == "nccl" else ""),
    ]
    if spec.data is not None:
        plan = data_plan(spec.data.samples, spec.data.batch_size, ranks)
        lines.append(
            f"data: {plan.samples} samples / {ranks} rank(s) = {plan.samples_per_rank} samples per rank; "
            f"batch {plan.batch_size} per rank -> {plan.steps_per_epoch} steps per epoch; "
            f"effective batch {plan.effective_batch}"
        )
    return lines


def _directive(key: str, value: object) -> str:
    return f"#SBATCH --{key}={value}"


def _directives(spec: JobSpec) -> list[str]:
    lines = [
        _directive("job-name", spec.name),
        _directive("nodes", spec.nodes),
        _directive("ntasks-per-node", spec.ntasks_per_node),
        _directive("cpus-per-task", spec.cpus_per_task),
        _directive("time", format_time(spec.time_minutes)),
        _directive("output", f"{spec.name}-%j.out"),
        _directive("open-mode", "append"),
        _directive("signal", f"{spec.requeue.signal}@{spec.requeue.seconds_before}"),
        "#SBATCH --requeue",
    ]
    if spec.gpus_per_node:
        lines.append(_directive("gpus-per-node", spec.gpus_per_node))
    for key in ("partition", "account", "qos", "mem"):
        value = getattr(spec, key)
        if value is not None:
            lines.append(_directive(key, value))
    return lines


def _export(key: str, value: str | int) -> str:
    return f"export {key}={shlex.quote(str(value))}"


def _exports(spec: JobSpec) -> list[str]:
    threads = spec.cpus_per_task
    lines = [_export("OMP_NUM_THREADS", threads), _export("MKL_NUM_THREADS", threads)]
    if spec.mode == "gloo" and spec.socket_ifname:
        lines.append(_export("GLOO_SOCKET_IFNAME", spec.socket_ifname))
    if spec.mode == "nccl":
        lines.append(_export("NCCL_DEBUG", spec.nccl_debug))
        lines.append(_export("TORCH_NCCL_ASYNC_ERROR_HANDLING", 1))
        if spec.socket_ifname:
            lines.append(_export("NCCL_SOCKET_IFNAME", spec.socket_ifname))
    lines += [_export(k, v) for k, v in sorted(spec.env.items())]
    return lines


def launch_argv(spec: JobSpec) -> tuple[list[str], list[str]]:
    """The srun part and the program part of the line that starts every rank (or one torchrun per node)."""
    srun = ["srun", "--kill-on-bad-exit=1", "--mpi=none", "--label", f"--nodes={spec.nodes}"]
    entry_argv = RunConfig.from_spec(spec).to_argv()
    if spec.launcher == "torchrun":
        srun += [f"--ntasks={spec.nodes}", "--ntasks-per-node=1",
                 f"--cpus-per-task={spec.cpus_per_task * spec.ntasks_per_node}"]
        program = [spec.python, "-u", "-m", TORCHRUN_MODULE, "--nproc-per-node", str(spec.ntasks_per_node), "--"]
    else:
        srun += [f"--ntasks={spec.world_size}", f"--ntasks-per-node={spec.ntasks_per_node}",
                 f"--cpus-per-task={spec.cpus_per_task}"]
        program = [spec.python, "-u", "-m", ENTRYPOINT_MODULE]
    return srun, program + entry_argv


def context(spec: JobSpec) -> ScriptContext:
    """Format every value of the spec for the template."""
    return ScriptContext(
        header=resource_summary(spec),
        directives=_directives(spec),
        setup=list(spec.setup),
        exports=_exports(spec),
        launch=" \\\n  ".join(shlex.join(part) for part in launch_argv(spec)),
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


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        bytecode_cache=_bytecode_cache(),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(spec: JobSpec) -> str:
    """The sbatch script for ``spec``, deterministic for golden tests."""
    try:
        template = _environment().get_template(f"{spec.mode}.sh.j2")
        return template.render(ctx=context(spec))
    except jinja2.TemplateError as exc:
        raise SpecError(f"template for mode {spec.mode!r} failed: {exc}") from exc
