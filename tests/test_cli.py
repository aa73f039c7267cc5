"""hpc-run through click's runner and a real subprocess: exit codes 0/1/2, no traceback on user error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from hpc_runner.cli import cli

from .conftest import ROOT

EMULATOR = str(ROOT / "jobs" / "emulator.yaml")


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
    assert "executor: local (local processes: 2 rank(s) over Gloo on 127.0.0.1" in result.output
    assert not (tmp_path / "run").exists()


def test_env_json_has_exactly_the_documented_keys(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["env", "--json"], env={"SLURM_JOB_ID": None, "RANK": None, "WORLD_SIZE": None, "TORCHELASTIC_RUN_ID": None})
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {"source", "rank", "world_size", "local_rank", "local_world_size", "node_rank",
                         "num_nodes", "master_addr", "master_port", "hosts", "cpus_per_task"}


def test_env_in_a_batch_shell_exits_1(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["env"], env={"SLURM_JOB_ID": "5", "SLURM_PROCID": "0", "SLURM_NTASKS": "4",
                                              "SLURM_STEP_ID": ""})
    assert result.exit_code == 1
    assert "srun" in result.output


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
