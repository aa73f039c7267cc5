"""What the entrypoint needs from a spec, as one picklable object with an argv form."""

from __future__ import annotations

import json
from dataclasses import dataclass

from .spec import DataSpec, Entry, FunctionEntry, JobSpec, ScriptEntry


@dataclass(frozen=True)
class RunConfig:
    """Backend, timeouts, output directory and user entry for one run of the entrypoint."""

    mode: str
    entry: Entry
    output_dir: str
    init_timeout_s: int = 300
    data: DataSpec | None = None
    max_restarts: int = 3

    @classmethod
    def from_spec(cls, spec: JobSpec) -> RunConfig:
        """Take the entrypoint's part of a validated spec."""
        return cls(
            mode=spec.mode,
            entry=spec.entrypoint,
            output_dir=spec.run_dir,
            init_timeout_s=spec.init_timeout_s,
            data=spec.data,
            max_restarts=spec.requeue.max_restarts,
        )

    def to_argv(self) -> list[str]:
        """Arguments for ``python -m hpc_runner.entrypoint`` (quoted later, as a whole)."""
        # "--key=value" keeps values that start with "-" from reading as options.
        argv = [f"--mode={self.mode}", f"--output-dir={self.output_dir}",
                f"--init-timeout={self.init_timeout_s}", f"--max-restarts={self.max_restarts}"]
        if self.data is not None:
            argv += [f"--samples={self.data.samples}", f"--batch-size={self.data.batch_size}",
                     f"--val-samples={self.data.val_samples}"]
            if not self.data.audit:
                argv.append("--no-audit")
        if isinstance(self.entry, FunctionEntry):
            argv += [f"--function={self.entry.target}", f"--params={json.dumps(self.entry.params, sort_keys=True)}"]
        else:
            argv += [f"--script={self.entry.path}", "--", *self.entry.args]
        return argv

    @classmethod
    def from_argv(cls, argv: list[str]) -> RunConfig:
        """Inverse of :meth:`to_argv`."""
        import argparse  # only the entrypoint parses argv; render never does

        script_args: list[str] = []
        if "--" in argv:
            cut = argv.index("--")
            argv, script_args = argv[:cut], argv[cut + 1:]
        parser = argparse.ArgumentParser(prog="python -m hpc_runner.entrypoint",
                                         description="Run user code on one rank of an hpc_runner job.")
        parser.add_argument("--mode", choices=("threading", "gloo", "nccl"), required=True)
        parser.add_argument("--output-dir", required=True)
        parser.add_argument("--init-timeout", type=int, default=300)
        parser.add_argument("--max-restarts", type=int, default=3)
        parser.add_argument("--samples", type=int)
        parser.add_argument("--batch-size", type=int)
        parser.add_argument("--val-samples", type=int, default=0)
        parser.add_argument("--no-audit", action="store_true")
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--function")
        group.add_argument("--script")
        parser.add_argument("--params", default="{}")
        ns = parser.parse_args(argv)
        entry: Entry
        if ns.function:
            entry = FunctionEntry(target=ns.function, params=json.loads(ns.params))
        else:
            entry = ScriptEntry(path=ns.script, args=tuple(script_args))
        data = None
        if ns.samples is not None and ns.batch_size is not None:
            data = DataSpec(samples=ns.samples, batch_size=ns.batch_size,
                            val_samples=ns.val_samples, audit=not ns.no_audit)
        return cls(mode=ns.mode, entry=entry, output_dir=ns.output_dir, init_timeout_s=ns.init_timeout,
                   data=data, max_restarts=ns.max_restarts)
