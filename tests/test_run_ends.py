"""A run ends in the right state, or says why: checkpoints of another run, unsafe files, timeouts, exit.

These run real ranks through `hpc-run submit --executor local` (Gloo on 127.0.0.1).
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hpc_runner import checkpoint
from hpc_runner.errors import LaunchError

from .conftest import EMULATOR, HPC_RUN, ROOT, SMALL

pytestmark = pytest.mark.slow
FIXTURES = ["--set", f"env.PYTHONPATH={ROOT}"]


def submit_local(out: Path, *extra: str, env: dict[str, str] | None = None, nodes: int = 2) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HPC_RUN, "submit", EMULATOR, "--executor", "local", "--wait", "--mode", "gloo", "--nodes", str(nodes),
                           "--set", f"output_dir={out}", *SMALL, *extra], capture_output=True, text=True, timeout=300,
                          cwd=out.parent, env={**os.environ, **(env or {})})


def rank0_log(out: Path) -> str:
    return "".join(p.read_text() for p in sorted((out / "submitit").glob("*/*_0_log.out")))


def test_a_rerun_with_another_learning_rate_refuses_the_old_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert submit_local(out, "--set", "entrypoint.params.lr=0.05").returncode == 0
    other = submit_local(out, "--set", "entrypoint.params.lr=0.1")
    assert other.returncode == 1, other.stdout
    assert f"checkpoint {out / 'checkpoint.pt'} belongs to another run" in other.stderr
    assert "params.lr: 0.05 -> 0.1" in other.stderr and "resume: never" in other.stderr and "new output_dir" in other.stderr
    recorded = json.loads((out / "run.json").read_text())
    assert recorded["fingerprint"]["params"]["lr"] == 0.1 and recorded["world_size"] == 2
    # The ways out: start afresh (never), or load it anyway (force); more epochs continue the run.
    never = submit_local(out, "--set", "entrypoint.params.lr=0.1", "--set", "resume=never")
    assert never.returncode == 0 and "resuming from" not in rank0_log(out).split("lr")[-1]
    assert len(json.loads((out / "metrics.json").read_text())["history"]) == 2
    more = submit_local(out, "--set", "entrypoint.params.lr=0.1", "--set", "entrypoint.params.epochs=3")
    assert more.returncode == 0, more.stderr
    assert [h["epoch"] for h in json.loads((out / "metrics.json").read_text())["history"]] == [1, 2, 3]


def test_the_checkpoint_is_read_once_per_job_whatever_the_ranks(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert submit_local(out, nodes=4).returncode == 0
    opens = tmp_path / "opens.log"
    # count_opens first, then whatever hpc_runner this test runs (a worktree's, through PYTHONPATH), so that both
    # submits are made by the same hpc-run (the same code snapshot, so the same checkpoint fingerprint)
    counted = {"OPEN_LOG": str(opens),
               "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT / "tests" / "fixtures" / "count_opens"), os.environ.get("PYTHONPATH"))))}
    resumed = submit_local(out, "--set", "entrypoint.params.epochs=3", env=counted, nodes=4)
    assert resumed.returncode == 0, resumed.stderr
    lines = opens.read_text().splitlines()
    assert len(lines) == 1, lines  # rank 0 read it and broadcast it to the 3 others
    assert "resuming from" in rank0_log(out)


class Payload:
    """What a crafted checkpoint would run on load, were it unpickled without weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_checkpoint_runs_nothing_and_says_why(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    crafted = tmp_path / "run" / "checkpoint.pt"
    crafted.parent.mkdir()
    torch.save({"model": Payload(marker)}, crafted, pickle_module=pickle)
    with pytest.raises(LaunchError, match="cannot be loaded safely"):
        checkpoint.load(crafted)
    result = submit_local(tmp_path / "run")
    assert result.returncode == 1 and "cannot be loaded safely" in result.stderr
    assert not marker.exists()


def test_a_truncated_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    checkpoint.save_atomic({"w": torch.ones(1000)}, path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(LaunchError, match="cannot be loaded safely.*corrupt"):
        checkpoint.load(path)


def test_a_slow_rank_zero_is_not_a_rendezvous_timeout(tmp_path: Path) -> None:
    """init_timeout bounds the rendezvous only; collectives wait collective_timeout (default 30 min)."""
    spec = tmp_path / "slow.yaml"
    spec.write_text(f"name: slow\nmode: gloo\nnodes: 2\ninit_timeout: 2\noutput_dir: {tmp_path}/out\n"
                    f"env: {{PYTHONPATH: {ROOT}}}\n"
                    "entrypoint: {function: 'tests.fixtures.run_ends:slow_rank_zero', params: {seconds: 6}}\n")
    ok = subprocess.run([HPC_RUN, "submit", str(spec), "--executor", "local", "--wait"], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    short = subprocess.run([HPC_RUN, "submit", str(spec), "--executor", "local", "--wait", "--set", "collective_timeout=2"],
                           capture_output=True, text=True, timeout=300)
    assert short.returncode == 1  # the knob is real: a 2 s collective timeout does fire


def test_a_successful_run_exits_through_the_interpreter(tmp_path: Path) -> None:
    """atexit handlers run on every rank of a 2x2 job (scripts/exit_soak.sh repeats it 20 times)."""
    marker = tmp_path / "atexit"
    result = submit_local(tmp_path / "run", "--ntasks-per-node", "2", *FIXTURES, "--set",
                          "entrypoint.function=tests.fixtures.run_ends:emulator_with_atexit",
                          "--set", f"entrypoint.params.marker={marker}")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.glob("atexit.*")) == ["atexit.0", "atexit.1", "atexit.2", "atexit.3"]
    logs = "".join(p.read_text() for p in (tmp_path / "run" / "submitit").glob("*/*_log.err"))
    assert "terminate called" not in logs


@pytest.mark.parametrize(("handler", "looks_default"), [("auto", True), ("framework", True), ("hpc_runner", False)])
def test_a_script_survives_the_warning_and_a_framework_sees_the_default(tmp_path: Path, handler: str, looks_default: bool) -> None:
    """Lightning installs its SLURM handler only over the default one: ours stands in and says it is the default."""
    from hpc_runner.run_config import RunConfig
    from hpc_runner.schema import ScriptEntry

    report = tmp_path / "seen.json"
    config = RunConfig(mode="threading", entry=ScriptEntry(str(ROOT / "tests" / "fixtures" / "self_signal.py"), (str(report),)),
                       output_dir=str(tmp_path / "out"), init_timeout_s=30, data=None, max_restarts=0,
                       collective_timeout_s=60, resume="auto", requeue_handler=handler, export=None)
    result = subprocess.run([sys.executable, "-m", "hpc_runner.entrypoint", *config.to_argv()], capture_output=True,
                            text=True, timeout=120, env={k: v for k, v in os.environ.items() if not k.startswith("SLURM")})
    assert result.returncode == 0, result.stderr
    assert json.loads(report.read_text()) == {"usr1_looks_default": looks_default, "term_is_default": True, "survived": True}


def test_a_changed_world_size_resumes_from_the_epoch_boundary_and_says_so(tmp_path: Path) -> None:
    """A full state dict loads anywhere; a mid-epoch position does not translate to other shards."""
    out = tmp_path / "run"
    assert submit_local(out, nodes=2).returncode == 0
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    state["epoch"], state["step"] = 1, 5  # as if stopped for a requeue 5 steps into epoch 2
    checkpoint.save_atomic(state, out / "checkpoint.pt")
    resumed = submit_local(out, "--set", "entrypoint.params.epochs=3", nodes=4)
    assert resumed.returncode == 0, resumed.stderr
    log = rank0_log(out)
    assert "world size changed from 2 to 4: resuming from the start of epoch 2 instead of step 5" in log
    assert json.loads((out / "metrics.json").read_text())["world_size"] == 4
