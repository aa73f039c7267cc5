"""The torchrun line per node, and the interface Gloo is pointed at: tables, no cluster needed."""

from __future__ import annotations

import dataclasses

from hpc_runner import interfaces
from hpc_runner.environment import DistEnv
from hpc_runner.torchrun_launch import torchrun_argv

NODE = DistEnv(source="slurm", rank=0, world_size=2, local_rank=0, local_world_size=1, node_rank=0, num_nodes=2,
               master_addr="10.0.0.11", master_port=12000, hosts=("n1", "n2"), cpus_per_task=4,
               addr_rule="first node n1 (DNS, else scontrol NodeAddr)", port_rule="derived")


def test_the_first_node_hosts_the_rendezvous_store_and_says_where_it_is() -> None:
    first = torchrun_argv(NODE, 2, "77", ["--mode=gloo"], local_addr="10.0.0.11", join_timeout_s=42)
    second = torchrun_argv(dataclasses.replace(NODE, rank=1, node_rank=1), 2, "77", ["--mode=gloo"], local_addr="10.0.0.12")
    assert "--rdzv-conf=join_timeout=42,is_host=true" in first and "--rdzv-conf=is_host=false" in second
    assert "--local-addr=10.0.0.11" in first and "--local-addr=10.0.0.12" in second
    assert "--rdzv-endpoint=10.0.0.11:12000" in first and "--nnodes=2" in first and "--rdzv-id=hpc-runner-77" in first
    assert first[-3:] == ["-m", "hpc_runner.entrypoint", "--mode=gloo"]


def test_an_explicit_master_address_leaves_host_detection_to_torchrun() -> None:
    explicit = dataclasses.replace(NODE, addr_rule="MASTER_ADDR set explicitly")
    assert not any(a.startswith("--rdzv-conf=is_host") for a in torchrun_argv(explicit, 2, "77", []))


def test_the_route_to_loopback_is_the_loopback_interface() -> None:
    name, address = interfaces.interface_towards("127.0.0.1", 29500)
    assert address == "127.0.0.1" and interfaces.address_of(name) == "127.0.0.1"
    assert interfaces.address_of("no-such-if0") is None
