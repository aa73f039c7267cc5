"""One job, materialised once from a validated spec: everything SLURM and every rank will see.

``render`` prints a JobRequest as an sbatch script; ``submit`` hands the same request to submitit
(its directives, setup lines, srun arguments and launch program). Nothing downstream decides
anything about the job again. Pure: no torch, no subprocess.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
from dataclasses import dataclass
from typing import Any

from . import accelerate_launch, config_check, dependency
from . import snapshot as snapshot_mod
from .data_plan import data_plan
from .variables import JOB_MASTER_VAR
from .run_config import RunConfig
from .errors import SpecError
from .schema import JobSpec, ScriptEntry, ThenStep
from .slurm_time import format_time

ENTRYPOINT_MODULE = "hpc_runner.entrypoint"
TORCHRUN_MODULE = "hpc_runner.torchrun_launch"

PER_NODE_LAUNCHERS = ("torchrun", "accelerate")  # one launch task per node, which starts the node's ranks

Directive = tuple[str, "str | None"]  # ("nodes", "4"); ("requeue", None) is a bare flag


@dataclass(frozen=True)
class SweepTask:
    """One task of a job array: the values it sweeps, its own output directory, its own program."""

    index: int                              # SLURM_ARRAY_TASK_ID
    values: tuple[tuple[str, Any], ...]     # (dotted key, value) per swept key
    label: str                              # "lr=0.1_hidden=32": in the folder name and the tables
    output_dir: str                         # absolute; its checkpoints, metrics and run.json
    program: tuple[str, ...]                # what srun starts on each launch task of this array task


@dataclass(frozen=True)
class ArrayJob:
    """A sweep as one SLURM job array: every task the same shape, each its own program and folder."""

    tasks: tuple[SweepTask, ...]
    throttle: int | None                    # at most this many tasks at once; None: all
    table: str                              # sweep.json: the task table `hpc-run results` reads

    @property
    def array(self) -> str:
        """sbatch's --array value, with the throttle always written (submitit writes one too)."""
        return f"0-{len(self.tasks) - 1}%{self.throttle or len(self.tasks)}"


