"""The C++ side of ``hpc-run export`` driven from Python: build examples/cpp, run it, time it.

The build is the two cmake lines the README gives, against the libtorch inside the installed torch
wheel (``torch.utils.cmake_prefix_path``). Tests use it to compare C++ with PyTorch; the inference
benchmark uses it to time the package from C++.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from . import tensor_file
from .errors import LaunchError

SOURCE = Path(__file__).resolve().parent.parent / "examples" / "cpp"
BINARY = "aoti_infer"


def build(build_dir: Path) -> Path:
    """Configure and build examples/cpp in ``build_dir`` (incremental); returns the program's path."""
    if not (SOURCE / "CMakeLists.txt").is_file():
        raise LaunchError(f"{SOURCE} is missing: the C++ example lives in a checkout of hpc_runner, not in the wheel")
    missing = [tool for tool in ("cmake", "g++") if shutil.which(tool) is None]
    if missing:
        raise LaunchError(f"building the C++ example needs {' and '.join(missing)}\n  hint: apt-get install g++ cmake")
    _run(["cmake", "-S", str(SOURCE), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
          f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"])
    _run(["cmake", "--build", str(build_dir), "-j", "2"])
    return build_dir / BINARY


def infer(binary: Path, package: Path, x: torch.Tensor) -> torch.Tensor:
    """The package's output for ``x``, computed by the C++ program."""
    with tempfile.TemporaryDirectory() as tmp:
        inputs, outputs = Path(tmp, "x.tensor"), Path(tmp, "y.tensor")
        tensor_file.write(x, inputs)
        _run([str(binary), str(package), str(inputs), str(outputs)])
        return tensor_file.read(outputs)


def seconds_per_call(binary: Path, package: Path, x: torch.Tensor, iterations: int, threads: int) -> float:
    """The C++ program's own timing of ``iterations`` calls on ``x`` (after warm-up, startup excluded)."""
    with tempfile.TemporaryDirectory() as tmp:
        inputs = tensor_file.write(x, Path(tmp, "x.tensor"))
        out = _run([str(binary), str(package), str(inputs), "--bench", str(iterations), "--threads", str(threads)])
    return float(json.loads(out.strip().splitlines()[-1])["seconds_per_call"])


def _run(argv: list[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise LaunchError(f"{' '.join(argv[:3])} ... failed (exit {result.returncode}):\n"
                          f"{(result.stdout + result.stderr)[-3000:]}")
    return result.stdout
