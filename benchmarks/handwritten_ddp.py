"""A hand-written DDP loop on the emulator's model and data: the baseline for entrypoint overhead.

Started with torchrun-style variables (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT). Prints
samples/s after the first (warm-up) epoch, measured like the emulator does.
"""

import json
import sys
import time

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from hpc_runner.data import synthetic_regression
from hpc_runner.demo.emulator import IN_DIM, OUT_DIM, build_model

samples, batch, hidden, epochs = (int(a) for a in sys.argv[1:5])
torch.set_num_threads(1)
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
data = synthetic_regression(samples, IN_DIM, OUT_DIM, seed=0)
sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=0)
loader = DataLoader(data, batch_size=batch, sampler=sampler)
model = DistributedDataParallel(build_model(hidden, 0, torch.float32))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
loss_fn = nn.MSELoss()
timed_samples, timed_seconds = 0, 0.0
for epoch in range(epochs):
    sampler.set_epoch(epoch)
    started, seen = time.perf_counter(), 0
    for x, y in loader:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()
        seen += len(x)
    if epoch > 0:
        timed_samples += seen
        timed_seconds += time.perf_counter() - started
total = torch.tensor([float(timed_samples)])
dist.all_reduce(total)
if rank == 0:
    print(json.dumps({"samples_per_second": float(total) / timed_seconds}), flush=True)
dist.barrier()
dist.destroy_process_group()
