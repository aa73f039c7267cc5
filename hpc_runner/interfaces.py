"""Which network interface reaches the master: what Gloo should use where the host name misleads it.

Gloo binds to the address the machine's host name resolves to unless GLOO_SOCKET_IFNAME says
otherwise. On many clusters (and on the testbed) that name resolves to 127.0.0.1, so every
rank advertises its own loopback and the ranks of other nodes cannot connect. The interface
the kernel routes the master's address through is the one every rank can be reached on.
"""

from __future__ import annotations

import fcntl
import socket
import struct

_SIOCGIFADDR = 0x8915


def address_of(name: str) -> str | None:
    """The IPv4 address of interface ``name``, or None where it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


def route_source(address: str, port: int) -> str | None:
    """The local address the kernel would send from to reach ``address`` (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((address, port or 9))
            return str(sock.getsockname()[0])
    except OSError:
        return None


def interface_towards(address: str, port: int) -> tuple[str, str] | None:
    """(interface name, its address) of the route to ``address``, or None where it cannot be told."""
    source = route_source(address, port)
    if source is None:
        return None
    for _, name in socket.if_nameindex():
        if address_of(name) == source:
            return name, source
    return None