@dataclass(frozen=True)
class JobRequest:
    """A job as SLURM and the ranks see it, with every value final (rendering only formats)."""

    name: str
    mode: str
    launcher: str
    summary: tuple[str, ...]               # the resource math, for humans
    directives: tuple[Directive, ...]      # sorted by key; what #SBATCH lines say
    before_setup: tuple[str, ...]          # ours: inherited values only the spec may set are dropped, with a warning
    setup: tuple[str, ...]                 # the user's own shell lines, run before the ranks start
    env: tuple[tuple[str, str], ...]       # exported to every rank, in this order
    before_launch: tuple[str, ...]         # ours: the interpreter exists; srun takes its counts from the allocation
    srun: tuple[str, ...]                  # srun's options (the word "srun" not included)
    program: tuple[str, ...]               # what srun starts on each launch task
    launch_notes: tuple[str, ...]          # comment lines printed just above the srun line
    python: str                            # the interpreter that runs the ranks
    output_dir: str                        # absolute: checkpoints, metrics, plots
    nodes: int
    tasks_per_node: int                    # launch tasks per node: ranks (srun) or 1 (one torchrun or accelerate launch per node)
    ranks_per_node: int
    time_minutes: int
    signal: str                            # the time-limit warning our entrypoint handles
    config: RunConfig                      # what the program's argv says, as an object
    array: ArrayJob | None = None          # a sweep: program, config and output_dir are task 0's, output_dir the sweep's
    template_dirs: tuple[str, ...] = ()    # absolute: the spec's (or profile's) template folder, searched first by render
    after: dependency.Dependency | None = None  # the jobs this one waits for (--after, or its parent in a chain)
    then: tuple[ThenStep, ...] = ()        # follow-up jobs hpc-run submits to start after this one (hpc_runner.chain)
    code: snapshot_mod.Snapshot | None = None  # the code copy the job runs (hpc-run submit); None: the code as it is when the job starts

    @property
    def world_size(self) -> int:
        """Ranks in the whole job."""
        return self.nodes * self.ranks_per_node

    @property
    def launch_tasks(self) -> int:
        """Processes srun starts (ranks, or one torchrun per node)."""
        return self.nodes * self.tasks_per_node

    def directive_lines(self, extra: tuple[Directive, ...] = ()) -> list[str]:
        """``#SBATCH`` lines, sorted by key, from the one helper (a sweep's --array among them)."""
        array: tuple[Directive, ...] = (("array", self.array.array),) if self.array else ()
        return [sbatch_line(key, value) for key, value in sorted((*self.directives, *array, *extra))]

    def export_lines(self) -> list[str]:
        """``export KEY=VALUE`` lines, values shell-quoted."""
        return [f"export {key}={shlex.quote(value)}" for key, value in self.env]

    def shell_lines(self) -> list[str]:
        """Everything the batch shell runs before srun, in order (submitit's ``setup``)."""
        return [*self.before_setup, *self.setup, *self.export_lines(), *self.code_lines(), *self.before_launch]

    def code_lines(self) -> list[str]:
        """Which code the job runs: cd into the snapshot and put it first on PYTHONPATH, or a comment saying there is none."""
        return list(snapshot_mod.shell_lines(self.code))

    def launch_line(self) -> str:
        """The srun line that starts every launch task, quoted, wrapped for reading (a sweep: its task's program)."""
        notes = "".join(f"{note}\n" for note in self.launch_notes)
        if self.array is None:
            return notes + " \\\n  ".join((shlex.join(("srun", *self.srun)), shlex.join(self.program)))
        last = len(self.array.tasks) - 1
        said = shlex.quote(f"hpc_runner: error: this script is a job array of tasks 0-{last} (sbatch reads its "
                           f"--array line); SLURM_ARRAY_TASK_ID=")
        cases = [f"  {task.index}) task=({shlex.join(task.program)}) ;;" for task in self.array.tasks]
        return "\n".join([notes + 'case "${SLURM_ARRAY_TASK_ID:-}" in', *cases,
                          f'  *) echo {said}"${{SLURM_ARRAY_TASK_ID:-unset}}" >&2; exit 2 ;;', "esac",
                          shlex.join(("srun", *self.srun)) + ' \\\n  "${task[@]}"'])


def sbatch_line(key: str, value: str | None) -> str:
    """One ``#SBATCH`` line (written the way submitit writes its own, so both texts compare)."""
    return f"#SBATCH --{key}" if value is None else f"#SBATCH --{key}={shlex.quote(value)}"


