"""Where a spec's project is: the git work tree that holds the spec, else the current directory.

Code snapshots copy it; site profiles read its ``hpc_runner.yaml``. One rule for both.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Project:
    """The folder a spec belongs to, and whether git knows it as a work tree."""

    root: Path
    git: bool


def git_toplevel(folder: Path) -> Path | None:
    """The root of the git work tree holding ``folder``, None where there is none (or no git)."""
    try:
        done = subprocess.run(["git", "-C", str(folder), "rev-parse", "--show-toplevel"],
                              capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return Path(done.stdout.strip()) if done.returncode == 0 and done.stdout.strip() else None


def find(spec_path: str | None, cwd: str | Path) -> Project:
    """The git work tree that holds the spec, else the one holding ``cwd``, else ``cwd`` itself."""
    here = Path(cwd).resolve()
    candidates = ([(here / spec_path).resolve().parent] if spec_path else []) + [here]
    for folder in candidates:
        top = git_toplevel(folder)
        if top is not None:
            return Project(root=top.resolve(), git=True)
    return Project(root=here, git=False)
