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


@pytest.mark.slow
def test_audit_stops_a_real_job_whose_sampler_is_missing(tmp_path) -> None:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    spec = tmp_path / "nosampler.yaml"
    spec.write_text(f"name: nosampler\nmode: gloo\nnodes: 2\noutput_dir: {tmp_path}/out\n"
                    "entrypoint:\n  function: tests.fixtures.no_sampler:run\n")
    result = subprocess.run([str(Path(sys.executable).parent / "hpc-run"), "submit", str(spec), "--executor", "local", "--wait"],
                            cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "sharding audit: all 2 ranks will read the same 512 samples" in result.stderr
    assert "Traceback" not in result.stderr.split("error:")[0]
