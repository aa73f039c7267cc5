"""The demo emulator with its gradient exchange swapped, to see where 2-rank time goes (make bench only).

``comm="none"``: every rank trains its own shard and exchanges nothing (what two independent
processes on the same cores reach). ``comm="ddp"``: the emulator as shipped.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from hpc_runner.demo import emulator


class Alone(nn.Module):
    """DDP's place in the emulator, without the all-reduce."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Any) -> Any:
        return self.module(x)


def train(ctx: Any, comm: str = "ddp", **params: Any) -> dict[str, Any]:
    """The emulator's ``train`` with the gradient exchange chosen by ``comm``."""
    if comm == "none":
        emulator.DistributedDataParallel = Alone  # type: ignore[misc,assignment]
    return emulator.train(ctx, **params)
