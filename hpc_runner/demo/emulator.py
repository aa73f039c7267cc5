"""The seed-004 emulator: an MLP regression on synthetic data, sharded and trained with DDP."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .. import checkpoint
from ..data import audit_loader, shard_loader, synthetic_regression
from ..errors import LaunchError
from ..layout import data_plan

log = logging.getLogger(__name__)
IN_DIM, OUT_DIM = 8, 4
STOP_CHECK_EVERY = 10  # steps between the (collective) checks for a time-limit signal
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def build_model(hidden: int, seed: int, dtype: torch.dtype) -> nn.Module:
    """The same initial MLP on every rank (seeded)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(IN_DIM, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                         nn.Linear(hidden, OUT_DIM)).to(dtype)


def _mean_across_ranks(total: float, count: int, distributed: bool) -> float:
    values = torch.tensor([total, float(count)], dtype=torch.float64)
    if distributed:
        dist.all_reduce(values)
    return float(values[0] / max(values[1], 1.0))


def _save_plot(history: list[dict[str, float]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        log.warning("matplotlib is missing: no loss plot (pip install 'hpc_runner[plot]')")
        return False
    fig, ax = plt.subplots(figsize=(5, 3.2))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train")
    ax.plot(epochs, [h["val_loss"] for h in history], marker="s", label="validation")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel("MSE loss")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return True


def train(ctx: Any, epochs: int = 3, hidden: int = 64, lr: float = 0.01, seed: int = 0,
          dtype: str = "float32", step_sleep: float = 0.0, die_rank: int = -1, die_at_step: int = -1) -> dict[str, Any]:
    """Train, checkpoint every epoch (rank 0, atomically), resume from the latest checkpoint.

    ``step_sleep`` slows steps down and ``die_rank``/``die_at_step`` SIGKILL one rank: both exist
    for fault drills (a dead rank, a preemption) on small machines.
    """
    data = ctx.config.data
    if data is None:
        raise LaunchError("the emulator needs 'data' in the job spec: samples and batch_size")
    env, distributed = ctx.env, ctx.distributed
    torch_dtype = DTYPES[dtype]
    train_set = synthetic_regression(data.samples, IN_DIM, OUT_DIM, seed, split=0, dtype=torch_dtype)
    val_set = synthetic_regression(max(data.val_samples, 1), IN_DIM, OUT_DIM, seed, split=1, dtype=torch_dtype)
    loader = shard_loader(train_set, data.batch_size, env.rank, env.world_size, shuffle=True, seed=seed)
    val_loader = shard_loader(val_set, 1024, env.rank, env.world_size, shuffle=False)
    plan = data_plan(data.samples, data.batch_size, env.world_size)
    assert len(loader) == plan.steps_per_epoch, (len(loader), plan)  # layout.py and torch agree

    model = build_model(hidden, seed, torch_dtype).to(ctx.device)
    ddp = DistributedDataParallel(model) if distributed else model
    optimizer = torch.optim.SGD(ddp.parameters(), lr=lr, momentum=0.9)
    loss_fn = nn.MSELoss()

    ckpt_path = ctx.output_dir / checkpoint.CHECKPOINT_NAME
    state = checkpoint.load(ckpt_path)
    start_epoch, start_step, history = 0, 0, []
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, start_step, history = state["epoch"], state["step"], state["history"]
        ctx.print(f"resuming from {ckpt_path}: epoch {start_epoch + 1}, step {start_step} "
                  f"(restart {ctx.restart_count})")

    ctx.print(f"world size {env.world_size}; samples per rank {plan.samples_per_rank}; "
              f"steps per epoch {plan.steps_per_epoch}; effective batch {plan.effective_batch}")

    def save(epoch: int, step: int) -> None:
        ctx.barrier()
        if ctx.is_main:
            checkpoint.save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                    "epoch": epoch, "step": step, "history": history}, ckpt_path)
        ctx.barrier()

    # Throughput after warm-up: the first epoch of this run (imports, allocator, first
    # collectives) is left out when there is more than one.
    timed_samples, timed_seconds = 0, 0.0
    for epoch in range(start_epoch, epochs):
        loader.sampler.set_epoch(epoch)
        if data.audit and epoch == start_epoch:
            audit_loader(loader, len(train_set))
        ddp.train()
        total, count = 0.0, 0
        skip = start_step if epoch == start_epoch else 0
        progress = _progress(ctx, plan.steps_per_epoch, epoch, epochs)
        epoch_started, epoch_samples = time.perf_counter(), 0
        for step, (x, y) in enumerate(loader):
            if step < skip:
                progress.update(1)
                continue
            x, y = x.to(ctx.device), y.to(ctx.device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(ddp(x), y)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(x)
            count += len(x)
            epoch_samples += len(x)
            progress.update(1)
            if step_sleep:
                time.sleep(step_sleep)
            if env.rank == die_rank and epoch * plan.steps_per_epoch + step == die_at_step:
                print(f"rank {env.rank}: fault drill, killing myself at step {die_at_step}", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            if (step + 1) % STOP_CHECK_EVERY == 0 and ctx.stop_requested():
                progress.close()
                save(epoch, step + 1)
                ctx.print(f"stopping at epoch {epoch + 1} step {step + 1} for a requeue; checkpoint saved")
                return {"stopped": True, "epoch": epoch, "step": step + 1}
        progress.close()
        if epoch > start_epoch or epochs - start_epoch == 1:
            timed_samples += epoch_samples
            timed_seconds += time.perf_counter() - epoch_started
        train_loss = _mean_across_ranks(total, count, distributed)
        val_loss = _evaluate(ddp, val_loader, loss_fn, ctx.device, distributed)
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss})
        ctx.print(f"epoch {epoch + 1}/{epochs} - train {train_loss:.6f}, val {val_loss:.6f}")
        save(epoch + 1, 0)
    throughput = _mean_across_ranks(timed_samples, 1, distributed) * env.world_size / max(timed_seconds, 1e-9)
    metrics = {
        "world_size": env.world_size,
        "steps_per_epoch": plan.steps_per_epoch,
        "samples_per_rank": plan.samples_per_rank,
        "effective_batch": plan.effective_batch,
        "epochs": epochs,
        "final_train_loss": history[-1]["train_loss"] if history else None,
        "final_val_loss": history[-1]["val_loss"] if history else None,
        "history": history,
        "samples_per_second": throughput,
        "restart_count": ctx.restart_count,
    }
    if ctx.is_main:
        (ctx.output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        _save_plot(history, ctx.output_dir / "loss.png")
        ctx.print(f"wrote {ctx.output_dir / 'metrics.json'}, {ctx.output_dir / 'loss.png'} and {ckpt_path}")
    return metrics


def _evaluate(model: nn.Module, loader: Any, loss_fn: nn.Module, device: torch.device, distributed: bool) -> float:
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            total += float(loss_fn(model(x), y)) * len(x)
            count += len(x)
    return _mean_across_ranks(total, count, distributed)


class _NoProgress:
    def update(self, n: int) -> None:
        """Ignore progress on ranks other than 0."""

    def close(self) -> None:
        """Nothing to close."""


def _progress(ctx: Any, steps: int, epoch: int, epochs: int) -> Any:
    if not ctx.is_main or steps < 50:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=steps, desc=f"epoch {epoch + 1}/{epochs}", mininterval=2.0, leave=False)
