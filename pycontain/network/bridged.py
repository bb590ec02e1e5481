"""Bridge networking behind the hooks in network/__init__.py: a container on a network gets

    prepare  (create)   an address leased from the network's subnet (ipam.py), its host ports
                        (-p), /etc/hosts and /etc/resolv.conf                       no netlink, no nft
    attach   (start)    bridge on first use (bridge.py), veth pair with eth0 made inside the
                        container's netns, address + default route (veth.py), DNAT for -p (nat.py)
    detach   (exit)     the DNAT rules; the veth pair goes with the container's netns by itself
    release  (rm)       the address lease, the host ports, its line in the network's hosts file
    gc                  leases, ports, rules and veths of containers that no longer exist

On a user network (`network create`), members find each other by name through the network's embedded
DNS resolver (resolver.py) at 127.0.0.11, as with Docker: their resolv.conf names it, and their
/etc/hosts holds only themselves (a shared hosts file answered a service name with one address and
kept stopped containers). The default network, like Docker's default bridge, resolves no names.

Links, addresses and routes go through rtnl.py, a small rtnetlink client on the standard library
(pyroute2's import alone cost 120-270 ms per start, see rtnl.py); nft runs as a child process (nat.py).

All of this is per network namespace: the bridge, the nft table and the leases describe one host
network stack, so one state root per network namespace (the tests give every root its own netns).
"""

from __future__ import annotations

import os

from pycontain import explain, faults, state
from pycontain.network import dns, ipam, nat, veth

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pycontain.config import ContainerConfig
    from pycontain.state import Paths


# ---------------------------------------------------------------- hooks

def prepare(paths: Paths, cid: str, name: str, hostname: str, cfg: ContainerConfig) -> dict[str, Any]:
    net = ipam.load_or_create_default(paths, cfg.network)
    resolves = names_resolved(net)
    address = ipam.allocate(paths, net, cid, name, hostname, address=cfg.ip, aliases=list(cfg.network_aliases))
    try:
        ports = ipam.reserve_ports(paths, cid, [p.to_json() for p in cfg.ports]) if cfg.ports else []
        etc = f"{paths.storage_dir(cid)}/etc"
        resolv = f"{etc}/resolv.conf.bridge"
        with open(resolv, "w") as f:
            f.write(dns.custom_resolv(dns.embedded_resolv_conf() if resolves else dns.bridge_resolv_conf(), cfg))
        hosts = f"{etc}/hosts.bridge"
        with open(hosts, "w") as f:
            f.write(dns.hosts_text([(address, [hostname, name])])
                    + (dns.extra_hosts(cfg.add_hosts, net["gateway"]) if cfg.add_hosts else ""))
    except BaseException:
        release(paths, {"network": net["name"]}, cid)
        raise
    explain.say(f"IPAM: {address}/{net['prefixlen']} on network {net['name']} ({net['subnet']}) "
                f"leased to {cid[:12]}")
    out = {
        "id": cid, "network": net["name"], "network_id": net["id"], "bridge": net["bridge"],
        "subnet": net["subnet"], "gateway": net["gateway"], "address": address, "prefixlen": net["prefixlen"],
        "mac": cfg.mac_address or _mac(address), "veth": veth.host_name(cid), "ports": ports, "dns": resolves,
        "etc_files": {"/etc/hosts": hosts, "/etc/resolv.conf": resolv},
    }
    if cfg.ip:
        out["requested_ip"] = address
    if cfg.network_aliases:
        out["aliases"] = list(cfg.network_aliases)
    return out


