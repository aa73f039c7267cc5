"""The ``hpc-run`` command line: parse flags, call the modules, print. No logic of its own."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from . import render as render_mod
from . import request as request_mod
from . import spec as spec_mod
from .errors import HpcRunnerError, InputError

# Flag name -> spec key. Flags override the file; --set KEY=VALUE reaches every other key.
OVERRIDE_FLAGS = {
    "mode": "mode",
    "nodes": "nodes",
    "ntasks_per_node": "ntasks_per_node",
    "cpus_per_task": "cpus_per_task",
    "gpus_per_node": "gpus_per_node",
    "time": "time",
    "partition": "partition",
}


def spec_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The SPEC argument and the override flags shared by render, submit, check and scaling."""
    options = [
        click.option("--mode", type=click.Choice(spec_mod.MODES), help="threading (1 node), gloo (CPU, multi-node) or nccl (GPU)."),
        click.option("--nodes", type=int, help="Number of nodes."),
        click.option("--ntasks-per-node", type=int, help="Ranks per node (nccl: one per GPU)."),
        click.option("--cpus-per-task", type=int, help="Cores, and torch threads, per rank."),
        click.option("--gpus-per-node", type=int, help="GPUs per node (nccl mode)."),
        click.option("--time", help="Time limit as sbatch reads it: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS."),
        click.option("--partition", help="SLURM partition."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Override any spec key, dotted for nesting: --set data.samples=4096."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def load_request(path: str, flags: dict[str, Any], sets: tuple[str, ...], snapshot: bool = False) -> request_mod.JobRequest:
    """Read the file, apply --set then the named flags (flags win), validate, materialise once
    (with ``snapshot``: with a code snapshot planned in its output directory, hpc_runner.snapshot)."""
    overrides = [spec_mod.parse_set(item) for item in sets]
    overrides += [(OVERRIDE_FLAGS[name], value) for name, value in flags.items()
                  if name in OVERRIDE_FLAGS and value is not None]
    job = spec_mod.load(path, overrides)
    request = request_mod.build(job)
    if not snapshot:
        return request
    from . import snapshot as snapshot_mod

    return request_mod.build(job, code=snapshot_mod.plan(path, os.getcwd(), request.output_dir))


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a user-facing error into a clean message and its exit code; bugs keep their traceback."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except HpcRunnerError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", is_flag=True, help="Log diagnostics to stderr.")
def cli(verbose: bool) -> None:
    """hpc-run: one job spec -> a correct multi-node PyTorch job on SLURM.

    \b
    Typical use:
      hpc-run render jobs/emulator.yaml --mode gloo --nodes 4     # dry run: print the sbatch script
      hpc-run render jobs/emulator.yaml --nodes 2 | sbatch        # submit the rendered script
      hpc-run submit jobs/emulator.yaml --nodes 2 --wait          # submit through submitit
      hpc-run env --json                                          # what a rank would detect here

    Exit codes: 0 success, 1 the job or a runtime step failed, 2 bad input.
    """
    if verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@spec_options
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write the script here instead of stdout.")
@handle_errors
def render(spec: str, sets: tuple[str, ...], output: str | None, **flags: Any) -> None:
    """Print the sbatch script for SPEC (a local dry run: nothing is submitted).

    The header states the resource math: nodes, ranks, threads per rank, total cores and,
    where the spec has a data section, samples per rank, steps per epoch and effective batch.
    A rendered script takes no code snapshot: it runs the code as it is when the job starts
    (`hpc-run submit` freezes a copy at submit).
    """
    text = render_mod.render(load_request(spec, flags, sets))
    if output:
        with open(output, "w") as handle:
            handle.write(text)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@spec_options
@click.option("--executor", type=click.Choice(["auto", "slurm", "local"]), default="auto", show_default=True,
              help="auto: SLURM where its commands are installed (an unanswering controller is an error), "
                   "else local processes on this machine.")
@click.option("--dry-run", is_flag=True,
              help="Print what would be submitted, asking no controller: the sbatch file submitit would write "
                   "(slurm), or the processes and their environment (local).")
@click.option("--wait", "wait_", is_flag=True, help="Wait for the job and exit with its result.")
@click.option("--follow", is_flag=True, help="Stream rank 0's log until the job ends; exit with its result.")
@click.option("--no-snapshot", is_flag=True,
              help="Take no code snapshot: the job runs the code as it is when it starts (and when it is requeued).")
@handle_errors
def submit(spec: str, sets: tuple[str, ...], executor: str, dry_run: bool, wait_: bool, follow: bool, no_snapshot: bool,
           **flags: Any) -> None:
    """Submit SPEC through submitit: the same job that `hpc-run render SPEC` prints.

    \b
      hpc-run submit jobs/emulator.yaml --nodes 2 --dry-run --executor slurm   # the sbatch file, nothing sent
      hpc-run submit jobs/emulator.yaml --nodes 2 --follow                     # stream the log, exit with the result
      hpc-run submit jobs/emulator.yaml --no-snapshot                          # run the code as it is at start

    \b
    Code snapshot: the project (the git work tree holding SPEC, else the current directory's, else
    the current directory) is copied to OUTPUT_DIR/code/<stamp>-<id>/ at submit: tracked files as
    they are on disk and untracked files git does not ignore. The job cds into the copy and puts it
    first on PYTHONPATH, so edits after submit reach neither the queued job nor its requeues:
      code snapshot: 3f2a1c9b+changes:5e6f7a8b, 135 files, 0.9 MB -> runs/x/code/20261125-201500-a1b2c3
    """
    from . import submit as submit_mod

    request = load_request(spec, flags, sets, snapshot=not no_snapshot)
    submission = submit_mod.plan(request, submit_mod.choose_executor(executor, dry_run=dry_run))
    if dry_run:
        click.echo(submission.describe())
        if request.code is not None:
            click.echo(f"# dry run, nothing copied: {request.code.summary()}")
        return
    results = _submit(submission, wait=wait_ or follow, follow=follow, spec_path=spec)
    if results and isinstance(results[0], dict):
        click.echo(json.dumps(submit_mod.printable(results[0]), indent=2, default=str))


def _submit(submission: Any, wait: bool, follow: bool = False, spec_path: str | None = None) -> list[Any]:
    """Submit, record it (hpc_runner.ledger), say where things are, optionally stream and wait; returns each task's result."""
    from . import ledger
    from . import snapshot as snapshot_mod
    from . import submit as submit_mod

    request = submission.request
    with snapshot_mod.taken(request.code, say=click.echo):  # copied before submitting; removed if that fails
        job = submit_mod.submit(submission)
    if spec_path is not None:
        ledger.record(ledger.JobRecord(job_id=str(job.job_id), name=request.name, spec=spec_path,
                                       output_dir=request.output_dir, executor=submission.executor,
                                       snapshot=request.code.identity if request.code else None,
                                       snapshot_dir=request.code.path if request.code else None))
    where = ""
    if submission.executor == "local":
        where = " as local processes over Gloo on 127.0.0.1" if request.world_size > 1 else " as a local process"
    click.echo(f"submitted job {job.job_id} ({submission.executor} executor, {request.world_size} rank(s){where})")
    click.echo(f"logs: {job.paths.stdout}")
    click.echo(f"output: {request.output_dir}")
    if follow:
        from pathlib import Path

        from .job_control import follow as follow_log

        for line in follow_log(Path(job.paths.stdout), job.done):
            click.echo(line, nl=False)
    if not wait:
        return []
    results = submit_mod.wait(job)
    click.echo(f"job {job.job_id} done: {len(results)} task(s) returned")
    return results


@cli.command()
@click.option("--spec", "spec_path", type=click.Path(dir_okay=False), help="A check spec (default: the shipped jobs/check.yaml).")
@spec_options
@click.option("--executor", type=click.Choice(["auto", "slurm", "local"]), default="auto", show_default=True)
@handle_errors
def check(spec_path: str | None, sets: tuple[str, ...], executor: str, **flags: Any) -> None:
    """Run the communication check: placement per rank, all-reduce and broadcast verified on
    every rank, all-reduce latency and bandwidth from 1 KiB to 64 MiB. Exits 1 on a wrong result.

    \b
      hpc-run check --nodes 4                  # 4 nodes x 1 rank over Gloo
      hpc-run check --nodes 2 --ntasks-per-node 2 --executor local
    """
    from . import submit as submit_mod
    from .demo.check import format_report
    from .shipped import shipped_job

    request = load_request(spec_path or shipped_job("check.yaml"), flags, sets)
    submission = submit_mod.plan(request, submit_mod.choose_executor(executor))
    results = _submit(submission, wait=True)
    click.echo(format_report(results[0]))


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--nodes", "sizes", default="1,2,4", show_default=True, help="Node counts to run, comma-separated.")
@click.option("--mode", type=click.Choice(["gloo", "nccl"]), help="Distributed mode (default: the spec's).")
@click.option("--ntasks-per-node", type=int, help="Ranks per node.")
@click.option("--cpus-per-task", type=int, help="Threads per rank.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override any spec key.")
@click.option("--executor", type=click.Choice(["auto", "slurm", "local"]), default="auto", show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Where the table, CSV and PNG go (default runs/scaling-NAME-TIME).")
@handle_errors
def scaling(spec: str, sizes: str, sets: tuple[str, ...], executor: str, out_dir: str | None, **flags: Any) -> None:
    """Run SPEC at each node count, measure samples/s after warm-up, and report speed-up and
    efficiency as a table, scaling.csv and scaling.png. The job must return samples_per_second
    from rank 0 (the emulator does)."""
    import datetime
    from pathlib import Path

    from . import scaling as scaling_mod
    from . import submit as submit_mod

    counts = scaling_mod.parse_sizes(sizes)
    kind = submit_mod.choose_executor(executor)
    base = load_request(spec, flags, sets)
    if base.mode == "threading":
        raise InputError(f"{spec}: scaling across nodes needs mode gloo or nccl (use --mode gloo)")
    out = Path(out_dir or f"runs/scaling-{base.name}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    out.mkdir(parents=True, exist_ok=True)
    requests = {n: load_request(spec, {**flags, "nodes": n}, (*sets, f"output_dir={out / f'nodes-{n}'}")) for n in counts}
    throughput = scaling_mod.measure(requests, lambda r: _submit(submit_mod.plan(r, kind), wait=True), click.echo)
    click.echo(scaling_mod.report(base.ranks_per_node, throughput, out))


@cli.command("env")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (keys: source, rank, world_size, ..., findings).")
@click.option("--check", is_flag=True, help="Exit 1 when anything could not be detected or resolved.")
@handle_errors
def env_cmd(as_json: bool, check: bool) -> None:
    """Print what the entrypoint would detect here (SLURM step, torchrun, or a single process),
    which rule chose the master address and port, and what could not be resolved.

    \b
      srun -N2 -n4 hpc-run env            # one block per rank
      hpc-run env --check                 # exit 1 on any finding
    """
    from . import environment
    from .hosts import resolve_address

    detected, findings = environment.diagnose(os.environ, resolve_address)
    data = {**(detected.as_json() if detected else {}), "findings": findings}
    if as_json:
        click.echo(json.dumps(data, sort_keys=True))
    else:
        for key, value in data.items():
            if key != "findings":
                click.echo(f"{key:17} {value}")
        for finding in findings:
            click.echo(f"finding: {finding}")
    if check and findings:
        sys.exit(1)


@cli.command()
@click.argument("job_id")
@handle_errors
def status(job_id: str) -> None:
    """State, nodes, elapsed time and exit code of JOB_ID (scontrol, else sacct), and what hpc-run
    recorded when it submitted the job: spec, output directory, code snapshot, dependency."""
    from . import job_control

    from . import ledger

    current = job_control.status(job_id)
    click.echo(f"job {current.job_id}: {current.state}  nodes {current.nodes or '-'}  "
               f"elapsed {current.elapsed}  exit {current.exit_code}")
    entry = ledger.lookup(job_id)
    for line in ledger.describe(entry) if entry else ():
        click.echo(f"  {line}")


@cli.command()
@click.argument("job_id")
@click.option("--rank", type=int, help="Only this rank's lines.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the job ends.")
@handle_errors
def logs(job_id: str, rank: int | None, follow: bool) -> None:
    """Print JOB_ID's log; lines carry their rank (srun --label)."""
    from . import job_control

    for line in job_control.log_lines(job_id, rank, follow):
        click.echo(line, nl=False)


@cli.command()
@click.argument("job_id")
@click.option("--wait", "wait_", is_flag=True, default=True, show_default=True, help="Wait until SLURM reports the end state.")
@handle_errors
def cancel(job_id: str, wait_: bool) -> None:
    """Cancel JOB_ID and report its final state."""
    from . import job_control

    job_control.cancel(job_id)
    click.echo(f"cancel requested for job {job_id}")
    if wait_:
        final = job_control.wait_finished(job_id, timeout_s=120)
        click.echo(f"job {job_id}: {final.state}")


@cli.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--spec", "spec_path", type=click.Path(dir_okay=False),
              help="The job spec the run was trained from, for its export: section (model factory and input "
                   "shape). Not needed for the demo emulator.")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Where to write the package (default RUN_DIR/model.pt2; the name ends in .pt2).")
@handle_errors
def export(run_dir: str, spec_path: str | None, output: str | None) -> None:
    """Compile RUN_DIR's trained model into an AOTInductor package (.pt2) for C++ inference.

    Rebuilds the model from the run's record (run.json), loads the weights of its checkpoint,
    captures it with torch.export with a dynamic batch dimension, compiles it to C++ ahead of time
    (about a minute), and checks the package against PyTorch before saying it is done.

    \b
      hpc-run export runs/emulator                       # the demo emulator: nothing else needed
      hpc-run export runs/mine --spec jobs/mine.yaml     # your model: the spec names its factory
      hpc-run export runs/mine --spec jobs/mine.yaml -o serve/mine.pt2

    \b
    Your spec names a function that returns the untrained nn.Module (it gets the entry's params
    it names) and one example's shape without the batch dimension:
      export: {model: mypkg.models:make_model, input_shape: [8]}

    \b
    Load it from C++ with torch::inductor::AOTIModelPackageLoader: examples/cpp builds against
    the libtorch inside the torch wheel (see its CMakeLists.txt and the README).
    """
    from pathlib import Path

    from . import export as export_mod

    exported = export_mod.export_run(Path(run_dir), Path(output) if output else None, spec_path,
                                     say=lambda text: click.echo(text, err=True))
    click.echo(exported.summary())


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="hpc-run")


if __name__ == "__main__":
    main()
