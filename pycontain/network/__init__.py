"""Networking: what the runtime asks of a container's network, whatever the mode.

    none    a private network namespace with only `lo` (brought up by the child, see loopback.py)
    host    the host's network namespace (no CLONE_NEWNET)
    NAME    a bridge network (the default one is `bridge`, stored as `pycontain`, bridge `pycontain0`)

The runtime calls these hooks; they import nothing heavy for `none` and `host`, so a run without a
bridge network never pays for netlink or nftables. Bridge networking lives in its own modules and is
imported on first use.

    prepare(paths, cid, name, hostname, cfg) -> dict | None   at create: address from IPAM, etc.
                                                              (JSON, kept in the container's record;
                                                              its "etc_files" override /etc files)
    attach(paths, net, pid)   parent side, after clone and before the child goes on: veth, address,
                              route, port mappings
    detach(paths, net, cid)   after the container exits: port mappings and other per-run objects
    release(paths, net, cid)  when the container is removed: its address lease and name
    gc(paths, live_ids)       objects of containers that no longer exist -> what was removed
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pycontain.config import ContainerConfig
    from pycontain.state import Paths

LOCAL_MODES = ("none", "host")


def prepare(paths: Paths, cid: str, name: str, hostname: str, cfg: ContainerConfig) -> dict[str, Any] | None:
    if cfg.network in LOCAL_MODES or cfg.network.startswith("container:"):
        if getattr(cfg, "ports", ()):
            from pycontain.errors import UsageError

            if cfg.network.startswith("container:"):  # as Docker words it
                raise UsageError("conflicting options: port publishing and the container type network mode")
            raise UsageError(f"-p needs a bridge network; --network {cfg.network} has none")
        return None
    from pycontain.network import bridged

    return bridged.prepare(paths, cid, name, hostname, cfg)


def host_gateway(paths: Paths) -> str:
    """What --add-host NAME:host-gateway means outside a bridge network: the host's address on the
    default network (Docker's docker0 address), the one that network has or would get."""
    from pycontain.network import ipam

    try:
        return str(ipam.load(paths, ipam.DEFAULT_NETWORK)["gateway"])
    except ipam.NetworkNotFound:
        base, _ = ipam.parse_cidr(ipam.CANDIDATES[0])
        return ipam.int_to_ip(base + 1)


def attach(paths: Paths, net: dict[str, Any] | None, pid: int) -> None:
    if net:
        import os

        from pycontain.network import bridged

        bridged.attach(paths, net, pid)
        _connected(paths, net["id"], True)
        event(paths, "connect", net)
        if os.path.exists(f"{paths.record(net['id'])}/networks.json"):  # `network connect` added more
            from pycontain.network import connect

            connect.attach_extras(paths, net["id"], pid)


def detach(paths: Paths, net: dict[str, Any] | None, cid: str) -> None:
    if net:
        import os

        from pycontain.network import bridged

        bridged.detach(paths, net, cid)
        if os.path.exists(f"{paths.record(cid)}/networks.json"):  # the resolvers of `network connect`'s too
            from pycontain.network import connect

            for extra in connect.extras(paths, cid).values():
                connect.unregister(paths, extra)
        if not _connected(paths, cid, False):
            return  # detached already (the supervisor at exit, then rm): one disconnect event per run
        event(paths, "disconnect", net)
        if os.path.exists(f"{paths.record(cid)}/networks.json"):  # its interfaces went with its netns too
            from pycontain.network import connect

            for extra in connect.extras(paths, cid).values():
                event(paths, "disconnect", extra)


def _connected(paths: Paths, cid: str, value: bool) -> bool:
    """The mark of a container whose network connect events were written for this run: set at attach,
    taken at detach, which runs more than once per run (it is idempotent cleanup). True if the mark
    was there to take (the unlink is atomic: exactly one detach writes the disconnect events)."""
    import os

    mark = f"{paths.record(cid)}/network-connected"
    try:
        if value:
            os.close(os.open(mark, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600))
        else:
            os.unlink(mark)
    except OSError:
        return False
    return True


def event(paths: Paths, action: str, net: dict[str, Any]) -> None:
    """A network connect/disconnect event, as Docker's: the network's id, the container, the network's
    name. net: a container's lease on a network (its record's "network", or one of `network connect`'s)."""
    from pycontain import events
    from pycontain.network import ipam

    events.emit(paths, "network", action, str(net.get("network_id") or ""),
                {"container": str(net.get("id", "")), "name": ipam.display(str(net.get("network", ""))),
                 "type": "bridge"})


def release(paths: Paths, net: dict[str, Any] | None, cid: str) -> None:
    if net:
        from pycontain.network import bridged

        bridged.release(paths, net, cid)
        from pycontain.network import connect

        connect.release_extras(paths, cid)


def gc(paths: Paths, live_ids: set[str]) -> list[str]:
    import os

    if not os.path.isdir(f"{paths.state}/networks"):
        return []
    from pycontain.network import bridged

    return bridged.gc(paths, live_ids)
