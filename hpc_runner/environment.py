"""Rank, world size, local layout, master address and port from SLURM, torchrun or nothing.

Pure: it reads a mapping (``os.environ`` or a test table) and takes a ``resolve`` callable that
turns a node name into an address, so that it never shells out itself.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

from submitit.slurm.slurm import SlurmParseException, _parse_node_list

from .errors import LaunchError
from .variables import JOB_MASTER_VAR

# Where each value comes from in a SLURM job step (the first variable present wins).
SLURM_VARS = {
    "job_id": ("SLURM_JOB_ID",),
    "step_id": ("SLURM_STEP_ID",),
    "rank": ("SLURM_PROCID",),
    "world_size": ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"),
    "local_rank": ("SLURM_LOCALID",),
    "node_rank": ("SLURM_NODEID",),
    "nodelist": ("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST"),
    "tasks_per_node": ("SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"),
    "cpus_per_task": ("SLURM_CPUS_PER_TASK",),
}
PORT_BASE = 10000
PORT_SPAN = 22000  # stays below Linux's ephemeral range (32768+)
DEFAULT_PORT = 29500
_TASKS_GROUP = re.compile(r"^(\d+)(?:\(x(\d+)\))?$")

Resolver = Callable[[str], str]


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job, and how to reach rank 0."""

    source: str
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    node_rank: int
    num_nodes: int
    master_addr: str
    master_port: int
    hosts: tuple[str, ...]
    cpus_per_task: int
    job_key: str = "local"  # names this job step in the rendezvous store: ranks of another job are refused
    addr_rule: str = "default"  # which rule chose master_addr, in words (hpc-run env shows it)
    port_rule: str = "default"

    def as_json(self) -> dict[str, object]:
        """The keys ``hpc-run env --json`` prints."""
        data = asdict(self)
        data["hosts"] = list(self.hosts)
        return data

    def torch_variables(self) -> dict[str, str]:
        """Variables that make torchrun-style code (``init_process_group('env://')``) work unchanged."""
        return {
            "RANK": str(self.rank),
            "WORLD_SIZE": str(self.world_size),
            "LOCAL_RANK": str(self.local_rank),
            "LOCAL_WORLD_SIZE": str(self.local_world_size),
            "MASTER_ADDR": self.master_addr,
            "MASTER_PORT": str(self.master_port),
        }


def _get(environ: Mapping[str, str], name: str) -> str | None:
    for var in SLURM_VARS[name]:
        if environ.get(var):
            return environ[var]
    return None


def _int(environ: Mapping[str, str], var: str, default: int | None = None) -> int:
    value = environ.get(var)
    if value is None or value == "":
        if default is None:
            raise LaunchError(f"{var} is not set; it is needed to place this process in the job")
        return default
    try:
        return int(value)
    except ValueError:
        raise LaunchError(f"{var}={value!r} is not a whole number") from None


def parse_tasks_per_node(text: str) -> list[int]:
    """Expand SLURM's compressed task counts: ``'2(x2),1'`` -> ``[2, 2, 1]``."""
    counts: list[int] = []
    for group in text.split(","):
        match = _TASKS_GROUP.match(group.strip())
        if not match:
            raise LaunchError(f"cannot read tasks per node {text!r}: expected e.g. '2(x3),1'")
        counts += [int(match.group(1))] * int(match.group(2) or 1)
    return counts


def expand_nodelist(text: str) -> list[str]:
    """Expand a SLURM node list (``'n[1-3,07],gpu[01-02]'``) with submitit's parser."""
    try:
        return list(_parse_node_list(text))
    except SlurmParseException as exc:
        raise LaunchError(f"cannot read node list {text!r}: {exc}") from None


def derive_port(job_id: str, step_id: str | None = None) -> int:
    """A port unique to a job step among jobs that share a node: from the job id and step id."""
    digits = re.sub(r"\D", "", job_id) or "0"
    step = int(step_id) if step_id and step_id.isdigit() else 0
    return PORT_BASE + (int(digits) * 8 + step % 8) % PORT_SPAN


