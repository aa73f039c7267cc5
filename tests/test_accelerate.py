"""accelerate: what a gloo job tells accelerate, and `launcher: accelerate` rendered, run through a real bash.

The testbed runs both for real (tests/test_accelerate_e2e.py); here every word that reaches the
node's `accelerate launch` is checked with a stand-in interpreter that records its argv.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hpc_runner import accelerate_launch, environment, render, request, spec
from hpc_runner.run_config import RunConfig

from .conftest import run_with_fake_srun
from .test_render import HOSTILE

BASE = {"name": "acc", "mode": "gloo", "nodes": 2, "ntasks_per_node": 2, "launcher": "accelerate",
        "entrypoint": {"script": "train.py", "args": ["--lr", "0.1"]}}


def job(**changes: object) -> request.JobRequest:
    return request.build(spec.from_mapping({**BASE, **changes}), cwd="/home/user/project", python=sys.executable)


@pytest.mark.parametrize(("mode", "extra", "expected"), [
    ("gloo", {}, "true"),                                   # CPUs: accelerate must not take each rank for a lone process
    ("gloo", {"env": {"ACCELERATE_USE_CPU": "false"}}, "false"),  # the spec's own word wins, exported once
    ("threading", {"nodes": 1, "ntasks_per_node": 1, "launcher": "srun"}, None),
    ("nccl", {"gpus_per_node": 2, "ntasks_per_node": 2}, None),  # GPUs: accelerate finds them itself
])
def test_gloo_jobs_tell_accelerate_they_run_on_cpus(mode: str, extra: dict, expected: str | None) -> None:
    env = job(mode=mode, **extra).env
    assert dict(env).get("ACCELERATE_USE_CPU") == expected
    assert [key for key, _ in env].count("ACCELERATE_USE_CPU") <= 1


def test_the_accelerate_launcher_starts_one_task_per_node_which_starts_the_nodes_ranks() -> None:
    req = job(nodes=3, ntasks_per_node=4, cpus_per_task=2)
    assert (req.tasks_per_node, req.ranks_per_node, req.world_size) == (1, 4, 12)
    assert "--ntasks-per-node=1" in req.srun and "--cpus-per-task=8" in req.srun  # the node's cores, for its 4 ranks
    assert "unset SLURM_NTASKS SLURM_NPROCS" in req.before_launch
    assert "--nproc-per-node=4" in req.program[2]  # the helper counts processes: 4 x the nodes of the allocation
    options = req.program[req.program.index(sys.executable) + 1:req.program.index("--module")]
    assert options == ("--multi_gpu", "--rdzv_backend=c10d", "--max_restarts=0", "--mixed_precision=no", "--dynamo_backend=no")
    assert req.program[req.program.index("--module") + 1] == "hpc_runner.entrypoint"


def test_an_accelerate_config_is_passed_on_as_an_absolute_path(tmp_path: Path) -> None:
    (tmp_path / "acc.yaml").write_text("num_processes: 4\nnum_machines: 2\n")
    req = request.build(spec.from_mapping({**BASE, "accelerate_config": "acc.yaml"}), cwd=str(tmp_path), python=sys.executable)
    assert f"--config_file={tmp_path}/acc.yaml" in req.program
    assert "--mixed_precision=no" not in req.program  # the file decides what the spec does not
    assert "accelerate " + str(tmp_path / "acc.yaml") + ": num_processes 4, num_machines 2" in render.render(req)


@pytest.mark.parametrize(("changes", "message"), [
    ({"mode": "threading", "nodes": 1, "ntasks_per_node": 1}, "accelerate launches distributed ranks; threading mode has none"),
    ({"nodes": 1, "ntasks_per_node": 1}, "needs 2 or more processes, got 1"),
    ({"accelerate_config": ""}, "key 'accelerate_config': must not be empty"),
])
def test_specs_the_accelerate_launcher_cannot_run_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(spec.SpecError, match=message):
        spec.from_mapping({**BASE, **changes})


FAKE_PYTHON = """#!/bin/bash
if [ "$2" = hpc_runner.accelerate_launch ]; then
  printf '%s\\n' "$*" > "$HELPER_OUT"
  [ -n "${NODE_VALUES:-}" ] && echo "$NODE_VALUES"
  exit "${HELPER_EXIT:-0}"
