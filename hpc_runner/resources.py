"""Where the shipped top-level folders (templates/, jobs/) live: a checkout or the installed share/."""

from __future__ import annotations

import sys
import os

from .errors import SpecError


def shipped(folder: str, marker: str) -> str:
    """The folder ``templates`` or ``jobs`` holding ``marker``, from a checkout or ``share/hpc_runner``."""
    checkout = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    for candidate in (os.path.join(checkout, folder), os.path.join(sys.prefix, "share", "hpc_runner", folder)):
        if os.path.isfile(os.path.join(candidate, marker)):
            return candidate
    raise SpecError(f"hpc_runner's {folder}/ not found; reinstall the package (pip install -e .)")