def _port(environ: Mapping[str, str], derived: int) -> int:
    port = _int(environ, "MASTER_PORT", derived)
    if not 1 <= port <= 65535:
        raise LaunchError(f"MASTER_PORT={port} is not a TCP port (1-65535)")
    return port


def reserved_port(text: str) -> int:
    """The first port of SLURM_STEP_RESV_PORTS (``'12000-12001'`` or ``'12000,12005'``)."""
    match = re.match(r"^(\d+)", text.strip())
    if not match or not 1 <= int(match.group(1)) <= 65535:
        raise LaunchError(f"SLURM_STEP_RESV_PORTS={text!r} holds no TCP port")
    return int(match.group(1))


def _slurm_port(environ: Mapping[str, str], job_id: str, step_id: str | None) -> tuple[int, str]:
    """An explicit MASTER_PORT wins; then a port SLURM reserved for this step; then one derived from the ids."""
    if environ.get("MASTER_PORT"):
        return _port(environ, 0), "MASTER_PORT set explicitly"
    if environ.get("SLURM_STEP_RESV_PORTS"):
        return reserved_port(environ["SLURM_STEP_RESV_PORTS"]), "reserved for this step by SLURM (SLURM_STEP_RESV_PORTS)"
    return derive_port(job_id, step_id), f"derived from job {job_id} step {step_id or 0}"


def _slurm_addr(environ: Mapping[str, str], first_host: str, resolve: Resolver) -> tuple[str, str]:
    """An explicit MASTER_ADDR wins; then the address the batch script resolved once for the whole job
    (where this step starts on the job's first node); else this rank resolves it (DNS, then NodeAddr)."""
    if environ.get("MASTER_ADDR"):
        return environ["MASTER_ADDR"], "MASTER_ADDR set explicitly"
    job_nodes = environ.get("SLURM_JOB_NODELIST")
    if environ.get(JOB_MASTER_VAR) and job_nodes and expand_nodelist(job_nodes)[0] == first_host:
        return environ[JOB_MASTER_VAR], f"first node {first_host}, resolved once for the job by its batch script"
    return resolve(first_host), f"first node {first_host} (DNS, else scontrol NodeAddr)"


def _from_slurm(environ: Mapping[str, str], resolve: Resolver) -> DistEnv:
    job_id = _get(environ, "job_id") or "0"
    world_size = int(_get(environ, "world_size") or 1)
    rank = _int(environ, "SLURM_PROCID", 0)
    nodelist = _get(environ, "nodelist")
    hosts = expand_nodelist(nodelist) if nodelist else [environ.get("SLURMD_NODENAME", "localhost")]
    tasks_text = _get(environ, "tasks_per_node")
    counts = parse_tasks_per_node(tasks_text) if tasks_text else [world_size]
    node_rank = _int(environ, "SLURM_NODEID", 0)
    if len(counts) != len(hosts) or sum(counts) != world_size:
        raise LaunchError(
            f"SLURM layout does not add up: {len(hosts)} host(s) {hosts[:4]}..., tasks per node "
            f"{tasks_text!r}, {world_size} task(s) in all; check that srun runs inside the allocation"
        )
    if not (0 <= rank < world_size and 0 <= node_rank < len(hosts)):
        raise LaunchError(f"SLURM_PROCID={rank} / SLURM_NODEID={node_rank} outside {world_size} task(s) on {len(hosts)} node(s)")
    step_id = _get(environ, "step_id")
    port, port_rule = _slurm_port(environ, job_id, step_id)
    addr, addr_rule = _slurm_addr(environ, hosts[0], resolve)
    return DistEnv(
        source="slurm",
        rank=rank,
        world_size=world_size,
        local_rank=_int(environ, "SLURM_LOCALID", 0),
        local_world_size=counts[node_rank],
        node_rank=node_rank,
        num_nodes=len(hosts),
        master_addr=addr,
        master_port=port,
        hosts=tuple(hosts),
        cpus_per_task=int(_get(environ, "cpus_per_task") or 1),
        job_key=f"slurm-{job_id}.{step_id if step_id is not None else 'batch'}",
        addr_rule=addr_rule,
        port_rule=port_rule,
    )


