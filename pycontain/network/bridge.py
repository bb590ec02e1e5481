"""The bridge: one Linux bridge per network (`pycontain0` for the default one), the gateway of its subnet.

Created on first use (rtnl.py: RTM_NEWLINK kind=bridge, up; RTM_NEWADDR) and kept while the network
exists: it costs nothing idle, and deleting it would cut every other member off. Its MAC is fixed
(02:42 + the gateway's address): a bridge otherwise takes the lowest MAC among its ports, which
changes as containers come and go and makes every neighbour re-learn the gateway.

A bridge is found by name, and names are per network namespace, not per state root: a second state root
in the same namespace would find the first one's `pycontain0` (same name, another subnet) and its
containers would get a gateway the bridge does not have. ensure() refuses a bridge that carries another
network's gateway (BridgeInUse), with one line saying what to do, rather than joining it.
"""

from __future__ import annotations

import errno

from pycontain import explain
from pycontain.errors import PycontainError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pycontain.network.rtnl import Rtnl


def mac_for(address: str) -> str:
    """02:42:a:b:c:d for a.b.c.d: locally administered, unicast, unique within a subnet (as Docker does)."""
    return "02:42:" + ":".join(f"{int(o):02x}" for o in address.split("."))


class BridgeInUse(PycontainError):
    """The bridge a network would use exists with another network's address (another state root's)."""


def owner_tag(net: dict[str, Any]) -> str:
    """The alias a bridge carries: the id of the network (of one state root) it was made for."""
    return f"pycontain network {net['id']}" if net.get("id") else ""


def conflict(addresses: list[tuple[str, int]], alias: str, net: dict[str, Any]) -> str | None:
    """Why a bridge with these addresses and this alias cannot serve `net`: it is tagged for another
    network, or carries addresses and none of them is net's gateway. (Two roots may well have picked
    the same subnet: only the tag tells their bridges apart; an untagged one is from an older pycontain.)"""
    foreign = alias.startswith("pycontain network ") and alias != owner_tag(net)
    if not foreign and (not addresses or (net["gateway"], int(net["prefixlen"])) in addresses):
        return None
    theirs = ", ".join(f"{a}/{p}" for a, p in addresses) or "no address"
    return (f"bridge {net['bridge']} already exists in this network namespace ({theirs}) for another network "
            f"than {net.get('shown') or net['name']} of this state root ({net['gateway']}/{net['prefixlen']}): "
            "another state root uses it; run each state root in its own network namespace (ip netns exec), "
            f"or delete the bridge (ip link delete {net['bridge']}) if nothing uses it")


def check_free(ipr: Rtnl, net: dict[str, Any]) -> None:
    """BridgeInUse if net's bridge exists in this namespace for another network."""
    index = lookup(ipr, net["bridge"])
    if index is not None:
        problem = conflict(ipr.ipv4_addresses(index), ipr.link_alias(index), net)
        if problem:
            raise BridgeInUse(problem)


def lookup(ipr: Rtnl, name: str) -> int | None:
    return ipr.link_index(name)


def ensure(ipr: Rtnl, net: dict[str, Any]) -> tuple[int, bool]:
    """The bridge's ifindex, creating and addressing it if missing; (index, created)."""
    name = net["bridge"]
    index = lookup(ipr, name)
    if index is not None:
        addresses = ipr.ipv4_addresses(index)
        problem = conflict(addresses, ipr.link_alias(index), net)
        if problem:
            raise BridgeInUse(problem)
        if not addresses:  # made by a run killed before it addressed the bridge
            _address(ipr, index, net)
        return index, False
    try:
        ipr.add_bridge(name, mac_for(net["gateway"]), up=True)
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise
    index = lookup(ipr, name)
    if index is None:
        raise OSError(errno.ENODEV, f"bridge {name} vanished right after it was created")
    if owner_tag(net):
        ipr.set_link(index, alias=owner_tag(net))
    _address(ipr, index, net)
    explain.say(f"netlink RTM_NEWLINK bridge {name} (up), RTM_NEWADDR {net['gateway']}/{net['prefixlen']}: "
                f"the gateway of network {net['name']}")
    return index, True


def _address(ipr: Rtnl, index: int, net: dict[str, Any]) -> None:
    try:
        ipr.add_address(index, net["gateway"], int(net["prefixlen"]))
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise


def delete(ipr: Rtnl, name: str) -> bool:
    index = lookup(ipr, name)
    if index is None:
        return False
    ipr.delete_link(index)
    return True
