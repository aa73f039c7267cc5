"""Where the ranks of a job meet before their process group forms, or learn who never came.

    store = rendezvous.meet(env, timeout_s=300)   # every rank; env from environment.from_environ
    dist.init_process_group("gloo", store=store, rank=env.rank, world_size=env.world_size)

Rank 0 hosts a TCPStore on the master address and port (under torchrun, the agent's store) and
writes whose store it is; a rank that finds no sign of its own rank 0 checks that, so a rank of
another job that reached it (a port given to two jobs) is refused at once. All keys live under
the job step's own prefix. Each rank appends ``rank:host;`` to one roster key and bumps one
counter; the rank whose increment completes the count releases everyone, so nobody polls.
After ``timeout_s`` rank 0 reads the roster once and names the missing ranks and the hosts none
arrived from.
"""

from __future__ import annotations

import datetime
import os
import socket

import torch.distributed as dist

from .environment import DistEnv
from .errors import LaunchError

OWNER_KEY = "hpc_runner/owner"
# Rank 0 adds this to the arrival count where the others add 1: a count below it tells a rank that
# rank 0 has not come yet, or that the store belongs to another job, and only then does it ask the
# owner key. A rank arriving after rank 0 makes three store calls (torch's own barrier makes two).
RANK0_MARK = 1 << 40


def node_name() -> str:
    """This node's SLURM name, else the host name."""
    return os.environ.get("SLURMD_NODENAME") or socket.gethostname()


def meet(env: DistEnv, timeout_s: int, host: str | None = None) -> dist.Store:
    """Every rank of ``env``'s job arrives, or a LaunchError says who did not (rank 0) or that rank 0 did.

    Returns the job step's store (keys under its own prefix), ready for ``init_process_group``.
    ``host`` is the name this rank reports for the roster (default: SLURMD_NODENAME, else the host name).
    """
    where, host = f"{env.master_addr}:{env.master_port}", host or node_name()
    store = _connect(env, timeout_s, where, host)
    job = dist.PrefixStore(f"hpc_runner/{env.job_key}", store)  # torch's own keys too
    job.append("roster", f"{env.rank}:{host};")
    if env.rank == 0:
        store.set(OWNER_KEY, env.job_key)
        count = job.add("arrived", RANK0_MARK)
    else:
        count = job.add("arrived", 1)
        if count < RANK0_MARK:  # rank 0 has not come yet, or the store is another job's: ask whose it is
            _check_owner(store, env, where, host)
    if count == RANK0_MARK + env.world_size - 1:
        job.set("released", "1")  # the last arrival releases everyone
    store = job
    try:
        store.wait(["released"], datetime.timedelta(seconds=timeout_s))
    except Exception:  # DistStoreError: the timeout
        if env.rank == 0:
            raise missing_ranks(store.get("roster").decode(), env, timeout_s) from None
        raise LaunchError(
            f"rank {env.rank} on {host}: rank 0 at {where} did not see all {env.world_size} "
            f"ranks within {timeout_s}s; rank 0's log names the missing ones") from None
    return store


def _connect(env: DistEnv, timeout_s: int, where: str, host: str) -> dist.TCPStore:
    try:
        # Under torchrun the agent may already host the store on MASTER_PORT: then rank 0 is a client too.
        hosts_store = env.rank == 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True"
        return dist.TCPStore(env.master_addr, env.master_port, env.world_size, hosts_store,
                             timeout=datetime.timedelta(seconds=timeout_s), wait_for_workers=False)
    except Exception as exc:  # DistNetworkError / RuntimeError from the C++ store
        text = str(exc)
        if env.rank == 0 and ("address already in use" in text.lower() or "EADDRINUSE" in text):
            raise LaunchError(
                f"rank 0 on {host} cannot listen on {where}: the port is already in use "
                "(another job or program on this node).\n  hint: set MASTER_PORT to a free port; "
                "hpc_runner derives it from the job and step id, so this is usually a program outside SLURM"
            ) from None
        raise LaunchError(
            f"rank {env.rank} on {host} could not reach rank 0's store at {where} within "
            f"{timeout_s}s: {text.splitlines()[0] if text else type(exc).__name__}\n"
            "  hint: check that rank 0's node started (squeue/sacct), that the address is reachable from "
            "every node (firewall, GLOO_SOCKET_IFNAME/NCCL_SOCKET_IFNAME) and that all ranks came from one srun"
        ) from None


def _check_owner(store: dist.Store, env: DistEnv, where: str, host: str) -> None:
    found = store.get(OWNER_KEY).decode()  # waits for rank 0 to write it (up to the store's timeout)
    if found != env.job_key:
        raise LaunchError(
            f"rank {env.rank} on {host} reached the store at {where}, but it belongs to {found}, not to "
            f"this job ({env.job_key}): another job's rank 0 listens on that port.\n  hint: two jobs were given the "
            "same MASTER_PORT; leave MASTER_PORT unset so each job step derives its own, or pick a free one")


def missing_ranks(roster: str, env: DistEnv, timeout_s: int) -> LaunchError:
    """The ranks and hosts that never arrived, from the roster (``'0:n1;3:n2;'``): one read, set arithmetic."""
    arrived: dict[int, str] = {}
    for entry in roster.split(";"):
        rank, _, host = entry.partition(":")
        if rank:
            arrived[int(rank)] = host
    missing = sorted(set(range(env.world_size)) - arrived.keys())
    silent_hosts = sorted(set(env.hosts) - set(arrived.values()), key=list(env.hosts).index)
    return LaunchError(
        f"rank 0 waited {timeout_s}s at {env.master_addr}:{env.master_port}: {len(missing)} of "
        f"{env.world_size} rank(s) never arrived: {ranges(missing)}"
        + (f"; no rank arrived from host(s) {', '.join(silent_hosts)}" if silent_hosts else "")
        + ".\n  hint: a node that never arrives is usually a task that failed to start (see the "
        "other ranks' log lines), a node that cannot reach this address (firewall, wrong "
        "interface: set socket_ifname), or ranks started outside one srun; raise init_timeout "
        "only if nodes are just slow to boot")


def ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5'."""
    groups: list[list[int]] = []
    for n in sorted(numbers):
        if groups and groups[-1][1] == n - 1:
            groups[-1][1] = n
        else:
            groups.append([n, n])
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in groups)
