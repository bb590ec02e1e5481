"""The bridge: one Linux bridge per network (`pycontain0` for the default one), the gateway of its subnet.

Created on first use (rtnl.py: RTM_NEWLINK kind=bridge, up; RTM_NEWADDR) and kept while the network
exists: it costs nothing idle, and deleting it would cut every other member off. Its MAC is fixed
(02:42 + the gateway's address): a bridge otherwise takes the lowest MAC among its ports, which
changes as containers come and go and makes every neighbour re-learn the gateway.
"""

from __future__ import annotations

import errno

from pycontain import explain

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pycontain.network.rtnl import Rtnl


def mac_for(address: str) -> str:
    """02:42:a:b:c:d for a.b.c.d: locally administered, unicast, unique within a subnet (as Docker does)."""
    return "02:42:" + ":".join(f"{int(o):02x}" for o in address.split("."))


def lookup(ipr: Rtnl, name: str) -> int | None:
    return ipr.link_index(name)


def ensure(ipr: Rtnl, net: dict[str, Any]) -> tuple[int, bool]:
    """The bridge's ifindex, creating and addressing it if missing; (index, created)."""
    name = net["bridge"]
    index = lookup(ipr, name)
    if index is not None:
        return index, False
    try:
        ipr.add_bridge(name, mac_for(net["gateway"]), up=True)
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise
    index = lookup(ipr, name)
    if index is None:
        raise OSError(errno.ENODEV, f"bridge {name} vanished right after it was created")
    try:
        ipr.add_address(index, net["gateway"], int(net["prefixlen"]))
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise
    explain.say(f"netlink RTM_NEWLINK bridge {name} (up), RTM_NEWADDR {net['gateway']}/{net['prefixlen']}: "
                f"the gateway of network {net['name']}")
    return index, True


def delete(ipr: Rtnl, name: str) -> bool:
    index = lookup(ipr, name)
    if index is None:
        return False
    ipr.delete_link(index)
    return True
