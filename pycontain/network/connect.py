"""`network connect NET CTR` / `network disconnect NET CTR`: more networks for a container on a bridge.

The first network is the one given at create (the record's "network", eth0, the default route). Each
network connected later gets its own lease, a veth pair on that network's bridge (`pc<11 hex>n<N>` here,
`ethN` inside, N from 1) and an address on ethN with only its subnet's route. What was connected is kept
in the record's networks.json, so that a container started again rejoins them (attach_extras, called by
network.attach), and their leases go when the container does (release_extras, from network.release).

A container on `none` or `host` has no network pycontain manages: connecting it is refused, as Docker
refuses it for `host`.
"""

from __future__ import annotations

import os

from pycontain import explain, network, state
from pycontain.errors import UsageError
from pycontain.network import ipam

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pycontain.state import Paths, Record


def _file(paths: Paths, cid: str) -> str:
    return f"{paths.record(cid)}/networks.json"


def _lock(paths: Paths, cid: str) -> ipam.Locked:
    return ipam.Locked(f"{paths.record(cid)}/networks.lock")


def extras(paths: Paths, cid: str) -> dict[str, dict[str, Any]]:
    """Stored network name -> what connect() recorded (the same keys as bridged.prepare's, plus ifname)."""
    try:
        data = state.read_json(_file(paths, cid))
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except ValueError:
        return {}  # damaged: shown as not connected; gc releases the leases of containers that are gone
    return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}


def _save(paths: Paths, cid: str, data: dict[str, dict[str, Any]]) -> None:
    if data:
        state.atomic_write_json(_file(paths, cid), data, durable=False)
    else:
        try:
            os.unlink(_file(paths, cid))
        except FileNotFoundError:
            pass


def host_name(cid: str, n: int) -> str:
    """The host end of the N-th extra interface: 15 characters (IFNAMSIZ), never the 14-character
    `pc<12 hex>` of a first interface (the `n` is not a hex digit)."""
    return f"pc{cid[:11]}n{n}"


def connect(paths: Paths, rec: Record, name: str, ip: str | None = None, aliases: list[str] | None = None) -> None:
    from pycontain.network import bridged

    first = rec.network
    if not first:
        raise UsageError(f"container {rec.name} uses --network {rec.config.network}: it has no bridge network "
                         "to add another to (create it with --network bridge or a network name)")
    net = ipam.load(paths, name)  # NetworkNotFound: one line
    shown = ipam.display(net["name"])
    for alias in aliases or ():
        if not alias or any(c.isspace() for c in alias) or len(alias) > 253:
            raise UsageError(f"invalid --alias {alias!r}")
    with _lock(paths, rec.id):
        current = extras(paths, rec.id)
        if net["name"] == first["network"] or net["name"] in current:
            raise UsageError(f"container {rec.name} is already connected to network {shown}")
        used = {int(e.get("ifname", "eth0")[3:] or 0) for e in current.values()}
        n = next(i for i in range(1, 10) if i not in used) if len(used) < 9 else 0
        if not n:
            raise UsageError(f"container {rec.name} is on 10 networks already: pycontain's limit")
        address = ipam.allocate(paths, net, rec.id, rec.name, rec.resolved.hostname, address=ip, aliases=aliases)
        extra = {"id": rec.id, "network": net["name"], "network_id": net["id"], "bridge": net["bridge"],
                 "subnet": net["subnet"], "gateway": net["gateway"], "address": address,
                 "prefixlen": net["prefixlen"], "mac": ipam.mac_of(address), "veth": host_name(rec.id, n),
                 "ifname": f"eth{n}", "dns": bridged.names_resolved(net), "aliases": list(aliases or []),
                 "requested_ip": ip or ""}
        try:
            pid = _running_pid(rec)
            if pid:
                _attach_one(paths, extra, pid)
            current[net["name"]] = extra
            _save(paths, rec.id, current)
        except BaseException:
            _release_one(paths, extra)
            raise
    if pid:  # a stopped container connects when it starts (attach_extras): the event comes then, as Docker's
        network.event(paths, "connect", extra)
    explain.say(f"connected {rec.name} to network {shown}: {extra['ifname']} {address}/{net['prefixlen']}")


def disconnect(paths: Paths, rec: Record, name: str, force: bool = False) -> None:
    stored = ipam.canonical(name)
    first = rec.network
    if first and first["network"] == stored:
        raise UsageError(f"network {ipam.display(stored)} is container {rec.name}'s first network (eth0): "
                         "pycontain cannot take it away; remove the container or connect it elsewhere")
    with _lock(paths, rec.id):
        current = extras(paths, rec.id)
        extra = current.pop(stored, None)
        if extra is None:
            if force:
                return
            raise UsageError(f"container {rec.name} is not connected to network {ipam.display(stored)}")
        running = _running_pid(rec)
        if running:
            from pycontain.network import veth
            from pycontain.network.rtnl import Rtnl

            with Rtnl() as ipr:
                veth.delete(ipr, extra["veth"])  # its peer inside goes with it
            unregister(paths, extra)
        _release_one(paths, extra)
        _save(paths, rec.id, current)
    if running:
        network.event(paths, "disconnect", extra)


def attach_extras(paths: Paths, cid: str, pid: int) -> None:
    """At start: rejoin the networks connected earlier (after eth0 is set up)."""
    for extra in extras(paths, cid).values():
        _attach_one(paths, extra, pid)
        network.event(paths, "connect", extra)


def release_extras(paths: Paths, cid: str) -> None:
    """At rm: the leases of every connected network (the record, and networks.json, go next)."""
    for extra in extras(paths, cid).values():
        _release_one(paths, extra)


def _running_pid(rec: Record) -> int:
    st = rec.read_state()
    return (st.pid or 0) if rec.status(st) == state.Status.RUNNING else 0


def _attach_one(paths: Paths, extra: dict[str, Any], pid: int) -> None:
    from pycontain.network import bridge, nat, veth
    from pycontain.network.rtnl import Rtnl

    info = ipam.load(paths, extra["network"])
    with Rtnl() as ipr:
        with ipam.network_lock(paths, info["name"]):
            index, created = bridge.ensure(ipr, dict(info, shown=ipam.display(info["name"])))
            if created:
                nat.setup_network(info)
        veth.create(ipr, extra["id"], pid, index, extra["mac"], name=extra["veth"], peer=extra["ifname"])
    veth.configure_inside(pid, extra["address"], int(extra["prefixlen"]), extra["gateway"], ifname=extra["ifname"],
                          default_route=False)
    from pycontain.network import bridged

    if bridged.names_resolved(info):
        # Its names are served on this network; 127.0.0.11 in its netns belongs to its first network's
        # resolver, which answers for this one too (or to this one, if the first network has none).
        from pycontain.network import resolver

        resolver.register(paths, info["name"], extra["id"], pid)


def unregister(paths: Paths, extra: dict[str, Any]) -> None:
    from pycontain.network import bridged

    if bridged.names_resolved({"name": extra["network"]}):
        from pycontain.network import resolver

        resolver.unregister(paths, extra["network"], extra["id"])


def _release_one(paths: Paths, extra: dict[str, Any]) -> None:
    from pycontain.network import bridged

    bridged.release(paths, extra, extra["id"])