def _from_torchrun(environ: Mapping[str, str]) -> DistEnv:
    world_size = _int(environ, "WORLD_SIZE")
    rank = _int(environ, "RANK")
    local_world_size = _int(environ, "LOCAL_WORLD_SIZE", 1)
    if not 0 <= rank < world_size:
        raise LaunchError(f"RANK={rank} is outside WORLD_SIZE={world_size}")
    nodelist = _get(environ, "nodelist")
    return DistEnv(
        source="torchrun",
        rank=rank,
        world_size=world_size,
        local_rank=_int(environ, "LOCAL_RANK", 0),
        local_world_size=local_world_size,
        node_rank=_int(environ, "GROUP_RANK", rank // max(local_world_size, 1)),
        num_nodes=-(-world_size // max(local_world_size, 1)),
        master_addr=environ.get("MASTER_ADDR") or "127.0.0.1",
        master_port=_port(environ, DEFAULT_PORT),
        hosts=tuple(expand_nodelist(nodelist)) if nodelist else (),
        cpus_per_task=_int(environ, "OMP_NUM_THREADS", 1),
        job_key=f"torchrun-{environ.get('TORCHELASTIC_RUN_ID') or 'none'}:{environ.get('MASTER_PORT') or DEFAULT_PORT}",
        addr_rule="MASTER_ADDR from torchrun" if environ.get("MASTER_ADDR") else "default 127.0.0.1",
        port_rule="MASTER_PORT from torchrun" if environ.get("MASTER_PORT") else f"default {DEFAULT_PORT}",
    )


def _local(environ: Mapping[str, str]) -> DistEnv:
    return DistEnv(
        source="local",
        rank=0,
        world_size=1,
        local_rank=0,
        local_world_size=1,
        node_rank=0,
        num_nodes=1,
        master_addr="127.0.0.1",
        master_port=_port(environ, DEFAULT_PORT),
        hosts=("localhost",),
        cpus_per_task=_int(environ, "OMP_NUM_THREADS", os.cpu_count() or 1),
        addr_rule="a single process: no master needed",
        port_rule="MASTER_PORT set explicitly" if environ.get("MASTER_PORT") else f"default {DEFAULT_PORT}",
    )


def from_environ(environ: Mapping[str, str], resolve: Resolver) -> DistEnv:
    """Detect the environment: torchrun worker, SLURM job step, torchrun-style variables, or one process.

    A torchrun worker wins over SLURM because torchrun may itself run inside a SLURM step.
    A multi-task SLURM allocation without a job step (the batch shell) is an error: its
    ranks would wait forever for peers that srun never started.
    """
    if environ.get("TORCHELASTIC_RUN_ID"):
        return _from_torchrun(environ)
    if environ.get("SLURM_JOB_ID") and environ.get("SLURM_PROCID"):
        in_step = bool(environ.get("SLURM_STEP_ID"))
        ntasks = _int(environ, "SLURM_NTASKS", 1)
        if in_step:
            return _from_slurm(environ, resolve)
        if ntasks > 1:
            raise LaunchError(
                f"this is the batch shell of SLURM job {environ['SLURM_JOB_ID']} with {ntasks} tasks, not a job step: "
                "only one process would start and it would wait forever for the others.\n"
                "  hint: launch the entrypoint with srun (hpc-run render writes that line for you)"
            )
        return _from_slurm(environ, resolve)
    if environ.get("RANK") and environ.get("WORLD_SIZE"):
        return _from_torchrun(environ)
    return _local(environ)


UNRESOLVED = "(unresolved)"


def diagnose(environ: Mapping[str, str], resolve: Resolver) -> tuple[DistEnv | None, list[str]]:
    """What a rank would detect here, never raising: findings instead of errors (``hpc-run env``)."""
    findings: list[str] = []

    def tolerant(name: str) -> str:
        try:
            return resolve(name)
        except LaunchError as exc:
            findings.append(str(exc))
            return UNRESOLVED

    try:
        return from_environ(environ, tolerant), findings
    except LaunchError as exc:
        return None, [*findings, str(exc)]
