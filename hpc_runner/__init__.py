"""hpc_runner: one job spec -> correct multi-node PyTorch training on SLURM."""

from __future__ import annotations

__version__ = "0.1.0"
