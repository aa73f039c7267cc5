"""Tensors in the plain file format the C++ example (examples/cpp) reads and writes.

int64 item size (4: float32, 8: float64), int64 rank, int64 sizes[rank], then the values; all
little-endian. No pickle and no zip archive, so a C++ service needs twenty lines to read it.
"""

from __future__ import annotations

import struct
from pathlib import Path

import torch

from .errors import InputError

DTYPES = {4: torch.float32, 8: torch.float64}


def write(tensor: torch.Tensor, path: str | Path) -> Path:
    """Write a float32 or float64 tensor to ``path``."""
    tensor = tensor.detach().contiguous().cpu()
    if tensor.dtype not in DTYPES.values():
        raise InputError(f"{path}: only float32 and float64 tensors are written, not {tensor.dtype}")
    header = struct.pack(f"<qq{tensor.dim()}q", tensor.element_size(), tensor.dim(), *tensor.shape)
    path = Path(path)
    path.write_bytes(header + tensor.numpy().tobytes())  # the machines torch runs on (x86, ARM) are little-endian
    return path


def read(path: str | Path) -> torch.Tensor:
    """The tensor stored at ``path``."""
    raw = Path(path).read_bytes()
    item_size, rank = struct.unpack_from("<qq", raw)
    if item_size not in DTYPES or not 0 <= rank <= 16:
        raise InputError(f"{path}: not a tensor file (item size {item_size}, rank {rank})")
    sizes = struct.unpack_from(f"<{rank}q", raw, 16)
    data = bytearray(raw[16 + 8 * rank:])
    tensor = torch.frombuffer(data, dtype=DTYPES[item_size]) if data else torch.empty(0, dtype=DTYPES[item_size])
    return tensor.reshape(sizes)
