"""The rendezvous roster: who never arrived, from one read and set arithmetic."""

from __future__ import annotations

from hpc_runner.environment import DistEnv
from hpc_runner.rendezvous import missing_ranks, ranges

ENV = DistEnv(source="slurm", rank=0, world_size=8, local_rank=0, local_world_size=2, node_rank=0, num_nodes=4,
              master_addr="10.0.0.1", master_port=12000, hosts=("n1", "n2", "n3", "n4"), cpus_per_task=1)


def test_missing_ranks_and_silent_hosts_are_named() -> None:
    roster = "0:n1;1:n1;4:n3;5:n3;2:n2;"
    message = str(missing_ranks(roster, ENV, 30))
    assert "3 of 8 rank(s) never arrived: 3,6-7; no rank arrived from host(s) n4" in message


def test_ranges() -> None:
    assert ranges([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8" and ranges([]) == ""
