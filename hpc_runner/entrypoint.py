"""The per-rank entrypoint: environment -> torch.distributed -> the user's function or script.

Run by srun on every task (``python -m hpc_runner.entrypoint ...``), by torchrun, by
submitit's executors, or by hand as a single process.
"""

from __future__ import annotations

from hpc_runner import requeue

# Before anything slow (torch takes seconds to import): a time-limit warning or SIGTERM arriving
# during start-up is remembered, not fatal. Once the entry is known, run() puts in the handlers
# the spec's requeue.handler asks for.
if __name__ == "__main__":
    requeue.install("hpc_runner", function_entry=True)

import dataclasses
import datetime
import gc
import importlib
import json
import logging
import os
import runpy
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from . import environment, rendezvous
from .errors import HpcRunnerError, LaunchError
from .hosts import resolve_address
from .interfaces import interface_towards
from .run_config import RunConfig
from .run_context import RunContext
from .schema import FunctionEntry
from .variables import CODE_DIR_VAR, CODE_SOURCE_VAR, CODE_VAR, RESULT_FILE_VAR

log = logging.getLogger("hpc_runner")
BACKENDS = {"gloo": "gloo", "nccl": "nccl"}


def _device(config: RunConfig, env: environment.DistEnv) -> torch.device:
    if config.mode != "nccl":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise LaunchError(
            f"nccl mode needs CUDA, but torch.cuda.is_available() is False on {socket.gethostname()} "
            f"(rank {env.rank}; torch {torch.__version__}, CUDA build: {torch.version.cuda}).\n"
            "  hint: request GPUs (gpus_per_node), install a CUDA build of torch, or use mode: gloo on CPUs"
        )
    count = torch.cuda.device_count()
    if 1 < count < env.local_world_size:
        raise LaunchError(
            f"rank {env.rank}: {env.local_world_size} ranks on {socket.gethostname()} share {count} visible GPUs; "
            "one rank per GPU needs gpus_per_node >= ntasks_per_node (or one GPU bound per task)"
        )
    index = env.local_rank % count  # one GPU bound per task (--gpus-per-task, --gpu-bind): it is device 0
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def choose_gloo_interface(env: environment.DistEnv) -> None:
    """Point Gloo at the interface that reaches the master unless GLOO_SOCKET_IFNAME is set already."""
    if os.environ.get("GLOO_SOCKET_IFNAME") or env.num_nodes <= 1:
        return
    found = interface_towards(env.master_addr, env.master_port)
    if found is None:
        log.warning("cannot tell which interface reaches %s; Gloo uses the host name's address", env.master_addr)
        return
    os.environ["GLOO_SOCKET_IFNAME"] = found[0]
    if env.rank == 0:
        print(f"hpc_runner: Gloo uses interface {found[0]} ({found[1]}), the route to the master "
              f"{env.master_addr} (set socket_ifname in the spec to choose)", flush=True)


def init_process_group(config: RunConfig, env: environment.DistEnv) -> None:
    """Form the process group with a timeout and errors that say what to check."""
    store = rendezvous.meet(env, config.init_timeout_s)
    dist.init_process_group(backend=BACKENDS[config.mode], store=store, rank=env.rank, world_size=env.world_size,
                            timeout=datetime.timedelta(seconds=config.collective_timeout_s))


def _run_entry(ctx: RunContext) -> Any:
    entry = ctx.config.entry
    if isinstance(entry, FunctionEntry):
        module_name, _, func_name = entry.target.partition(":")
        try:
            func = getattr(importlib.import_module(module_name), func_name)
        except (ImportError, AttributeError) as exc:
            raise LaunchError(f"cannot load entrypoint function {entry.target!r}: {exc}") from None
        return func(ctx, **entry.params)
    if not Path(entry.path).is_file():
        raise LaunchError(f"entrypoint script {entry.path!r} not found (cwd {os.getcwd()})")
    # As `python script.py` runs it: its argv, its folder first on sys.path, __main__.
    sys.argv = [entry.path, *entry.args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(entry.path)))
    runpy.run_path(entry.path, run_name="__main__")
    return None


