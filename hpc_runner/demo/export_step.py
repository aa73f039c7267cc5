"""``hpc-run export`` as a chain step: the parent run's model compiled into an AOTInductor package.

jobs/export_step.yaml names it; as a ``then:`` step of a training spec it finds the run through
``HPC_RUNNER_PARENT_OUTPUT_DIR`` (or give ``run_dir`` in its params) and writes model.pt2 into its own
output directory, checked against PyTorch as ``hpc-run export`` checks it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..dependency import parent_output_dir


def export(ctx: Any, run_dir: str | None = None) -> dict[str, Any]:
    """``hpc-run export`` as a chain step: the parent run's model compiled into this job's output directory (rank 0)."""
    from ..export import export_run  # torch.export and the compiler, only when this step runs

    source = Path(parent_output_dir(run_dir, os.environ))
    if not ctx.is_main:
        return {"rank": ctx.env.rank}
    exported = export_run(source, ctx.output_dir / "model.pt2", say=ctx.print)
    ctx.print(exported.summary())
    return {"package": str(exported.package), "max_difference": exported.max_difference}
