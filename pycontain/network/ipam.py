"""IP address management: networks, address leases and published host ports, in flock'd files.

    {state}/networks/lock                 global lock: creating/removing networks, host port table
    {state}/networks/ports.json           "tcp/8080" -> container id (a host port is published once)
    {state}/networks/NAME/network.json    name, subnet, gateway, bridge, internal, labels (written once)
    {state}/networks/NAME/lock            this network's lock: its leases
    {state}/networks/NAME/leases.json     {"last": "10.88.0.7", "leases": {"10.88.0.2": {id, name, hostname,
                                          aliases}}} (read by the network's DNS resolver too)
    {state}/networks/NAME/resolver.*     user networks: the DNS resolver's pid file, socket... (resolver.py)

Every read-modify-write happens under an exclusive flock and ends in an atomic rename, so N parallel
`run`s never hand out one address twice. Addresses are handed out round-robin after the last one
given, so a released address is not reused at once (stale ARP entries in other containers).
Plain integers and `_socket.inet_aton`: `import ipaddress` costs several ms on the start path.
"""

from __future__ import annotations

import _socket
import fcntl
import os

from pycontain import events, state
from pycontain.errors import PycontainError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from pycontain.state import Paths

DEFAULT_NETWORK = "pycontain"
DEFAULT_BRIDGE = "pycontain0"
# The default network answers to Docker's name for it too. On disk (its directory, its nft chains) it
# stays `pycontain`, so records and rules made by earlier versions need no migration; what users see
# (`network ls`, `network inspect`, inspect's NetworkSettings.Networks) says `bridge`, as Docker does.
DEFAULT_ALIAS = "bridge"
# Candidate subnets for networks created without --subnet, in order (Podman's and Docker's choices).
CANDIDATES = ([f"10.{n}.0.0/16" for n in range(88, 100)] + [f"172.{n}.0.0/16" for n in range(17, 32)]
              + [f"192.168.{n}.0/24" for n in range(200, 256)])


class NetworkNotFound(PycontainError):
    pass


class NetworkInUse(PycontainError):
    pass


class DamagedNetwork(PycontainError):
    """A network's network.json, its leases.json or the host port table does not parse, or is not what
    pycontain wrote. Never read as empty: a lease table rewritten from nothing hands out addresses twice.
    `network ls` names it, `gc` rebuilds it from the container records (repair())."""


def _damaged(path: str, problem: object) -> DamagedNetwork:
    return DamagedNetwork(f"{path} is damaged ({problem}); `pycontain gc` repairs it")


NETWORK_KEYS = ("name", "id", "subnet", "gateway", "prefixlen", "bridge")


# ---------------------------------------------------------------- addresses as integers

def ip_to_int(text: str) -> int:
    try:
        return int.from_bytes(_socket.inet_aton(text), "big") if text.count(".") == 3 else -1
    except OSError:
        return -1


def int_to_ip(value: int) -> str:
    return _socket.inet_ntoa(value.to_bytes(4, "big"))


def parse_cidr(text: str) -> tuple[int, int]:
    """'10.88.0.0/16' -> (network as int, prefix length); host bits must be zero."""
    addr, sep, plen = text.partition("/")
    base = ip_to_int(addr)
    if not sep or base < 0 or not plen.isdigit() or not 8 <= int(plen) <= 30:
        raise UsageError(f"invalid subnet {text!r}: expected an IPv4 CIDR like 10.90.0.0/16 (prefix 8 to 30)")
    prefix = int(plen)
    if base & ~_mask(prefix) & 0xFFFFFFFF:
        raise UsageError(f"invalid subnet {text!r}: host bits are set (did you mean "
                         f"{int_to_ip(base & _mask(prefix))}/{prefix}?)")
    return base, prefix


