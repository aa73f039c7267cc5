"""Time limits in SLURM's own words."""

from __future__ import annotations


def format_time(minutes: int) -> str:
    """Minutes as SLURM's ``D-HH:MM:SS`` (``HH:MM:SS`` under a day)."""
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    clock = f"{hours:02d}:{mins:02d}:00"
    return f"{days}-{clock}" if days else clock
