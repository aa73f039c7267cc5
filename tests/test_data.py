"""The sharding audit compares which samples each rank reads: overlap, gaps, ranks sharing a shard."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DistributedSampler, TensorDataset

from hpc_runner.data import check_shards, shard_report
from hpc_runner.errors import LaunchError

N = 1000
DATA = TensorDataset(torch.arange(N))


def shards(world: int, rank_of=lambda r: r, size: int = N, **kwargs: object) -> list[list[int]]:
    data = TensorDataset(torch.arange(size))
    return [list(DistributedSampler(data, num_replicas=world, rank=rank_of(r), shuffle=True, seed=1, **kwargs))
            for r in range(world)]


@pytest.mark.parametrize("world", [2, 3, 4, 7])
def test_distributed_sampler_passes(world: int) -> None:
    check_shards(shards(world), N)


@pytest.mark.parametrize("world", [3, 4, 7])
def test_drop_last_over_a_size_the_world_does_not_divide_passes(world: int) -> None:
    check_shards(shards(world, size=1001, drop_last=True), 1001)
    assert shard_report(shards(world, size=1001, drop_last=True), 1001).missing == 1001 % world


def test_a_sampler_given_the_local_rank_is_caught_though_every_count_is_right() -> None:
    """A 2x2 job whose sampler got LOCAL_RANK: ranks 0 and 2 (and 1 and 3) read the same shard."""
    local = shards(4, rank_of=lambda r: r % 2)
    assert [len(s) for s in local] == [250] * 4  # the counts alone look perfect
    with pytest.raises(LaunchError, match=r"ranks 0 and 2; 1 and 3 read exactly the same samples.*500 of 1000 samples are never seen"):
        check_shards(local, N)


def test_every_rank_reading_everything_is_caught() -> None:
    """No DistributedSampler, so each rank shuffles the whole data set itself."""
    everything = [torch.randperm(N, generator=torch.Generator().manual_seed(r)).tolist() for r in range(4)]
    with pytest.raises(LaunchError, match="(?s)all 4 ranks will read the same 1000 samples.*DistributedSampler"):
        check_shards(everything, N)


def test_missing_samples_are_caught() -> None:
    with pytest.raises(LaunchError, match="200 of 1000 samples are never seen"):
        check_shards([list(range(0, 400)), list(range(400, 800))], N)


def test_overlap_is_caught() -> None:
    with pytest.raises(LaunchError, match="shards overlap by 400 samples"):
        check_shards([list(range(0, 700)), list(range(300, 1000))], N)


def test_indices_outside_the_data_set_are_caught() -> None:
    with pytest.raises(LaunchError, match="rank 1 reads indices outside"):
        check_shards([list(range(500)), list(range(500, 1001))], N)


@pytest.mark.slow
def test_audit_stops_a_real_job_whose_sampler_is_missing(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    spec = tmp_path / "nosampler.yaml"
    spec.write_text(f"name: nosampler\nmode: gloo\nnodes: 2\noutput_dir: {tmp_path}/out\n"
                    "entrypoint:\n  function: tests.fixtures.no_sampler:run\n")
    result = subprocess.run([str(Path(sys.executable).parent / "hpc-run"), "submit", str(spec), "--executor", "local", "--wait"],
                            cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "sharding audit: all 2 ranks will read the same 512 samples" in result.stderr
    assert "Traceback" not in result.stderr
