"""Where the shipped top-level folders (templates/, jobs/) live: a checkout or the installed share/."""

from __future__ import annotations

import sys
from pathlib import Path

from .errors import SpecError


def shipped(folder: str, marker: str) -> Path:
    """The folder ``templates`` or ``jobs`` holding ``marker``, from a checkout or ``share/hpc_runner``."""
    for candidate in (Path(__file__).resolve().parent.parent / folder,
                      Path(sys.prefix) / "share" / "hpc_runner" / folder):
        if (candidate / marker).is_file():
            return candidate
    raise SpecError(f"hpc_runner's {folder}/ not found; reinstall the package (pip install -e .)")
