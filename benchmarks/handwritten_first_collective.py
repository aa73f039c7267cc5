"""The minimal hand-written Gloo job: what a careful user writes without hpc_runner."""

import datetime
import os
import time

import torch
import torch.distributed as dist

rank, world = int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_NTASKS"])
os.environ.setdefault("MASTER_ADDR", "127.0.0.1")  # the testbed's NodeAddr, known by hand
os.environ.setdefault("MASTER_PORT", str(20000 + int(os.environ["SLURM_JOB_ID"]) % 10000))
dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=300))
tensor = torch.ones(1)
dist.all_reduce(tensor)
if rank == 0:
    print(f"FIRST_COLLECTIVE {time.time():.6f} sum={tensor.item():.0f}", flush=True)
dist.barrier()
dist.destroy_process_group()
