"""The communication check: who runs where, are all-reduce and broadcast right, how fast are they."""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

import torch
import torch.distributed as dist

from ..errors import JobFailed

DEFAULT_SIZES_KIB = (1, 16, 256, 4096, 65536)


def _placement(ctx: Any) -> list[dict[str, Any]]:
    mine = {"rank": ctx.env.rank, "local_rank": ctx.env.local_rank, "host": socket.gethostname(),
            "node": os.environ.get("SLURMD_NODENAME", socket.gethostname()), "device": str(ctx.device),
            "threads": torch.get_num_threads(), "pid": os.getpid()}
    if not ctx.distributed:
        return [mine]
    gathered: list[Any] = [None] * ctx.env.world_size
    dist.all_gather_object(gathered, mine)
    return gathered


def _correctness(ctx: Any) -> dict[str, bool]:
    world = ctx.env.world_size
    value = torch.full((1024,), float(ctx.env.rank + 1), dtype=torch.float64, device=ctx.device)
    dist.all_reduce(value)
    all_reduce_ok = bool(torch.all(value == world * (world + 1) / 2))
    payload = torch.arange(4096, dtype=torch.float64, device=ctx.device) * 3.0 if ctx.is_main else \
        torch.zeros(4096, dtype=torch.float64, device=ctx.device)
    dist.broadcast(payload, src=0)
    broadcast_ok = bool(torch.equal(payload, torch.arange(4096, dtype=torch.float64, device=ctx.device) * 3.0))
    flags = torch.tensor([all_reduce_ok, broadcast_ok], dtype=torch.int32, device=ctx.device)
    dist.all_reduce(flags, op=dist.ReduceOp.MIN)  # every rank learns whether any rank saw a wrong value
    return {"all_reduce_ok": bool(flags[0]), "broadcast_ok": bool(flags[1])}


def _bandwidth(ctx: Any, sizes_kib: list[int], iterations: int) -> list[dict[str, float]]:
    rows = []
    for size in sizes_kib:
        tensor = torch.ones(size * 1024 // 4, dtype=torch.float32, device=ctx.device)
        dist.all_reduce(tensor)  # warm-up
        repeats = max(2, iterations if size <= 1024 else iterations // 4)
        dist.barrier()
        started = time.perf_counter()
        for _ in range(repeats):
            dist.all_reduce(tensor)
        if ctx.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - started) / repeats
        world = ctx.env.world_size
        bus_bytes = 2 * (world - 1) / world * size * 1024  # ring all-reduce traffic per rank
        rows.append({"size_kib": size, "latency_us": seconds * 1e6, "bus_gb_s": bus_bytes / seconds / 1e9})
    return rows


def run(ctx: Any, sizes_kib: list[int] | None = None, iterations: int = 20) -> dict[str, Any]:
    """Report placement, verify collectives, measure all-reduce; rank 0 prints and writes check.json."""
    placement = _placement(ctx)
    result: dict[str, Any] = {"world_size": ctx.env.world_size, "backend": ctx.config.mode, "placement": placement,
                              "master": f"{ctx.env.master_addr}:{ctx.env.master_port}"}
    if ctx.distributed:
        result.update(_correctness(ctx))
        result["all_reduce"] = _bandwidth(ctx, list(sizes_kib or DEFAULT_SIZES_KIB), iterations)
    else:
        result.update(all_reduce_ok=True, broadcast_ok=True, all_reduce=[])
    if ctx.is_main:
        print(format_report(result), flush=True)
        (ctx.output_dir / "check.json").write_text(json.dumps(result, indent=2) + "\n")
    if not (result["all_reduce_ok"] and result["broadcast_ok"]):
        raise JobFailed(f"rank {ctx.env.rank}: a collective returned a wrong result: {result}")
    return result


def format_report(result: dict[str, Any]) -> str:
    """The check's table: placement per rank, correctness, all-reduce latency and bandwidth."""
    lines = [f"hpc_runner check: {result['world_size']} rank(s), backend {result['backend']}",
             f"{'rank':>4} {'node':>10} {'host':>16} {'device':>8} {'threads':>7}"]
    lines += [f"{p['rank']:>4} {p['node']:>10} {p['host'][:16]:>16} {p['device']:>8} {p['threads']:>7}"
              for p in result["placement"]]
    lines.append(f"all-reduce {'OK' if result['all_reduce_ok'] else 'WRONG'}; "
                 f"broadcast {'OK' if result['broadcast_ok'] else 'WRONG'}")
    if result["all_reduce"]:
        lines.append(f"{'size':>10} {'latency':>12} {'bus bandwidth':>14}")
        lines += [f"{r['size_kib']:>7} KiB {r['latency_us']:>9.1f} us {r['bus_gb_s']:>10.3f} GB/s" for r in result["all_reduce"]]
    return "\n".join(lines)
