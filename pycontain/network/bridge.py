"""The bridge: one Linux bridge per network (`pycontain0` for the default one), the gateway of its subnet.

Created on first use with pyroute2 (RTM_NEWLINK kind=bridge, RTM_NEWADDR, IFF_UP) and kept while the
network exists: it costs nothing idle, and deleting it would cut every other member off. Its MAC is
fixed (02:42 + the gateway's address): a bridge otherwise takes the lowest MAC among its ports, which
changes as containers come and go and makes every neighbour re-learn the gateway.
"""

from __future__ import annotations

import errno

from pycontain import explain

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def mac_for(address: str) -> str:
    """02:42:a:b:c:d for a.b.c.d: locally administered, unicast, unique within a subnet (as Docker does)."""
    return "02:42:" + ":".join(f"{int(o):02x}" for o in address.split("."))


def lookup(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def ensure(ipr: Any, net: dict[str, Any]) -> tuple[int, bool]:
    """The bridge's ifindex, creating and addressing it if missing; (index, created)."""
    from pyroute2.netlink.exceptions import NetlinkError

    name = net["bridge"]
    index = lookup(ipr, name)
    if index is not None:
        return index, False
    try:
        ipr.link("add", ifname=name, kind="bridge", address=mac_for(net["gateway"]))
    except NetlinkError as e:
        if e.code != errno.EEXIST:
            raise
    index = lookup(ipr, name)
    if index is None:
        raise OSError(errno.ENODEV, f"bridge {name} vanished right after it was created")
    try:
        ipr.addr("add", index=index, address=net["gateway"], prefixlen=int(net["prefixlen"]))
    except NetlinkError as e:
        if e.code != errno.EEXIST:
            raise
    ipr.link("set", index=index, state="up")
    explain.say(f"netlink RTM_NEWLINK bridge {name}, address {net['gateway']}/{net['prefixlen']}, up: "
                f"the gateway of network {net['name']}")
    return index, True


def delete(ipr: Any, name: str) -> bool:
    index = lookup(ipr, name)
    if index is None:
        return False
    ipr.link("del", index=index)
    return True
