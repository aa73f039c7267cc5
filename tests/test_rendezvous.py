"""The rendezvous, through its public function: ranks are threads with their own store clients on loopback."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time

import pytest

from hpc_runner.environment import DistEnv
from hpc_runner.errors import LaunchError
from hpc_runner.rendezvous import RANK0_MARK, meet, missing_ranks, ranges

ENV = DistEnv(source="slurm", rank=0, world_size=8, local_rank=0, local_world_size=2, node_rank=0, num_nodes=4,
              master_addr="10.0.0.1", master_port=12000, hosts=("n1", "n2", "n3", "n4"), cpus_per_task=1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def job(world: int, port: int, key: str = "slurm-100.0", hosts: tuple[str, ...] = ("n1", "n2")) -> DistEnv:
    """Rank 0's environment of a job on loopback; ranks differ only in ``rank``."""
    return DistEnv(source="slurm", rank=0, world_size=world, local_rank=0, local_world_size=1, node_rank=0,
                   num_nodes=len(hosts), master_addr="127.0.0.1", master_port=port, hosts=hosts, cpus_per_task=1,
                   job_key=key)


def meet_as_threads(env: DistEnv, ranks: dict[int, str], timeout_s: int) -> dict[int, object]:
    """Each rank (rank -> the host it reports) calls ``meet`` in its own thread; rank 0 first, as it hosts the
    store. Returns each rank's store, or the exception it raised."""
    outcome: dict[int, object] = {}

    def one(rank: int, host: str) -> None:
        try:
            outcome[rank] = meet(dataclasses.replace(env, rank=rank), timeout_s, host=host)
        except Exception as exc:  # the outcome under test
            outcome[rank] = exc

    threads = [threading.Thread(target=one, args=item) for item in sorted(ranks.items())]
    threads[0].start()
    time.sleep(0.2)  # rank 0's store listens before the others connect (they would retry anyway)
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout_s + 30)
    return outcome


def test_every_rank_is_released_once_the_last_one_arrives() -> None:
    env = job(4, free_port())
    outcome = meet_as_threads(env, {0: "n1", 1: "n1", 2: "n2", 3: "n2"}, timeout_s=20)
    assert not [o for o in outcome.values() if isinstance(o, Exception)], outcome
    store = outcome[2]
    assert store.get("roster").decode().count(";") == 4  # type: ignore[attr-defined]
    assert int(store.add("arrived", 0)) == RANK0_MARK + 3  # type: ignore[attr-defined]  # rank 0's mark, 3 others


def test_ranks_that_arrive_before_rank_0_wait_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under torchrun the agent hosts the store and rank 0 may come last: the others check the owner first."""
    import datetime

    import torch.distributed as dist

    env = job(3, free_port())
    agent = dist.TCPStore("127.0.0.1", env.master_port, 3, True, timeout=datetime.timedelta(seconds=20),
                          wait_for_workers=False)
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")  # rank 0 is a client of the agent's store
    outcome: dict[int, object] = {}

    def one(rank: int) -> None:
        outcome[rank] = meet(dataclasses.replace(env, rank=rank), 20, host="n1")

    early = [threading.Thread(target=one, args=(rank,)) for rank in (1, 2)]
    for thread in early:
        thread.start()
    time.sleep(0.5)  # ranks 1 and 2 have counted themselves and wait for rank 0's owner key
    one(0)
    for thread in early:
        thread.join(timeout=30)
    assert sorted(outcome) == [0, 1, 2] and agent.get("hpc_runner/owner") == b"slurm-100.0"


def test_rank_0_names_the_missing_rank_and_the_host_none_came_from() -> None:
    env = job(3, free_port(), hosts=("n1", "n2"))
    started = time.monotonic()
    outcome = meet_as_threads(env, {0: "n1", 1: "n1"}, timeout_s=2)  # rank 2, alone on n2, never starts
    error = outcome[0]
    assert isinstance(error, LaunchError), outcome
    assert "1 of 3 rank(s) never arrived: 2; no rank arrived from host(s) n2" in str(error)
    assert isinstance(outcome[1], LaunchError) and "rank 0's log names the missing ones" in str(outcome[1])
    assert time.monotonic() - started < 2 + 10  # the timeout, not a hang


def test_a_rank_of_another_job_is_refused_at_once_naming_both_jobs() -> None:
    port = free_port()
    ours = job(2, port, key="slurm-100.0")
    owner = threading.Thread(target=lambda: pytest.raises(LaunchError, meet, ours, 5, "n1"))
    owner.start()  # our rank 0 hosts the store and waits for our rank 1, which never comes
    time.sleep(0.3)
    started = time.monotonic()
    with pytest.raises(LaunchError) as refused:
        meet(dataclasses.replace(job(2, port, key="slurm-200.0"), rank=1), 5, host="n2")
    assert time.monotonic() - started < 4  # well before the 5 s timeout
    assert "belongs to slurm-100.0, not to this job (slurm-200.0)" in str(refused.value)
    owner.join()


def test_the_roster_is_read_with_set_arithmetic() -> None:
    roster = "0:n1;1:n1;4:n3;5:n3;2:n2;"
    message = str(missing_ranks(roster, ENV, 30))
    assert "3 of 8 rank(s) never arrived: 3,6-7; no rank arrived from host(s) n4" in message


def test_ranges() -> None:
    assert ranges([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8" and ranges([]) == ""
