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
from . import profiles
from . import spec as spec_mod
from .dependency import parse_after
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


PROFILE_HELP = ("Site profile to put under the spec (partition, account, modules, ...), from hpc_runner.yaml at the "
                "project's root or ~/.config/hpc_runner/profiles.yaml (project wins; see `render --explain`).")


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
        click.option("--profile", metavar="NAME", help=PROFILE_HELP),
    ]
    for option in reversed(options):
        func = option(func)
    return func


AFTER_HELP = ("Start only after job JOBID succeeded (afterok), or ended whatever its state with afterany:JOBID; "
              "repeat or write afterok:1:2 for several. SLURM cancels the job if that can never hold.")


def load_request(path: str, flags: dict[str, Any], sets: tuple[str, ...], sweeps: tuple[str, ...] = (),
                 throttle: int | None = None, shipped: bool = False, after: tuple[str, ...] = (),
                 snapshot: bool = False) -> request_mod.JobRequest:
    """Read the profile and the file, apply --set then the named flags (flags win), validate, materialise once
    (--after: the jobs it waits for; ``snapshot``: a code snapshot planned in its output directory, which
    hpc_runner.snapshot copies at submit).

    A sweep (the spec's sweep: block, --sweep flags) becomes one request for the whole job array,
    each task built the same way with its values set as --set would set them; they share one snapshot.
    """
    from . import sweep as sweep_mod

    layered = load_layered(path, flags, sets, shipped)
    waits_for = parse_after(after)
    sweep = sweep_mod.combine(layered.spec.sweep, sweeps, throttle)
    cwd = os.getcwd()
    run_dir = request_mod.build(layered.spec, cwd=cwd).output_dir
    code = None
    if snapshot:
        from . import snapshot as snapshot_mod

        code = snapshot_mod.plan(path, cwd, run_dir)
    if sweep is None:
        return request_mod.build(layered.spec, cwd=cwd, after=waits_for, code=code)

    def task(extra: list[tuple[str, Any]]) -> request_mod.JobRequest:
        spec = profiles.with_overrides(layered, [(key, value, "--sweep") for key, value in extra])
        return request_mod.build(spec, cwd=cwd, after=waits_for, code=code)

    request = sweep_mod.build(task, sweep, run_dir, path)
    assert request.array is not None
    sweep_mod.check_folder(request.array)
    return request


def load_layered(path: str, flags: dict[str, Any], sets: tuple[str, ...], shipped: bool = False) -> profiles.LayeredSpec:
    """The validated spec (site profile < file < --set < named flags) and where each value came from."""
    overrides = [(*spec_mod.parse_set(item), "--set") for item in sets]
    overrides += [(OVERRIDE_FLAGS[name], value, f"--{name.replace('_', '-')}") for name, value in flags.items()
                  if name in OVERRIDE_FLAGS and value is not None]
    return profiles.load(path, overrides, flags.get("profile"), os.getcwd(), os.environ, shipped=shipped)


def _child_loader(flags: dict[str, Any]) -> Callable[[str, list[tuple[str, Any]]], spec_mod.JobSpec]:
    """How a chain's follow-up specs are read: with the same site profile as the first (its then: set: last)."""
    def load(path: str, overrides: list[tuple[str, Any]]) -> spec_mod.JobSpec:
        return profiles.load(path, [(key, value, "then: set") for key, value in overrides], flags.get("profile"),
                             os.getcwd(), os.environ).spec
    return load


