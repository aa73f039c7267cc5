"""Chains: a job and the follow-up jobs its spec's ``then:`` names, planned once and submitted in order.

Under SLURM every follow-up is submitted at once with ``--dependency=afterok:PARENT`` (or afterany)
and ``--kill-on-invalid-dep=yes``: SLURM starts it when its parent succeeded (or ended) and cancels it
when it never can. Under the local executor there is no scheduler to wait: the steps run one after
another, each child only after its parent succeeded (afterok) or ended (afterany).

A child sees its parent through two variables, exported in its job like any ``env:`` entry:
``HPC_RUNNER_PARENT_OUTPUT_DIR`` (where the parent wrote run.json, checkpoints and metrics) and
``HPC_RUNNER_PARENT_JOB_ID``. Specs are loaded when the chain is planned (render, dry run, submit),
so a missing file, a bad override or a cycle is refused before anything is submitted.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import project, snapshot
from . import request as request_mod
from . import spec as spec_mod
from .dependency import PARENT_JOB_ID_VAR, PARENT_OUTPUT_DIR_VAR, Dependency
from .errors import InputError, JobFailed, SpecError
from .request import JobRequest
from .schema import JobSpec

# send(submission, spec_path, wait, then): submit and record one job (the CLI's), calling then(job) once it is
# submitted; with wait, return once it ended and raise JobFailed if it failed.
Send = Callable[[Any, str, bool, "Callable[[Any], None] | None"], Any]
Say = Callable[[str], None]


@dataclass(frozen=True)
class Link:
    """One job of a chain: its spec, its request as planned, the condition on its parent, its follow-ups."""

    spec_path: str
    spec: JobSpec | None               # a child's validated spec (its request is rebuilt from it); None for the first job
    request: JobRequest                # as planned; a child's is built again once its parent's job id is known
    after: str | None                  # afterok or afterany on the parent; None for the job named on the command line
    children: tuple[Link, ...] = ()

    def child_request(self, parent: JobRequest, parent_job_id: str, after: Dependency | None) -> JobRequest:
        """This child's request, seeing its parent's output directory and job id through exported variables."""
        assert self.spec is not None, "the first job of a chain is not anyone's child"
        env = {**self.spec.env, PARENT_OUTPUT_DIR_VAR: parent.output_dir, PARENT_JOB_ID_VAR: parent_job_id}
        spec = dataclasses.replace(self.spec, env=env)
        return request_mod.build(spec, after=after, code=self._code(spec, parent))

    def _code(self, spec: JobSpec, parent: JobRequest) -> snapshot.Snapshot | None:
        """The code a follow-up runs: the chain's first snapshot (taken once) where its spec is in the same
        project; a snapshot of its own project where it is in another; none where the chain took none."""
        if parent.code is None:
            return None
        if str(project.find(self.spec_path, os.getcwd()).root) == parent.code.source:
            return parent.code
        return snapshot.plan(self.spec_path, os.getcwd(), request_mod.build(spec).output_dir)


# load(spec_path, overrides): a child's validated spec, read the way the command line reads the first one
# (the same site profile); spec.load where no profile applies.
Load = Callable[[str, list[tuple[str, Any]]], JobSpec]


def plan(spec_path: str, request: JobRequest, load: Load = spec_mod.load) -> Link:
    """The job and its follow-ups, every spec loaded and validated; a cycle or a missing file is a SpecError.

    Sweeps and chains do not mix yet: a sweep with then: (its follow-ups would see the sweep's folder,
    which holds no run) and a follow-up with a sweep: block (it would run as one job) are refused."""
    path = os.path.abspath(spec_path)
    if request.array is not None and request.then:
        raise SpecError(f"{spec_path}: key 'then': a sweep's follow-ups would wait for all {len(request.array.tasks)} "
                        "tasks and see the sweep's folder, which holds no run of its own\n  hint: submit the sweep, "
                        "then chain from the task you want: hpc-run submit FOLLOW_UP.yaml --after ARRAY_TASK "
                        "(e.g. --after 123_4) with its run_dir set")
    return Link(spec_path=spec_path, spec=None, request=request, after=None,
                children=_children(path, request, (path,), load))


def _children(path: str, parent: JobRequest, ancestors: tuple[str, ...], load: Load) -> tuple[Link, ...]:
    links = []
    for index, step in enumerate(parent.then):
        where = f"{path}: key 'then[{index}].spec'"
        if step.spec in ancestors:
            loop = " -> ".join(os.path.basename(p) for p in (*ancestors[ancestors.index(step.spec):], step.spec))
            raise SpecError(f"{where}: the chain comes back to {step.spec} ({loop}), which would never end\n"
                            "  hint: a follow-up must not name a spec that runs before it; remove that then: step")
        if not os.path.isfile(step.spec):
            raise SpecError(f"{where}: {step.spec} does not exist\n  hint: then: paths are relative to the spec "
                            f"that names them ({os.path.dirname(path)})")
        child_spec = load(step.spec, list(step.overrides))
        if child_spec.sweep is not None:
            raise SpecError(f"{where}: {step.spec} has a sweep: block, and a follow-up runs as one job\n  hint: "
                            "submit that sweep on its own with --after PARENT_JOB_ID")
        preview = Link(step.spec, child_spec, parent, step.after).child_request(parent, "", None)
        links.append(Link(spec_path=step.spec, spec=child_spec, request=preview, after=step.after,
                          children=_children(step.spec, preview, (*ancestors, step.spec), load)))
    return tuple(links)


def check_executor(link: Link, executor: str) -> None:
    """``--after`` names SLURM jobs: the local executor has none to wait for."""
    if executor == "local" and link.request.after is not None:
        raise InputError(f"--after {link.request.after.directive()}: the local executor runs no SLURM jobs and "
                         "cannot wait for one\n  hint: submit with --executor slurm, or chain local steps with "
                         "then: in the spec")


def must_wait(link: Link, executor: str) -> bool:
    """A local chain waits for each step, since nothing else would start the next one."""
    return executor == "local" and bool(link.children)


def notes(link: Link) -> list[str]:
    """Comment lines saying what ``then:`` submits after this job (render and dry runs print them)."""
    if not link.children:
        return []
    lines = ["# then: `hpc-run submit` submits these follow-up jobs after this one (sbatch of this script alone does not):"]
    return lines + _note_lines(link, 1)


def _note_lines(link: Link, depth: int) -> list[str]:
    lines = []
    for child in link.children:
        parent = "this job" if depth == 1 else f"job {link.request.name}"
        lines.append(f"#{'  ' * depth}{child.request.name} ({child.spec_path}): {child.after} on {parent}; "
                     f"output {child.request.output_dir}; sees {PARENT_OUTPUT_DIR_VAR}={link.request.output_dir}")
        lines += _note_lines(child, depth + 1)
    return lines


def on_submitted(link: Link, executor: str, send: Send, say: Say) -> Callable[[Any], None] | None:
    """What to do once ``link``'s job is submitted: submit its follow-ups (None when it has none)."""
    if not link.children:
        return None

    def then(job: Any) -> None:
        if executor == "local":
            _run_local(link, job, send, say)
        else:
            _submit_slurm(link, str(job.job_id), send, say)
    return then


