"""rtnetlink (netlink(7), rtnetlink(7)): the link, address and route requests pycontain makes, on a raw socket.

Why not pyroute2? The project's rule is "a well-kept library before writing your own", and pyroute2 is
one. But `import pyroute2` pulls in asyncio, multiprocessing and unittest.mock. Measured on the reference
VM (2 vCPUs, Debian 12, pyroute2 0.9.7) inside a network namespace, per bridged start: the import cost
120-150 ms idle and 135-270 ms under load, the netlink requests themselves 6-10 ms. It was nearly all of
the difference between `run --rm busybox /bin/true` with `--network none` (~30 ms; 45-60 ms under that
load) and with the default bridge (~170 ms; 230-270 ms under load). This module costs ~0.6 ms to import
(`_socket` and `struct`, both built into the interpreter) and ~1.5 ms for all the requests of a bridged
start; the same start now takes ~1.2x the `--network none` time (`scripts/bench --network-bench`). It
covers exactly what bridge.py, veth.py and ipam.py ask:

    link_index(name)                        RTM_GETLINK            ifindex or None
    add_bridge(name, mac)                   RTM_NEWLINK            kind "bridge", up
    add_veth(name, master, peer=..., ...)   RTM_NEWLINK            kind "veth", up; the peer made directly
                                                                   in another netns (IFLA_NET_NS_FD)
    set_link(index, up=, master=, address=) RTM_NEWLINK            on an existing link
    set_hairpin(index)                      RTM_SETLINK AF_BRIDGE  IFLA_PROTINFO { IFLA_BRPORT_MODE }
    delete_link(index)                      RTM_DELLINK
    add_address(index, addr, prefixlen)     RTM_NEWADDR            IPv4, with its broadcast address
    add_default_route(gateway)              RTM_NEWROUTE           main table
    ipv4_routes()                           RTM_GETROUTE dump      (destination, prefix length, table)
    ipv4_addresses(index)                   RTM_GETADDR dump       (address, prefix length) of one link
    link_alias(index)                       RTM_GETLINK            IFLA_IFALIAS: whose bridge it is

A message is a 16-byte nlmsghdr, a fixed family header (ifinfomsg, ifaddrmsg or rtmsg) and a list of
attributes (rtattr: length, type, value padded to 4 bytes; nested attributes are attribute lists in
the value). Every change asks for an acknowledgement: the kernel answers with NLMSG_ERROR, whose error
is 0 on success and -errno on failure; that failure is raised as OSError(errno, "what: why") naming the
request, with the kernel's own explanation (extended ACK) when it gives one.

A netlink socket stays bound to the network namespace it was opened in, whichever namespace its owner
moves to later: to configure another namespace, setns(2) there, open an Rtnl, setns back (see
veth.configure_inside). The socket is `_socket`'s, the C module under `socket`: socket.py's enums cost
another 2-8 ms to import. The extended ACK strings need Linux >= 4.12 (older kernels simply give none).
"""

from __future__ import annotations

import _socket
import errno
import os
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

# <linux/netlink.h>
NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10  # errors do not echo the whole request back
NETLINK_EXT_ACK = 11  # errors may carry a message saying why
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_CAPPED = 0x100  # on NLMSG_ERROR: the request is not echoed
NLM_F_ACK_TLVS = 0x200  # on NLMSG_ERROR: attributes (NLMSGERR_ATTR_*) follow
NLMSGERR_ATTR_MSG = 1
NLA_F_NESTED = 0x8000

# <linux/rtnetlink.h>
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
RT_TABLE_MAIN = 254
RT_TABLE_LOCAL = 255
RTPROT_BOOT = 3  # what `ip route add` uses: a route set up by configuration, not by a daemon
RT_SCOPE_UNIVERSE = 0
RTN_UNICAST = 1
RTA_DST, RTA_GATEWAY, RTA_TABLE = 1, 5, 15
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4

# <linux/if_link.h>, <linux/veth.h>, <net/if.h>
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MASTER = 10
IFLA_PROTINFO = 12
IFLA_LINKINFO = 18
IFLA_NET_NS_FD = 28
IFLA_IFALIAS = 20
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1
IFLA_BRPORT_MODE = 4  # hairpin mode
IFF_UP = 0x1

