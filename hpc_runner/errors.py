"""The one exception family for user-facing errors, one kind per meaning; anything else is a bug.

Exit codes as the README promises: 2 for bad input (a spec, a flag, an argument), 1 for
everything that failed at run time (the scheduler, a launch, a job).
"""

from __future__ import annotations


class HpcRunnerError(Exception):
    """A problem the user can fix; the CLI prints it without a traceback."""

    exit_code = 1


class InputError(HpcRunnerError):
    """Bad input on the command line or in an argument list (exit 2)."""

    exit_code = 2


class SpecError(InputError):
    """A job spec or an override of one is invalid (exit 2)."""


class SchedulerError(HpcRunnerError):
    """SLURM refused the job or cannot be reached (exit 1)."""


class LaunchError(HpcRunnerError):
    """A rank could not be placed or started: environment, rendezvous, device (exit 1)."""


class JobFailed(HpcRunnerError):
    """A submitted job or one of its ranks failed (exit 1)."""
