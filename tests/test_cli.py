"""hpc-run through click's runner and a real subprocess: exit codes 0/1/2, no traceback on user error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from hpc_runner.cli import cli

from .conftest import EMULATOR, hpc_run



def test_render_prints_a_four_node_script(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["render", EMULATOR, "--mode", "gloo", "--nodes", "4"])
    assert result.exit_code == 0, result.output
    assert "#SBATCH --nodes=4" in result.output
    assert result.output.startswith("#!/bin/bash\n")


def test_render_threading_on_two_nodes_exits_2_with_reason(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["render", EMULATOR, "--mode", "threading", "--nodes", "2"])
    assert result.exit_code == 2
    assert "threading mode runs on one node" in result.output
    assert "Traceback" not in result.output


def test_render_writes_a_file(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "job.sh"
    result = runner.invoke(cli, ["render", EMULATOR, "-o", str(out)])
    assert result.exit_code == 0
    assert out.read_text().startswith("#!/bin/bash")


def test_unknown_key_via_set_exits_2(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["render", EMULATOR, "--set", "nodez=3"])
    assert result.exit_code == 2
    assert "unknown key(s) nodez" in result.output


def test_bad_flag_type_exits_2(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["render", EMULATOR, "--nodes", "many"])
    assert result.exit_code == 2


def test_missing_spec_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["render", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2
    assert "cannot read the job spec" in result.output


def test_submit_dry_run_submits_nothing(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["submit", EMULATOR, "--nodes", "2", "--executor", "local", "--dry-run",
                                 "--set", f"output_dir={tmp_path}/run"])
    assert result.exit_code == 0, result.output
    assert "local processes on this machine: 2, emulating 2 node(s) x 1 rank(s)" in result.output
    assert "# process 1: RANK=1 WORLD_SIZE=2 LOCAL_RANK=0 LOCAL_WORLD_SIZE=1 GROUP_RANK=1 MASTER_ADDR=127.0.0.1" in result.output
    assert "export OMP_NUM_THREADS=1" in result.output
    assert f"-m hpc_runner.entrypoint --mode=gloo --output-dir={tmp_path}/run" in result.output
    assert not (tmp_path / "run").exists()


def test_submit_dry_run_slurm_prints_the_sbatch_file_without_a_controller(tmp_path: Path) -> None:
    """sinfo here would fail loudly: the dry run must not call it, and still print submitit's file."""
    fake = tmp_path / "bin"
    fake.mkdir()
    for tool in ("sbatch", "sinfo", "squeue", "srun"):
        (fake / tool).write_text(f"#!/bin/sh\necho '{tool} was called' >&2\nexit 1\n")
        (fake / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    result = hpc_run(["submit", EMULATOR, "--nodes", "2", "--mode", "gloo", "--executor", "slurm", "--dry-run",
                      "--set", f"output_dir={tmp_path}/run"], env=env)
    assert result.returncode == 0, result.stderr
    assert "was called" not in result.stderr
    assert "#SBATCH --signal=USR1@60" in result.stdout and "#SBATCH --wckey=submitit" in result.stdout
    assert "-m submitit.core._submit" in result.stdout and "export OMP_NUM_THREADS=1" in result.stdout
    assert not (tmp_path / "run").exists()


def test_submit_with_a_controller_that_does_not_answer_exits_1(tmp_path: Path) -> None:
    """SLURM installed but down: no quiet fall-back to local processes."""
    fake = tmp_path / "bin"
    fake.mkdir()
    for tool in ("sbatch", "sinfo"):
        (fake / tool).write_text("#!/bin/sh\necho 'slurm_load_partitions: Unable to contact slurm controller' >&2\nexit 1\n")
        (fake / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    result = hpc_run(["submit", EMULATOR, "--nodes", "4", "--mode", "gloo", "--set", f"output_dir={tmp_path}/run"], env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "controller does not answer" in result.stderr and "Unable to contact" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


def test_env_json_has_exactly_the_documented_keys(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["env", "--json"], env={"SLURM_JOB_ID": None, "RANK": None, "WORLD_SIZE": None, "TORCHELASTIC_RUN_ID": None})
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {"source", "rank", "world_size", "local_rank", "local_world_size", "node_rank",
                         "num_nodes", "master_addr", "master_port", "hosts", "cpus_per_task", "job_key",
                         "addr_rule", "port_rule", "findings"}


def test_env_in_a_batch_shell_is_a_finding_and_check_exits_1(runner: CliRunner) -> None:
    batch_shell = {"SLURM_JOB_ID": "5", "SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_STEP_ID": ""}
    result = runner.invoke(cli, ["env"], env=batch_shell)
    assert result.exit_code == 0 and "finding: " in result.output and "srun" in result.output
    checked = runner.invoke(cli, ["env", "--check"], env=batch_shell)
    assert checked.exit_code == 1


def test_env_with_a_master_name_nobody_knows_prints_and_marks_it(tmp_path: Path) -> None:
    step = {"SLURM_JOB_ID": "5", "SLURM_STEP_ID": "0", "SLURM_PROCID": "0", "SLURM_NTASKS": "2",
            "SLURM_STEP_NUM_TASKS": "2", "SLURM_STEP_NODELIST": "nosuchnode-[1-2]", "SLURM_STEP_TASKS_PER_NODE": "1(x2)",
            "SLURM_NODEID": "0", "SLURM_LOCALID": "0"}
    env = {**os.environ, **step, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    (tmp_path / "scontrol").write_text("#!/bin/sh\nexit 1\n")  # no SLURM to ask either
    (tmp_path / "scontrol").chmod(0o755)
    shown = hpc_run(["env"], env=env)
    assert shown.returncode == 0 and "Traceback" not in shown.stderr
    assert "master_addr       (unresolved)" in shown.stdout and "does not resolve" in shown.stdout
    assert "port_rule         derived from job 5 step 0" in shown.stdout
    assert hpc_run(["env", "--check"], env=env).returncode == 1


def test_status_of_a_malformed_job_id_exits_2(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["status", "12; rm -rf /"])
    assert result.exit_code == 2
    assert "not a SLURM job id" in result.output


def test_help_teaches() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert "hpc-run render jobs/emulator.yaml" in result.output
    for command in ("render", "submit", "env", "status", "logs", "cancel"):
        assert command in result.output


def test_render_does_not_import_torch_or_subprocess_heavy_modules() -> None:
    code = ("import sys; from hpc_runner.cli import main; sys.argv=['hpc-run','render',%r];\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', 'SUBMITIT' if 'submitit' in sys.modules else 'NO-SUBMITIT', file=sys.stderr)") % EMULATOR
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "NO-TORCH NO-SUBMITIT" in result.stderr