AF_UNSPEC = 0
AF_INET = 2
AF_BRIDGE = 7

NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
IFINFOMSG = struct.Struct("=BxHiII")  # family, (pad), device type, index, flags, change mask
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, index
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
RTATTR = struct.Struct("=HH")  # length, type
NLMSGERR = struct.Struct("=i")  # error (0 or -errno), followed by the request's header


# ---------------------------------------------------------------- encoding

def attr(kind: int, value: bytes) -> bytes:
    """One rtattr: header, value, padding to a multiple of 4 (the length counts no padding)."""
    length = RTATTR.size + len(value)
    return RTATTR.pack(length, kind) + value + bytes(-length % 4)


def nested(kind: int, *attrs: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(attrs))


def ifname(name: str) -> bytes:
    """A link name as the kernel wants it: NUL-terminated, at most 15 characters (IFNAMSIZ)."""
    raw = name.encode()
    if not raw or len(raw) > 15 or b"/" in raw or b"\0" in raw:
        raise ValueError(f"invalid interface name {name!r}")
    return raw + b"\0"


def u32(value: int) -> bytes:
    return struct.pack("=I", value)


def ipv4(text: str) -> bytes:
    try:
        if text.count(".") == 3:  # inet_aton alone would also take "10.1" and "10"
            return _socket.inet_aton(text)
    except OSError:
        pass
    raise ValueError(f"not an IPv4 address: {text!r}")


def mac(text: str) -> bytes:
    raw = bytes.fromhex(text.replace(":", ""))
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {text!r}")
    return raw


def message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, flags | NLM_F_REQUEST, seq, 0) + body


def ifinfomsg(index: int = 0, *, family: int = AF_UNSPEC, up: bool | None = None) -> bytes:
    """The link header; `up` sets or clears IFF_UP (None: leave the flags alone)."""
    change = 0 if up is None else IFF_UP
    return IFINFOMSG.pack(family, 0, index, IFF_UP if up else 0, change)


# ---------------------------------------------------------------- decoding

