"""The veth pair: one end (`pc<short id>`) on the bridge, the other (`eth0`) in the container.

The peer is created directly in the container's network namespace (IFLA_NET_NS_FD on the peer in
RTM_NEWLINK), so it never exists on the host side under a temporary name. Inside, pycontain opens a
netlink socket in that namespace (setns into it, open, setns back: a netlink socket stays bound to the
namespace it was opened in) to add the address, bring eth0 up and add the default route.

Nothing deletes the pair on the way out: when the container's last process exits the kernel destroys
its network namespace, and with it eth0 and therefore its peer on the bridge (veth(4)).
"""

from __future__ import annotations

import errno
import os

from pycontain import explain, syscalls

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PREFIX = "pc"


def host_name(cid: str) -> str:
    return f"{PREFIX}{cid[:12]}"  # 14 characters: IFNAMSIZ (16) counts the NUL


def create(ipr: Any, cid: str, pid: int, bridge_index: int, mac: str) -> str:
    from pyroute2.netlink.exceptions import NetlinkError

    name = host_name(cid)
    ns_fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for attempt in (1, 2):
            try:
                ipr.link("add", ifname=name, kind="veth", master=bridge_index,
                         peer={"ifname": "eth0", "net_ns_fd": ns_fd, "address": mac})
                break
            except NetlinkError as e:
                # A previous run of this container whose namespace the kernel has not destroyed yet.
                if e.code != errno.EEXIST or attempt == 2:
                    raise
                delete(ipr, name)
    finally:
        os.close(ns_fd)
    index = ipr.link_lookup(ifname=name)[0]
    # Hairpin mode lets the bridge send a frame back out of the port it came in on. With
    # br_netfilter active (bridge-nf-call-iptables, the default), a container connecting to its own
    # published port is DNAT'd back to itself at layer 2 and would otherwise be dropped (as Docker does).
    ipr.brport("set", index=index, mode=1)
    ipr.link("set", index=index, state="up")
    explain.say(f"netlink RTM_NEWLINK veth {name} (on the bridge) <-> eth0 created inside PID {pid}'s "
                "network namespace")
    return name


def configure_inside(pid: int, address: str, prefixlen: int, gateway: str) -> None:
    from pyroute2 import IPRoute

    own = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.setns(target, syscalls.CLONE_NEWNET)
        try:
            ipr = IPRoute()
            # As Docker and Podman do: unprivileged ICMP echo sockets for every group, so `ping` works
            # without CAP_NET_RAW. /proc/sys/net follows the opener's netns: this is the container's.
            with open("/proc/sys/net/ipv4/ping_group_range", "w") as f:
                f.write("0 2147483647")
        finally:
            syscalls.setns(own, syscalls.CLONE_NEWNET)
    finally:
        os.close(own)
        os.close(target)
    try:
        index = ipr.link_lookup(ifname="eth0")[0]
        ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
        ipr.link("set", index=index, state="up")
        ipr.route("add", dst="0.0.0.0/0", gateway=gateway)
    finally:
        ipr.close()
    explain.say(f"inside: eth0 {address}/{prefixlen} up, default route via {gateway}")


def delete(ipr: Any, name: str) -> bool:
    found = ipr.link_lookup(ifname=name)
    if not found:
        return False
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        ipr.link("del", index=found[0])
    except NetlinkError as e:
        # Gone meanwhile, or being destroyed with its namespace: either way it is going.
        if e.code not in (errno.ENODEV, errno.ENOENT, errno.EBUSY):
            raise
    return True


def host_links() -> list[str]:
    """Names of this namespace's links, from /proc/self/net/dev (no netlink import needed)."""
    with open("/proc/self/net/dev") as f:
        return [line.split(":")[0].strip() for line in f if ":" in line]
