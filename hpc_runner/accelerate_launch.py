"""``launcher: accelerate``: one ``accelerate launch`` per node, as accelerate's own SLURM example runs it.

srun starts one task per node; that task is a short bash line which asks this module for the node's
values (machine rank from SLURM_NODEID, main process address and port by the rules of
``hpc_runner.environment``, this node's own address) and then execs ``accelerate launch`` with the
total process count, the machine count and c10d rendezvous. accelerate starts the hpc_runner
entrypoint on each of the node's ranks, which runs the user's script or function unchanged.

The mode flag follows the accelerate config's ``distributed_type`` (read once, by ``config_check``):
accelerate reads it only when no mode flag is given, so passing ``--multi_gpu`` always would run a
DeepSpeed or FSDP config as plain DDP. DEEPSPEED gets ``--use_deepspeed`` (with the ``standard``
multi-node launcher: torch's, one per node, not pdsh), FSDP ``--use_fsdp``, anything else
``--multi_gpu``. On CPUs accelerate's only multi-process path is ``--multi_gpu`` with
``ACCELERATE_USE_CPU=true`` (``--cpu`` alone starts one process): gloo mode exports that variable
(``request``), so the same ``--multi_gpu`` line serves CPUs and GPUs.

Importing this module is cheap and pure (``request`` uses :func:`program`); only :func:`main`, run
inside the job, resolves addresses.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .environment import DistEnv

# The job's interpreter runs accelerate's own CLI module: `accelerate launch`, from the same environment.
ACCELERATE_LAUNCH = ("-m", "accelerate.commands.launch")
MODULE = "hpc_runner.accelerate_launch"
# Printed above the srun line: the single-quoted line is bash's on each node, where its variables expand.
NOTES = ("# accelerate launch, once per node; the node's values (machine rank = SLURM_NODEID, process and machine",
         "# counts from the allocation, main process address and port) come from hpc_runner.accelerate_launch on the node",
         "# shellcheck disable=SC2016")
# The words bash reads from this module, in order; each becomes the accelerate option of the same name.
WORDS = ("machine_rank", "num_machines", "num_processes", "main_process_ip", "main_process_port", "local_addr", "rdzv_conf")


def node_script(nproc_per_node: int, init_timeout_s: int) -> str:
    """The bash line each node runs: read the node's values from this module, then exec accelerate launch.

    ``$0`` is the interpreter; ``"$@"`` holds the job's fixed accelerate options and the program, each an
    argument of its own (quoted once, by shlex, in the request), so nothing of the spec is in this text.
    The counts come from the allocation, as srun's do, so ``sbatch --nodes 3`` on a script rendered for 2
    runs on 3. The launcher ignores the warning signal SLURM sends before the time limit (its default
    action would kill it); each rank installs its own handler.
    """
    options = " ".join(f'--{word}="${word}"' for word in WORDS if word != "local_addr")
    return ('trap "" USR1 USR2; '
            f'read -r {" ".join(WORDS)} < <("$0" -m {MODULE} --nproc-per-node={nproc_per_node:d} '
            f'--join-timeout={init_timeout_s:d}) || exit 1; '
            f'PET_LOCAL_ADDR="$local_addr" exec "$0" {" ".join(ACCELERATE_LAUNCH)} {options} "$@"')


@dataclass(frozen=True)
class Mode:
    """How ``accelerate launch`` runs the ranks: its flags, and the words the dry run prints."""

    flags: tuple[str, ...]
    words: str


MODES = {
    "DEEPSPEED": Mode(("--use_deepspeed", "--deepspeed_multinode_launcher=standard"),
                      "DeepSpeed (DeepSpeed must be installed where the job runs, or accelerate stops)"),
    "FSDP": Mode(("--use_fsdp",), "FSDP (the config's fsdp_config)"),
}
DDP = Mode(("--multi_gpu",), "plain multi-process, one process per rank, no DeepSpeed or FSDP plugin "
                             "(on CPUs in gloo mode: ACCELERATE_USE_CPU=true)")


def mode(distributed_type: str | None) -> Mode:
    """The mode for an accelerate config's distributed_type (None: no config, or it does not say)."""
    return MODES.get(distributed_type or "", DDP)


