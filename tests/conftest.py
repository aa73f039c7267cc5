"""Shared fixtures: repo paths, a CLI runner, a fake srun, and the SLURM testbed gate."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
JOBS = sorted((ROOT / "jobs").glob("*.yaml"))
EMULATOR = str(ROOT / "jobs" / "emulator.yaml")
CHECK = str(ROOT / "jobs" / "check.yaml")
ECHO = str(ROOT / "jobs" / "echo.yaml")
# The emulator shrunk to seconds: 2048 samples, batch 32, 2 epochs, width 16 (add --set to change one).
SMALL = ["--set", "data.samples=2048", "--set", "data.val_samples=256", "--set", "data.batch_size=32",
         "--set", "entrypoint.params.epochs=2", "--set", "entrypoint.params.hidden=16"]
VENV_BIN = Path(sys.executable).parent
HPC_RUN = str(VENV_BIN / "hpc-run")


def hpc_run(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """Run the real ``hpc-run`` console script; output captured, exit code left to the caller."""
    return subprocess.run([HPC_RUN, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def render(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    """``hpc-run render ARGS``, which must succeed; returns the script."""
    result = hpc_run(["render", *args], env, cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


def sbatch(script: str, env: dict[str, str], cwd: Path, *flags: str) -> str:
    """Submit a script with ``sbatch --parsable``; returns the job id."""
    out = subprocess.run(["sbatch", "--parsable", *flags], input=script, env=env, cwd=cwd,
                         capture_output=True, text=True, check=True)
    return out.stdout.strip().split(";")[0]


@pytest.fixture(scope="session", autouse=True)
def job_records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """hpc-run's records of what it submitted (hpc_runner.ledger) go to a folder of this test session."""
    from hpc_runner.ledger import STATE_VAR

    folder = tmp_path_factory.mktemp("hpc-runner-state")
    os.environ[STATE_VAR] = str(folder)
    return folder


@pytest.fixture(scope="session", autouse=True)
def no_user_profiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Site profiles of whoever runs the tests stay out of them: the user profiles file is a path with no file."""
    from hpc_runner.profiles import USER_CONFIG_VAR

    path = tmp_path_factory.mktemp("hpc-runner-user-config") / "profiles.yaml"
    os.environ[USER_CONFIG_VAR] = str(path)
    return path


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


# Fault drills wrap the emulator (tests/fixtures/drills.py): the job must find the tests package.
DRILLS = ["--set", "entrypoint.function=tests.fixtures.drills:train", "--set", f"env.PYTHONPATH={ROOT}"]


def entry_argv(output_dir: Path | str, function: str = "hpc_runner.demo.echo:run", mode: str = "gloo",
               init_timeout_s: int = 300) -> list[str]:
    """The entrypoint's argv for a function entry, made the way hpc_runner makes it (never by hand)."""
    from hpc_runner.run_config import RunConfig
    from hpc_runner.schema import FunctionEntry

    return RunConfig(mode=mode, entry=FunctionEntry(function), output_dir=str(output_dir),
                     init_timeout_s=init_timeout_s, data=None, max_restarts=0,
                     collective_timeout_s=1800, resume="auto", requeue_handler="auto", export=None).to_argv()


def make_fake_srun(folder: Path) -> Path:
    """A directory with an ``srun`` that records its argv (NUL-separated) and environment: the one fake srun."""
    bin_dir = folder / "fakebin"
    bin_dir.mkdir(exist_ok=True)
    srun = bin_dir / "srun"
    srun.write_text('#!/bin/bash\nprintf "%s\\0" "$@" > "$ARGV_OUT"\nenv -0 > "$ENV_OUT"\n')
    srun.chmod(0o755)
    return bin_dir


@pytest.fixture
def fake_srun(tmp_path: Path) -> Path:
    """The fake srun in this test's temporary folder."""
    return make_fake_srun(tmp_path)


def provide_interpreter(python: str, fake_bin: Path, cwd: Path) -> bool:
    """Create a stand-in for the job's interpreter where the script will look (a name on PATH, or a path
    under ``cwd``) so the script's interpreter check passes; False for an absolute path (left missing)."""
    if python.startswith("/"):
        return Path(python).exists()
    path = fake_bin / python if "/" not in python else cwd / python
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return True


def run_with_fake_srun(script: str, fake_bin: Path, tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """Run a rendered script with bash and the fake srun; return srun's argv and environment."""
    path = tmp_path / "job.sh"
    path.write_text(script)
    argv_out, env_out = tmp_path / "argv", tmp_path / "env"
    env = {"PATH": f"{fake_bin}:/usr/bin:/bin", "ARGV_OUT": str(argv_out), "ENV_OUT": str(env_out), "HOME": str(tmp_path)}
    subprocess.run(["bash", str(path)], check=True, env=env, cwd=tmp_path, timeout=30)
    argv = argv_out.read_bytes().split(b"\0")[:-1]
    environ = dict(item.split(b"=", 1) for item in env_out.read_bytes().split(b"\0") if b"=" in item)
    return [a.decode() for a in argv], {k.decode(): v.decode() for k, v in environ.items()}


def testbed_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        # Nodes up, whether idle or running another test's job (make test runs two at once).
        out = subprocess.run(["sinfo", "-h", "-t", "idle,alloc,mix", "-o", "%D"], capture_output=True, text=True,
                             timeout=10)
    except subprocess.TimeoutExpired:
        return False
    return out.returncode == 0 and out.stdout.strip() != ""


def node_addresses(env: dict[str, str]) -> dict[str, str]:
    """Each testbed node's NodeAddr, as SLURM holds it."""
    out = subprocess.run(["scontrol", "show", "node", "-o"], env=env, capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        found[fields["NodeName"]] = fields["NodeAddr"]
    return found


@pytest.fixture(scope="session")
def testbed() -> dict[str, str]:
    """Environment for commands on the real SLURM testbed; skips with the reason where it is down."""
    if not testbed_up():
        reason = "SLURM testbed not up (run as root: make cluster-up, or make test which starts it)"
        if os.environ.get("HPC_TESTBED_UP"):
            pytest.fail("make test started the testbed but sinfo does not answer: " + reason)
        pytest.skip(reason)
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    return env
