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
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from . import environment
from .errors import HpcRunnerError, LaunchError
from .hosts import resolve_address
from .interfaces import interface_towards
from .launch_task import RESULT_FILE_VAR
from .run_config import RunConfig
from .run_context import RunContext
from .schema import FunctionEntry

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


def _node_name() -> str:
    return os.environ.get("SLURMD_NODENAME") or socket.gethostname()


OWNER_KEY = "hpc_runner/owner"


def _rendezvous(config: RunConfig, env: environment.DistEnv) -> dist.Store:
    """Meet at rank 0's TCPStore; rank 0 names the ranks and hosts that never arrived."""
    timeout = datetime.timedelta(seconds=config.init_timeout_s)
    where = f"{env.master_addr}:{env.master_port}"
    try:
        # Under torchrun the agent may already host the store on MASTER_PORT: then rank 0 is a client too.
        hosts_store = env.rank == 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True"
        store = dist.TCPStore(env.master_addr, env.master_port, env.world_size, hosts_store,
                              timeout=timeout, wait_for_workers=False)
    except Exception as exc:  # DistNetworkError / RuntimeError from the C++ store
        text = str(exc)
        if env.rank == 0 and ("address already in use" in text.lower() or "EADDRINUSE" in text):
            raise LaunchError(
                f"rank 0 on {_node_name()} cannot listen on {where}: the port is already in use "
                "(another job or program on this node).\n  hint: set MASTER_PORT to a free port; "
                "hpc_runner derives it from the job and step id, so this is usually a program outside SLURM"
            ) from None
        raise LaunchError(
            f"rank {env.rank} on {_node_name()} could not reach rank 0's store at {where} within "
            f"{config.init_timeout_s}s: {text.splitlines()[0] if text else type(exc).__name__}\n"
            "  hint: check that rank 0's node started (squeue/sacct), that the address is reachable from "
            "every node (firewall, GLOO_SOCKET_IFNAME/NCCL_SOCKET_IFNAME) and that all ranks came from one srun"
        ) from None
    _claim_or_check_owner(store, env.rank == 0, env, where)
    store = dist.PrefixStore(f"hpc_runner/{env.job_key}", store)  # torch's own keys too
    store.set(f"arrived/{env.rank}", _node_name())
    store.add("arrived_count", 1)
    if env.rank == 0:
        _release_when_all_arrived(store, config, env)
    else:
        try:
            store.wait(["all_arrived"], timeout)
        except Exception:
            raise LaunchError(
                f"rank {env.rank} on {_node_name()}: rank 0 at {where} did not see all {env.world_size} "
                f"ranks within {config.init_timeout_s}s; rank 0's log names the missing ones") from None
    return store


def _claim_or_check_owner(store: dist.Store, owner: bool, env: environment.DistEnv, where: str) -> None:
    """Rank 0 writes whose store this is; every other rank checks it first, so a rank of another job
    (a port shared by accident) is refused at once instead of waiting for peers that never come."""
    if owner:
        store.set(OWNER_KEY, env.job_key)
        return
    found = store.get(OWNER_KEY).decode()
    if found != env.job_key:
        raise LaunchError(
            f"rank {env.rank} on {_node_name()} reached the store at {where}, but it belongs to {found}, not to "
            f"this job ({env.job_key}): another job's rank 0 listens on that port.\n  hint: two jobs were given the "
            "same MASTER_PORT; leave MASTER_PORT unset so each job step derives its own, or pick a free one")


def _release_when_all_arrived(store: dist.Store, config: RunConfig, env: environment.DistEnv) -> None:
    """Rank 0: poll the arrival counter (one read per 10 ms), release everyone, or name who is missing."""
    deadline = time.monotonic() + config.init_timeout_s
    while store.add("arrived_count", 0) < env.world_size:
        if time.monotonic() > deadline:
            raise _missing_ranks(store, config, env)
        time.sleep(0.01)
    store.set("all_arrived", "1")


def _missing_ranks(store: dist.Store, config: RunConfig, env: environment.DistEnv) -> LaunchError:
    """The ranks and hosts that never arrived, read from the per-rank keys once the timeout expired."""
    keys = [f"arrived/{r}" for r in range(env.world_size)]
    missing = [r for r in range(env.world_size) if not store.check([keys[r]])]
    arrived = {store.get(keys[r]).decode() for r in range(env.world_size) if r not in missing}
    silent_hosts = [h for h in env.hosts if h not in arrived]
    return LaunchError(
        f"rank 0 waited {config.init_timeout_s}s at {env.master_addr}:{env.master_port}: {len(missing)} of "
        f"{env.world_size} rank(s) never arrived: {_ranges(missing)}"
        + (f"; no rank arrived from host(s) {', '.join(silent_hosts)}" if silent_hosts else "")
        + ".\n  hint: a node that never arrives is usually a task that failed to start (see the "
        "other ranks' log lines), a node that cannot reach this address (firewall, wrong "
        "interface: set socket_ifname), or ranks started outside one srun; raise init_timeout "
        "only if nodes are just slow to boot")


def _ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5'."""
    groups: list[list[int]] = []
    for n in sorted(numbers):
        if groups and groups[-1][1] == n - 1:
            groups[-1][1] = n
        else:
            groups.append([n, n])
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in groups)


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
    store = _rendezvous(config, env)
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
                     restart_count=int(environ.get("SLURM_RESTART_COUNT", "0") or 0))
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
        if owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _record_run(ctx: RunContext) -> None:
    """Rank 0 writes what this run is into its output directory (run.json): config, world, fingerprint."""
    if not ctx.is_main:
        return
    record = {"config": dataclasses.asdict(ctx.config), "world_size": ctx.env.world_size,
              "restart_count": ctx.restart_count, "fingerprint": ctx.fingerprint(),
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
