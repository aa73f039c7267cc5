"""On the testbed: one probe spec started by `render | sbatch` and by `hpc-run submit` runs as one job.

Every rank of both jobs dumps its environment, argv and interpreter; they must match except what
names the job itself (ids, ports, timestamps) and submitit's own bookkeeping, listed below.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from hpc_runner import job_control

from .conftest import ROOT, hpc_run, node_addresses, render, sbatch

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

# Differ between any two jobs: ids, ports, timestamps, and values that carry the job id.
PER_JOB = re.compile(r"^(SLURM_JOB_ID|SLURM_JOBID|SLURM_STEP_ID|SLURM_STEPID|SLURM_TASK_PID|SLURM_JOB_START_TIME|"
                     r"SLURM_JOB_END_TIME|SLURM_SRUN_COMM_PORT|SLURM_STEP_LAUNCHER_PORT|SLURM_STEP_RESV_PORTS|"
                     r"MASTER_PORT|TORCHELASTIC_RUN_ID|TORCHELASTIC_AGENT_STORE_PORT|TORCHELASTIC_ERROR_FILE)$")
# torchrun's c10d rendezvous numbers the nodes in the order their agents arrive: ranks are compared
# by where they run (node, local rank), and the numbers it hands out are left out.
ARRIVAL_ORDER = re.compile(r"^(RANK|GROUP_RANK|ROLE_RANK)$")
# submitit's wrapper: its variables, srun's --unbuffered, and the file where our wrapper reads a rank's result.
SUBMITIT_OWN = re.compile(r"^(SUBMITIT_.*|SLURM_UNBUFFEREDIO|HPC_RUNNER_RESULT_FILE)$")


def probe_spec(tmp_path: Path) -> Path:
    python = tmp_path / "bin" / "my-python"  # a custom interpreter: a wrapper around this venv's
    python.parent.mkdir()
    python.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    spec = tmp_path / "probe.yaml"
    spec.write_text(
        "name: probe\nmode: gloo\nnodes: 2\nntasks_per_node: 1\nlauncher: torchrun\ntime: 5\n"
        f"python: {python}\noutput_dir: {tmp_path}/out\n"
        "env: {NCCL_DEBUG: INFO, NCCL_SOCKET_IFNAME: lo, PROBE_VALUE: \"a b 'c' $HOME\"}\n"
        f"entrypoint:\n  script: {ROOT / 'tests' / 'fixtures' / 'probe.py'}\n  args: [{tmp_path}/dumps]\n")
    return spec


def dumps(folder: Path, addresses: dict[str, str]) -> dict[tuple[str, str], dict]:
    """Each rank's dump, by (node, local rank). SLURM may place the two jobs on different nodes (another
    test's job holds some): nodes are named by their place in the job (<node0>, <node1>) and their names,
    addresses and the job's node list are written so in every value."""
    found = [json.loads(p.read_text()) for p in sorted(folder.glob("rank*.json"))]
    nodes = sorted({d["env"]["SLURMD_NODENAME"] for d in found})
    words = {d["env"]["SLURM_JOB_NODELIST"]: "<nodelist>" for d in found}
    for i, node in enumerate(nodes):
        words |= {addresses[node]: f"<addr{i}>", node: f"<node{i}>"}
    pattern = re.compile("|".join(rf"(?<![\w.]){re.escape(w)}(?![\w.])" for w in sorted(words, key=len, reverse=True)))

    def placed(value: str) -> str:
        return pattern.sub(lambda m: words[m.group(0)], value)

    return {(placed(d["env"]["SLURMD_NODENAME"]), d["env"]["LOCAL_RANK"]):
            {**d, "env": {k: placed(v) for k, v in d["env"].items()}} for d in found}


def comparable(dump: dict) -> dict:
    env = {k: v for k, v in dump["env"].items()
           if not (PER_JOB.match(k) or SUBMITIT_OWN.match(k) or ARRIVAL_ORDER.match(k))}
    return {**dump, "env": env}


def test_render_sbatch_and_submit_start_the_same_ranks(testbed: dict[str, str], tmp_path: Path) -> None:
    spec = str(probe_spec(tmp_path))
    job_id = sbatch(render([spec], testbed, tmp_path), testbed, tmp_path)
    final = job_control.wait_finished(job_id, poll_s=0.5, timeout_s=240)
    assert final.state == "COMPLETED", (tmp_path / f"probe-{job_id}.out").read_text()
    shutil.move(tmp_path / "dumps", tmp_path / "rendered")
    # render takes no code snapshot, so neither does this submit: both jobs run the code where it is
    # (with a snapshot, tests/test_snapshot.py compares the two texts of one request).
    dry = hpc_run(["submit", spec, "--executor", "slurm", "--dry-run", "--no-snapshot"], testbed, tmp_path)
    submitted = hpc_run(["submit", spec, "--executor", "slurm", "--wait", "--no-snapshot"], testbed, tmp_path)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    # The dry run printed the very file submitit wrote (only the fresh folder's name differs).
    dry_folder = re.search(r"submitit folder: (\S+)", dry.stdout).group(1)
    log = Path(re.search(r"logs: (\S+)", submitted.stdout).group(1))
    job_file = next(log.parent.glob("*_submission.sh")).read_text()
    printed = dry.stdout[dry.stdout.index("#!/bin/bash"):].removesuffix("\n")  # less our header and echo's newline
    assert job_file == printed.replace(dry_folder, str(log.parent))
    addresses = node_addresses(testbed)
    rendered, via_submitit = dumps(tmp_path / "rendered", addresses), dumps(tmp_path / "dumps", addresses)
    assert sorted(rendered) == sorted(via_submitit) == [("<node0>", "0"), ("<node1>", "0")]
    assert sorted(d["env"]["RANK"] for d in via_submitit.values()) == ["0", "1"]
    for place in rendered:
        a, b = comparable(rendered[place]), comparable(via_submitit[place])
        assert a["env"]["PROBE_VALUE"] == "a b 'c' $HOME" and a["env"]["NCCL_DEBUG"] == "INFO"
        assert a["cmdline"][:4] == [sys.executable, "-u", "-m", "hpc_runner.entrypoint"]
        assert {k for k in a["env"] if k.startswith("TORCHELASTIC")}, "not started by torchrun"
        differ = sorted(k for k in a["env"].keys() | b["env"].keys() if a["env"].get(k) != b["env"].get(k))
        assert not differ, {k: (a["env"].get(k), b["env"].get(k)) for k in differ}
        assert (a["argv"], a["cmdline"], a["executable"]) == (b["argv"], b["cmdline"], b["executable"])
