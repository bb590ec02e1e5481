"""Bring up `lo` in a fresh network namespace: a new netns starts with only `lo`, and it is down.

One ioctl(SIOCSIFFLAGS) on a throwaway socket does it, in the child before it execs: simpler than a
netlink request (rtnl.py, used on the bridge path) and it needs nothing imported.
"""

from __future__ import annotations

import _socket
import fcntl

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def up(name: str = "lo") -> None:
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM, 0)
    try:
        # struct ifreq: 16 bytes of name, then (for these two calls) a short of flags.
        ifname = name.encode().ljust(16, b"\0")
        reply = fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, ifname + bytes(24))
        flags = int.from_bytes(reply[16:18], "little") | IFF_UP
        fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, ifname + flags.to_bytes(2, "little") + bytes(22))
    finally:
        sock.close()
