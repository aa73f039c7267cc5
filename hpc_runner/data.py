"""Sharded data loading for user code, with an audit that every rank reads its own shard."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .errors import LaunchError

FIX = ("  hint: give the DataLoader a DistributedSampler(dataset, num_replicas=world_size, rank=rank) with the "
       "GLOBAL rank (ctx-aware helper: hpc_runner.data.shard_loader) and call sampler.set_epoch(epoch) each epoch; "
       "switch the audit off with data.audit: false only if the duplication is intended")


@dataclass(frozen=True)
class ShardReport:
    """How the ranks' sample indices for one epoch cover the data set."""

    world: int
    dataset_size: int
    missing: int          # samples no rank reads
    duplicates: int       # reads beyond the first of a sample
    identical: tuple[tuple[int, ...], ...]  # groups of ranks that read exactly the same samples

    @property
    def padded(self) -> bool:
        """DistributedSampler without drop_last: every sample read, at most world-1 read twice (padding)."""
        return self.missing == 0 and self.duplicates < self.world

    @property
    def dropped(self) -> bool:
        """DistributedSampler with drop_last: no sample read twice, fewer than world left out."""
        return self.duplicates == 0 and self.missing < self.world


def shard_report(shards: list[list[int]], dataset_size: int) -> ShardReport:
    """Compare the ranks' index lists by content: coverage, overlap, ranks reading the same shard."""
    counts = torch.zeros(dataset_size, dtype=torch.int64)
    for rank, indices in enumerate(shards):
        index = torch.as_tensor(indices, dtype=torch.int64)
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= dataset_size):
            raise LaunchError(f"sharding audit: rank {rank} reads indices outside the data set of {dataset_size}")
        counts += torch.bincount(index, minlength=dataset_size)
    groups: dict[tuple[int, ...], list[int]] = {}
    for rank, indices in enumerate(shards):
        groups.setdefault(tuple(sorted(indices)), []).append(rank)
    identical = tuple(tuple(ranks) for ranks in groups.values() if len(ranks) > 1)
    return ShardReport(world=len(shards), dataset_size=dataset_size, missing=int((counts == 0).sum()),
                       duplicates=int((counts - 1).clamp(min=0).sum()), identical=identical)


def check_shards(shards: list[list[int]], dataset_size: int) -> None:
    """Stop with an explanation unless the shards are disjoint and cover the data set (padding and drop_last aside)."""
    report = shard_report(shards, dataset_size)
    if report.world <= 1 or report.padded or report.dropped:
        return
    if report.identical and len(report.identical[0]) == report.world:
        raise LaunchError(
            f"sharding audit: all {report.world} ranks will read the same {len(shards[0])} samples this epoch, "
            f"so {report.world} ranks do the work of one (no speed-up, {report.world}x the steps).\n{FIX}")
    said = []
    if report.identical:
        said.append("ranks " + "; ".join(" and ".join(map(str, g)) for g in report.identical)
                    + " read exactly the same samples (a sampler given the local rank instead of the global one?)")
    if report.missing:
        said.append(f"{report.missing} of {dataset_size} samples are never seen")
    if report.duplicates:
        said.append(f"shards overlap by {report.duplicates} samples")
    raise LaunchError(f"sharding audit: {'; '.join(said)}.\n{FIX}")


def audit_loader(loader: DataLoader, dataset_size: int) -> None:
    """Exchange each rank's sample indices for this epoch and check them (needs a process group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    sampler = loader.sampler
    indices = [int(i) for i in sampler] if sampler is not None else list(range(dataset_size))
    gathered: list[list[int] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, indices)
    check_shards([g or [] for g in gathered], dataset_size)


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
