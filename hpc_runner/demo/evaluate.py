"""The demo's evaluation step: a finished emulator run's checkpoint scored on a data split, written as eval.json.

Run as a chain step (``then:`` in jobs/train_then_evaluate.yaml) it finds the run through
``HPC_RUNNER_PARENT_OUTPUT_DIR``; on its own, give ``run_dir`` in its params. It rebuilds the model
the run recorded in run.json (width, seed, dtype), loads the weights of its checkpoint, and computes
the mean squared error on the split the run's data section describes: ``val`` (the validation set
the run scored itself on) or ``train``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import checkpoint
from ..data import synthetic_regression
from ..dependency import parent_output_dir
from ..errors import InputError
from ..export import read_run
from . import emulator

EMULATOR_ENTRY = "hpc_runner.demo.emulator:train"
SPLITS = {"train": 0, "val": 1}  # synthetic_regression's split numbers, as the emulator draws them


def evaluate(ctx: Any, run_dir: str | None = None, split: str = "val", batch_size: int = 1024) -> dict[str, Any]:
    """Score ``run_dir``'s (or the parent job's) final checkpoint on ``split``; rank 0 writes eval.json."""
    if split not in SPLITS:
        raise InputError(f"split {split!r}: choose one of {', '.join(SPLITS)}")
    run = read_run(Path(parent_output_dir(run_dir, os.environ)))  # refuses a directory with no run.json or checkpoint
    if run.entry != EMULATOR_ENTRY:
        raise InputError(f"{run.run_dir} was trained by {run.entry}; this evaluation rebuilds the demo emulator's "
                         f"model only ({EMULATOR_ENTRY})\n  hint: copy this file and build your own model in it")
    config = json.loads((run.run_dir / "run.json").read_text())["config"]
    data = config.get("data") or {}
    samples = data.get("val_samples", 0) if split == "val" else data.get("samples", 0)
    if not samples:
        raise InputError(f"{run.run_dir}/run.json records no {split} samples to evaluate on")
    params = run.params
    dtype = emulator.DTYPES[params.get("dtype", "float32")]
    model = emulator.build_model(params.get("hidden", 64), params.get("seed", 0), dtype)
    state = checkpoint.load(run.checkpoint)
    model.load_state_dict(state["model"])
    model.eval()
    inputs = synthetic_regression(samples, emulator.IN_DIM, emulator.OUT_DIM, params.get("seed", 0),
                                  split=SPLITS[split], dtype=dtype)
    total = 0.0
    with torch.no_grad():
        for start in range(0, samples, batch_size):
            x, y = inputs.tensors[0][start:start + batch_size], inputs.tensors[1][start:start + batch_size]
            total += float(nn.functional.mse_loss(model(x), y)) * len(x)
    result = {"run_dir": str(run.run_dir), "checkpoint": str(run.checkpoint), "checkpoint_epoch": state.get("epoch"),
              "split": split, "samples": samples, "mse": total / samples,
              "parent_job_id": os.environ.get("HPC_RUNNER_PARENT_JOB_ID")}
    if ctx.is_main:
        (ctx.output_dir / "eval.json").write_text(json.dumps(result, indent=1) + "\n")
        ctx.print(f"{split} MSE of {run.checkpoint} (epoch {result['checkpoint_epoch']}): {result['mse']:.6f}; "
                  f"wrote {ctx.output_dir / 'eval.json'}")
    return result

