"""The one exception family for user-facing errors; anything else is a bug."""

from __future__ import annotations


class HpcRunnerError(Exception):
    """A problem the user can fix; the CLI prints it without a traceback (exit 2 or 1)."""

    exit_code = 2


class SpecError(HpcRunnerError):
    """A job spec or an override is invalid (exit 2)."""


class LaunchError(HpcRunnerError):
    """The distributed environment is inconsistent or cannot be launched as it is (exit 1)."""

    exit_code = 1


class JobError(HpcRunnerError):
    """A submitted job or a runtime step failed (exit 1)."""

    exit_code = 1