def mode_line(distributed_type: str | None) -> str:
    """The dry run's line saying what accelerate will run."""
    chosen = mode(distributed_type)
    said = f"distributed_type {distributed_type}" if distributed_type else "no distributed_type given"
    return f"accelerate launch {' '.join(chosen.flags)}: {chosen.words}; {said}"


def program(python: str, nproc_per_node: int, init_timeout_s: int, config_file: str | None,
            entry_argv: list[str], distributed_type: str | None = None) -> tuple[str, ...]:
    """What srun starts on each node: the node's bash line, the interpreter, then accelerate's fixed options."""
    options = [*mode(distributed_type).flags, "--rdzv_backend=c10d", "--max_restarts=0"]
    options += [f"--config_file={config_file}"] if config_file else ["--mixed_precision=no", "--dynamo_backend=no"]
    return ("bash", "-c", node_script(nproc_per_node, init_timeout_s), python, *options,
            "--module", "hpc_runner.entrypoint", *entry_argv)


@dataclass(frozen=True)
class NodeValues:
    """What one node's ``accelerate launch`` needs that only the node knows (the fields of WORDS, in order)."""

    machine_rank: int
    num_machines: int
    num_processes: int
    main_process_ip: str
    main_process_port: int
    local_addr: str  # torch's agent tells the ranks to reach its store here (its own guess, the host name, may not resolve)
    rdzv_conf: str

    def words(self) -> str:
        """One line for bash's ``read`` (no word may be empty or hold white space)."""
        fields = [str(getattr(self, word)) for word in WORDS]
        if any(not f or any(c.isspace() for c in f) for f in fields):
            raise ValueError(f"a node value is empty or holds white space: {fields}")
        return " ".join(fields)


def node_values(env: DistEnv, nproc_per_node: int, local_addr: str, join_timeout_s: int) -> NodeValues:
    """This node's values from its DistEnv (one task per node); pure, tested with tables.

    The rendezvous settings are torchrun's (``torchrun_launch.rdzv_conf``): the same agent runs under both.
    """
    from .torchrun_launch import rdzv_conf  # here: rendering imports this module and needs none of that

    conf = rdzv_conf(env, join_timeout_s)
    return NodeValues(machine_rank=env.node_rank, num_machines=env.num_nodes, num_processes=env.num_nodes * nproc_per_node,
                      main_process_ip=env.master_addr, main_process_port=env.master_port,
                      local_addr=local_addr, rdzv_conf=",".join(conf))


def main(argv: list[str] | None = None) -> int:
    """``python -m hpc_runner.accelerate_launch --nproc-per-node=N --join-timeout=S``: this node's values for bash."""
    import argparse
    import os

    from . import environment
    from .errors import HpcRunnerError
    from .hosts import resolve_address
    from .interfaces import route_source

    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}")
    parser.add_argument("--nproc-per-node", type=int, required=True)
    parser.add_argument("--join-timeout", type=int, required=True)
    ns = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        env = environment.from_environ(os.environ, resolve_address)
        # This node's address as the other nodes reach it: the source of its route to the main process
        # (no name lookup, which on clusters whose names do not resolve waits for DNS to time out).
        local_addr = route_source(env.master_addr, env.master_port) or resolve_address(env.hosts[env.node_rank])
    except HpcRunnerError as exc:
        print(f"hpc_runner error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    if env.local_world_size != 1:
        print("hpc_runner error: the accelerate launcher wants one task per node "
              f"(found {env.local_world_size} on this node); render the script with hpc-run render", file=sys.stderr)
        return 2
    values = node_values(env, ns.nproc_per_node, local_addr, ns.join_timeout)
    print(f"hpc_runner: node {env.node_rank}/{env.num_nodes} -> accelerate launch, rendezvous at "
          f"{env.master_addr}:{env.master_port} ({env.port_rule})", file=sys.stderr, flush=True)
    print(values.words(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
