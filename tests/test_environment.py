"""The distributed environment as the entrypoint sees it: tables of real SLURM and torchrun cases."""

from __future__ import annotations

import pytest

from hpc_runner import environment
from hpc_runner.errors import LaunchError

ADDRESSES = {"n1": "127.0.0.1", "node001": "10.1.0.1", "gpu-a17": "10.2.0.17"}


def resolve(name: str) -> str:
    return ADDRESSES[name]


def slurm_step(procid: int, localid: int, nodeid: int, ntasks: int, nodelist: str, tasks_per_node: str,
               job_id: str = "4242", step_id: str = "0", **extra: str) -> dict[str, str]:
    """The variables srun gives a task (as observed on the testbed, Slurm 22.05)."""
    env = {"SLURM_JOB_ID": job_id, "SLURM_STEP_ID": step_id, "SLURM_PROCID": str(procid),
           "SLURM_LOCALID": str(localid), "SLURM_NODEID": str(nodeid), "SLURM_NTASKS": str(ntasks),
           "SLURM_STEP_NUM_TASKS": str(ntasks), "SLURM_STEP_NODELIST": nodelist,
           "SLURM_JOB_NODELIST": nodelist, "SLURM_STEP_TASKS_PER_NODE": tasks_per_node,
           "SLURM_CPUS_PER_TASK": "2"}
    env.update(extra)
    return env


CASES = {
    # name: (environ, expected (rank, world, local_rank, local_world, node_rank, num_nodes, master_addr, hosts))
    "2x2 rank 3": (slurm_step(3, 1, 1, 4, "n[1-2]", "2(x2)"), (3, 4, 1, 2, 1, 2, "127.0.0.1", ("n1", "n2"))),
    "2x2 rank 0": (slurm_step(0, 0, 0, 4, "n[1-2]", "2(x2)"), (0, 4, 0, 2, 0, 2, "127.0.0.1", ("n1", "n2"))),
    "uneven 2,1 rank 2": (slurm_step(2, 0, 1, 3, "n[1-2]", "2,1"), (2, 3, 0, 1, 1, 2, "127.0.0.1", ("n1", "n2"))),
    "uneven 2,1 rank 1": (slurm_step(1, 1, 0, 3, "n[1-2]", "2,1"), (1, 3, 1, 2, 0, 2, "127.0.0.1", ("n1", "n2"))),
    "padded names, two groups": (
        slurm_step(5, 1, 2, 6, "node[001-002],gpu-a17", "2(x3)"),
        (5, 6, 1, 2, 2, 3, "10.1.0.1", ("node001", "node002", "gpu-a17"))),
    "single task step": (slurm_step(0, 0, 0, 1, "n1", "1"), (0, 1, 0, 1, 0, 1, "127.0.0.1", ("n1",))),
}


@pytest.mark.parametrize("name", CASES)
def test_slurm_cases(name: str) -> None:
    environ, expected = CASES[name]
    env = environment.from_environ(environ, resolve)
    got = (env.rank, env.world_size, env.local_rank, env.local_world_size, env.node_rank, env.num_nodes,
           env.master_addr, env.hosts)
    assert env.source == "slurm"
    assert got == expected
    assert env.cpus_per_task == 2


def test_uneven_layout_local_world_size_differs_per_node() -> None:
    """submitit's num_tasks // num_nodes would say 1 on both nodes of '2,1'; the truth is 2 and 1."""
    sizes = [environment.from_environ(slurm_step(r, l, n, 3, "n[1-2]", "2,1"), resolve).local_world_size
             for r, l, n in ((0, 0, 0), (1, 1, 0), (2, 0, 1))]
    assert sizes == [2, 2, 1]


def test_port_comes_from_job_and_step_and_differs_between_jobs() -> None:
    a = environment.from_environ(slurm_step(0, 0, 0, 1, "n1", "1", job_id="100"), resolve).master_port
    b = environment.from_environ(slurm_step(0, 0, 0, 1, "n1", "1", job_id="101"), resolve).master_port
    c = environment.from_environ(slurm_step(0, 0, 0, 1, "n1", "1", job_id="100", step_id="1"), resolve).master_port
    assert len({a, b, c}) == 3
    assert all(environment.PORT_BASE <= p < environment.PORT_BASE + environment.PORT_SPAN for p in (a, b, c))


def test_master_port_override() -> None:
    env = environment.from_environ(slurm_step(0, 0, 0, 1, "n1", "1", MASTER_PORT="23456"), resolve)
    assert env.master_port == 23456


def test_torchrun_worker_wins_over_slurm() -> None:
    environ = slurm_step(1, 0, 1, 2, "n[1-2]", "1(x2)")  # one torchrun per node under srun
    environ.update(TORCHELASTIC_RUN_ID="hpc-runner-1", RANK="3", WORLD_SIZE="4", LOCAL_RANK="1",
                   LOCAL_WORLD_SIZE="2", GROUP_RANK="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="29411",
                   OMP_NUM_THREADS="2")
    env = environment.from_environ(environ, resolve)
    assert (env.source, env.rank, env.world_size, env.local_rank, env.local_world_size, env.node_rank,
            env.num_nodes, env.master_port, env.cpus_per_task) == ("torchrun", 3, 4, 1, 2, 1, 2, 29411, 2)


