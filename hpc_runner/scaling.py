"""Scaling runs: the same job at several node counts, throughput, speed-up and efficiency."""

from __future__ import annotations

import csv
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from collections.abc import Callable
from typing import Any

from .errors import HpcRunnerError, InputError, JobFailed
from .request import JobRequest


@dataclass(frozen=True)
class ScalingRow:
    """One size of a scaling run."""

    nodes: int
    ranks: int
    samples_per_second: float
    speedup: float
    efficiency: float


def parse_sizes(text: str) -> list[int]:
    """``'1,2,4'`` -> ``[1, 2, 4]``."""
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"--nodes {text!r}: expected a comma-separated list of node counts such as 1,2,4") from None
    if not sizes or any(n < 1 for n in sizes):
        raise InputError(f"--nodes {text!r}: node counts must be whole numbers >= 1")
    return sizes


def measure(requests: dict[int, JobRequest], run_job: Callable[[JobRequest], list[Any]],
            announce: Callable[[str], None]) -> dict[int, float]:
    """Run each node count's request and take rank 0's samples/s after warm-up."""
    throughput: dict[int, float] = {}
    for nodes, request in sorted(requests.items()):
        announce(f"--- {nodes} node(s), {request.world_size} rank(s)")
        results = run_job(request)
        value = results[0].get("samples_per_second") if results and isinstance(results[0], dict) else None
        if value is None:
            raise JobFailed(f"job {request.name}: rank 0 returned no samples_per_second to scale on "
                            "(the emulator does; a function of yours must return it)")
        throughput[nodes] = float(value)
    return throughput


def report(ranks_per_node: int, throughput: dict[int, float], out: Path) -> str:
    """Write scaling.csv and scaling.png into ``out``; return the table."""
    table = rows(ranks_per_node, throughput)
    write_csv(table, out / "scaling.csv")
    write_plot(table, out / "scaling.png")
    return format_table(table) + f"\nwrote {out / 'scaling.csv'} and {out / 'scaling.png'}"


def rows(ranks_per_node: int, throughput: dict[int, float]) -> list[ScalingRow]:
    """Speed-up and efficiency against the smallest size measured."""
    base_nodes = min(throughput)
    base = throughput[base_nodes]
    result = []
    for nodes in sorted(throughput):
        speedup = throughput[nodes] / base if base else 0.0
        result.append(ScalingRow(nodes=nodes, ranks=nodes * ranks_per_node,
                                 samples_per_second=throughput[nodes], speedup=speedup,
                                 efficiency=speedup / (nodes / base_nodes)))
    return result


def format_table(table: list[ScalingRow]) -> str:
    """A plain-text table for the terminal."""
    lines = [f"{'nodes':>5} {'ranks':>5} {'samples/s':>12} {'speed-up':>9} {'efficiency':>10}"]
    lines += [f"{r.nodes:>5} {r.ranks:>5} {r.samples_per_second:>12.1f} {r.speedup:>8.2f}x {r.efficiency:>9.0%}"
              for r in table]
    return "\n".join(lines)


def write_csv(table: list[ScalingRow], path: Path) -> None:
    """One row per size, with a header."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f.name for f in dataclasses.fields(ScalingRow)])
        writer.writerows(dataclasses.astuple(r) for r in table)


def write_plot(table: list[ScalingRow], path: Path) -> None:
    """Measured speed-up against ideal."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise HpcRunnerError("the scaling plot needs matplotlib: pip install 'hpc_runner[plot]'") from None
    fig, ax = plt.subplots(figsize=(5, 3.4))
    nodes = [r.nodes for r in table]
    ax.plot(nodes, [r.speedup for r in table], marker="o", label="measured")
    ax.plot(nodes, [n / nodes[0] for n in nodes], linestyle="--", color="gray", label="ideal")
    ax.set_xlabel("nodes")
    ax.set_ylabel("speed-up (samples/s)")
    ax.set_xticks(nodes)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
