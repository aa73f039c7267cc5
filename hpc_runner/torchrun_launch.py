"""``launcher: torchrun``: one task per node turns its SLURM step into a torchrun with c10d rendezvous.

srun starts this module once per node; it finds the rendezvous endpoint (first node's address,
port from the job id) and replaces itself with
``python -m torch.distributed.run --nnodes N --nproc-per-node T --rdzv-backend c10d ...``
running the hpc_runner entrypoint, which then sees torchrun's variables.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from . import environment
from .errors import HpcRunnerError
from .hosts import resolve_address
from .run_config import RunConfig


def rdzv_conf(env: environment.DistEnv, join_timeout_s: int | None) -> list[str]:
    """c10d rendezvous settings for one node's agent (torchrun's or accelerate's): the first node hosts the
    store unless the address was set explicitly, since torch's own guess compares the endpoint with the
    host name, which fails where names and addresses differ."""
    conf = [] if join_timeout_s is None else [f"join_timeout={join_timeout_s}"]
    if not env.addr_rule.startswith("MASTER_ADDR"):
        conf.append(f"is_host={'true' if env.node_rank == 0 else 'false'}")
    return conf


def torchrun_argv(env: environment.DistEnv, nproc_per_node: int, job_id: str, entry_argv: list[str],
                  local_addr: str | None = None, join_timeout_s: int | None = None) -> list[str]:
    """The torchrun command line for this node (pure; tested with tables).

    torchrun guesses whether its agent hosts the rendezvous store by comparing the endpoint with
    the machine's host name, which fails where a node's address is not what its name resolves to
    (most clusters; the testbed's namespaces). We know: the first node hosts it, unless the address
    was set explicitly (then torchrun's own guess stands). Likewise the agent on the first node tells
    every worker to reach its store at its fully qualified host name, which other nodes may resolve
    to themselves: ``local_addr`` (this node's address) replaces that guess. ``join_timeout_s`` (the
    spec's init_timeout) bounds the agents' rendezvous as it bounds ours.
    """
    argv = [
        sys.executable, "-m", "torch.distributed.run",
        f"--nnodes={env.num_nodes}",
        f"--nproc-per-node={nproc_per_node}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={env.master_addr}:{env.master_port}",
        f"--rdzv-id=hpc-runner-{job_id}",
        "--max-restarts=0",
    ]
    conf = rdzv_conf(env, join_timeout_s)
    if conf:
        argv.append(f"--rdzv-conf={','.join(conf)}")
    if local_addr:
        argv.append(f"--local-addr={local_addr}")
    return [*argv, "-m", "hpc_runner.entrypoint", *entry_argv]


def main(argv: list[str] | None = None) -> int:
    """Parse ``--nproc-per-node T -- ENTRYPOINT ARGS`` and exec torchrun."""
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(prog="python -m hpc_runner.torchrun_launch")
    parser.add_argument("--nproc-per-node", type=int, required=True)
    ns = parser.parse_args(argv[:cut])
    try:
        env = environment.from_environ(os.environ, resolve_address)
        local_addr = resolve_address(env.hosts[env.node_rank]) if env.source == "slurm" else None
    except HpcRunnerError as exc:
        print(f"hpc_runner error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    if env.local_world_size != 1:
        print("hpc_runner error: the torchrun launcher wants one task per node "
              f"(found {env.local_world_size} on this node); render the script with hpc-run render",
              file=sys.stderr)
        return 2
    # Rank threads: the step got cpus_per_task x nproc cores; each worker gets its share.
    threads = max(env.cpus_per_task // ns.nproc_per_node, 1)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    # The agent must survive the time-limit warning; workers install their own handler.
    for warning in (signal.SIGUSR1, signal.SIGUSR2):  # whichever the spec asked SLURM for
        signal.signal(warning, signal.SIG_IGN)
    entry_argv = argv[cut + 1:]
    try:
        join_timeout = RunConfig.from_argv(entry_argv).init_timeout_s
    except HpcRunnerError as exc:
        print(f"hpc_runner error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    command = torchrun_argv(env, ns.nproc_per_node, os.environ.get("SLURM_JOB_ID", "0"), entry_argv, local_addr, join_timeout)
    print(f"hpc_runner: node {env.node_rank}/{env.num_nodes} -> torchrun rendezvous at "
          f"{env.master_addr}:{env.master_port}", flush=True)
    os.execv(command[0], command)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