def _mask(prefix: int) -> int:
    return (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    shorter = min(a[1], b[1])
    return (a[0] & _mask(shorter)) == (b[0] & _mask(shorter))


def host_routes() -> list[tuple[int, int]]:
    """Every IPv4 route of this network namespace except default routes and the `local` table's
    (the host's own addresses and broadcasts), from an rtnetlink dump of all routing tables."""
    from pycontain.network.rtnl import RT_TABLE_LOCAL, Rtnl

    with Rtnl() as rtnl:
        routes = rtnl.ipv4_routes()
    # A default route overlaps everything by definition.
    return [(ip_to_int(dst), plen) for dst, plen, table in routes if plen and table != RT_TABLE_LOCAL]


# ---------------------------------------------------------------- locking and files

class Locked:
    """`with Locked(path):` an exclusive flock for the block (the lock file is created if missing)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> Locked:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def canonical(name: str) -> str:
    """The stored name of a network as a user names it: `bridge` is the default network."""
    return DEFAULT_NETWORK if name == DEFAULT_ALIAS else name


def display(name: str) -> str:
    """The name users see: the default network is `bridge`, as in Docker."""
    return DEFAULT_ALIAS if name == DEFAULT_NETWORK else name


def root(paths: Paths) -> str:
    return f"{paths.state}/networks"


def net_dir(paths: Paths, name: str) -> str:
    return f"{root(paths)}/{name}"


def global_lock(paths: Paths) -> Locked:
    os.makedirs(root(paths), 0o700, exist_ok=True)
    return Locked(f"{root(paths)}/lock")


def network_lock(paths: Paths, name: str) -> Locked:
    return Locked(f"{net_dir(paths, name)}/lock")


def _read(path: str, default: dict[str, Any]) -> Any:
    """A JSON object file (default if missing); DamagedNetwork if it does not parse or is of another
    shape than default (a leases file: {"last", "leases": {...}}; the port table: {...})."""
    try:
        data = state.read_json(path)
    except FileNotFoundError:
        return default
    except ValueError as e:
        raise _damaged(path, e) from None
    if not isinstance(data, dict) or ("leases" in default and not isinstance(data.get("leases"), dict)):
        raise _damaged(path, "not what pycontain writes there")
    return data


# ---------------------------------------------------------------- networks

def load(paths: Paths, name: str) -> dict[str, Any]:
    name = canonical(name)
    path = f"{net_dir(paths, name)}/network.json"
    try:
        net = state.read_json(path)
    except (FileNotFoundError, NotADirectoryError):
        raise NetworkNotFound(f"no such network: {name} (create it with `pycontain network create {name}`)") from None
    except ValueError as e:
        raise _damaged(path, e) from None
    if not isinstance(net, dict) or not all(k in net for k in NETWORK_KEYS):
        raise _damaged(path, "not a network record")
    return net


def names(paths: Paths) -> list[str]:
    try:
        entries = sorted(os.listdir(root(paths)))
    except FileNotFoundError:
        return []
    return [n for n in entries if os.path.exists(f"{root(paths)}/{n}/network.json")]


def repair(paths: Paths) -> list[str]:
    """`gc`: rebuild what is damaged from the container records, which each hold their own network's facts
    and their lease (what prepare() returned): network.json from any member's record, leases.json from
    every member's, the host port table from every container's ports. A damaged network no container
    uses is removed (its nft chains too; its bridge, if it ever had one, is left for `ip link del`)."""
    if not os.path.isdir(root(paths)):
        return []
    members: dict[str, list[tuple[str, str, str, dict[str, Any]]]] = {}
    for rec in state.all_records(paths):
        try:
            net = rec.network
            if net:
                members.setdefault(net["network"], []).append((rec.id, rec.name, rec.resolved.hostname, net))
        except (OSError, ValueError, KeyError):
            continue  # a damaged record: gc removes it, and its lease with it
    done = []
    with global_lock(paths):
        for name in sorted(os.listdir(root(paths))):
            d = net_dir(paths, name)
            if not os.path.isdir(d):
                continue
            done += _repair_network(paths, name, members.get(name, []))
        try:
            _read(f"{root(paths)}/ports.json", {})
        except DamagedNetwork:
            table = {f"{p['protocol']}/{p['host_port']}": cid for ms in members.values() for cid, _, _, net in ms
                     for p in net.get("ports") or []}
            state.atomic_write_json(f"{root(paths)}/ports.json", table, durable=False)
            done.append(f"rebuilt the damaged host port table from the container records ({len(table)} port(s))")
    return done


def _repair_network(paths: Paths, name: str, members: list[tuple[str, str, str, dict[str, Any]]]) -> list[str]:
    d = net_dir(paths, name)
    done = []
    try:
        load(paths, name)
    except NetworkNotFound:
        return []  # a directory without network.json: not a network (yet: `network create` writes it last)
    except DamagedNetwork:
        if not members:
            from pycontain.network import nat

            # Its DNS resolver, if any, ends by itself (network.json no longer reads), or at gc's next step.
            nat.remove_network({"name": name})
            state.rmtree(d)
            return [f"removed network {name}: its network.json was damaged and no container uses it"]
        net = members[0][3]
        state.atomic_write_json(f"{d}/network.json", {
            "name": name, "id": net["network_id"], "subnet": net["subnet"], "gateway": net["gateway"],
            "prefixlen": net["prefixlen"], "bridge": net["bridge"], "created": state.now()}, durable=False)
        done.append(f"rebuilt the damaged network.json of network {name} from container {members[0][0][:12]}")
    with network_lock(paths, name):
        try:
            _read(f"{d}/leases.json", {"last": None, "leases": {}})
        except DamagedNetwork:
            leases = {net["address"]: {"id": cid, "name": cname, "hostname": hostname}
                      for cid, cname, hostname, net in members}
            last = max(leases, key=ip_to_int) if leases else None
            state.atomic_write_json(f"{d}/leases.json", {"last": last, "leases": leases}, durable=False)
            done.append(f"rebuilt the damaged address leases of network {name} from the container records "
                        f"({len(leases)} lease(s))")
    return done


def create(paths: Paths, name: str, subnet: str | None = None, internal: bool = False,
           labels: dict[str, str] | None = None) -> dict[str, Any]:
    """Record a network: a subnet that overlaps no host route and no other network, its gateway (.1).
    internal: its containers reach only each other (no route out, nat.setup_network); labels: K -> V."""
    with global_lock(paths):
        if os.path.exists(f"{net_dir(paths, name)}/network.json"):
            raise UsageError(f"network {name} already exists")
        return _create_locked(paths, name, subnet, internal, labels)


def _create_locked(paths: Paths, name: str, subnet: str | None, internal: bool = False,
                   labels: dict[str, str] | None = None) -> dict[str, Any]:
    taken = host_routes()
    for other in names(paths):
        taken.append(parse_cidr(load(paths, other)["subnet"]))
    wanted: tuple[int, int] | None
    if subnet is not None:
        wanted = parse_cidr(subnet)
        clash = next((t for t in taken if overlaps(wanted, t)), None)
        if clash is not None:
            raise UsageError(f"subnet {subnet} overlaps {int_to_ip(clash[0])}/{clash[1]}, already routed on this "
                             "host or used by another network; choose another --subnet")
    else:
        # The first candidate is kept for the default network, as Docker keeps 172.17/16 for its bridge.
        candidates = CANDIDATES if name == DEFAULT_NETWORK else CANDIDATES[1:]
        wanted = next((c for c in map(parse_cidr, candidates) if not any(overlaps(c, t) for t in taken)), None)
    if wanted is None:
        raise PycontainError("no free subnet left for a new network: pass one with --subnet")
    base, prefix = wanted
    if name == DEFAULT_NETWORK:
        _check_default_bridge_free(f"{int_to_ip(base + 1)}", prefix)
    net_id = os.urandom(32).hex()
    net = {
        "name": name, "id": net_id, "subnet": f"{int_to_ip(base)}/{prefix}", "gateway": int_to_ip(base + 1),
        "prefixlen": prefix, "created": state.now(),
        # IFNAMSIZ is 16 with the NUL: at most 15 characters.
        "bridge": DEFAULT_BRIDGE if name == DEFAULT_NETWORK else f"pcbr{net_id[:11]}",
    }
    if internal:
        net["internal"] = True
    if labels:
        net["labels"] = {str(k): str(v) for k, v in labels.items()}
    os.makedirs(net_dir(paths, name), 0o700, exist_ok=True)
    state.atomic_write_json(f"{net_dir(paths, name)}/network.json", net, durable=False)
    events.emit(paths, "network", "create", net_id, {"name": display(name), "type": "bridge"})
    return net


def _check_default_bridge_free(gateway: str, prefix: int) -> None:
    """Before this root records its default network: a `pycontain0` already in this network namespace
    belongs to another state root (it has an address, and this root has no network yet). Joining it
    with another subnet would give containers a gateway the bridge lacks: refuse (bridge.BridgeInUse)."""
    from pycontain.network import bridge
    from pycontain.network.rtnl import Rtnl

    with Rtnl() as ipr:
        bridge.check_free(ipr, {"name": DEFAULT_NETWORK, "shown": DEFAULT_ALIAS, "bridge": DEFAULT_BRIDGE,
                                "gateway": gateway, "prefixlen": prefix})


def load_or_create_default(paths: Paths, name: str) -> dict[str, Any]:
    """The network a container joins; the default one is created on first use."""
    name = canonical(name)
    try:
        return load(paths, name)
    except NetworkNotFound:
        if name != DEFAULT_NETWORK:
            raise
    with global_lock(paths):
        if os.path.exists(f"{net_dir(paths, name)}/network.json"):
            return load(paths, name)
        return _create_locked(paths, name, None)


def remove(paths: Paths, name: str, before_delete: Callable[[str], object] | None = None) -> dict[str, Any]:
    """Forget a network with no members; returns what it was (the caller deletes its bridge and rules).
    before_delete(its directory): under the network's lock, once it is known to have no member (the
    caller stops its DNS resolver there)."""
    with global_lock(paths):
        net = load(paths, name)
        with network_lock(paths, name):
            users = leases(paths, name)
            if users:
                who = ", ".join(sorted(u["name"] for u in users.values()))
                raise NetworkInUse(f"network {name} is in use by {len(users)} container(s) ({who}); "
                                   "remove them first")
            if before_delete is not None:
                before_delete(net_dir(paths, name))
            state.rmtree(net_dir(paths, name))
    events.emit(paths, "network", "destroy", str(net.get("id", "")), {"name": display(name), "type": "bridge"})
    return net


def endpoint_id(network_id: str, cid: str) -> str:
    """A container's endpoint on a network (Docker's EndpointID): stable, so `inspect` of the container
    and of the network agree without storing it."""
    import hashlib

    return hashlib.sha256(f"{network_id}/{cid}".encode()).hexdigest()


def mac_of(address: str) -> str:
    """The MAC of an address on a pycontain bridge: 02:42 + its four octets (as Docker does)."""
    return "02:42:" + ":".join(f"{int(o):02x}" for o in address.split("."))


def leases(paths: Paths, name: str) -> dict[str, dict[str, str]]:
    return dict(_read(f"{net_dir(paths, name)}/leases.json", {"last": None, "leases": {}})["leases"])


# ---------------------------------------------------------------- leases

def allocate(paths: Paths, net: dict[str, Any], cid: str, name: str, hostname: str,
             on_change: Any = None, address: str | None = None, aliases: list[str] | None = None,
             extra_hosts: str = "") -> str:
    """Lease the next free address in net's subnet to cid (or `address`, --ip, if it is free);
    on_change(leases) runs under the same lock. aliases: more names it answers to (its network's DNS)."""
    base, prefix = parse_cidr(net["subnet"])
    first, last = base + 2, base + (1 << (32 - prefix)) - 2  # .0 network, .1 gateway, last broadcast
    shown = display(net["name"])
    if address is not None and not first <= ip_to_int(address) <= last:
        raise UsageError(f"invalid --ip {address!r}: not a free host address of network {shown} ({net['subnet']}, "
                         f"gateway {net['gateway']})")
    path = f"{net_dir(paths, net['name'])}/leases.json"
    with network_lock(paths, net["name"]):
        data = _read(path, {"last": None, "leases": {}})
        used = data["leases"]
        if address is not None:
            addr = int_to_ip(ip_to_int(address))
            if addr in used:
                raise UsageError(f"address {addr} is already in use on network {shown} "
                                 f"(by {used[addr].get('name') or used[addr].get('id', '')[:12]})")
        else:
            start = ip_to_int(data["last"]) + 1 if data.get("last") else first
            size = last - first + 1
            for i in range(size):
                candidate = first + (start - first + i) % size
                addr = int_to_ip(candidate)
                if addr not in used:
                    break
            else:
                raise PycontainError(f"network {shown} ({net['subnet']}) has no free address left")
        used[addr] = {"id": cid, "name": name, "hostname": hostname}
        if aliases:
            used[addr]["aliases"] = list(aliases)
        if extra_hosts:  # kept for callers of an older pycontain; a member's --add-host lines are in its own hosts file
            used[addr]["extra_hosts"] = extra_hosts
        if address is None:  # round-robin goes on from the last address it chose itself
            data["last"] = addr
        state.atomic_write_json(path, data, durable=False)
        if on_change is not None:
            on_change(used)
    return addr


def release(paths: Paths, net_name: str, cids: set[str], on_change: Any = None) -> list[str]:
    """Drop every lease held by one of cids; returns the addresses freed."""
    path = f"{net_dir(paths, net_name)}/leases.json"
    if not os.path.exists(path):
        return []
    with network_lock(paths, net_name):
        data = _read(path, {"last": None, "leases": {}})
        freed = [a for a, lease in data["leases"].items() if lease.get("id") in cids]
        if freed:
            for a in freed:
                del data["leases"][a]
            state.atomic_write_json(path, data, durable=False)
            if on_change is not None:
                on_change(data["leases"])
    return freed


# ---------------------------------------------------------------- host ports

def reserve_ports(paths: Paths, cid: str, mappings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Claim each mapping's host port for cid; host_port 0 gets a free port from the kernel."""
    path = f"{root(paths)}/ports.json"
    out = []
    with global_lock(paths):
        table = _read(path, {})
        for m in mappings:
            m = dict(m)
            if not m["host_port"]:
                m["host_port"] = _free_port(m["protocol"], table)
            key = f"{m['protocol']}/{m['host_port']}"
            owner = table.get(key)
            if owner is not None and owner != cid:
                raise UsageError(f"host port {m['host_port']}/{m['protocol']} is already published by container "
                                 f"{owner[:12]}; choose another -p")
            table[key] = cid
            out.append(m)
        state.atomic_write_json(path, table, durable=False)
    return out


def release_ports(paths: Paths, cids: set[str]) -> list[str]:
    path = f"{root(paths)}/ports.json"
    if not os.path.exists(path):
        return []
    with global_lock(paths):
        table = _read(path, {})
        freed = [k for k, owner in table.items() if owner in cids]
        for k in freed:
            del table[k]
        if freed:
            state.atomic_write_json(path, table, durable=False)
    return freed


def port_owners(paths: Paths) -> dict[str, str]:
    return dict(_read(f"{root(paths)}/ports.json", {}))


def _free_port(protocol: str, table: dict[str, str]) -> int:
    """A port from the kernel's ephemeral range that nothing listens on now and no container publishes."""
    kind = _socket.SOCK_STREAM if protocol == "tcp" else _socket.SOCK_DGRAM
    for _ in range(64):
        s = _socket.socket(_socket.AF_INET, kind)
        try:
            s.bind(("0.0.0.0", 0))
            port = int(s.getsockname()[1])
        finally:
            s.close()
        if f"{protocol}/{port}" not in table:
            return port
    raise PycontainError("could not find a free host port")
