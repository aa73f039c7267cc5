"""Scale benchmark: N simulated ranks meet through hpc_runner's rendezvous vs torch's store barrier.

Ranks are threads in a few processes, each with its own TCPStore client, against the real store on
127.0.0.1. Rank 0's process hosts the store before the clock starts (as torchrun's agent hosts it)
and runs rank 0 only, so its CPU time is the store server's work plus one client. For each N the
same run measures ``rendezvous.meet`` and ``torch.distributed.elastic.utils.store.barrier``:
wall time from the start signal to the last rank released, and the hosting process's CPU time.
A second run leaves the last rank out and measures how long rank 0 takes, after its timeout, to
name the missing rank.

    python benchmarks/scale_rendezvous.py 64:5 1024:3 4096:3 8192:1    # N:repeats; JSON lines out

Machine limit: every simulated client runs on this machine's cores, so at thousands of ranks the
clients' own connect/Python work, not the store, sets the wall time (see BENCHMARKS.md).
"""

from __future__ import annotations

import datetime
import json
import multiprocessing as mp
import resource
import socket
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

PROCESSES = 8  # client processes, threads in each; rank 0 alone in its own
MISSING_TIMEOUT_S = 5


@dataclass(frozen=True)
class Outcome:
    """One rendezvous: wall time, the store host's CPU time, rank 0's own time and its error (if any)."""

    wall_s: float
    server_cpu_s: float
    rank0_s: float
    rank0_error: str


def _raise_open_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _one_rank(kind: str, rank: int, world: int, port: int, timeout_s: int) -> str:
    """Meet as ``rank``; returns '' or the error's first line."""
    import torch.distributed as dist
    from torch.distributed.elastic.utils.store import barrier

    from hpc_runner import rendezvous
    from hpc_runner.environment import DistEnv

    try:
        if kind == "ours":
            env = DistEnv(source="bench", rank=rank, world_size=world, local_rank=0, local_world_size=1,
                          node_rank=rank, num_nodes=world, master_addr="127.0.0.1", master_port=port, hosts=(),
                          cpus_per_task=1, job_key="bench")
            rendezvous.meet(env, timeout_s)
        else:
            store = dist.TCPStore("127.0.0.1", port, world, False, timeout=datetime.timedelta(seconds=timeout_s),
                                  wait_for_workers=False)
            barrier(store, world, key_prefix="bench", barrier_timeout=timeout_s)
        return ""
    except Exception as exc:  # rank 0's "never arrived" error in the missing-rank run
        return str(exc).splitlines()[0]


def _clients(kind: str, ranks: list[int], world: int, port: int, timeout_s: int, queue: Any, go: Any) -> None:
    _raise_open_files()
    threading.stack_size(256 * 1024)
    ends: list[float] = []
    gate = threading.Event()

    def rank(r: int) -> None:
        gate.wait()
        _one_rank(kind, r, world, port, timeout_s)
        ends.append(time.perf_counter())

    threads = [threading.Thread(target=rank, args=(r,)) for r in ranks]
    for thread in threads:
        thread.start()
    go.wait()  # every process has its threads started: all clocks start together
    gate.set()
    for thread in threads:
        thread.join()
    queue.put(ends)


def _host(kind: str, world: int, port: int, timeout_s: int, queue: Any, go: Any) -> None:
    import os

    import torch.distributed as dist

    _raise_open_files()
    server = dist.TCPStore("127.0.0.1", port, world, True, timeout=datetime.timedelta(seconds=timeout_s),
                           wait_for_workers=False)
    os.environ["TORCHELASTIC_USE_AGENT_STORE"] = "True"  # rank 0 is a client of the hosted store
    go.wait()
    cpu, started = time.process_time(), time.perf_counter()
    error = _one_rank(kind, 0, world, port, timeout_s)
    queue.put({"start": started, "end": time.perf_counter(), "cpu": time.process_time() - cpu, "error": error})
    del server


def run(kind: str, world: int, missing: int = 0, timeout_s: int = 120) -> Outcome:
    """One rendezvous of ``world`` ranks of which the last ``missing`` never start."""
    ctx = mp.get_context("fork")  # children inherit torch, imported once here
    port, queue = _free_port(), ctx.Queue()
    others = list(range(1, world - missing))
    chunks = [c for c in (others[i::PROCESSES] for i in range(PROCESSES)) if c]
    go = ctx.Barrier(len(chunks) + 2)
    procs = [ctx.Process(target=_host, args=(kind, world, port, timeout_s, queue, go)),
             *(ctx.Process(target=_clients, args=(kind, c, world, port, timeout_s, queue, go)) for c in chunks)]
    for proc in procs:
        proc.start()
    go.wait()
    results = [queue.get(timeout=timeout_s + 300) for _ in procs]
    for proc in procs:
        proc.join()
    rank0 = next(r for r in results if isinstance(r, dict))
    ends = [t for r in results if isinstance(r, list) for t in r] + [rank0["end"]]
    return Outcome(wall_s=max(ends) - rank0["start"], server_cpu_s=rank0["cpu"],
                   rank0_s=rank0["end"] - rank0["start"], rank0_error=rank0["error"])


def measure(world: int, repeats: int) -> dict[str, Any]:
    """Interleaved runs of ours and torch's barrier, then one missing-rank run; medians and spreads."""
    ours: list[Outcome] = []
    theirs: list[Outcome] = []
    for _ in range(repeats):
        ours.append(run("ours", world))
        theirs.append(run("torch", world))
    named = run("ours", world, missing=1, timeout_s=MISSING_TIMEOUT_S)
    ratios = [a.wall_s / b.wall_s for a, b in zip(ours, theirs)]
    cpu_ratios = [a.server_cpu_s / b.server_cpu_s for a, b in zip(ours, theirs)]
    return {"world": world, "repeats": repeats,
            "ours_wall_s": statistics.median(o.wall_s for o in ours),
            "torch_wall_s": statistics.median(o.wall_s for o in theirs),
            "wall_ratio": statistics.median(ratios), "wall_ratio_spread": [min(ratios), max(ratios)],
            "ours_server_cpu_s": statistics.median(o.server_cpu_s for o in ours),
            "torch_server_cpu_s": statistics.median(o.server_cpu_s for o in theirs),
            "cpu_ratio": statistics.median(cpu_ratios), "cpu_ratio_spread": [min(cpu_ratios), max(cpu_ratios)],
            "named_after_timeout_s": max(named.rank0_s - MISSING_TIMEOUT_S, 0.0),
            "named_message": named.rank0_error}


def main(args: list[str]) -> None:
    import torch.distributed  # noqa: F401  (before forking: no child pays the import)
    from torch.distributed.elastic.utils import store  # noqa: F401

    from hpc_runner import rendezvous  # noqa: F401

    for arg in args or ["64:5", "1024:3", "4096:3", "8192:1"]:
        world, _, repeats = arg.partition(":")
        print(json.dumps(measure(int(world), int(repeats or 1))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
