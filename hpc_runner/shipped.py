"""Where the shipped top-level folders (templates/, jobs/) live: a checkout or the installed share/."""

from __future__ import annotations

import os
import sys

from .errors import HpcRunnerError

SITE_TEMPLATES_VAR = "HPC_RUNNER_TEMPLATES"  # a site's template folder, searched before ours


def shipped(folder: str, marker: str) -> str:
    """The folder ``templates`` or ``jobs`` holding ``marker``, from a checkout or ``share/hpc_runner``."""
    checkout = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    for candidate in (os.path.join(checkout, folder), os.path.join(sys.prefix, "share", "hpc_runner", folder)):
        if os.path.isfile(os.path.join(candidate, marker)):
            return candidate
    raise HpcRunnerError(f"hpc_runner's {folder}/ not found; reinstall the package (pip install -e .)")


def template_search_path() -> list[str]:
    """Template folders, first match wins: ``$HPC_RUNNER_TEMPLATES`` (colon-separated), then ours."""
    site = [p for p in os.environ.get(SITE_TEMPLATES_VAR, "").split(os.pathsep) if p]
    return [*site, shipped("templates", "base.sh.j2")]


def shipped_job(name: str) -> str:
    """The path of a job spec that ships with hpc_runner (``check.yaml``)."""
    return os.path.join(shipped("jobs", name), name)