def attach(paths: Paths, net: dict[str, Any], pid: int) -> None:
    from pycontain.network import bridge
    from pycontain.network.rtnl import Rtnl

    info = ipam.load(paths, net["network"])
    ipr = Rtnl()
    try:
        with ipam.network_lock(paths, info["name"]):
            index, created = bridge.ensure(ipr, dict(info, shown=ipam.display(info["name"])))
            if created:
                nat.setup_network(info)
                faults.phase("net.rules")
        nat.sysctl("ipv4/ip_forward", "1", "the host routes between the bridge and its other interfaces "
                   "(needed for outbound NAT and published ports)")
        veth.create(ipr, net["id"], pid, index, net["mac"])
        faults.phase("net.veth")
    finally:
        ipr.close()
    veth.configure_inside(pid, net["address"], int(net["prefixlen"]), net["gateway"])
    faults.phase("net.addr")
    if names_resolved(info):
        from pycontain.network import resolver

        resolver.register(paths, info["name"], net["id"], pid)  # before the container runs: its first lookup works
    ports = net.get("ports") or []
    if ports:
        if any(not p.get("host_ip") or p["host_ip"].startswith("127.") for p in ports):
            nat.sysctl(f"ipv4/conf/{net['bridge']}/route_localnet", "1",
                       f"packets from 127.0.0.1 may be routed to {net['bridge']} (published ports on localhost)")
        nat.add_ports(net["id"], net["address"], ports, paths.record(net["id"]))
        faults.phase("net.ports")


def detach(paths: Paths, net: dict[str, Any], cid: str) -> None:
    """The per-run objects: the DNAT rules, and the resolver's sockets in the container's netns (eth0
    and its peer die with the netns, once nothing holds it)."""
    if net.get("ports"):
        nat.remove_ports(cid, paths.record(cid))
    if names_resolved({"name": net["network"]}):
        from pycontain.network import resolver

        resolver.unregister(paths, net["network"], cid)


def release(paths: Paths, net: dict[str, Any], cid: str) -> None:
    ipam.release(paths, net["network"], {cid})
    if net.get("ports"):
        ipam.release_ports(paths, {cid})


def gc(paths: Paths, live_ids: set[str]) -> list[str]:
    """Leases, host ports, nft rules and veths of containers that no longer exist (or no longer run)."""
    locked_cache: dict[str, bool] = {}

    def running(cid: str) -> bool:  # a supervisor holds it (also true while it is being created)
        if cid not in locked_cache:
            locked_cache[cid] = state.Record(paths, cid).is_locked()
        return locked_cache[cid]

    done = ipam.repair(paths)
    for name in ipam.names(paths):
        gone = {lease["id"] for lease in ipam.leases(paths, name).values()
                if lease["id"] not in live_ids and not running(lease["id"])}
        if gone:
            for addr in ipam.release(paths, name, gone):
                done.append(f"released address {addr} on network {name}")
    stale_ports = {cid for cid in ipam.port_owners(paths).values() if cid not in live_ids and not running(cid)}
    for key in ipam.release_ports(paths, stale_ports):
        done.append(f"released host port {key}")
    # The nft table and the links are shared by every state root on this host: judge only the objects of
    # containers this root knows (a record or storage dir here), never another root's.
    if os.path.exists(f"{ipam.root(paths)}"):
        done += [f"removed {what} of container {cid[:12]}"
                 for cid, what in nat.gc(lambda cid: _ours(paths, cid) and not running(cid))]
    from pycontain.network import resolver

    done += resolver.gc(paths)  # before the veths: a dead container's netns goes once nothing holds it
    done += _gc_veths(paths)
    return done


def _ours(paths: Paths, cid: str) -> bool:
    return os.path.exists(paths.record(cid)) or os.path.isdir(paths.storage_dir(cid))


def _short_ids_of_root(paths: Paths) -> set[str]:
    ids: set[str] = set()
    for d in (paths.containers, f"{paths.storage}/containers"):
        try:
            ids.update(cid[:12] for cid in os.listdir(d))
        except FileNotFoundError:
            pass
    return ids


def _gc_veths(paths: Paths) -> list[str]:
    links = [n for n in veth.host_links() if n.startswith(veth.PREFIX) and len(n) == 14
             and all(c in "0123456789abcdef" for c in n[2:])]
    if not links:
        return []
    try:
        ids = os.listdir(paths.containers)
    except FileNotFoundError:
        ids = []
    live_short = {cid[:12] for cid in ids if state.Record(paths, cid).is_locked()}
    ours = _short_ids_of_root(paths)
    stale = [n for n in links if n[2:] in ours and n[2:] not in live_short]
    if not stale:
        return []
    from pycontain.network.rtnl import Rtnl

    done = []
    with Rtnl() as ipr:
        for name in stale:
            if veth.delete(ipr, name):
                done.append(f"removed veth {name}")
    # A veth whose container just died may be in the kernel's asynchronous netns cleanup: give it
    # a moment so that "gc finished" means "gone".
    import time

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and set(stale) & set(veth.host_links()):
        time.sleep(0.02)
    return done


