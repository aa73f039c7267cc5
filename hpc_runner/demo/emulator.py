"""The demo emulator: an MLP regression on synthetic data, sharded and trained with DDP.

An example to copy: a plain training loop with sharded loading, one checkpoint writer, resume,
and a stop for requeue that every rank agrees on.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .. import checkpoint
from ..data import audit_loader, shard_loader, synthetic_regression
from ..errors import LaunchError
from ..data_plan import data_plan

log = logging.getLogger(__name__)
IN_DIM, OUT_DIM = 8, 4
STOP_CHECK_EVERY = 10  # default steps between the (collective) checks for a stop signal
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


@dataclass
class _Run:
    """What one training run holds between epochs."""

    model: nn.Module
    ddp: nn.Module
    optimizer: torch.optim.Optimizer
    ckpt_path: Path
    history: list[dict[str, float]] = field(default_factory=list)
    start_epoch: int = 0
    start_step: int = 0

    def save(self, ctx: Any, epoch: int, step: int) -> None:
        """Rank 0 writes the checkpoint atomically, with the run's fingerprint, while the others wait."""
        ctx.save_checkpoint({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                             "epoch": epoch, "step": step, "history": self.history}, self.ckpt_path)


def _start(ctx: Any, hidden: int, lr: float, seed: int, dtype: torch.dtype) -> _Run:
    """Build the model and optimizer; resume from the run's checkpoint where there is one."""
    model = build_model(hidden, seed, dtype).to(ctx.device)
    ddp = DistributedDataParallel(model) if ctx.distributed else model
    run = _Run(model=model, ddp=ddp, optimizer=torch.optim.SGD(ddp.parameters(), lr=lr, momentum=0.9),
               ckpt_path=ctx.output_dir / checkpoint.CHECKPOINT_NAME)
    state = ctx.load_checkpoint(run.ckpt_path)  # one read per job; another run's checkpoint is refused
    if state is not None:
        model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.start_epoch, run.start_step, run.history = state["epoch"], state["step"], state["history"]
        saved_world = state.get("world_size", ctx.env.world_size)
        if saved_world != ctx.env.world_size and run.start_step:
            # Mid-epoch positions belong to the old shards: restart this epoch (weights and optimizer kept).
            ctx.print(f"world size changed from {saved_world} to {ctx.env.world_size}: resuming from the start "
                      f"of epoch {run.start_epoch + 1} instead of step {run.start_step}")
            run.start_step = 0
        ctx.print(f"resuming from {run.ckpt_path}: epoch {run.start_epoch + 1}, step {run.start_step} "
                  f"(restart {ctx.restart_count})")
    return run


