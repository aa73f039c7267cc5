"""Inference speed of the trained emulator three ways: Python eager, torch.compile, and the
AOTInductor package that `hpc-run export` writes, run from C++ (examples/cpp).

Latency at batch 1 and throughput at batch 1024, each the median of interleaved rounds, with the
same intra-op thread count everywhere. Python is timed in-process after warm-up; C++ times itself
inside the program (its start-up and the package load are left out, as a server pays them once).

    make bench ARGS=inference                       # or: .venv/bin/python benchmarks/inference.py --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hpc_runner import cpp_example, export, spec  # noqa: E402
from hpc_runner.demo import emulator_export  # noqa: E402

LATENCY_BATCH, THROUGHPUT_BATCH = 1, 1024
CALLS = {LATENCY_BATCH: 2000, THROUGHPUT_BATCH: 200}  # per round
PATHS = ("Python eager", "torch.compile", "C++ (AOTInductor package)")


@dataclass(frozen=True)
class Timing:
    """Median seconds per call of one way of running the model, at the two batch sizes."""

    path: str
    latency_s: float  # one call at LATENCY_BATCH
    call_s: float  # one call at THROUGHPUT_BATCH

    @property
    def samples_per_s(self) -> float:
        """Throughput at THROUGHPUT_BATCH."""
        return THROUGHPUT_BATCH / self.call_s


def log(text: str) -> None:
    print(f"[inference] {text}", flush=True)


def python_seconds(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, calls: int) -> float:
    """Seconds per call after warm-up (torch.compile compiles during the warm-up)."""
    with torch.inference_mode():
        for _ in range(20):
            model(x)
        started = time.perf_counter()
        for _ in range(calls):
            model(x)
        return (time.perf_counter() - started) / calls


def measure(model: torch.nn.Module, package: Path, program: Path, threads: int, rounds: int) -> list[Timing]:
    """Median seconds per call of each path at each batch size, rounds interleaved so drift hits all alike."""
    compiled = torch.compile(model)
    runners: dict[str, Callable[[torch.Tensor, int], float]] = {
        PATHS[0]: lambda x, n: python_seconds(model, x, n),
        PATHS[1]: lambda x, n: python_seconds(compiled, x, n),
        PATHS[2]: lambda x, n: cpp_example.seconds_per_call(program, package, x, n, threads),
    }
    inputs = {batch: torch.randn(batch, *emulator_export.EXPORT.input_shape) for batch in CALLS}
    with torch.inference_mode():  # torch.compile sees both batch sizes before any timing, as a server would
        for x in inputs.values():
            compiled(x)
    samples: dict[tuple[str, int], list[float]] = {(path, batch): [] for path in PATHS for batch in CALLS}
    for round_ in range(rounds):
        log(f"round {round_ + 1}/{rounds}")
        for batch, x in inputs.items():
            for path, run in runners.items():
                samples[path, batch].append(run(x, CALLS[batch]))
    return [Timing(path, statistics.median(samples[path, LATENCY_BATCH]), statistics.median(samples[path, THROUGHPUT_BATCH]))
            for path in PATHS]


def table(timings: list[Timing], hidden: int, threads: int, rounds: int) -> list[str]:
    """The figures as a Markdown table; ratios are speed-ups over eager (above 1: faster)."""
    eager = timings[0]
    lines = [f"Emulator MLP (8 -> {hidden} -> {hidden} -> 4, float32, jobs/emulator.yaml), {threads} thread(s), "
             f"median of {rounds} interleaved rounds ({CALLS[LATENCY_BATCH]} calls at batch {LATENCY_BATCH}, "
             f"{CALLS[THROUGHPUT_BATCH]} at batch {THROUGHPUT_BATCH}); torch {torch.__version__}.", "",
             f"| path | latency, batch {LATENCY_BATCH} | vs eager | throughput, batch {THROUGHPUT_BATCH} | vs eager |",
             "| --- | --- | --- | --- | --- |"]
    for t in timings:
        lines.append(f"| {t.path} | {t.latency_s * 1e6:.1f} us | {eager.latency_s / t.latency_s:.2f}x | "
                     f"{t.samples_per_s / 1e6:.2f} M samples/s | {t.samples_per_s / eager.samples_per_s:.2f}x |")
    return lines


def main(argv: list[str] | None = None) -> list[Timing]:
    """Export the shipped emulator's model, build the C++ example, time the three paths, print the table.

    Returns the timings (eager first) so that bench.py can record ratios in BENCHMARKS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads for every path (default 1)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    params = spec.load(ROOT / "jobs" / "emulator.yaml").entrypoint.params
    model = emulator_export.model(**params).eval()  # weights do not change the speed: no training needed
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp) / "emulator.pt2"
        log("compiling the AOTInductor package (as hpc-run export does)")
        export.compile_package(export.capture(model, emulator_export.EXPORT), package, log)
        log("building examples/cpp")
        program = cpp_example.build(ROOT / "examples" / "cpp" / "build")
        timings = measure(model, package, program, args.threads, args.rounds)
    lines = table(timings, params["hidden"], args.threads, args.rounds)
    out = ROOT / "bench-out" / "inference.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    log(f"wrote {out}")
    return timings


if __name__ == "__main__":
    main()
