"""The demo emulator's model factory for ``hpc-run export``: what a spec's ``export:`` section names.

A factory of your own looks the same: it takes the entry's params it needs (``hidden`` here) as
keyword arguments and returns the untrained ``nn.Module``; export loads the trained weights.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from ..schema import ExportSpec
from . import emulator

ENTRY = "hpc_runner.demo.emulator:train"  # runs of this entry need no export section
# What `export: {model: ..., input_shape: [...]}` would say for the demo.
EXPORT = ExportSpec(model="hpc_runner.demo.emulator_export:model", input_shape=(emulator.IN_DIM,))


def model(**params: Any) -> nn.Module:
    """The emulator's MLP as its run built it: the run's params over ``emulator.train``'s defaults."""
    defaults = {name: p.default for name, p in inspect.signature(emulator.train).parameters.items()
                if p.default is not inspect.Parameter.empty}
    merged = {**defaults, **params}
    return emulator.build_model(merged["hidden"], merged["seed"], emulator.DTYPES[merged["dtype"]])