def train(ctx: Any, epochs: int = 3, hidden: int = 64, lr: float = 0.01, seed: int = 0, dtype: str = "float32",
          after_step: Callable[[int], None] | None = None, stop_check_every: int = STOP_CHECK_EVERY) -> dict[str, Any]:
    """Train, checkpoint every epoch (rank 0, atomically), resume from the latest checkpoint.

    Every ``stop_check_every`` steps all ranks ask together whether to stop for a requeue (0: never).
    ``after_step(global_step)`` is called after every optimizer step (fault drills hook in there).
    """
    data = ctx.config.data
    if data is None:
        raise LaunchError("the emulator needs 'data' in the job spec: samples and batch_size")
    torch_dtype = DTYPES[dtype]
    train_set = synthetic_regression(data.samples, IN_DIM, OUT_DIM, seed, split=0, dtype=torch_dtype)
    val_set = synthetic_regression(max(data.val_samples, 1), IN_DIM, OUT_DIM, seed, split=1, dtype=torch_dtype)
    loader = shard_loader(train_set, data.batch_size, ctx.env.rank, ctx.env.world_size, shuffle=True, seed=seed)
    val_loader = shard_loader(val_set, 1024, ctx.env.rank, ctx.env.world_size, shuffle=False)
    plan = data_plan(data.samples, data.batch_size, ctx.env.world_size)
    assert len(loader) == plan.steps_per_epoch, (len(loader), plan)  # data_plan.py and torch agree
    run = _start(ctx, hidden, lr, seed, torch_dtype)
    ctx.print(f"world size {ctx.env.world_size}; samples per rank {plan.samples_per_rank}; "
              f"steps per epoch {plan.steps_per_epoch}; effective batch {plan.effective_batch}")
    if run.start_epoch >= epochs:  # resubmitted after its last epoch (every rank read the same checkpoint)
        return _already_trained(ctx, run, plan, epochs)
    # Throughput after warm-up: the first epoch of this run (imports, allocator, first
    # collectives) is left out when there is more than one.
    timed_samples, timed_seconds = 0, 0.0
    for epoch in range(run.start_epoch, epochs):
        loader.sampler.set_epoch(epoch)
        if data.audit and epoch == run.start_epoch:
            audit_loader(loader, len(train_set))
        started = time.perf_counter()
        stopped_at, total, count = _train_epoch(ctx, run, loader, (epoch, epochs), plan.steps_per_epoch, after_step,
                                                stop_check_every)
        if stopped_at is not None:
            run.save(ctx, epoch, stopped_at)
            ctx.print(f"stopping at epoch {epoch + 1} step {stopped_at} for a requeue; checkpoint saved")
            return {"stopped": True, "epoch": epoch, "step": stopped_at}
        if epoch > run.start_epoch or epochs - run.start_epoch == 1:
            timed_samples += count
            timed_seconds += time.perf_counter() - started
        _end_epoch(ctx, run, val_loader, epoch, epochs, total, count)
    throughput = _mean_across_ranks(timed_samples, 1, ctx.distributed) * ctx.env.world_size / max(timed_seconds, 1e-9)
    return _finish(ctx, run, plan, epochs, throughput)


def _train_epoch(ctx: Any, run: _Run, loader: Any, which: tuple[int, int], steps: int,
                 after_step: Callable[[int], None] | None, check_every: int) -> tuple[int | None, float, int]:
    """One epoch (or its rest, after a resume); returns (step it stopped at for a requeue, loss sum, samples)."""
    epoch, epochs = which
    loss_fn = nn.MSELoss()
    run.ddp.train()
    total, count = 0.0, 0
    skip = run.start_step if epoch == run.start_epoch else 0
    progress = _progress(ctx, steps, epoch, epochs)
    for step, (x, y) in enumerate(loader):
        progress.update(1)
        if step < skip:
            continue
        x, y = x.to(ctx.device), y.to(ctx.device)
        run.optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(run.ddp(x), y)
        loss.backward()
        run.optimizer.step()
        total += float(loss.detach()) * len(x)
        count += len(x)
        if after_step is not None:
            after_step(epoch * steps + step)
        if check_every and (step + 1) % check_every == 0 and ctx.stop_requested():
            progress.close()
            return step + 1, total, count
    progress.close()
    return None, total, count


def _end_epoch(ctx: Any, run: _Run, val_loader: Any, epoch: int, epochs: int, total: float, count: int) -> None:
    train_loss = _mean_across_ranks(total, count, ctx.distributed)
    val_loss = _evaluate(run.ddp, val_loader, nn.MSELoss(), ctx.device, ctx.distributed)
    run.history.append({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss})
    ctx.print(f"epoch {epoch + 1}/{epochs} - train {train_loss:.6f}, val {val_loss:.6f}")
    run.save(ctx, epoch + 1, 0)


def _already_trained(ctx: Any, run: _Run, plan: Any, epochs: int) -> dict[str, Any]:
    """Nothing left to train: the finished run's metrics.json stands (this run measured no throughput)."""
    path = ctx.output_dir / "metrics.json"
    ctx.print(f"the checkpoint holds all {epochs} epoch(s): nothing to train; {path} is kept")
    if path.exists():
        return json.loads(path.read_text())
    return _finish(ctx, run, plan, epochs, None)


def _finish(ctx: Any, run: _Run, plan: Any, epochs: int, throughput: float | None) -> dict[str, Any]:
    """Metrics on every rank; rank 0 writes metrics.json and the loss plot."""
    history = run.history
    metrics = {
        "world_size": ctx.env.world_size,
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
        ctx.print(f"wrote {ctx.output_dir / 'metrics.json'}, {ctx.output_dir / 'loss.png'} and {run.ckpt_path}")
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