def build(spec: JobSpec, cwd: str | None = None, python: str | None = None,
          after: dependency.Dependency | None = None, code: snapshot_mod.Snapshot | None = None) -> JobRequest:
    """Materialise ``spec``: relative output paths against ``cwd``, the interpreter that runs this.

    With ``code`` (a snapshot planned for this request's output directory) the job runs from the copy:
    a script entry and config files inside the project are the copy's, and the shell lines cd into it.

    Config files the spec points at (accelerate, DeepSpeed) are read here, once: a SpecError refuses
    one that contradicts the spec before anything is rendered or submitted.
    """
    here = cwd or os.getcwd()
    output_dir = os.path.abspath(os.path.join(here, os.path.expanduser(spec.run_dir)))
    interpreter = spec.python or python or sys.executable
    interpreter = code.interpreter(interpreter, here) if code is not None else interpreter
    spec = _absolute_paths(spec, here)
    checked = config_check.check(spec, here)  # the files as they are now (a planned snapshot is not copied yet)
    spec = _in_snapshot(spec, code) if code is not None else spec
    config = RunConfig.from_spec(spec, output_dir)
    tasks_per_node = 1 if spec.launcher in PER_NODE_LAUNCHERS else spec.ntasks_per_node
    distributed_type = checked.accelerate.distributed_type if checked.accelerate is not None else None
    launch_mode = (accelerate_launch.mode_line(distributed_type),) if spec.launcher == "accelerate" else ()
    return JobRequest(
        name=spec.name, mode=spec.mode, launcher=spec.launcher, summary=(*summary(spec), *checked.lines, *launch_mode),
        directives=tuple(sorted((*_directives(spec), *dependency.directives(after)))), before_setup=_drop_inherited(spec),
        setup=(*module_lines(spec), *spec.setup), env=_environment(spec),
        before_launch=_before_launch(spec, interpreter),
        # No --nodes/--ntasks: srun takes them from the allocation, so `sbatch --nodes 3` on a script
        # rendered for 2 runs on 3 (the entrypoint reads the step, not the spec).
        srun=("--kill-on-bad-exit=1", "--mpi=none", "--label", f"--ntasks-per-node={tasks_per_node}",
              f"--cpus-per-task={spec.cpus_per_task * spec.ntasks_per_node // tasks_per_node}"),
        program=_program(spec, interpreter, config, distributed_type), python=interpreter, output_dir=output_dir,
        launch_notes=accelerate_launch.NOTES if spec.launcher == "accelerate" else (),
        nodes=spec.nodes, tasks_per_node=tasks_per_node, ranks_per_node=spec.ntasks_per_node,
        time_minutes=spec.time_minutes, signal=spec.requeue.signal, config=config, after=after, then=spec.then,
        template_dirs=template_dirs(spec, here), code=code,
    )


def module_lines(spec: JobSpec) -> tuple[str, ...]:
    """One ``module load NAME`` line per module, in order, before the spec's own setup lines."""
    return tuple(f"module load {shlex.quote(name)}" for name in spec.modules)


def template_dirs(spec: JobSpec, here: str) -> tuple[str, ...]:
    """The spec's template folder, absolute (relative to where you submit; a profile's is already absolute)."""
    if spec.templates is None:
        return ()
    folder = os.path.abspath(os.path.join(here, os.path.expanduser(spec.templates)))
    if not os.path.isdir(folder):
        raise SpecError(f"templates: {folder} is not a folder\n  hint: point templates: at a folder of *.sh.j2 "
                        "templates (in a profile, relative to its config file), or leave the key out")
    return (folder,)


def summary(spec: JobSpec) -> list[str]:
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


def _directives(spec: JobSpec) -> tuple[Directive, ...]:
    pairs: list[Directive] = [
        ("job-name", spec.name),
        ("nodes", str(spec.nodes)),
        ("ntasks-per-node", str(spec.ntasks_per_node)),
        ("cpus-per-task", str(spec.cpus_per_task)),
        ("time", format_time(spec.time_minutes)),
        ("requeue", None),
    ]
    if spec.requeue.handler != "none":  # nobody would act on a warning: ask SLURM for none
        pairs.append(("signal", f"{spec.requeue.signal}@{spec.requeue.seconds_before}"))
    if spec.gpus_per_node:
        pairs.append(("gpus-per-node", str(spec.gpus_per_node)))
    pairs += [(key, value) for key in ("partition", "account", "qos", "mem")
              if (value := getattr(spec, key)) is not None]
    if spec.constraint is not None:
        pairs.append(("constraint", spec.constraint))
    return tuple(sorted(pairs))


def _environment(spec: JobSpec) -> tuple[tuple[str, str], ...]:
    threads = str(spec.cpus_per_task)
    pairs = [("OMP_NUM_THREADS", threads), ("MKL_NUM_THREADS", threads)]
    if spec.mode == "gloo" and spec.socket_ifname:
        pairs.append(("GLOO_SOCKET_IFNAME", spec.socket_ifname))
    if spec.mode == "gloo" and "ACCELERATE_USE_CPU" not in spec.env:
        # accelerate takes ranks on a machine without GPUs for a single process unless told the job runs on
        # CPUs (the every-process-trains-alone mistake); `accelerate launch --multi_gpu` reads it too.
        pairs.append(("ACCELERATE_USE_CPU", "true"))
    if spec.mode == "nccl":
        pairs += [("NCCL_DEBUG", spec.nccl_debug), ("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")]
        if spec.socket_ifname:
            pairs.append(("NCCL_SOCKET_IFNAME", spec.socket_ifname))
    pairs += sorted(spec.env.items())
    return tuple(pairs)