def test_plain_torchrun_variables() -> None:
    env = environment.from_environ({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
                                    "MASTER_ADDR": "10.0.0.5", "MASTER_PORT": "29600"}, resolve)
    assert (env.source, env.rank, env.world_size, env.master_addr, env.master_port) == ("torchrun", 1, 2, "10.0.0.5", 29600)


def test_nothing_set_is_a_single_local_process() -> None:
    env = environment.from_environ({"OMP_NUM_THREADS": "3"}, resolve)
    assert env.as_json() == {"source": "local", "rank": 0, "world_size": 1, "local_rank": 0, "local_world_size": 1,
                             "node_rank": 0, "num_nodes": 1, "master_addr": "127.0.0.1", "master_port": 29500,
                             "hosts": ["localhost"], "cpus_per_task": 3, "job_key": "local",
                             "addr_rule": "a single process: no master needed", "port_rule": "default 29500"}


def test_batch_shell_of_a_multi_task_job_refuses_to_start() -> None:
    """The seed-001 hang: a trainer started in the batch shell waits forever for ranks never launched."""
    batch_shell = {"SLURM_JOB_ID": "7", "SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "n[1-2]"}
    with pytest.raises(LaunchError, match="launch the entrypoint with srun"):
        environment.from_environ(batch_shell, resolve)


def test_inconsistent_layout_is_an_error() -> None:
    with pytest.raises(LaunchError, match="does not add up"):
        environment.from_environ(slurm_step(0, 0, 0, 4, "n[1-2]", "2,1"), resolve)


@pytest.mark.parametrize(("text", "counts"), [("2(x2)", [2, 2]), ("2,1", [2, 1]), ("4(x3),2,1(x2)", [4, 4, 4, 2, 1, 1]), ("8", [8])])
def test_parse_tasks_per_node(text: str, counts: list[int]) -> None:
    assert environment.parse_tasks_per_node(text) == counts


def test_bad_tasks_per_node_is_an_error() -> None:
    with pytest.raises(LaunchError, match="cannot read tasks per node"):
        environment.parse_tasks_per_node("2(x")


def test_torch_variables_for_torchrun_style_scripts() -> None:
    env = environment.from_environ(slurm_step(2, 0, 1, 3, "n[1-2]", "2,1"), resolve)
    assert env.torch_variables() == {"RANK": "2", "WORLD_SIZE": "3", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
                                     "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(env.master_port)}


def test_an_explicit_master_address_and_port_win_inside_a_slurm_step() -> None:
    env = environment.from_environ(slurm_step(1, 1, 0, 2, "n1", "2", MASTER_ADDR="10.9.9.9", MASTER_PORT="23456"), resolve)
    assert (env.master_addr, env.master_port) == ("10.9.9.9", 23456)
    assert env.addr_rule == "MASTER_ADDR set explicitly" and env.port_rule == "MASTER_PORT set explicitly"


def test_a_port_reserved_for_the_step_wins_over_derivation() -> None:
    env = environment.from_environ(slurm_step(0, 0, 0, 2, "n1", "2", SLURM_STEP_RESV_PORTS="12004-12005"), resolve)
    assert env.master_port == 12004 and "SLURM_STEP_RESV_PORTS" in env.port_rule
    derived = environment.from_environ(slurm_step(0, 0, 0, 2, "n1", "2"), resolve)
    assert derived.port_rule == "derived from job 4242 step 0" and derived.addr_rule.startswith("first node n1")


@pytest.mark.parametrize(("text", "port"), [("12000", 12000), ("12000-12003", 12000), ("12007,12010-12011", 12007)])
def test_reserved_port_forms(text: str, port: int) -> None:
    assert environment.reserved_port(text) == port


def test_store_namespace_names_the_job_and_step() -> None:
    a = environment.from_environ(slurm_step(0, 0, 0, 1, "n1", "1", job_id="100", step_id="0"), resolve)
    b = environment.from_environ(slurm_step(0, 0, 0, 1, "n1", "1", job_id="100", step_id="1"), resolve)
    assert (a.job_key, b.job_key) == ("slurm-100.0", "slurm-100.1")


def test_diagnose_marks_an_unresolvable_master_instead_of_raising() -> None:
    def nothing_resolves(name: str) -> str:
        raise LaunchError(f"master host {name!r} does not resolve")

    env, findings = environment.diagnose(slurm_step(0, 0, 0, 2, "n[1-2]", "1(x2)"), nothing_resolves)
    assert env is not None and env.master_addr == environment.UNRESOLVED
    assert findings == ["master host 'n1' does not resolve"]
    shell, said = environment.diagnose({"SLURM_JOB_ID": "7", "SLURM_PROCID": "0", "SLURM_NTASKS": "2"}, resolve)
    assert shell is None and "launch the entrypoint with srun" in said[0]


def test_the_address_the_batch_script_resolved_once_is_used_without_asking_again() -> None:
    def never(name: str) -> str:
        raise AssertionError(f"rank asked for {name}'s address")

    env = environment.from_environ(slurm_step(3, 1, 1, 4, "n[1-2]", "2(x2)", HPC_RUNNER_MASTER_ADDR="10.7.7.1"), never)
    assert env.master_addr == "10.7.7.1" and "resolved once for the job" in env.addr_rule
    # A step that does not start on the job's first node resolves its own first node.
    other = slurm_step(0, 0, 0, 1, "node001", "1", HPC_RUNNER_MASTER_ADDR="10.7.7.1")
    other["SLURM_JOB_NODELIST"] = "n[1-2],node001"
    assert environment.from_environ(other, resolve).master_addr == "10.1.0.1"