def _submit_slurm(link: Link, job_id: str, send: Send, say: Say) -> None:
    """Every follow-up submitted now, held by SLURM until its condition on ``job_id`` holds."""
    from . import submit as submit_mod

    for child in link.children:
        after = Dependency(((child.after or "afterok", job_id),))
        request = child.child_request(link.request, job_id, after)
        say(f"then: {child.spec_path} waits for {after.directive()} (SLURM cancels it if that can never hold)")
        send(submit_mod.plan(request, "slurm"), child.spec_path, False, on_submitted(_rebuilt(child, request), "slurm", send, say))


def _run_local(link: Link, job: Any, send: Send, say: Say) -> None:
    """Wait for ``job``; run each follow-up whose condition holds, one after another; say why others do not run."""
    from . import submit as submit_mod

    job_id = str(job.job_id)
    try:
        submit_mod.wait(job)
        ended = "COMPLETED"
    except JobFailed:
        ended = "FAILED"
    failed: list[str] = []
    for child in link.children:
        if ended != "COMPLETED" and child.after == "afterok":
            say(f"then: not starting {child.spec_path}: it runs afterok, and job {job_id} ended {ended}")
            continue
        say(f"then: starting {child.spec_path} now that job {job_id} ended {ended} ({child.after}; "
            "the local executor runs a chain one step after another)")
        request = child.child_request(link.request, job_id, None)
        try:
            send(submit_mod.plan(request, "local"), child.spec_path, True, on_submitted(_rebuilt(child, request), "local", send, say))
        except JobFailed as exc:
            failed.append(f"{child.spec_path}: {exc}")
    if failed:
        raise JobFailed("follow-up job(s) failed:\n" + "\n".join(failed))


def _rebuilt(child: Link, request: JobRequest) -> Link:
    """The child with its submitted request, so that its own follow-ups see its real output directory."""
    return dataclasses.replace(child, request=request)
