"""Code snapshots: the project's files copied into the run's output directory at submit.

A job that waits an hour in the queue, or that SLURM requeues after a preemption (a requeue reruns
the batch script), would otherwise import whatever the files say when it starts. ``hpc-run submit``
copies the project once, at submit, to ``OUTPUT_DIR/code/<stamp>-<id>/``; the job ``cd``s into the
copy and puts it first on ``PYTHONPATH``, so later edits reach neither queued nor requeued jobs.

What is copied (``plan`` lists it, ``take`` copies it): in a git work tree, the tracked files as they
are on disk (uncommitted edits included, deleted ones skipped) and the untracked files git does not
ignore; elsewhere, the folder without hidden folders and ``__pycache__``, up to a limit. The run's
own output directory is never copied into itself.

The snapshot's identity (the commit and a short hash of the changes) goes to the ranks
(``HPC_RUNNER_CODE``), into run.json and the run's checkpoint fingerprint, and into the job's record.
Importing this module starts no process: git runs only inside ``plan``.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import shlex
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .errors import InputError
from .variables import CODE_DIR_VAR, CODE_SOURCE_VAR, CODE_VAR

FOLDER = "code"                     # OUTPUT_DIR/code/<stamp>-<id>/
MAX_FILES = 5000                    # a folder that is not a git work tree: past these, submit refuses
MAX_BYTES = 200 * 1024 * 1024
SKIPPED_FOLDERS = ("__pycache__",)  # besides hidden folders (.git, .venv, .cache, ...)
NO_SNAPSHOT = ("# code: no snapshot: the job runs the code as it is when it starts (and again when it is requeued);",
               "# hpc-run submit freezes a copy at submit unless --no-snapshot is given")
_HINT = "make the project a git work tree (git init, and .gitignore what the job does not need), or pass --no-snapshot"


@dataclass(frozen=True)
class Snapshot:
    """A copy of the project's code for one job: what is copied, from where, to where, and its identity."""

    source: str                     # the project's root, absolute
    path: str                       # the copy: OUTPUT_DIR/code/<stamp>-<id>
    identity: str                   # "3f2a1c9b (clean)", "3f2a1c9b+changes:5e6f7a8b", "no commit+changes:...", "no git, files:..."
    commit: str | None              # the full commit (git rev-parse HEAD), None outside git or before the first commit
    files: tuple[str, ...]          # relative to ``source``, sorted
    size: int                       # bytes, all files
    python_path: tuple[str, ...]    # first on the job's PYTHONPATH: the copy, and the copies of the submitter's sys.path entries inside the project

    def mapped(self, path: str) -> str:
        """``path`` (absolute) as the job sees it: the copy's file where the snapshot holds it, else unchanged."""
        rel = os.path.relpath(os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path)), self.source)
        return os.path.join(self.path, rel) if rel in set(self.files) else path

    def interpreter(self, python: str, here: str) -> str:
        """A relative interpreter path (``.venv/bin/python``) made absolute: the job starts it from inside the copy."""
        return os.path.abspath(os.path.join(here, python)) if "/" in python and not os.path.isabs(python) else python

    def shell_lines(self) -> tuple[str, ...]:
        """What the batch shell runs before srun: say which code, cd into it, put it first on PYTHONPATH."""
        said = " ".join(f"snapshot {self.identity} of {self.source}".split())  # a comment stays one line
        return (f"# code: {said}, taken at submit: the job and its requeues run this copy",
                f"cd {shlex.quote(self.path)}",
                f'export PYTHONPATH={shlex.quote(":".join(self.python_path))}"${{PYTHONPATH:+:$PYTHONPATH}}"',
                f"export {CODE_VAR}={shlex.quote(self.identity)} {CODE_DIR_VAR}={shlex.quote(self.path)} "
                f"{CODE_SOURCE_VAR}={shlex.quote(self.source)}")

    def summary(self) -> str:
        """One line for the terminal: ``code snapshot: 3f2a1c9b (clean), 135 files, 0.9 MB -> PATH``."""
        return f"code snapshot: {self.identity}, {len(self.files)} files, {self.size / 1e6:.1f} MB -> {self.path}"