def sweep_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--sweep and --throttle, for render and submit."""
    options = [
        click.option("--sweep", "sweeps", multiple=True, metavar="KEY=V1,V2",
                     help="Sweep a spec key over comma-separated values (read as YAML scalars); several --sweep "
                          "flags make the cartesian product, run as one SLURM job array. Adds to the spec's sweep: block "
                          "(a flag replaces the block's list for its key)."),
        click.option("--throttle", type=int, metavar="N", help="At most N sweep tasks at once (sbatch --array=...%N)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


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
@sweep_options
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write the script here instead of stdout.")
@click.option("--explain", is_flag=True,
              help="Print, instead of the script, each key's final value and where it came from (default, "
                   "a profile in the user or project file, the spec, --set, a flag). With -o the script is still written.")
@click.option("--after", multiple=True, metavar="[afterany:]JOBID", help=AFTER_HELP)
@handle_errors
def render(spec: str, sets: tuple[str, ...], sweeps: tuple[str, ...], throttle: int | None, output: str | None,
           explain: bool, after: tuple[str, ...], **flags: Any) -> None:
    """Print the sbatch script for SPEC (a local dry run: nothing is submitted).

    The header states the resource math: nodes, ranks, threads per rank, total cores and,
    where the spec has a data section, samples per rank, steps per epoch and effective batch.
    A sweep prints one job-array script and its task table (each task's values and folder).
    Comment lines at the end say what the spec's then: would submit after it.

    \b
      hpc-run render jobs/x.yaml --profile cluster | sbatch    # the site's partition, modules, setup
      hpc-run render jobs/x.yaml --profile cluster --explain   # which value came from where
      hpc-run render jobs/emulator.yaml --sweep entrypoint.params.lr=0.1,0.01 --sweep entrypoint.params.hidden=32,64
      hpc-run render jobs/evaluate.yaml --after 123            # #SBATCH --dependency=afterok:123
    A rendered script takes no code snapshot: it runs the code as it is when the job starts
    (`hpc-run submit` freezes a copy at submit).
    """
    from . import chain

    if explain:
        _explain(spec, flags, sets, sweeps, throttle, after)
        if not output:
            return
    request = load_request(spec, flags, sets, sweeps, throttle, after=after)
    text = render_mod.render(request) + "".join(f"{line}\n" for line in chain.notes(chain.plan(spec, request, _child_loader(flags))))
    if output:
        with open(output, "w") as handle:
            handle.write(text)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


def _explain(path: str, flags: dict[str, Any], sets: tuple[str, ...], sweeps: tuple[str, ...] = (),
             throttle: int | None = None, after: tuple[str, ...] = ()) -> None:
    """render --explain: each key's final value and its source (hpc_runner.explain); --sweep, --throttle
    and --after, which are no spec keys, last."""
    from . import explain as explain_mod
    from . import sweep as sweep_mod

    layered = load_layered(path, flags, sets)
    click.echo(explain_mod.table(layered, request_mod.build(layered.spec)), nl=False)
    flagged = [sweep_mod.parse_flag(item) for item in sweeps]
    rows = [(f"sweep.{axis.key}", json.dumps(list(axis.values), default=str), "--sweep") for axis in flagged]
    rows += [("sweep.throttle", str(throttle), "--throttle")] if throttle is not None else []
    waits_for = parse_after(after)
    rows += [("after", waits_for.directive(), "--after")] if waits_for else []
    for key, value, source in rows:
        click.echo(f"{key}  {value}  {source}")


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@spec_options
@sweep_options
@click.option("--executor", type=click.Choice(["auto", "slurm", "local"]), default="auto", show_default=True,
              help="auto: SLURM where its commands are installed (an unanswering controller is an error), "
                   "else local processes on this machine.")
@click.option("--dry-run", is_flag=True,
              help="Print what would be submitted, asking no controller: the sbatch file submitit would write "
                   "(slurm), or the processes and their environment (local).")
@click.option("--wait", "wait_", is_flag=True, help="Wait for the job and exit with its result.")
@click.option("--follow", is_flag=True, help="Stream rank 0's log until the job ends; exit with its result.")
@click.option("--after", multiple=True, metavar="[afterany:]JOBID", help=AFTER_HELP)
@click.option("--no-snapshot", is_flag=True,
              help="Take no code snapshot: the job runs the code as it is when it starts (and when it is requeued).")
@handle_errors
def submit(spec: str, sets: tuple[str, ...], sweeps: tuple[str, ...], throttle: int | None, executor: str,
           dry_run: bool, wait_: bool, follow: bool, after: tuple[str, ...], no_snapshot: bool, **flags: Any) -> None:
    """Submit SPEC through submitit: the same job that `hpc-run render SPEC` prints, run from a code
    snapshot taken now (render's script runs the code as it is when the job starts).

    A spec's then: list submits follow-up jobs that start after this one (see the README's Chains).

    \b
      hpc-run submit jobs/emulator.yaml --nodes 2 --dry-run --executor slurm   # the sbatch file, nothing sent
      hpc-run submit jobs/emulator.yaml --nodes 2 --follow                     # stream the log, exit with the result
      hpc-run submit jobs/evaluate.yaml --after 123                            # once job 123 succeeded
      hpc-run submit jobs/train_then_evaluate.yaml                             # train, then evaluate (then:)
      hpc-run submit jobs/emulator.yaml --no-snapshot                          # run the code as it is at start

    \b
    A sweep is one SLURM job array, each task with its own output folder, checkpoints and log:
      hpc-run submit jobs/emulator.yaml --sweep entrypoint.params.lr=0.1,0.01 \\
          --sweep entrypoint.params.hidden=32,64 --throttle 2
      hpc-run status ARRAY_ID                                  # every task
      hpc-run results runs/emulator --metric final_val_loss   # the table, and a plot per swept key

    \b
    Code snapshot: the project (the git work tree holding SPEC, else the current directory's, else
    the current directory) is copied to OUTPUT_DIR/code/<stamp>-<id>/ at submit: tracked files as
    they are on disk and untracked files git does not ignore. The job cds into the copy and puts it
    first on PYTHONPATH, so edits after submit reach neither the queued job nor its requeues:
      code snapshot: 3f2a1c9b+changes:5e6f7a8b, 135 files, 0.9 MB -> runs/x/code/20261125-201500-a1b2c3
    """
    from . import chain
    from . import submit as submit_mod

    request = load_request(spec, flags, sets, sweeps, throttle, after=after, snapshot=not no_snapshot)
    submission = submit_mod.plan(request, submit_mod.choose_executor(executor, dry_run=dry_run))
    links = chain.plan(spec, request, _child_loader(flags))
    chain.check_executor(links, submission.executor)
    if dry_run:
        click.echo(submission.describe())
        if request.code is not None:
            click.echo(f"# dry run, nothing copied: {request.code.summary()}")
        for line in chain.notes(links):
            click.echo(line)
        return
    then = chain.on_submitted(links, submission.executor, _send, click.echo)
    if request.array:
        if follow:
            raise InputError("--follow streams one job's log, and a sweep is many jobs\n  hint: submit, then "
                             "hpc-run logs ARRAY_TASK --follow (e.g. 123_0) for one task")
        _submit_sweep(submission, spec, wait_)
        return
    results = _submit(submission, wait=wait_ or follow or chain.must_wait(links, submission.executor), follow=follow,
                      spec_path=spec, then=then)
    if results and isinstance(results[0], dict):
        click.echo(json.dumps(submit_mod.printable(results[0]), indent=2, default=str))


def _submit_sweep(submission: Any, spec_path: str, wait: bool) -> None:
    """Submit a sweep, write its table and record, list its tasks; with ``wait``, exit 1 if any task failed.
    (A sweep has no then: follow-ups: chain.plan refuses them.)"""
    from . import ledger
    from . import snapshot as snapshot_mod
    from . import submit as submit_mod
    from . import sweep as sweep_mod
    from .errors import JobFailed

    request = submission.request
    with snapshot_mod.taken(request.code, say=click.echo):  # one copy for every task; removed if sbatch refuses
        jobs = submit_mod.submit_array(submission, say=click.echo)
    ids = [str(job.job_id) for job in jobs]
    array_id = ids[0].split("_")[0]
    table = sweep_mod.write_table(request, spec_path, array_id if submission.executor == "slurm" else None)
    ledger.record(ledger.JobRecord(job_id=array_id, name=request.name, spec=spec_path, output_dir=request.output_dir,
                                   executor=submission.executor, sweep=str(table),
                                   snapshot=request.code.identity if request.code else None,
                                   snapshot_dir=request.code.path if request.code else None,
                                   dependency=request.after.directive() if request.after else None,
                                   parent=",".join(request.after.job_ids) if request.after else None))
    kind = "job array" if submission.executor == "slurm" else "local sweep, first job"
    click.echo(f"submitted {kind} {array_id}: {len(jobs)} task(s), {request.world_size} rank(s) each "
               f"({submission.executor} executor)")
    for task, job_id in zip(request.array.tasks, ids):
        click.echo(f"  task {task.index} (job {job_id}): {task.label} -> {task.output_dir}")
    click.echo(f"table: {table}")
    if submission.executor == "slurm":
        click.echo(f"status: hpc-run status {array_id}")
    click.echo(f"results: hpc-run results {request.output_dir} --metric NAME")
    if not wait:
        return
    failed = 0
    for task, job in zip(request.array.tasks, jobs):
        try:
            submit_mod.wait(job)
            click.echo(f"task {task.index} ({task.label}): done")
        except JobFailed as exc:
            failed += 1
            click.echo(f"task {task.index} ({task.label}): {exc}", err=True)
    if failed:
        raise JobFailed(f"{failed} of {len(jobs)} sweep task(s) failed (see above)")


def _send(submission: Any, spec_path: str, wait: bool, then: Callable[[Any], None] | None) -> list[Any]:
    """A chain's follow-up job, submitted and recorded like any other (hpc_runner.chain calls it)."""
    return _submit(submission, wait=wait, spec_path=spec_path, then=then)


def _submit(submission: Any, wait: bool, follow: bool = False, spec_path: str | None = None,
            then: Callable[[Any], None] | None = None) -> list[Any]:
    """Submit, record it (hpc_runner.ledger), say where things are, optionally stream and wait; returns each task's result.

    ``then(job)`` runs once the job is submitted, before any waiting: a chain submits its follow-ups there."""
    from . import ledger
    from . import snapshot as snapshot_mod
    from . import submit as submit_mod

    request = submission.request
    with snapshot_mod.taken(request.code, say=click.echo):  # copied before submitting; removed if that fails
        job = submit_mod.submit(submission)
    if spec_path is not None:
        ledger.record(ledger.JobRecord(job_id=str(job.job_id), name=request.name, spec=spec_path,
                                       output_dir=request.output_dir, executor=submission.executor,
                                       dependency=request.after.directive() if request.after else None,
                                       parent=",".join(request.after.job_ids) if request.after else None,
                                       snapshot=request.code.identity if request.code else None,
                                       snapshot_dir=request.code.path if request.code else None))
    where = ""
    if submission.executor == "local":
        where = " as local processes over Gloo on 127.0.0.1" if request.world_size > 1 else " as a local process"
    click.echo(f"submitted job {job.job_id} ({submission.executor} executor, {request.world_size} rank(s){where})")
    click.echo(f"logs: {job.paths.stdout}")
    click.echo(f"output: {request.output_dir}")
    if then is not None:
        then(job)
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

    request = load_request(spec_path or shipped_job("check.yaml"), flags, sets, shipped=spec_path is None)
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
@click.option("--profile", metavar="NAME", help=PROFILE_HELP)
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
    base = load_request(spec, flags, sets)  # bad input is refused before any controller is asked
    kind = submit_mod.choose_executor(executor)
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
    recorded when it submitted the job: spec, output directory, code snapshot, dependency.
    A sweep's array id lists every task with its values; ARRAY_TASK (123_4) shows one task.

    A job that waited for another and never ran (or never will) says why:

    \b
      job 124: CANCELLED (never ran: it waited for afterok:123 and job 123 ended FAILED)
      job 125: PENDING, will never start: job 123 ended FAILED; cancel it with hpc-run cancel 125
    """
    from . import chain_status, job_control, ledger

    current = job_control.status(job_id)
    entry = ledger.lookup(job_id)
    click.echo(chain_status.never_runs(current, entry) or f"job {current.job_id}: {current.state}  nodes {current.nodes or '-'}  "
               f"elapsed {current.elapsed}  exit {current.exit_code}")
    for line in ledger.describe(entry) if entry else ():
        click.echo(f"  {line}")
    tasks = job_control.array_tasks(job_id) if "_" not in job_id else []
    if tasks:
        from . import results as results_mod

        labels = results_mod.task_labels(entry.sweep) if entry and entry.sweep else {}
        for task in tasks:
            index = int(task.job_id.split("_")[1])
            click.echo(f"  task {index:<3} {task.state:<11} nodes {task.nodes or '-':<8} elapsed {task.elapsed:<9} "
                       f"exit {task.exit_code:<5} {labels.get(index, '')}".rstrip())


@cli.command()
@click.argument("sweep_dir", type=click.Path())
@click.option("--metric", "name", required=True, help="The number to sort by, from each task's metrics file "
              "(dotted for nesting); the demo emulator reports final_val_loss, final_train_loss, samples_per_second.")
@click.option("--descending", is_flag=True, help="Largest first (for accuracies and throughput); default smallest first.")
@click.option("--metrics-file", default="metrics.json", show_default=True, help="The file each task writes in its folder.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Where the PNG goes (default SWEEP_DIR/sweep-METRIC.png).")
@handle_errors
def results(sweep_dir: str, name: str, descending: bool, metrics_file: str, plot_path: str | None) -> None:
    """A sweep's table: each task's values and METRIC, best first, and a PNG of METRIC against
    each swept value. SWEEP_DIR is the sweep's output directory (where sweep.json is). Tasks that
    have not written their metrics yet are listed last, saying so; exit 1 while none has.

    \b
      hpc-run results runs/emulator --metric final_val_loss
      hpc-run results runs/emulator --metric samples_per_second --descending --plot speed.png
    """
    from pathlib import Path

    from . import results as results_mod
    from .errors import JobFailed

    sweep = results_mod.load(sweep_dir)
    rows = results_mod.ordered(results_mod.collect(sweep, name, metrics_file), descending)
    click.echo(results_mod.table(sweep, rows, name))
    if not any(row.value is not None for row in rows):
        raise JobFailed(f"no task has written {metrics_file} yet: nothing to plot")
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in name)
    path = results_mod.plot(sweep, rows, name, Path(plot_path) if plot_path else sweep.path.parent / f"sweep-{safe}.png")
    click.echo(f"plot: {path}")


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
