"""Bring up `lo` in a fresh network namespace: a new netns starts with only `lo`, and it is down.

One ioctl(SIOCSIFFLAGS) on a throwaway socket does it; netlink (pyroute2) is reserved for the bridge
path, where its ~140 ms import is worth paying.
"""

from __future__ import annotations

import _socket
import fcntl
import struct

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def up(name: str = "lo") -> None:
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM, 0)
    try:
        ifreq = struct.pack("16sh", name.encode(), 0)
        flags = struct.unpack("16sh", fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, struct.pack("16sh", name.encode(), flags | IFF_UP))
    finally:
        sock.close()
