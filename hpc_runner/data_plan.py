"""How a data set splits across ranks: samples and steps per rank, effective batch (pure, no torch)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class DataPlan:
    """What DistributedSampler + DataLoader(drop_last=False) give each rank per epoch."""

    world_size: int
    samples: int
    batch_size: int
    samples_per_rank: int
    steps_per_epoch: int
    effective_batch: int


def data_plan(samples: int, batch_size: int, world_size: int) -> DataPlan:
    """Split ``samples`` over ``world_size`` ranks the way DistributedSampler does (padding to even)."""
    per_rank = math.ceil(samples / world_size)
    return DataPlan(
        world_size=world_size,
        samples=samples,
        batch_size=batch_size,
        samples_per_rank=per_rank,
        steps_per_epoch=math.ceil(per_rank / batch_size),
        effective_batch=batch_size * world_size,
    )
