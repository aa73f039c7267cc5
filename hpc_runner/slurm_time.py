"""Time limits in SLURM's own words: parsed as ``sbatch --time`` reads them, printed as SLURM prints them."""

from __future__ import annotations

import re

__all__ = ["ACCEPTED_FORMS", "TimeFormatError", "parse_time", "format_time"]

ACCEPTED_FORMS = ("MM", "MM:SS", "HH:MM:SS", "D-HH", "D-HH:MM", "D-HH:MM:SS")

# SLURM's grammar (sbatch --time, src/common/parse_time.c time_str2secs):
#   minutes | minutes:seconds | hours:minutes:seconds
#   days-hours | days-hours:minutes | days-hours:minutes:seconds
# Fields are plain digits with no range check (SLURM reads "0:90" as 90 seconds); the total is in
# seconds and rounds UP to whole minutes.
_TIME = re.compile(
    r"(?:(?P<days>\d+)-(?P<d_hours>\d+)(?::(?P<d_mins>\d+)(?::(?P<d_secs>\d+))?)?"
    r"|(?P<first>\d+)(?::(?P<second>\d+)(?::(?P<third>\d+))?)?)",
    re.ASCII,  # digits are 0-9 only, as SLURM's parser reads them
)


class TimeFormatError(ValueError):
    """A time limit SLURM would not read, or one we refuse (zero: SLURM's 'no limit')."""


def _accepted() -> str:
    return f"use minutes (90) or one of {', '.join(ACCEPTED_FORMS)} (e.g. '1:30:00', '1-12')"


def parse_time(text: str | int) -> int:
    """A SLURM time limit as whole minutes, exactly as ``sbatch --time=TEXT`` reads it.

    ``"10:00"`` is ten minutes (MM:SS), ``"0:30"`` thirty seconds and so one minute, ``"1-12"``
    a day and a half, ``"90"`` or ``90`` ninety minutes. Raises TimeFormatError for anything else,
    and for a total of zero (SLURM's "no limit"), which a job spec must not ask for by accident.
    """
    if isinstance(text, bool):
        raise TimeFormatError(f"{text!r} is not a time; {_accepted()}")
    if isinstance(text, int):
        if text < 1:
            raise TimeFormatError(f"must be at least one minute, got {text}; {_accepted()}")
        return text
    if not isinstance(text, str):
        raise TimeFormatError(f"{text!r} is not a time; {_accepted()}")
    match = _TIME.fullmatch(text)
    if not match:
        shown = repr(text) if text else "an empty value"
        raise TimeFormatError(f"{shown} is not a time; {_accepted()}")
    g = {k: int(v) if v is not None else None for k, v in match.groupdict().items()}
    if g["days"] is not None:
        seconds = g["days"] * 86400 + g["d_hours"] * 3600 + (g["d_mins"] or 0) * 60 + (g["d_secs"] or 0)
    elif g["third"] is not None:                       # hours:minutes:seconds
        seconds = g["first"] * 3600 + g["second"] * 60 + g["third"]
    else:                                              # minutes[:seconds]
        seconds = g["first"] * 60 + (g["second"] or 0)
    minutes = -(-seconds // 60)                        # SLURM rounds seconds up to the next minute
    if minutes < 1:
        raise TimeFormatError(f"{text!r} must be at least one minute (0 means 'no limit' to SLURM); {_accepted()}")
    return minutes


def format_time(minutes: int) -> str:
    """Minutes as SLURM's ``D-HH:MM:SS`` (``HH:MM:SS`` under a day)."""
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    clock = f"{hours:02d}:{mins:02d}:00"
    return f"{days}-{clock}" if days else clock
