"""What user code gets on every rank: where it runs, where to write, checkpoints that belong to the
run, and whether to stop for a requeue (decided by all ranks together)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from . import checkpoint, environment, requeue
from .errors import LaunchError
from .run_config import RunConfig

T = TypeVar("T")


@dataclass
class RunContext:
    """What user code gets: where it runs, where to write, and whether to stop for a requeue."""

    env: environment.DistEnv
    config: RunConfig
    device: torch.device
    restart_count: int = 0
    code: str | None = None  # the code snapshot's identity (HPC_RUNNER_CODE), None when the job runs unfrozen code

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, metrics and plots."""
        return self.env.rank == 0

    @property
    def distributed(self) -> bool:
        """A process group is up (gloo or nccl mode)."""
        return dist.is_available() and dist.is_initialized()

    @property
    def output_dir(self) -> Path:
        """The run's output directory (created on demand)."""
        path = Path(self.config.output_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def print(self, *args: Any) -> None:
        """Print on rank 0 only, flushed."""
        if self.is_main:
            print(*args, flush=True)

    @property
    def signalled(self) -> bool:
        """This rank received a stop signal (time-limit warning or SIGTERM)."""
        return bool(requeue.received)

    def stop_requested(self) -> bool:
        """True on every rank once any rank got a stop signal (a collective: call it at the same step on all)."""
        return requeue.stop_requested(self.device)

    def barrier(self) -> None:
        """Wait for every rank (no-op in a single process)."""
        if self.distributed:
            dist.barrier()

    def fingerprint(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """What this run's checkpoints must match: entry, params (less durations), data, the code snapshot, ``extra``."""
        data = None if self.config.data is None else {
            k: v for k, v in dataclasses.asdict(self.config.data).items() if k != "audit"}
        code = {"code": self.code} if self.code else {}  # a checkpoint of other code is another run's
        return checkpoint.fingerprint(dataclasses.asdict(self.config.entry), data, {**code, **(extra or {})})

    def checkpoint_path(self, path: str | Path | None = None) -> Path:
        """``path``, or the run's ``checkpoint.pt``."""
        return Path(path) if path else self.output_dir / checkpoint.CHECKPOINT_NAME

    def load_checkpoint(self, path: str | Path | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Rank 0 reads the checkpoint once for the whole job and broadcasts it; another run's is refused
        (``resume: auto``), ignored (``never``) or taken anyway (``force``)."""
        path = self.checkpoint_path(path)

        def read() -> dict[str, Any] | None:
            state = checkpoint.load(path)
            return None if state is None else checkpoint.check_resume(state, self.fingerprint(extra), path, self.config.resume)

        return self.decided_by_main(read)

    def decided_by_main(self, decide: Callable[[], T]) -> T:
        """Rank 0 alone runs ``decide`` (reads files, say) and every rank gets its answer, or its LaunchError."""
        box: list[Any] = [None]
        if self.is_main:
            try:
                box = [("value", decide())]
            except LaunchError as exc:
                box = [("error", str(exc))]
        if self.distributed:
            dist.broadcast_object_list(box, src=0)
        kind, value = box[0]
        if kind == "error":
            raise LaunchError(value)
        return value

    def save_checkpoint(self, state: dict[str, Any], path: str | Path | None = None,
                        extra: dict[str, Any] | None = None) -> Path:
        """Rank 0 writes ``state`` atomically with this run's fingerprint and world size; all ranks wait."""
        path = self.checkpoint_path(path)
        self.barrier()
        if self.is_main:
            checkpoint.save_atomic({**state, checkpoint.FINGERPRINT_KEY: self.fingerprint(extra),
                                    "world_size": self.env.world_size}, path)
        self.barrier()
        return path
