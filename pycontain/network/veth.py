"""The veth pair: one end (`pc<short id>`) on the bridge, the other (`eth0`) in the container.

The peer is created directly in the container's network namespace (IFLA_NET_NS_FD on the peer in
RTM_NEWLINK, rtnl.py), so it never exists on the host side under a temporary name; the same request
puts ours on the bridge and brings it up. Inside, pycontain opens a netlink socket in that
namespace (setns into it, open, setns back: a netlink socket stays bound to the namespace it was
opened in) to add the address, bring eth0 up and add the default route.

Nothing deletes the pair on the way out: when the container's last process exits the kernel destroys
its network namespace, and with it eth0 and therefore its peer on the bridge (veth(4)).
"""

from __future__ import annotations

import errno
import os

from pycontain import explain, syscalls

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pycontain.network.rtnl import Rtnl

PREFIX = "pc"


def host_name(cid: str) -> str:
    return f"{PREFIX}{cid[:12]}"  # 14 characters: IFNAMSIZ (16) counts the NUL


def create(ipr: Rtnl, cid: str, pid: int, bridge_index: int, mac: str, name: str | None = None,
           peer: str = "eth0") -> str:
    """The pair: `name` (default: host_name(cid)) on the bridge, `peer` inside PID's netns."""
    name = name or host_name(cid)
    ns_fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for attempt in (1, 2):
            try:
                # One request: ours on the bridge and up, eth0 created in the container's netns.
                ipr.add_veth(name, master=bridge_index, peer=peer, peer_netns_fd=ns_fd, peer_address=mac)
                break
            except OSError as e:
                # A previous run of this container whose namespace the kernel has not destroyed yet.
                if e.errno != errno.EEXIST or attempt == 2:
                    raise
                delete(ipr, name)
    finally:
        os.close(ns_fd)
    index = ipr.link_index(name)
    if index is None:
        raise OSError(errno.ENODEV, f"veth {name} vanished right after it was created (did PID {pid} exit?)")
    # Hairpin mode lets the bridge send a frame back out of the port it came in on. With
    # br_netfilter active (bridge-nf-call-iptables, the default), a container connecting to its own
    # published port is DNAT'd back to itself at layer 2 and would otherwise be dropped (as Docker does).
    ipr.set_hairpin(index)
    explain.say(f"netlink RTM_NEWLINK veth {name} (on the bridge, hairpin) <-> {peer} created inside PID {pid}'s "
                "network namespace")
    return name


def configure_inside(pid: int, address: str, prefixlen: int, gateway: str, ifname: str = "eth0",
                     default_route: bool = True) -> None:
    """Address `ifname` inside PID's netns and bring it up; the first interface also gets the default
    route (a second one, `network connect`, only its subnet's route, which comes with the address)."""
    from pycontain.network.rtnl import Rtnl

    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.setns(target, syscalls.CLONE_NEWNET)
        try:
            ipr = Rtnl()
            # As Docker and Podman do: unprivileged ICMP echo sockets for every group, so `ping` works
            # without CAP_NET_RAW. /proc/sys/net follows the opener's netns: this is the container's.
            with open("/proc/sys/net/ipv4/ping_group_range", "w") as f:
                f.write("0 2147483647")
        finally:
            syscalls.setns(own, syscalls.CLONE_NEWNET)
    finally:
        os.close(own)
        os.close(target)
    with ipr:
        index = ipr.link_index(ifname)
        if index is None:
            raise OSError(errno.ENODEV, f"{ifname} is missing in PID {pid}'s network namespace")
        ipr.add_address(index, address, prefixlen)
        ipr.set_link(index, up=True)
        if default_route:
            ipr.add_default_route(gateway)
    explain.say(f"inside: {ifname} {address}/{prefixlen} up"
                + (f", default route via {gateway}" if default_route else ""))


def delete(ipr: Rtnl, name: str) -> bool:
    index = ipr.link_index(name)
    if index is None:
        return False
    try:
        ipr.delete_link(index)
    except OSError as e:
        # Gone meanwhile, or being destroyed with its namespace: either way it is going.
        if e.errno not in (errno.ENODEV, errno.ENOENT, errno.EBUSY):
            raise
    return True


def host_links() -> list[str]:
    """Names of this namespace's links, from /proc/self/net/dev (no netlink import needed)."""
    with open("/proc/self/net/dev") as f:
        return [line.split(":")[0].strip() for line in f if ":" in line]
