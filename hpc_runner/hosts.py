"""Turn a SLURM node name into an address other ranks can reach (DNS, then scontrol's NodeAddr)."""

from __future__ import annotations

import logging
import socket
import subprocess

from .errors import LaunchError

log = logging.getLogger(__name__)


def node_addr(name: str) -> str | None:
    """The ``NodeAddr`` SLURM holds for ``name``, or None where scontrol cannot tell."""
    try:
        out = subprocess.run(["scontrol", "show", "node", "-o", name], capture_output=True,
                             text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for field in out.split():
        if field.startswith("NodeAddr="):
            return field.partition("=")[2] or None
    return None


def _dns(name: str) -> str | None:
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return None
    return str(infos[0][4][0]) if infos else None


def resolve_address(name: str) -> str:
    """An IPv4 address for ``name``: DNS first; where the name does not resolve, SLURM's NodeAddr."""
    found = _dns(name)
    if found:
        return found
    log.debug("%s does not resolve; asking scontrol for its NodeAddr", name)
    addr = node_addr(name)
    if addr:
        return _dns(addr) or addr
    raise LaunchError(
        f"master host {name!r} does not resolve and scontrol has no NodeAddr for it.\n"
        "  hint: set MASTER_ADDR to an address every node can reach, or fix the node's DNS entry"
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m hpc_runner.hosts NODELIST``: print the first node's address (once per job, in the batch script)."""
    import sys

    from .environment import expand_nodelist

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m hpc_runner.hosts NODELIST", file=sys.stderr)
        return 2
    try:
        print(resolve_address(expand_nodelist(args[0])[0]))
    except LaunchError as exc:
        print(f"hpc_runner error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