def shell_lines(code: Snapshot | None) -> tuple[str, ...]:
    """The snapshot's lines, or the comment saying that the job runs the code as it is when it starts."""
    return NO_SNAPSHOT if code is None else code.shell_lines()


def original(path: str, record: dict[str, str] | None) -> str:
    """A path the job saw inside its snapshot (run.json's ``code`` record: dir, source) as the project's own file."""
    if not record or not record.get("dir") or not record.get("source") or not _inside(path, record["dir"]):
        return path
    return os.path.normpath(os.path.join(record["source"], os.path.relpath(path, record["dir"])))


def plan(spec_path: str | None, cwd: str, output_dir: str, sys_path: list[str] | None = None,
         stamp: str | None = None) -> Snapshot:
    """List the project's files and compute their identity; nothing is copied (``take`` copies).

    The project is ``project.find``'s: the git work tree holding the spec, else the one holding ``cwd``,
    else ``cwd``. An InputError refuses a project inside the output directory, a non-git folder past
    the limit, and a copy path that PYTHONPATH cannot hold.
    """
    from . import project  # runs git: imported here, so that importing this module starts nothing

    found = project.find(spec_path, cwd)
    root, output_dir = str(found.root), os.path.realpath(output_dir)
    if _inside(root, output_dir):
        raise InputError(f"code snapshot: the output directory {output_dir} holds the whole project {root}, so the "
                         "copy would hold its own outputs\n  hint: set output_dir to a folder inside the project that "
                         "git ignores (runs/NAME) or outside it, or pass --no-snapshot")
    dest = os.path.join(output_dir, FOLDER, stamp or f"{datetime.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}")
    if ":" in dest:
        raise InputError(f"code snapshot: {dest} holds ':', which PYTHONPATH cannot carry\n"
                         "  hint: choose an output_dir without ':', or pass --no-snapshot")
    keep = (lambda rel: not _inside(os.path.join(root, rel), output_dir))
    if found.git:
        files, identity, commit = _from_git(root, keep)
    else:
        files = _walk(root, output_dir)
        identity, commit = f"no git, files:{_content_hash(root, files)}", None
    size = sum(_size(os.path.join(root, rel)) for rel in files)
    return Snapshot(source=root, path=dest, identity=identity, commit=commit, files=tuple(files), size=size,
                    python_path=_python_path(root, dest, files, sys_path, cwd))


