"""Sharded data loading for user code, with an audit that every rank reads its own shard."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .errors import LaunchError

_MASK = (1 << 61) - 1


@dataclass(frozen=True)
class ShardDigest:
    """A cheap fingerprint of the sample indices one rank will read in an epoch."""

    count: int
    hash_sum: int


def digest(indices: list[int]) -> ShardDigest:
    """Count and an order-free hash sum of ``indices`` (splitmix-style mixing, mod 2**61-1)."""
    total = 0
    for i in indices:
        z = (i + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        total = (total + (z ^ (z >> 31))) % _MASK
    return ShardDigest(count=len(indices), hash_sum=total)


def check_shards(digests: list[ShardDigest], dataset_size: int) -> None:
    """Stop with an explanation when shards overlap or do not cover the data set."""
    world = len(digests)
    if world <= 1:
        return
    total = sum(d.count for d in digests)
    fix = ("  hint: give the DataLoader a DistributedSampler(dataset, num_replicas=world_size, rank=rank) "
           "(ctx-aware helper: hpc_runner.data.shard_loader) and call sampler.set_epoch(epoch) each epoch; "
           "switch the audit off with data.audit: false only if the duplication is intended")
    if len(set(digests)) == 1:
        raise LaunchError(
            f"sharding audit: all {world} ranks will read the same {digests[0].count} samples this epoch, "
            f"so {world} ranks do the work of one (no speed-up, {world}x the steps).\n{fix}")
    if total < dataset_size:
        raise LaunchError(
            f"sharding audit: the ranks read {total} samples in all but the data set has {dataset_size}; "
            f"{dataset_size - total} samples are never seen.\n{fix}")
    if total >= dataset_size + world:
        raise LaunchError(
            f"sharding audit: the ranks read {total} samples in all for a data set of {dataset_size}; "
            f"shards overlap by {total - dataset_size} samples.\n{fix}")


def audit_loader(loader: DataLoader, dataset_size: int) -> None:
    """Exchange each rank's shard digest for this epoch and check them (needs a process group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    sampler = loader.sampler
    indices = [int(i) for i in sampler] if sampler is not None else list(range(dataset_size))
    mine = digest(indices)
    gathered: list[ShardDigest | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, mine)
    check_shards([d for d in gathered if d is not None], dataset_size)


def shard_loader(dataset: Dataset, batch_size: int, rank: int, world_size: int, *,
                 shuffle: bool = True, seed: int = 0) -> DataLoader:
    """A DataLoader that gives this rank its own shard (DistributedSampler, even across ranks)."""
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle,
                                 seed=seed, drop_last=False)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler)


def synthetic_regression(samples: int, in_dim: int, out_dim: int, seed: int, split: int = 0,
                         dtype: torch.dtype = torch.float32) -> torch.utils.data.TensorDataset:
    """A deterministic regression set y = sin(x W1) W2 + noise, the same on every rank.

    The function (W1, W2) depends on ``seed`` only; ``split`` draws other inputs from it
    (0 = training, 1 = validation).
    """
    weights = torch.Generator().manual_seed(seed)
    w1 = torch.randn(in_dim, 16, generator=weights, dtype=torch.float64)
    w2 = torch.randn(16, out_dim, generator=weights, dtype=torch.float64) / 4
    gen = torch.Generator().manual_seed(seed * 1009 + 1 + split)
    x = torch.randn(samples, in_dim, generator=gen, dtype=torch.float64)
    y = torch.sin(x @ w1) @ w2 + 0.01 * torch.randn(samples, out_dim, generator=gen, dtype=torch.float64)
    return torch.utils.data.TensorDataset(x.to(dtype), y.to(dtype))
