"""The job spec schema: frozen dataclasses and their defaults, defined once (no I/O, no validation)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

MODES = ("threading", "gloo", "nccl")
LAUNCHERS = ("srun", "torchrun", "accelerate")
SIGNALS = ("USR1", "USR2")
RESUME_MODES = ("auto", "never", "force")
REQUEUE_HANDLERS = ("auto", "hpc_runner", "framework", "none")
FUNCTION_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class FunctionEntry:
    """Run ``package.module:function`` on every rank with ``params`` as keyword arguments."""

    target: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScriptEntry:
    """Run a torchrun-style Python script on every rank with ``args`` as its argv."""

    path: str
    args: tuple[str, ...] = ()


Entry = FunctionEntry | ScriptEntry


@dataclass(frozen=True)
class DataSpec:
    """Size of the training set and the per-rank batch; drives the resource math."""

    samples: int
    batch_size: int
    val_samples: int = 0
    audit: bool = True


@dataclass(frozen=True)
class RequeueSpec:
    """Ask SLURM for a warning signal before the time limit and requeue after checkpointing."""

    signal: str = "USR1"
    seconds_before: int = 60
    max_restarts: int = 3
    handler: str = "auto"  # who acts on the signal: auto, hpc_runner, framework, none (see hpc_runner.requeue)


@dataclass(frozen=True)
class ExportSpec:
    """How ``hpc-run export`` rebuilds the trained model: a factory and one example's shape."""

    model: str  # 'package.module:function', called with the entry's params it names; returns the nn.Module
    input_shape: tuple[int, ...]  # one example, without the batch dimension: (8,) or (3, 224, 224)


@dataclass(frozen=True)
class SweepAxis:
    """One swept key and the values its tasks take, in order (``entrypoint.params.lr``: 0.1, 0.01)."""

    key: str  # a dotted spec key, as --set writes it
    values: tuple[Any, ...]


@dataclass(frozen=True)
class SweepSpec:
    """A hyper-parameter sweep: the cartesian product of its axes, run as one SLURM job array."""

    axes: tuple[SweepAxis, ...]
    throttle: int | None = None  # at most this many tasks at once (sbatch --array=0-N%throttle)


@dataclass(frozen=True)
class ThenStep:
    """A follow-up job (``then:``): its spec, submitted to start after this job, with its own overrides."""

    spec: str  # absolute: the spec file, found relative to the spec that names it
    after: str = "afterok"  # afterok: only if this job succeeded; afterany: once it ended, whatever its state
    overrides: tuple[tuple[str, Any], ...] = ()  # dotted key -> value, as --set gives them


@dataclass(frozen=True)
class JobSpec:
    """One validated job: resources, environment and what to run."""

    name: str
    entrypoint: Entry
    mode: str = "threading"
    nodes: int = 1
    ntasks_per_node: int = 1
    cpus_per_task: int = 1
    gpus_per_node: int = 0
    time_minutes: int = 60
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    mem: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    setup: tuple[str, ...] = ()
    launcher: str = "srun"
    output_dir: str = ""
    python: str | None = None  # None: the interpreter that renders or submits (sys.executable)
    socket_ifname: str | None = None
    nccl_debug: str = "WARN"
    init_timeout_s: int = 300  # the rendezvous only
    collective_timeout_s: int = 1800  # each collective (torch's default): rank 0 may evaluate for long
    resume: str = "auto"  # auto: resume a checkpoint of this run, refuse another run's; never; force
    data: DataSpec | None = None
    requeue: RequeueSpec = RequeueSpec()
    export: ExportSpec | None = None  # the model factory for `hpc-run export` (the demo emulator needs none)
    accelerate_config: str | None = None  # an accelerate YAML: checked against the world size; launcher accelerate passes it on
    deepspeed_config: str | None = None  # a DeepSpeed JSON: its batch arithmetic checked against the world size
    sweep: SweepSpec | None = None  # run as a job array, one task per combination (hpc_runner.sweep)
    constraint: str | None = None  # node features SLURM must match (#SBATCH --constraint); site profiles set it
    modules: tuple[str, ...] = ()  # environment modules: one `module load NAME` line each, before the setup lines
    templates: str | None = None  # a template folder render searches before ours (and before $HPC_RUNNER_TEMPLATES)
    then: tuple[ThenStep, ...] = ()  # follow-up jobs submitted to start after this one (hpc_runner.chain)

    @property
    def world_size(self) -> int:
        """Ranks in the whole job."""
        return self.nodes * self.ntasks_per_node

    @property
    def run_dir(self) -> str:
        """Where rank 0 writes checkpoints and metrics (``output_dir`` or ``runs/NAME``)."""
        return self.output_dir or f"runs/{self.name}"