def run(config: RunConfig, environ: dict[str, str] | None = None) -> tuple[Any, bool]:
    """Set up this rank, run the user's code, tear down; returns its result and whether a requeue is due."""
    environ = dict(os.environ) if environ is None else environ
    env = environment.from_environ(environ, resolve_address)
    os.environ.update(env.torch_variables())
    torch.set_num_threads(max(env.cpus_per_task, 1))
    device = _device(config, env)
    ctx = RunContext(env=env, config=config, device=device,
                     restart_count=int(environ.get("SLURM_RESTART_COUNT", "0") or 0), code=environ.get(CODE_VAR) or None)
    function_entry = isinstance(config.entry, FunctionEntry)
    handler = requeue.resolve(config.requeue_handler, function_entry)
    requeue.install(handler, function_entry)
    if signal.SIGTERM in requeue.received and not function_entry:
        raise LaunchError("stopped by SIGTERM while starting")
    if config.mode == "gloo":
        choose_gloo_interface(env)  # scripts too: they form their own group over the same network
    owns_group = config.mode in BACKENDS and function_entry
    if owns_group:
        init_process_group(config, env)
    try:
        _record_run(ctx)
        result = _run_entry(ctx)
        ours = handler == "hpc_runner"
        if ours:
            requeue.requeue_if_asked(ctx.is_main, ctx.restart_count, config.max_restarts)
        if owns_group:
            gc.collect()  # drop DDP reducers and pending work before the group goes
            dist.barrier()  # leave together: a rank tearing down while others still talk aborts in gloo
        return result, ours and requeue.requeue_expected(ctx.restart_count, config.max_restarts)
    finally:
        # Ours, or one a script left up (as accelerate scripts do unless they call end_training): destroyed
        # here, as accelerate's end_training would, so that Gloo's threads never outlive the interpreter
        # (that aborts the rank at exit: "terminate called without an active exception").
        if (owns_group or not function_entry) and dist.is_initialized():
            dist.destroy_process_group()


def _record_run(ctx: RunContext) -> None:
    """Rank 0 writes what this run is into its output directory (run.json): config, world, fingerprint."""
    if not ctx.is_main:
        return
    record = {"config": dataclasses.asdict(ctx.config), "world_size": ctx.env.world_size,
              "restart_count": ctx.restart_count, "fingerprint": ctx.fingerprint(),
              "code": {"snapshot": ctx.code, "dir": os.environ.get(CODE_DIR_VAR), "source": os.environ.get(CODE_SOURCE_VAR)}
              if ctx.code else None,
              "job": ctx.env.job_key, "started": datetime.datetime.now().isoformat(timespec="seconds")}
    (ctx.output_dir / "run.json").write_text(json.dumps(record, indent=1, default=str) + "\n")


def _write_outcome(outcome: dict[str, Any]) -> None:
    """For a supervising wrapper (``hpc-run submit``): this rank's result, error and requeue as JSON."""
    template = os.environ.get(RESULT_FILE_VAR)
    if not template:
        return
    path = Path(template.replace("{rank}", os.environ.get("LOCAL_RANK") or "0"))  # "{rank}": under torchrun only
    tmp = path.with_suffix(".tmp")
    rank = os.environ.get("RANK") or os.environ.get("SLURM_PROCID") or "0"
    tmp.write_text(json.dumps({"rank": int(rank), **outcome}, default=str))
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    """Console entry: parse the RunConfig argv, run, map errors to exit codes."""
    logging.basicConfig(level=os.environ.get("HPC_RUNNER_LOG", "WARNING"))
    try:
        config = RunConfig.from_argv(sys.argv[1:] if argv is None else argv)
        result, requeue = run(config)
    except HpcRunnerError as exc:
        print(f"hpc_runner error: {exc}", file=sys.stderr, flush=True)
        _write_outcome({"error": str(exc)})
        return exc.exit_code
    except Exception as exc:  # the user's code failed: its traceback goes to the log as usual
        _write_outcome({"error": f"{type(exc).__name__}: {exc} (traceback in this rank's log)"})
        raise
    _write_outcome({"result": result, "requeue": requeue})
    return 0


if __name__ == "__main__":
    # A normal interpreter exit: atexit handlers run (wandb and MLflow flush there), output is flushed.
    sys.exit(main())