fi
printf '%s\\0' "$@" > "$LAUNCH_OUT"
printf '%s' "$PET_LOCAL_ADDR" > "$LOCAL_ADDR_OUT"
"""


def run_node(req: request.JobRequest, tmp_path: Path, fake_srun: Path, node_values: str, helper_exit: int = 0) -> tuple[int, list[str], str]:
    """Run the rendered script (fake srun), then the node's command it was given, with the stand-in interpreter."""
    import subprocess

    argv, environ = run_with_fake_srun(render.render(req), fake_srun, tmp_path)
    node_command = argv[len(req.srun):]
    outs = {name: tmp_path / name for name in ("HELPER_OUT", "LAUNCH_OUT", "LOCAL_ADDR_OUT")}
    env = {**environ, **{k: str(v) for k, v in outs.items()}, "NODE_VALUES": node_values, "HELPER_EXIT": str(helper_exit)}
    done = subprocess.run(node_command, env=env, capture_output=True, text=True, timeout=30)
    launched = outs["LAUNCH_OUT"].read_bytes().split(b"\0")[:-1] if outs["LAUNCH_OUT"].exists() else []
    local = outs["LOCAL_ADDR_OUT"].read_text() if outs["LOCAL_ADDR_OUT"].exists() else ""
    return done.returncode, [a.decode() for a in launched], local


def fake_python(tmp_path: Path) -> str:
    path = tmp_path / "venv bin" / "python"
    path.parent.mkdir()
    path.write_text(FAKE_PYTHON)
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("value", HOSTILE)
def test_each_node_runs_accelerate_launch_with_its_own_values_and_the_spec_intact(value: str, tmp_path: Path, fake_srun: Path) -> None:
    config = tmp_path / f"acc {value}.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("num_machines: 2\n")
    req = request.build(spec.from_mapping({**BASE, "accelerate_config": f"acc {value}.yaml", "output_dir": f"out/{value}",
                                           "entrypoint": {"script": f"train {value}.py", "args": [value, "--lr", value]}}),
                        cwd=str(tmp_path), python=fake_python(tmp_path))
    code, launched, local = run_node(req, tmp_path, fake_srun, "1 2 4 10.0.0.1 12001 10.0.0.2 join_timeout=300,is_host=false")
    assert code == 0
    assert launched[:2] == ["-m", "accelerate.commands.launch"]
    assert launched[2:8] == ["--machine_rank=1", "--num_machines=2", "--num_processes=4", "--main_process_ip=10.0.0.1",
                             "--main_process_port=12001", "--rdzv_conf=join_timeout=300,is_host=false"]
    assert f"--config_file={tmp_path}/acc {value}.yaml" in launched
    assert local == "10.0.0.2"  # torch's agent tells the ranks to reach its store here, not at its host name
    entry = launched[launched.index("hpc_runner.entrypoint") + 1:]
    assert RunConfig.from_argv(entry) == req.config
    assert (tmp_path / "HELPER_OUT").read_text().split() == ["-m", "hpc_runner.accelerate_launch", "--nproc-per-node=2",
                                                             "--join-timeout=300"]
    assert not Path("/tmp/hpc_runner_pwned").exists()


def test_a_node_whose_values_cannot_be_found_stops_before_accelerate(tmp_path: Path, fake_srun: Path) -> None:
    req = request.build(spec.from_mapping(BASE), cwd=str(tmp_path), python=fake_python(tmp_path))
    code, launched, _ = run_node(req, tmp_path, fake_srun, "", helper_exit=1)
    assert code == 1 and launched == []


def slurm_node(node_id: str, nodes: int = 2, **extra: str) -> dict[str, str]:
    """The variables srun gives the one task of node ``node_id`` in a step over ``nodes`` nodes."""
    return {"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_PROCID": node_id, "SLURM_NODEID": node_id,
            "SLURM_LOCALID": "0", "SLURM_STEP_NUM_TASKS": str(nodes), "SLURM_STEP_NODELIST": f"n[1-{nodes}]",
            "SLURM_JOB_NODELIST": f"n[1-{nodes}]", "SLURM_STEP_TASKS_PER_NODE": f"1(x{nodes})", **extra}


ADDRESSES = {"n1": "10.250.77.11", "n2": "10.250.77.12", "n3": "10.250.77.13"}
PORT = environment.derive_port("4242", "0")