# Only the spec (its keys, env: or the command line) decides these; sbatch would pass on the submitting shell's.
EXPLICIT_ONLY = ("MASTER_ADDR", "MASTER_PORT")


def _drop_inherited(spec: JobSpec) -> tuple[str, ...]:
    return tuple(
        f'if [ -n "${{{var}+x}}" ]; then echo "hpc_runner: warning: ignoring {var}=${{{var}}} inherited from the '
        f'submitting shell; set it in the spec\'s env: to use it" >&2; unset {var}; fi'
        for var in EXPLICIT_ONLY if var not in spec.env)


def _before_launch(spec: JobSpec, python: str) -> tuple[str, ...]:
    said = shlex.quote(f"hpc_runner: error: the interpreter {python} does not exist on ")
    hint = shlex.quote("; set python: in the spec (default: the interpreter that ran hpc-run)")
    lines = [f'command -v {shlex.quote(python)} >/dev/null || {{ echo {said}"$(hostname)"{hint} >&2; exit 1; }}']
    # One address lookup per job, not one per rank (thousands of scontrol calls at once would load slurmctld).
    lines.append(f'if [ -z "${{MASTER_ADDR:-}}" ] && [ -n "${{SLURM_JOB_NODELIST:-}}" ]; then '
                 f'{JOB_MASTER_VAR}=$({shlex.quote(python)} -m hpc_runner.hosts "$SLURM_JOB_NODELIST"); '
                 f'export {JOB_MASTER_VAR}; fi')
    if spec.launcher in PER_NODE_LAUNCHERS:  # one task per node: the allocation's task count must not reach srun
        lines.append("unset SLURM_NTASKS SLURM_NPROCS")
    return tuple(lines)


def _absolute_paths(spec: JobSpec, here: str) -> JobSpec:
    """The spec's files found where it was submitted, whatever the job's working directory."""
    def absolute(path: str) -> str:
        return os.path.abspath(os.path.join(here, os.path.expanduser(path)))

    if isinstance(spec.entrypoint, ScriptEntry):
        spec = dataclasses.replace(spec, entrypoint=dataclasses.replace(spec.entrypoint, path=absolute(spec.entrypoint.path)))
    return dataclasses.replace(spec, **{key: absolute(path) for key in ("accelerate_config", "deepspeed_config")
                                        if (path := getattr(spec, key)) is not None})


def _in_snapshot(spec: JobSpec, code: snapshot_mod.Snapshot) -> JobSpec:
    """The spec's input files (script entry, configs) as the copies the snapshot holds; outputs stay where they are."""
    if isinstance(spec.entrypoint, ScriptEntry):
        spec = dataclasses.replace(spec, entrypoint=dataclasses.replace(spec.entrypoint, path=code.mapped(spec.entrypoint.path)))
    return dataclasses.replace(spec, **{key: code.mapped(path) for key in ("accelerate_config", "deepspeed_config")
                                        if (path := getattr(spec, key)) is not None})


def _program(spec: JobSpec, python: str, config: RunConfig, distributed_type: str | None) -> tuple[str, ...]:
    entry_argv = config.to_argv()
    if spec.launcher == "accelerate":
        return accelerate_launch.program(python, spec.ntasks_per_node, spec.init_timeout_s, spec.accelerate_config, entry_argv,
                                         distributed_type)
    if spec.launcher == "torchrun":
        return (python, "-u", "-m", TORCHRUN_MODULE, "--nproc-per-node", str(spec.ntasks_per_node), "--", *entry_argv)
    return (python, "-u", "-m", ENTRYPOINT_MODULE, *entry_argv)
