"""Benchmark probes run through the hpc_runner entrypoint (function entries)."""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.distributed as dist


def first_collective(ctx: Any) -> float:
    """One all-reduce; rank 0 prints the wall-clock time it completed."""
    tensor = torch.ones(1)
    dist.all_reduce(tensor)
    now = time.time()
    if ctx.is_main:
        print(f"FIRST_COLLECTIVE {now:.6f} sum={tensor.item():.0f}", flush=True)
    return now
