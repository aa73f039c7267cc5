"""How a job starts, on the testbed whose nodes have their own addresses: what users give every day.

A testbed like a cluster (distinct node addresses, names DNS does not know), the interpreter,
torchrun's rendezvous host, an `sbatch --nodes` override, explicit and inherited master ports,
and ports SLURM reserves for the step.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpc_runner import job_control
from hpc_runner.environment import expand_nodelist

from .conftest import CHECK, EMULATOR, HPC_RUN, ROOT, SMALL, hpc_run, node_addresses, render, sbatch

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
QUICK_CHECK = ["--set", "entrypoint.params.sizes_kib=[1]", "--set", "entrypoint.params.iterations=2"]


def finished(job_id: str, timeout_s: float = 240) -> job_control.JobStatus:
    return job_control.wait_finished(job_id, poll_s=0.5, timeout_s=timeout_s)


def test_every_node_has_its_own_address_and_a_name_dns_does_not_know(testbed: dict[str, str]) -> None:
    addresses = node_addresses(testbed)
    assert len(set(addresses.values())) == len(addresses) == 4
    assert not any(a.startswith("127.") for a in addresses.values())
    seen = subprocess.run(["srun", "-N4", "--mpi=none", "bash", "-c", 'echo "$SLURMD_NODENAME $(ip -4 -o addr show eth0)"'],
                          env=testbed, capture_output=True, text=True, timeout=120, check=True).stdout
    for line in seen.splitlines():
        node = line.split()[0]
        assert f"inet {addresses[node]}/" in line, line  # each task runs in its node's own network
    for name in addresses:
        with pytest.raises(socket.gaierror):
            socket.getaddrinfo(name, None)


def test_a_server_on_one_nodes_loopback_is_unreachable_from_another(testbed: dict[str, str], tmp_path: Path) -> None:
    n1 = node_addresses(testbed)["n1"]
    subprocess.run(["srun", "-w", "n1,n2", "-N2", "-n2", "--mpi=none", sys.executable, str(ROOT / "tests" / "fixtures" / "loopback_probe.py"),
                    str(tmp_path), "23999", n1], env=testbed, capture_output=True, text=True, timeout=120, check=True)
    assert json.loads((tmp_path / "reach.json").read_text()) == {"own_loopback": False, "node0_address": False}


def test_torchrun_alone_misses_its_rendezvous_host_and_ours_does_not(testbed: dict[str, str], tmp_path: Path) -> None:
    """torchrun guesses the store host from the machine's host name: on nodes whose address is not that
    name's, no agent hosts the store. The launcher tells the first node it is the host."""
    n1 = node_addresses(testbed)["n1"]
    plain = subprocess.run(
        ["srun", "-w", "n1,n2", "-N2", "--ntasks-per-node=1", "--mpi=none", sys.executable, "-m", "torch.distributed.run", "--nnodes=2",
         "--nproc-per-node=1", "--rdzv-backend=c10d", f"--rdzv-endpoint={n1}:24111", "--rdzv-id=plain",
         "--rdzv-conf=read_timeout=5,join_timeout=10", "--max-restarts=0", "-m", "hpc_runner.demo.echo"],
        env=testbed, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert plain.returncode != 0, plain.stdout + plain.stderr
    job_id = sbatch(render([EMULATOR, "--mode", "gloo", "--nodes", "2", "--ntasks-per-node", "2", "--set", "launcher=torchrun",
                            "--set", f"output_dir={tmp_path}/out", *SMALL], testbed, tmp_path), testbed, tmp_path)
    log = (tmp_path / f"emulator-{job_id}.out")
    final = finished(job_id)
    assert final.state == "COMPLETED", log.read_text()
    assert f"torchrun rendezvous at {node_addresses(testbed)[expand_nodelist(final.nodes)[0]]}:" in log.read_text()
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["world_size"] == 4


@pytest.mark.parametrize("launcher", ["srun", "torchrun"])
def test_sbatch_nodes_overrides_the_rendered_count(testbed: dict[str, str], tmp_path: Path, launcher: str) -> None:
    script = render([CHECK, "--mode", "gloo", "--nodes", "2", "--set", f"launcher={launcher}", *QUICK_CHECK,
                     "--set", f"output_dir={tmp_path}/out"], testbed, tmp_path)
    assert "#SBATCH --nodes=2" in script
    job_id = sbatch(script, testbed, tmp_path, "--nodes=3")
    assert finished(job_id).state == "COMPLETED", (tmp_path / f"check-{job_id}.out").read_text()
    data = json.loads((tmp_path / "out" / "check.json").read_text())
    assert data["world_size"] == 3 and len({p["node"] for p in data["placement"]}) == 3


def test_an_interpreter_missing_on_the_node_fails_at_once_with_the_reason(testbed: dict[str, str], tmp_path: Path) -> None:
    args = [CHECK, "--mode", "gloo", "--nodes", "2", "--set", "python=/opt/nowhere/bin/python3", "--set", f"output_dir={tmp_path}/out"]
    started = time.monotonic()
    job_id = sbatch(render(args, testbed, tmp_path), testbed, tmp_path)
    assert finished(job_id).state == "FAILED"
    assert time.monotonic() - started < 60
    assert "the interpreter /opt/nowhere/bin/python3 does not exist on" in (tmp_path / f"check-{job_id}.out").read_text()
    submitted = hpc_run(["submit", *args, "--executor", "slurm", "--wait"], testbed, tmp_path)
    assert submitted.returncode == 1 and "final state FAILED" in submitted.stderr, submitted.stderr
    errors = "".join(p.read_text() for p in (tmp_path / "out" / "submitit").glob("*/*.err"))
    assert "the interpreter /opt/nowhere/bin/python3 does not exist on" in errors


def master_of(tmp_path: Path, name: str) -> tuple[str, int]:
    host, _, port = json.loads((tmp_path / name / "check.json").read_text())["master"].rpartition(":")
    return host, int(port)


def test_ports_explicit_inherited_and_reserved(testbed: dict[str, str], tmp_path: Path) -> None:
    """An explicit MASTER_PORT (spec env) wins; one inherited from the submitting shell is dropped with a
    warning; otherwise the port SLURM reserved for the step (MpiParams=ports=12000-12999 on the testbed)."""
    addresses = node_addresses(testbed)
    common = [CHECK, "--mode", "gloo", "--nodes", "2", *QUICK_CHECK]
    runs = {"explicit": ["--set", "env.MASTER_PORT=23456"], "inherited": [], "reserved": []}
    ids = {}
    for name, extra in runs.items():
        shell = {**testbed, "MASTER_PORT": "29500", "MASTER_ADDR": "10.9.9.9"} if name == "inherited" else testbed
        ids[name] = sbatch(render([*common, *extra, "--set", f"output_dir={tmp_path}/{name}"], testbed, tmp_path), shell, tmp_path)
    first = {}  # each job's first node's address: whichever nodes SLURM gave it
    for name, job_id in ids.items():
        final = finished(job_id)
        assert final.state == "COMPLETED", (tmp_path / f"check-{job_id}.out").read_text()
        first[name] = addresses[expand_nodelist(final.nodes)[0]]
    assert master_of(tmp_path, "explicit") == (first["explicit"], 23456)
    assert master_of(tmp_path, "inherited")[0] == first["inherited"] and 12000 <= master_of(tmp_path, "inherited")[1] <= 12999
    assert "ignoring MASTER_PORT=29500 inherited from the submitting shell" in (tmp_path / f"check-{ids['inherited']}.out").read_text()
    assert 12000 <= master_of(tmp_path, "reserved")[1] <= 12999
    shown = subprocess.run(["srun", "-w", "n1", "-N1", "--mpi=none", HPC_RUN, "env"], env=testbed, capture_output=True, text=True,
                           timeout=120, check=True).stdout
    assert re.search(r"port_rule\s+reserved for this step by SLURM", shown), shown
    assert re.search(rf"master_addr\s+{re.escape(addresses['n1'])}", shown) and "addr_rule         first node n1" in shown


def test_the_master_address_is_looked_up_once_per_job_not_once_per_rank(testbed: dict[str, str], tmp_path: Path) -> None:
    """Node names DNS does not know: the batch script asks scontrol once; the 4 ranks ask nothing."""
    calls = tmp_path / "scontrol.log"
    shim = tmp_path / "shim"
    shim.mkdir()
    real = subprocess.run(["bash", "-c", "command -v scontrol"], env=testbed, capture_output=True, text=True).stdout.strip()
    (shim / "scontrol").write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec {real} "$@"\n')
    (shim / "scontrol").chmod(0o755)
    shell = {**testbed, "PATH": f"{shim}:{testbed['PATH']}"}  # sbatch passes the submitting shell's PATH on
    job_id = sbatch(render([CHECK, "--mode", "gloo", "--nodes", "2", "--ntasks-per-node", "2", *QUICK_CHECK,
                            "--set", f"output_dir={tmp_path}/out"], testbed, tmp_path), shell, tmp_path)
    final = finished(job_id)
    assert final.state == "COMPLETED", (tmp_path / f"check-{job_id}.out").read_text()
    lookups = [line for line in calls.read_text().splitlines() if line.startswith("show node")]
    assert len(lookups) == 1, lookups
    assert master_of(tmp_path, "out")[0] == node_addresses(testbed)[expand_nodelist(final.nodes)[0]]
