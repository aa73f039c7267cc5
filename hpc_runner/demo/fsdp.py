"""The demo emulator trained with FSDP2 (``fully_shard``) and sharded, resumable checkpoints.

An example to copy: every Linear layer and the whole model are sharded across the ranks (each rank
holds a slice of every weight and of AdamW's state); every rank saves its own slice with
``torch.distributed.checkpoint`` (:mod:`hpc_runner.sharded_checkpoint`); the latest complete save
is resumed after a requeue or a crash, on any world size. Shown over Gloo on CPU (jobs/fsdp.yaml).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint import FileSystemWriter
from torch.distributed.checkpoint.storage import StorageWriter
from torch.distributed.fsdp import fully_shard

from .. import sharded_checkpoint
from ..data import audit_loader, shard_loader, synthetic_regression
from ..data_plan import data_plan
from ..errors import LaunchError
from ..run_context import RunContext
from .emulator import IN_DIM, OUT_DIM, STOP_CHECK_EVERY, build_model


@dataclass(frozen=True)
class LossPoint:
    """After one optimizer step: the loss on that step's batches and on the fixed validation set."""

    step: int
    train_loss: float  # the mean over every rank's batch: jumps by up to ~10% from one step to the next
    val_loss: float  # the same samples after every step: what to compare across a resume
    world_size: int


@dataclass(frozen=True)
class Resume:
    """Where a run came back: after optimizer step ``step``, saved by one world size, resumed by another."""

    step: int
    saved_world_size: int
    world_size: int
    restart_count: int


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint's commit (plain JSON)."""

    epoch: int = 0  # epochs finished
    step_in_epoch: int = 0  # steps of the current epoch done
    step: int = 0  # optimizer steps done in the whole run
    history: list[LossPoint] = field(default_factory=list)
    resumes: list[Resume] = field(default_factory=list)

    @classmethod
    def from_json(cls, saved: dict[str, Any]) -> Progress:
        """Rebuild what :func:`dataclasses.asdict` wrote."""
        return cls(epoch=saved["epoch"], step_in_epoch=saved["step_in_epoch"], step=saved["step"],
                   history=[LossPoint(**p) for p in saved["history"]], resumes=[Resume(**r) for r in saved["resumes"]])


def shard_model(model: nn.Module) -> nn.Module:
    """FSDP2: each Linear layer is its own unit (gathered just before use), then the root."""
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            fully_shard(layer)
    return fully_shard(model)


