"""End to end on the real 4-node SLURM testbed: what users do, checked by what the jobs produced."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from hpc_runner import job_control as jobs
from hpc_runner.environment import expand_nodelist

from .conftest import CHECK, DRILLS, EMULATOR, HPC_RUN, ROOT, SMALL, hpc_run, node_addresses, render, sbatch

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def sbatch_rendered(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 240) -> tuple[str, jobs.JobStatus]:
    """hpc-run render ... | sbatch --parsable, then poll SLURM until the job ends."""
    job_id = sbatch(render(args, env, cwd), env, cwd)
    return job_id, jobs.wait_finished(job_id, poll_s=0.5, timeout_s=timeout)


def check_placement(out: Path, nodes: int, per_node: int) -> None:
    data = json.loads((out / "check.json").read_text())
    assert data["world_size"] == nodes * per_node
    assert data["all_reduce_ok"] and data["broadcast_ok"]
    by_node: dict[str, list[int]] = {}
    for p in data["placement"]:
        by_node.setdefault(p["node"], []).append(p["rank"])
    assert len(by_node) == nodes, by_node
    assert all(len(ranks) == per_node for ranks in by_node.values()), by_node
    assert [r["size_kib"] for r in data["all_reduce"]] == [1, 16, 256]


def test_render_pipe_sbatch_wait_gloo_2x2(testbed: dict[str, str], tmp_path: Path) -> None:
    """Literally `hpc-run render ... | sbatch --wait`: 4 ranks, 2 per node, on 2 distinct nodes."""
    script = hpc_run(["render", CHECK, "--mode", "gloo", "--nodes", "2", "--ntasks-per-node", "2",
                      "--set", "entrypoint.params.sizes_kib=[1,16,256]", "--set", f"output_dir={tmp_path}/out"], testbed, tmp_path)
    result = subprocess.run(["sbatch", "--wait"], input=script.stdout, env=testbed, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr + "".join(p.read_text() for p in tmp_path.glob("*.out"))
    check_placement(tmp_path / "out", nodes=2, per_node=2)


def test_gloo_4_nodes_x_1_task(testbed: dict[str, str], tmp_path: Path) -> None:
    job_id, final = sbatch_rendered([CHECK, "--nodes", "4", "--ntasks-per-node", "1", "--set",
                                     "entrypoint.params.sizes_kib=[1,16,256]", "--set", f"output_dir={tmp_path}/out"], testbed, tmp_path)
    assert final.state == "COMPLETED", (tmp_path / f"check-{job_id}.out").read_text()
    check_placement(tmp_path / "out", nodes=4, per_node=1)
    status = hpc_run(["status", job_id], testbed, tmp_path)
    assert status.returncode == 0 and "COMPLETED" in status.stdout and "n[1-4]" in status.stdout
    rank2 = hpc_run(["logs", job_id, "--rank", "0"], testbed, tmp_path)
    assert "all-reduce OK; broadcast OK" in rank2.stdout
    assert all(line.startswith("0: ") for line in rank2.stdout.splitlines())


def test_threading_mode_on_one_node(testbed: dict[str, str], tmp_path: Path) -> None:
    job_id, final = sbatch_rendered([CHECK, "--mode", "threading", "--nodes", "1", "--cpus-per-task", "2",
                                     "--set", f"output_dir={tmp_path}/out"], testbed, tmp_path)
    assert final.state == "COMPLETED", (tmp_path / f"check-{job_id}.out").read_text()
    data = json.loads((tmp_path / "out" / "check.json").read_text())
    assert data["world_size"] == 1 and data["placement"][0]["threads"] == 2


def test_submitit_emulator_on_4_nodes_quarter_steps(testbed: dict[str, str], tmp_path: Path) -> None:
    results = {}
    for nodes in (1, 4):
        out = tmp_path / f"n{nodes}"
        result = hpc_run(["submit", EMULATOR, "--executor", "slurm", "--nodes", str(nodes), "--wait",
                          "--set", f"output_dir={out}", *SMALL], testbed, tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "submitted job" in result.stdout and "logs: " in result.stdout
        results[nodes] = json.loads((out / "metrics.json").read_text())
        assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "code", "loss.png", "metrics.json", "run.json", "submitit"]
    assert results[4]["world_size"] == 4
    assert results[4]["steps_per_epoch"] * 4 == results[1]["steps_per_epoch"]
    logs = sorted((tmp_path / "n4" / "submitit").glob("*/*_log.out"))
    assert len(logs) == 4 and sum("wrote " in p.read_text() for p in logs) == 1


def test_torchrun_launcher(testbed: dict[str, str], tmp_path: Path) -> None:
    job_id, final = sbatch_rendered([EMULATOR, "--mode", "gloo", "--nodes", "2", "--ntasks-per-node", "2",
                                     "--set", "launcher=torchrun", "--set", f"output_dir={tmp_path}/out", *SMALL], testbed, tmp_path)
    log = (tmp_path / f"emulator-{job_id}.out").read_text()
    assert final.state == "COMPLETED", log
    first_node = expand_nodelist(final.nodes)[0]  # whichever nodes SLURM gave (another test may hold n1)
    assert f"torchrun rendezvous at {node_addresses(testbed)[first_node]}:" in log
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["world_size"] == 4 and metrics["steps_per_epoch"] == 2048 // 4 // 32
    assert log.count("wrote ") == 1


def test_users_torchrun_style_script_runs_unchanged(testbed: dict[str, str], tmp_path: Path) -> None:
    spec = tmp_path / "user.yaml"
    spec.write_text(f"name: user\nmode: gloo\nnodes: 2\nntasks_per_node: 2\n"
                    f"entrypoint:\n  script: {ROOT / 'tests' / 'fixtures' / 'user_ddp.py'}\n  args: [{tmp_path / 'seen.json'}]\n")
    job_id, final = sbatch_rendered([str(spec)], testbed, tmp_path)
    assert final.state == "COMPLETED", (tmp_path / f"user-{job_id}.out").read_text()
    gathered = json.loads((tmp_path / "seen.json").read_text())
    assert [g["rank"] for g in gathered] == [0, 1, 2, 3]
    assert {g["node"] for g in gathered} == set(expand_nodelist(final.nodes)) and len(set(expand_nodelist(final.nodes))) == 2
    assert sorted(i for g in gathered for i in g["seen"]) == list(range(100))  # a partition, no overlap


def test_cancel_reports_cancelled_and_nothing_hangs(testbed: dict[str, str], tmp_path: Path) -> None:
    script = hpc_run(["render", EMULATOR, "--mode", "gloo", "--nodes", "2", "--set", f"output_dir={tmp_path}/out",
                      "--set", "entrypoint.params.epochs=100", "--set", "entrypoint.params.step_sleep=0.05", *DRILLS], testbed, tmp_path)
    job_id = sbatch(script.stdout, testbed, tmp_path)
    deadline = time.monotonic() + 60
    while jobs.status(job_id).state != "RUNNING":
        assert time.monotonic() < deadline, "job never started"
        time.sleep(0.5)
    started = time.monotonic()
    result = hpc_run(["cancel", job_id], testbed, tmp_path, timeout=180)
    assert result.returncode == 0, result.stderr
    assert f"job {job_id}: CANCELLED" in result.stdout
    assert time.monotonic() - started < 120


def test_nccl_directives_accepted_by_sbatch_test_only(testbed: dict[str, str], tmp_path: Path) -> None:
    """No GPU runs here: the testbed declares GPUs on paper so that sbatch can judge the directives."""
    ok = hpc_run(["render", EMULATOR, "--mode", "nccl", "--nodes", "2", "--gpus-per-node", "2"], testbed, tmp_path)
    accepted = subprocess.run(["sbatch", "--test-only"], input=ok.stdout, env=testbed, capture_output=True, text=True)
    assert accepted.returncode == 0 and "to start at" in accepted.stderr, accepted.stderr
    too_many = hpc_run(["render", EMULATOR, "--mode", "nccl", "--nodes", "2", "--gpus-per-node", "8"], testbed, tmp_path)
    refused = subprocess.run(["sbatch", "--test-only"], input=too_many.stdout, env=testbed, capture_output=True, text=True)
    assert refused.returncode != 0 and "not available" in refused.stderr


def test_env_json_under_a_real_uneven_step(testbed: dict[str, str], tmp_path: Path) -> None:
    result = subprocess.run(["srun", "-w", "n1,n2", "-N2", "-n3", "--exclusive", "--mpi=none", HPC_RUN, "env", "--json"], env=testbed, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = sorted((json.loads(line) for line in result.stdout.splitlines()), key=lambda r: r["rank"])
    assert [(r["rank"], r["local_rank"], r["local_world_size"], r["node_rank"]) for r in rows] == \
        [(0, 0, 2, 0), (1, 1, 2, 0), (2, 0, 1, 1)]
    assert {r["master_addr"] for r in rows} == {node_addresses(testbed)["n1"]} and {r["world_size"] for r in rows} == {3}
    assert rows[0]["hosts"] == ["n1", "n2"] and rows[0]["source"] == "slurm"


def test_submit_follow_streams_the_log_and_exits_with_the_result(testbed: dict[str, str], tmp_path: Path) -> None:
    result = hpc_run(["submit", CHECK, "--executor", "slurm", "--nodes", "2", "--follow", "--set", f"output_dir={tmp_path}/out",
                      "--set", "entrypoint.params.sizes_kib=[1]"], testbed, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "all-reduce OK; broadcast OK" in result.stdout  # streamed from rank 0's log
    assert "done: 2 task(s) returned" in result.stdout
    failing = hpc_run(["submit", str(ROOT / "jobs" / "echo.yaml"), "--executor", "slurm", "--follow",
                       "--set", "entrypoint.function=hpc_runner.demo.echo:missing"], testbed, tmp_path)
    assert failing.returncode == 1
    assert "cannot load entrypoint function" in failing.stdout + failing.stderr
    assert "(final state FAILED)" in failing.stderr, failing.stderr
