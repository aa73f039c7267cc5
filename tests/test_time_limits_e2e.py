"""On the testbed: every time-limit form gives the job the TimeLimit SLURM itself reads from the same text.

For each form: render a tiny spec holding it (unquoted YAML), submit the script held, and read
``scontrol show job``'s TimeLimit; then submit a trivial script with ``sbatch --time=<the raw text>``
so that SLURM's own parser reads the user's string. Both must equal what ``parse_time`` computed.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from hpc_runner.slurm_time import format_time, parse_time

from .conftest import render, sbatch

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

# One or more of each form: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS (seconds round up).
FORMS = ["90", "10:00", "0:30", "01:30", "2:00:00", "00:00:30", "1-12", "0-1", "1-12:30", "10-01:02:03"]

SPEC = """name: timelimit
mode: threading
time: {time}
entrypoint:
  function: hpc_runner.demo.echo:run
"""
TRIVIAL = "#!/bin/bash\ntrue\n"


def time_limit(job_id: str, env: dict[str, str]) -> str:
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], env=env, capture_output=True, text=True,
                         check=True, timeout=30).stdout
    match = re.search(r"\bTimeLimit=(\S+)", out)
    assert match, out
    return match.group(1)


def scancel(job_ids: list[str], env: dict[str, str]) -> None:
    if job_ids:
        subprocess.run(["scancel", *job_ids], env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("raw", FORMS)
def test_time_limit_matches_slurms_own_reading(testbed: dict[str, str], tmp_path: Path, raw: str) -> None:
    minutes = parse_time(raw)
    expected = format_time(minutes)  # as SLURM prints TimeLimit: D-HH:MM:SS or HH:MM:SS
    spec_path = tmp_path / "job.yaml"
    spec_path.write_text(SPEC.format(time=raw))  # unquoted on purpose: 2:00:00 must not be YAML's 7200
    script = render([str(spec_path)], testbed, tmp_path)
    assert f"#SBATCH --time={expected}\n" in script

    job_ids: list[str] = []
    try:
        job_ids.append(sbatch(script, testbed, tmp_path, "--hold"))
        ours = time_limit(job_ids[-1], testbed)
        job_ids.append(sbatch(TRIVIAL, testbed, tmp_path, "--hold", f"--time={raw}"))
        slurms = time_limit(job_ids[-1], testbed)
    finally:
        scancel(job_ids, testbed)
    assert slurms == expected, f"sbatch --time={raw} gives {slurms}; parse_time gives {minutes} min ({expected})"
    assert ours == expected, f"the rendered job got {ours}; parse_time gives {minutes} min ({expected})"