def attrs(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """Attribute type (without NLA_F_NESTED) -> value; the last one wins if a type repeats."""
    out = {}
    while offset + RTATTR.size <= len(data):
        length, kind = RTATTR.unpack_from(data, offset)
        if length < RTATTR.size or offset + length > len(data):
            break
        out[kind & ~NLA_F_NESTED & 0xFFFF] = data[offset + RTATTR.size:offset + length]
        offset += (length + 3) & ~3
    return out


def messages(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """(type, flags, sequence, payload) of each message in one datagram."""
    offset = 0
    while offset + NLMSGHDR.size <= len(data):
        length, kind, flags, seq, _ = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size or offset + length > len(data):
            raise OSError(errno.EBADMSG, f"rtnetlink: malformed message of length {length} at offset {offset}")
        yield kind, flags, seq, data[offset + NLMSGHDR.size:offset + length]
        offset += (length + 3) & ~3


def error_of(flags: int, payload: bytes, what: str) -> OSError | None:
    """An NLMSG_ERROR payload: None for an ACK (error 0), else the OSError to raise."""
    if len(payload) < NLMSGERR.size:
        return OSError(errno.EBADMSG, f"{what}: truncated netlink error message")
    (code,) = NLMSGERR.unpack_from(payload)
    if code == 0:
        return None
    err = -code
    reason = os.strerror(err)
    if flags & NLM_F_ACK_TLVS:
        # After the error: the request's header (and its payload too, unless NLM_F_CAPPED), then TLVs.
        skip = NLMSGERR.size + NLMSGHDR.size
        if not flags & NLM_F_CAPPED and len(payload) >= skip:
            skip = NLMSGERR.size + NLMSGHDR.unpack_from(payload, NLMSGERR.size)[0]
        text = attrs(payload, (skip + 3) & ~3).get(NLMSGERR_ATTR_MSG)
        if text:
            reason += " (" + text.rstrip(b"\0").decode(errors="replace") + ")"
    return OSError(err, f"{what}: {reason}")


# ---------------------------------------------------------------- the socket

class Rtnl:
    """One NETLINK_ROUTE socket, bound to the network namespace it was opened in."""

    def __init__(self, sock: Any = None) -> None:
        if sock is None:
            sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, NETLINK_ROUTE)
            try:
                for option in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
                    try:
                        sock.setsockopt(SOL_NETLINK, option, 1)
                    except OSError:
                        pass  # an older kernel: plain errors are fine
                sock.bind((0, 0))
            except BaseException:
                sock.close()
                raise
        self.sock = sock
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one request, its answer -------------------------------------------------------------

    def request(self, kind: int, flags: int, body: bytes, what: str) -> list[tuple[int, bytes]]:
        """Send one request and collect the answer: (type, payload) of every message before the
        kernel's ACK (NLMSG_ERROR 0) or, for a dump, before NLMSG_DONE. Errors raise OSError.
        Every request but a dump asks for the ACK, so every request has a definite end."""
        self.seq += 1
        seq = self.seq
        # NLM_F_DUMP's bits mean other things (NLM_F_REPLACE, NLM_F_EXCL) on requests that change things.
        dump = kind & 3 == 2 and flags & NLM_F_DUMP == NLM_F_DUMP  # RTM_GET* are the types 4n + 2
        self.sock.send(message(kind, flags if dump else flags | NLM_F_ACK, seq, body))
        out: list[tuple[int, bytes]] = []
        while True:
            data = self.sock.recv(1 << 16)
            for rkind, rflags, rseq, payload in messages(data):
                if rseq != seq:
                    continue  # an answer to an earlier request that gave up early
                if rkind == NLMSG_ERROR:
                    error = error_of(rflags, payload, what)
                    if error is not None:
                        raise error
                    return out
                if rkind == NLMSG_DONE:
                    return out
                out.append((rkind, payload))

    # -- links -------------------------------------------------------------------------------

    def link_index(self, name: str) -> int | None:
        """The index of the link called `name` in this socket's namespace, or None."""
        try:
            answer = self.request(RTM_GETLINK, 0, ifinfomsg() + attr(IFLA_IFNAME, ifname(name)), f"RTM_GETLINK {name}")
        except OSError as e:
            if e.errno == errno.ENODEV:
                return None
            raise
        for kind, payload in answer:
            if kind == RTM_NEWLINK:
                return int(IFINFOMSG.unpack_from(payload)[2])
        return None

    def link_alias(self, index: int) -> str:
        """A link's alias (`ip link set X alias TEXT`), "" if it has none."""
        for kind, payload in self.request(RTM_GETLINK, 0, ifinfomsg(index), f"RTM_GETLINK {index}"):
            if kind == RTM_NEWLINK:
                return attrs(payload, IFINFOMSG.size).get(IFLA_IFALIAS, b"").rstrip(b"\0").decode(errors="replace")
        return ""

    def add_bridge(self, name: str, address: str | None = None, up: bool = True) -> None:
        body = ifinfomsg(up=up) + attr(IFLA_IFNAME, ifname(name))
        if address:
            body += attr(IFLA_ADDRESS, mac(address))
        body += nested(IFLA_LINKINFO, attr(IFLA_INFO_KIND, b"bridge"))
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body, f"RTM_NEWLINK bridge {name}")

    def add_veth(self, name: str, *, peer: str, peer_netns_fd: int | None = None, peer_address: str | None = None,
                 master: int | None = None, up: bool = True) -> None:
        """A veth pair: `name` here (on bridge `master`, up if `up`), `peer` in the namespace of
        peer_netns_fd (IFLA_NET_NS_FD: created there directly, never visible here), left down:
        veth_newlink() configures the peer before the two ends are joined, and IFF_UP on the peer
        in this request fails with ENOTCONN. Bring it up with set_link() from its own namespace."""
        peer_body = ifinfomsg() + attr(IFLA_IFNAME, ifname(peer))
        if peer_netns_fd is not None:
            peer_body += attr(IFLA_NET_NS_FD, u32(peer_netns_fd))
        if peer_address:
            peer_body += attr(IFLA_ADDRESS, mac(peer_address))
        body = ifinfomsg(up=up) + attr(IFLA_IFNAME, ifname(name))
        if master is not None:
            body += attr(IFLA_MASTER, u32(master))
        # The peer's attribute holds a whole ifinfomsg and its attributes (veth_newlink(), drivers/net/veth.c).
        body += nested(IFLA_LINKINFO, attr(IFLA_INFO_KIND, b"veth"),
                       nested(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer_body)))
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body, f"RTM_NEWLINK veth {name} <-> {peer}")

    def set_link(self, index: int, *, up: bool | None = None, master: int | None = None,
                 address: str | None = None, alias: str | None = None) -> None:
        body = ifinfomsg(index, up=up)
        if alias is not None:
            body += attr(IFLA_IFALIAS, alias.encode() + b"\0")
        if master is not None:
            body += attr(IFLA_MASTER, u32(master))
        if address:
            body += attr(IFLA_ADDRESS, mac(address))
        self.request(RTM_NEWLINK, 0, body, f"RTM_NEWLINK set link {index}")

    def set_hairpin(self, index: int, on: bool = True) -> None:
        """Hairpin mode on a bridge port: the bridge may send a frame back out of the port it came in on
        (what `bridge link set dev X hairpin on` sends)."""
        body = ifinfomsg(index, family=AF_BRIDGE) + nested(IFLA_PROTINFO, attr(IFLA_BRPORT_MODE, bytes([on])))
        self.request(RTM_SETLINK, 0, body, f"RTM_SETLINK hairpin on bridge port {index}")

    def delete_link(self, index: int) -> None:
        self.request(RTM_DELLINK, 0, ifinfomsg(index), f"RTM_DELLINK link {index}")

    # -- addresses and routes ----------------------------------------------------------------

    def add_address(self, index: int, address: str, prefixlen: int) -> None:
        """An IPv4 address with its subnet's broadcast address (as `ip addr add A/N brd +`)."""
        local = ipv4(address)
        host_bits = (1 << (32 - prefixlen)) - 1
        broadcast = (int.from_bytes(local, "big") | host_bits).to_bytes(4, "big")
        body = IFADDRMSG.pack(AF_INET, prefixlen, 0, RT_SCOPE_UNIVERSE, index)
        body += attr(IFA_LOCAL, local) + attr(IFA_ADDRESS, local) + attr(IFA_BROADCAST, broadcast)
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body, f"RTM_NEWADDR {address}/{prefixlen} on link {index}")

    def add_default_route(self, gateway: str) -> None:
        body = RTMSG.pack(AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
        body += attr(RTA_GATEWAY, ipv4(gateway))
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body, f"RTM_NEWROUTE default via {gateway}")

    def ipv4_routes(self) -> list[tuple[str, int, int]]:
        """(destination, prefix length, table) of every IPv4 route in every table."""
        body = RTMSG.pack(AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
        out = []
        for kind, payload in self.request(RTM_GETROUTE, NLM_F_DUMP, body, "RTM_GETROUTE dump"):
            if kind == RTM_NEWROUTE:
                out.append(parse_route(payload))
        return out

    def ipv4_addresses(self, index: int) -> list[tuple[str, int]]:
        """(address, prefix length) of every IPv4 address on link `index`. The kernel's address dump
        ignores the index in the request, so the filter is ours."""
        body = IFADDRMSG.pack(AF_INET, 0, 0, 0, 0)
        out = []
        for kind, payload in self.request(RTM_GETADDR, NLM_F_DUMP, body, "RTM_GETADDR dump"):
            if kind != RTM_NEWADDR:
                continue
            family, prefixlen, _, _, link = IFADDRMSG.unpack_from(payload)
            found = attrs(payload, IFADDRMSG.size)
            raw = found.get(IFA_LOCAL) or found.get(IFA_ADDRESS)
            if family == AF_INET and link == index and raw:
                out.append((_socket.inet_ntoa(raw), prefixlen))
        return out


def parse_route(payload: bytes) -> tuple[str, int, int]:
    """An RTM_NEWROUTE payload -> (destination, prefix length, table)."""
    family, dst_len, _, _, table, _, _, _, _ = RTMSG.unpack_from(payload)
    found = attrs(payload, RTMSG.size)
    dst = _socket.inet_ntoa(found[RTA_DST]) if RTA_DST in found else "0.0.0.0"
    if RTA_TABLE in found:  # tables above 255 are only in the attribute
        (table,) = struct.unpack("=I", found[RTA_TABLE])
    return dst, dst_len, table