def take(code: Snapshot) -> Snapshot:
    """Copy the planned files to ``code.path`` (through a temporary folder, so a copy is whole or absent)."""
    tmp = f"{code.path}.partial"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        for rel in code.files:
            src, dst = os.path.join(code.source, rel), os.path.join(tmp, rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if os.path.islink(src):
                os.symlink(os.readlink(src), dst)
            elif os.path.isfile(src):  # removed since the plan: nothing to copy
                shutil.copy2(src, dst)
        os.replace(tmp, code.path)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise InputError(f"code snapshot: cannot copy {code.source} to {code.path}: {exc}\n"
                         "  hint: check that the output directory is writable and has room, or pass --no-snapshot") from None
    return code


@contextlib.contextmanager
def taken(code: Snapshot | None, say: Callable[[str], None]) -> Iterator[None]:
    """Copy the snapshot (saying so) for a submission; remove it again where the submission fails.
    A copy that exists already (a chain's follow-ups run their first job's) is used as it is."""
    if code is None or os.path.isdir(code.path):  # none, or taken already for this chain's first job
        yield
        return
    say(take(code).summary())
    try:
        yield
    except BaseException:
        shutil.rmtree(code.path, ignore_errors=True)
        raise


def _inside(path: str, folder: str) -> bool:
    """``path`` is ``folder`` or lies under it (both absolute)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _size(path: str) -> int:
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0


def _git(root: str, *args: str) -> bytes | None:
    """git's standard output in ``root``, None where it fails."""
    import subprocess

    try:
        done = subprocess.run(["git", "-C", root, *args], capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _git_files(root: str, *args: str) -> list[str]:
    out = _git(root, "-c", "core.quotepath=off", "ls-files", "-z", *args)
    if out is None:
        raise InputError(f"code snapshot: git ls-files failed in {root}\n  hint: check `git -C {root} status`, or pass --no-snapshot")
    return [name.decode("utf-8", "surrogateescape") for name in out.split(b"\0") if name]


def _from_git(root: str, keep: Callable[[str], bool]) -> tuple[list[str], str, str | None]:
    """Tracked files still on disk and untracked files git does not ignore; the identity of their state."""
    tracked = [rel for rel in _git_files(root, "--cached") if keep(rel)]
    untracked = [rel for rel in _git_files(root, "--others", "--exclude-standard") if keep(rel)]
    # Deleted tracked files, and folders (submodules, nested repositories): nothing to copy.
    files = sorted({rel for rel in (*tracked, *untracked)
                    if os.path.islink(os.path.join(root, rel)) or os.path.isfile(os.path.join(root, rel))})
    head = _git(root, "rev-parse", "--verify", "--quiet", "HEAD")
    commit = head.decode().strip() if head else None
    if commit is None:  # before the first commit: every file is a change
        return files, f"no commit+changes:{_content_hash(root, files)}", None
    diff = _git(root, "diff", "--binary", "--no-ext-diff", "--no-textconv", "--no-color", "HEAD", "--") or b""
    digest = hashlib.sha256(diff)
    digest.update(_content_hash(root, sorted(set(untracked) & set(files)), full=True).encode())
    changed = bool(diff) or any(rel in files for rel in untracked)
    return files, (f"{commit[:8]}+changes:{digest.hexdigest()[:8]}" if changed else f"{commit[:8]} (clean)"), commit


def _content_hash(root: str, files: list[str], full: bool = False) -> str:
    """A hash of each file's path and content (a link's target), in path order: nothing else counts."""
    digest = hashlib.sha256()
    for rel in files:
        path = os.path.join(root, rel)
        digest.update(rel.encode("utf-8", "surrogateescape") + b"\0")
        try:
            if os.path.islink(path):
                digest.update(b"link:" + os.readlink(path).encode("utf-8", "surrogateescape"))
            else:
                with open(path, "rb") as handle:
                    digest.update(hashlib.file_digest(handle, "sha256").digest())
        except OSError:
            digest.update(b"unreadable")
    return digest.hexdigest() if full else digest.hexdigest()[:8]


def _walk(root: str, output_dir: str) -> list[str]:
    """A folder that is not a git work tree: every file but hidden folders, __pycache__ and the output directory."""
    files: list[str] = []
    size = 0
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_FOLDERS
                         and not _inside(os.path.join(folder, d), output_dir))
        for name in sorted(names):
            path = os.path.join(folder, name)
            files.append(os.path.relpath(path, root))
            size += _size(path)
            if len(files) > MAX_FILES or size > MAX_BYTES:
                raise InputError(
                    f"code snapshot: {root} is not a git work tree and holds more than {MAX_FILES} files or "
                    f"{MAX_BYTES // 2**20} MB (hidden folders and __pycache__ left out); hpc-run submit will not copy "
                    f"all of that\n  hint: {_HINT}, or submit from a smaller folder")
    return sorted(files)


def _python_path(root: str, dest: str, files: list[str], sys_path: list[str] | None, cwd: str) -> tuple[str, ...]:
    """The copy first, then the copy of each submitter's sys.path entry inside the project (a src/ layout,
    an editable install's folder) that the snapshot holds files under, in sys.path's order."""
    import sys

    entries = [dest]
    prefixes = {os.path.dirname(rel) for rel in files}
    for entry in sys.path if sys_path is None else sys_path:
        path = os.path.realpath(os.path.join(cwd, entry or "."))
        if not _inside(path, root):
            continue
        rel = os.path.relpath(path, root)
        held = rel == "." or any(p == rel or p.startswith(rel + os.sep) for p in prefixes)
        mapped = os.path.normpath(os.path.join(dest, rel))
        if held and mapped not in entries:
            entries.append(mapped)
    return tuple(entries)