@pytest.mark.parametrize(("environ", "words"), [
    (slurm_node("0", SLURM_STEP_RESV_PORTS="12006-12007"), "0 2 4 10.250.77.11 12006 10.250.77.11 join_timeout=60,is_host=true"),
    (slurm_node("1", SLURM_STEP_RESV_PORTS="12006-12007"), "1 2 4 10.250.77.11 12006 10.250.77.12 join_timeout=60,is_host=false"),
    (slurm_node("1"), f"1 2 4 10.250.77.11 {PORT} 10.250.77.12 join_timeout=60,is_host=false"),
    (slurm_node("1", MASTER_ADDR="10.9.9.9", MASTER_PORT="23456"), "1 2 4 10.9.9.9 23456 10.250.77.12 join_timeout=60"),
    (slurm_node("0", HPC_RUNNER_MASTER_ADDR="10.1.1.1"), f"0 2 4 10.1.1.1 {PORT} 10.250.77.11 join_timeout=60,is_host=true"),
    (slurm_node("2", nodes=3), f"2 3 6 10.250.77.11 {PORT} 10.250.77.13 join_timeout=60,is_host=false"),
], ids=["first-node-hosts", "second-node-joins", "derived-port", "explicit-address", "resolved-once-by-the-batch-script",
        "sbatch-nodes-3-on-a-script-rendered-for-2"])
def test_node_values_follow_the_environment_rules(environ: dict[str, str], words: str) -> None:
    env = environment.from_environ(environ, ADDRESSES.__getitem__)
    assert accelerate_launch.node_values(env, 2, ADDRESSES[env.hosts[env.node_rank]], 60).words() == words


def test_a_node_value_with_white_space_is_refused_rather_than_misread() -> None:
    with pytest.raises(ValueError, match="white space"):
        accelerate_launch.NodeValues(0, 2, 4, "10.0.0.1", 1, "a b", "join_timeout=1").words()


@pytest.mark.parametrize(("config", "flags", "words"), [
    (None, ("--multi_gpu",), "accelerate launch --multi_gpu: plain multi-process, one process per rank"),
    ("num_processes: 4\n", ("--multi_gpu",), "accelerate launch --multi_gpu: plain multi-process"),
    ("distributed_type: MULTI_CPU\n", ("--multi_gpu",), "accelerate launch --multi_gpu: plain multi-process"),
    ("distributed_type: MULTI_GPU\ndeepspeed_config: {}\n", ("--multi_gpu",), "accelerate launch --multi_gpu: plain multi-process"),
    ("distributed_type: DEEPSPEED\ndeepspeed_config:\n  zero_stage: 2\n",
     ("--use_deepspeed", "--deepspeed_multinode_launcher=standard"),
     "accelerate launch --use_deepspeed --deepspeed_multinode_launcher=standard: DeepSpeed (DeepSpeed must be installed"),
    ("distributed_type: FSDP\nfsdp_config:\n  fsdp_version: 2\n", ("--use_fsdp",), "accelerate launch --use_fsdp: FSDP"),
], ids=["no-config", "config-without-a-type", "multi-cpu", "multi-gpu-with-an-empty-deepspeed-section", "deepspeed", "fsdp"])
def test_the_mode_flag_follows_the_configs_distributed_type(config: str | None, flags: tuple[str, ...], words: str,
                                                            tmp_path: Path) -> None:
    # accelerate reads distributed_type only when no mode flag is given: --multi_gpu always ran DeepSpeed configs as DDP.
    changes = {}
    if config is not None:
        (tmp_path / "acc.yaml").write_text(config)
        changes["accelerate_config"] = "acc.yaml"
    req = request.build(spec.from_mapping({**BASE, **changes}), cwd=str(tmp_path), python=sys.executable)
    options = req.program[req.program.index(sys.executable) + 1:req.program.index("--rdzv_backend=c10d")]
    assert options == flags
    assert any(line.startswith(words) for line in req.summary)
    assert f"# {next(line for line in req.summary if line.startswith('accelerate launch '))}" in render.render(req)


def test_a_deepspeed_config_reaches_the_nodes_accelerate_launch(tmp_path: Path, fake_srun: Path) -> None:
    (tmp_path / "acc.yaml").write_text("distributed_type: DEEPSPEED\nnum_machines: 2\ndeepspeed_config:\n  zero_stage: 2\n")
    req = request.build(spec.from_mapping({**BASE, "accelerate_config": "acc.yaml"}), cwd=str(tmp_path), python=fake_python(tmp_path))
    code, launched, _ = run_node(req, tmp_path, fake_srun, "0 2 4 10.0.0.1 12001 10.0.0.1 join_timeout=300,is_host=true")
    assert code == 0
    assert "--use_deepspeed" in launched and "--deepspeed_multinode_launcher=standard" in launched
    assert "--multi_gpu" not in launched
