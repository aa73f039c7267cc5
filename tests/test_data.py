"""The sharding audit: overlapping or missing shards stop training with an explanation."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DistributedSampler, TensorDataset

from hpc_runner.data import ShardDigest, check_shards, digest
from hpc_runner.errors import LaunchError

N = 1000
DATA = TensorDataset(torch.arange(N))


def shard_digests(world: int, **kwargs: object) -> list[ShardDigest]:
    return [digest(list(DistributedSampler(DATA, num_replicas=world, rank=r, shuffle=True, seed=1, **kwargs)))
            for r in range(world)]


@pytest.mark.parametrize("world", [2, 3, 4, 7])
def test_distributed_sampler_passes(world: int) -> None:
    check_shards(shard_digests(world), N)


def test_every_rank_reading_everything_is_caught() -> None:
    """Seed 000: no DistributedSampler, so each rank shuffles the whole data set itself."""
    digests = [digest(torch.randperm(N, generator=torch.Generator().manual_seed(r)).tolist()) for r in range(4)]
    with pytest.raises(LaunchError, match="(?s)all 4 ranks will read the same 1000 samples.*DistributedSampler"):
        check_shards(digests, N)


def test_missing_samples_are_caught() -> None:
    digests = [digest(list(range(0, 400))), digest(list(range(400, 800)))]
    with pytest.raises(LaunchError, match="200 samples are never seen"):
        check_shards(digests, N)


def test_overlap_is_caught() -> None:
    digests = [digest(list(range(0, 700))), digest(list(range(300, 1000)))]
    with pytest.raises(LaunchError, match="shards overlap by 400 samples"):
        check_shards(digests, N)


def test_digest_ignores_order_but_not_content() -> None:
    assert digest([3, 1, 2]) == digest([1, 2, 3])
    assert digest([1, 2, 3]) != digest([1, 2, 4])
