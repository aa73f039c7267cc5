"""A tiny job for load drills: every rank returns who it is; rank 0 writes a marker file."""

from __future__ import annotations

import json
from typing import Any


def run(ctx: Any, tag: str = "") -> dict[str, Any]:
    """Return the tag, rank and output directory; rank 0 writes ``echo.json`` there."""
    result = {"tag": tag, "rank": ctx.env.rank, "world_size": ctx.env.world_size, "output_dir": str(ctx.output_dir)}
    if ctx.is_main:
        (ctx.output_dir / "echo.json").write_text(json.dumps(result) + "\n")
    return result