def _resume(ctx: RunContext, model: nn.Module, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> Progress:
    """The progress of the latest complete save, loaded into model and optimizer (any world size), or a fresh start."""
    commit = sharded_checkpoint.load(ctx, model, optimizer)
    if commit is None:
        return Progress()
    progress = Progress.from_json(commit.progress)
    progress.resumes.append(Resume(step=progress.step, saved_world_size=commit.world_size,
                                   world_size=ctx.env.world_size, restart_count=ctx.restart_count))
    if commit.world_size != ctx.env.world_size and progress.step_in_epoch:
        # Mid-epoch positions belong to the old shards of the data: redo this epoch (weights and optimizer kept).
        ctx.print(f"world size changed from {commit.world_size} to {ctx.env.world_size}: resuming from the start "
                  f"of epoch {progress.epoch + 1} instead of its step {progress.step_in_epoch}")
        progress.step_in_epoch = 0
    ctx.print(f"resuming from {sharded_checkpoint.folder(ctx, commit.step)} (saved by {commit.world_size} ranks, "
              f"now {ctx.env.world_size}): epoch {progress.epoch + 1}, "
              f"step {progress.step_in_epoch} of {steps_per_epoch} (restart {ctx.restart_count})")
    return progress


def _mean_across_ranks(total: float, count: int, distributed: bool) -> float:
    values = torch.tensor([total, float(count)], dtype=torch.float64)
    if distributed:
        dist.all_reduce(values)
    return float(values[0] / max(values[1], 1.0))


def _evaluate(ctx: RunContext, model: nn.Module, loader: Any) -> float:
    """The validation loss over every rank's shard of the validation set."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for x, y in loader:
            total += float(nn.functional.mse_loss(model(x.to(ctx.device)), y.to(ctx.device))) * len(x)
            count += len(x)
    model.train()
    return _mean_across_ranks(total, count, ctx.distributed)


@dataclass
class _Loop:
    """What the training loop holds: the sharded model, its optimizer, the data and where training stands."""

    ctx: RunContext
    model: nn.Module
    optimizer: torch.optim.Optimizer
    loader: Any
    val_loader: Any
    progress: Progress
    writer: Callable[[Path], StorageWriter]

    def save(self) -> None:
        """Every rank writes its shard into this step's folder; rank 0 commits it."""
        sharded_checkpoint.save(self.ctx, self.model, self.optimizer, self.progress.step, asdict(self.progress),
                                storage_writer=self.writer)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One optimizer step, its losses recorded."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(self.model(x.to(self.ctx.device)), y.to(self.ctx.device))
        loss.backward()
        self.optimizer.step()
        self.progress.step += 1
        train_loss = _mean_across_ranks(float(loss.detach()) * len(x), len(x), self.ctx.distributed)
        val_loss = _evaluate(self.ctx, self.model, self.val_loader)
        self.progress.history.append(LossPoint(self.progress.step, train_loss, val_loss, self.ctx.env.world_size))


def train(ctx: RunContext, epochs: int = 4, hidden: int = 64, lr: float = 0.01, seed: int = 0,
          stop_check_every: int = STOP_CHECK_EVERY, after_step: Callable[[int], None] | None = None,
          storage_writer: Callable[[Path], StorageWriter] | None = None) -> dict[str, Any]:
    """Train with FSDP2, save a sharded checkpoint every epoch and on a stop for requeue, resume the latest.

    ``after_step(step)`` runs after every optimizer step and ``storage_writer(folder)`` makes the DCP
    writer of each save (default: files in the step folder); fault drills hook in there.
    """
    data = ctx.config.data
    if data is None or data.val_samples < 1:
        raise LaunchError("the FSDP demo needs 'data' in the job spec with samples, batch_size and val_samples "
                          "(the validation loss it records after every step)")
    train_set = synthetic_regression(data.samples, IN_DIM, OUT_DIM, seed, split=0)
    val_set = synthetic_regression(data.val_samples, IN_DIM, OUT_DIM, seed, split=1)
    plan = data_plan(data.samples, data.batch_size, ctx.env.world_size)
    model = shard_model(build_model(hidden, seed, torch.float32).to(ctx.device))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    rank, world = ctx.env.rank, ctx.env.world_size
    loop = _Loop(ctx, model, optimizer,
                 loader=shard_loader(train_set, data.batch_size, rank, world, shuffle=True, seed=seed),
                 val_loader=shard_loader(val_set, 1024, rank, world, shuffle=False),
                 progress=_resume(ctx, model, optimizer, plan.steps_per_epoch), writer=storage_writer or FileSystemWriter)
    ctx.print(f"FSDP over {ctx.env.world_size} ranks; steps per epoch {plan.steps_per_epoch}; "
              f"effective batch {plan.effective_batch}")
    progress = loop.progress
    while progress.epoch < epochs:
        loop.loader.sampler.set_epoch(progress.epoch)
        if data.audit and not progress.step_in_epoch:
            audit_loader(loop.loader, len(train_set))
        if _train_epoch(loop, after_step, stop_check_every):
            loop.save()
            ctx.print(f"stopping at epoch {progress.epoch + 1} step {progress.step_in_epoch} for a requeue; "
                      "sharded checkpoint saved")
            return {"stopped": True, "step": progress.step}
        progress.epoch, progress.step_in_epoch = progress.epoch + 1, 0
        ctx.print(f"epoch {progress.epoch}/{epochs} - val {progress.history[-1].val_loss:.6f} (step {progress.step})")
        loop.save()
    return _finish(ctx, progress, epochs)


def _train_epoch(loop: _Loop, after_step: Callable[[int], None] | None, check_every: int) -> bool:
    """The rest of the current epoch; True where every rank agreed to stop for a requeue."""
    loop.model.train()
    for index, (x, y) in enumerate(loop.loader):
        if index < loop.progress.step_in_epoch:
            continue  # done before the resume
        loop.step(x, y)
        loop.progress.step_in_epoch = index + 1
        if after_step is not None:
            after_step(loop.progress.step)
        if check_every and loop.progress.step_in_epoch % check_every == 0 and loop.ctx.stop_requested():
            return True
    return False


def _finish(ctx: RunContext, progress: Progress, epochs: int) -> dict[str, Any]:
    """Metrics on every rank; rank 0 writes metrics.json (the loss of every step, every resume)."""
    metrics = {"world_size": ctx.env.world_size, "epochs": epochs, "steps": progress.step,
               "restart_count": ctx.restart_count,
               "final_val_loss": progress.history[-1].val_loss if progress.history else None,
               "history": [asdict(p) for p in progress.history], "resumes": [asdict(r) for r in progress.resumes]}
    if ctx.is_main:
        (ctx.output_dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        ctx.print(f"wrote {ctx.output_dir / 'metrics.json'}")
    return metrics