# ---------------------------------------------------------------- inspect / ps / port

def endpoint(net: dict[str, Any] | None, mode: str = "") -> dict[str, Any]:
    """One entry of NetworkSettings.Networks, as Docker shows it (empty values for none and host)."""
    net = net or {}
    shared = bool(net.get("dns") or net.get("shared_hosts"))  # shared_hosts: a record of an older pycontain
    aliases = list(net.get("aliases") or [])
    return {
        "IPAMConfig": {"IPv4Address": net["requested_ip"]} if net.get("requested_ip") else None,
        "Links": None, "Aliases": aliases or None,
        "MacAddress": net.get("mac", ""), "NetworkID": net.get("network_id", ""),
        "EndpointID": ipam.endpoint_id(net["network_id"], net["id"]) if net.get("network_id") else "",
        "Gateway": net.get("gateway", ""), "IPAddress": net.get("address", ""),
        "IPPrefixLen": int(net.get("prefixlen") or 0), "IPv6Gateway": "", "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0, "DriverOpts": None,
        # Names other members resolve it by: on a user network (its DNS resolver) its name, short id
        # and aliases; Docker's default bridge has no name resolution, nor does pycontain's.
        "DNSNames": [n for n in (net.get("name", ""), net.get("id", "")[:12], *aliases) if n] if shared else None,
    }


def describe(net: dict[str, Any] | None, mode: str = "none", extras: dict[str, dict[str, Any]] | None = None,
             exposed: list[str] | tuple[str, ...] = (), name: str = "") -> dict[str, Any]:
    """Docker-shaped NetworkSettings for `inspect`: the first network's address at the top (as Docker
    does for its default bridge), every network under Networks (those `network connect` added too),
    and Ports: each published port's bindings, each exposed but unpublished port as null."""
    ports: dict[str, list[dict[str, str]] | None] = {spec if "/" in spec else f"{spec}/tcp": None for spec in exposed}
    for p in (net or {}).get("ports") or []:
        bindings = ports.get(f"{p['container_port']}/{p['protocol']}") or []
        bindings.append({"HostIp": p.get("host_ip") or "0.0.0.0", "HostPort": str(p["host_port"])})
        ports[f"{p['container_port']}/{p['protocol']}"] = bindings
    if net:
        networks = {ipam.display(net["network"]): endpoint(dict(net, name=name))}
    else:
        networks = {mode: endpoint(None)} if mode in ("none", "host") else {}
    for extra in (extras or {}).values():
        networks[ipam.display(extra["network"])] = endpoint(dict(extra, name=name))
    first = net or {}
    return {
        "Bridge": first.get("bridge", ""), "SandboxID": "", "SandboxKey": "", "HairpinMode": bool(net),
        "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "Ports": ports,
        "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
        "EndpointID": ipam.endpoint_id(first["network_id"], first["id"]) if first.get("network_id") else "",
        "Gateway": first.get("gateway", ""), "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
        "IPAddress": first.get("address", ""), "IPPrefixLen": int(first.get("prefixlen") or 0),
        "IPv6Gateway": "", "MacAddress": first.get("mac", ""), "Networks": networks,
    }


def port_lines(net: dict[str, Any] | None) -> list[str]:
    """`pycontain port`: '80/tcp -> 0.0.0.0:8080'."""
    return [f"{p['container_port']}/{p['protocol']} -> {p.get('host_ip') or '0.0.0.0'}:{p['host_port']}"
            for p in (net or {}).get("ports") or []]


def ports_text(net: dict[str, Any] | None) -> str:
    """The PORTS column of `ps`: '0.0.0.0:8080->80/tcp, 0.0.0.0:32768->53/udp'."""
    return ", ".join(f"{p.get('host_ip') or '0.0.0.0'}:{p['host_port']}->{p['container_port']}/{p['protocol']}"
                     for p in (net or {}).get("ports") or [])


# ---------------------------------------------------------------- helpers

def _mac(address: str) -> str:
    return ipam.mac_of(address)


def names_resolved(net: dict[str, Any]) -> bool:
    """Whether members of the network find each other by name (its resolver): user networks only."""
    return bool(net["name"] != ipam.DEFAULT_NETWORK)

