"""`pycontain network create|ls|inspect|rm|connect|disconnect` and `pycontain port`: loaded only when used
(cli.PLUGINS)."""

from __future__ import annotations

import sys

from pycontain.errors import UsageError
from pycontain.network import ipam

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

COMMANDS: dict[str, tuple[list[Any], str, str]] = {
    "network prune": ([(("-f", "--force"), "force", "flag", "", "do not ask")], "",
                      "remove every network no container uses (not the default one)"),
    "network": ([(("--subnet",), "subnet", "value", "CIDR", "network create: the subnet (default: a free one)"),
                 (("--internal",), "internal", "flag", "",
                  "network create: its containers reach only each other (no route out, no DNS forwarding)"),
                 (("--label",), "label", "multi", "K=V", "network create: a label (network ls --filter label=K=V)"),
                 (("--filter",), "filter", "multi", "KEY=VALUE", "network ls: label=K[=V], name=, id=, driver="),
                 (("-f", "--format"), "format", "value", "TEMPLATE",
                  "network ls/inspect: a Go template (ls: .ID .Name .Driver .Scope .Subnet .Containers)"),
                 (("-q", "--quiet"), "quiet", "flag", "", "network ls: only the network ids"),
                 (("--no-trunc",), "no_trunc", "flag", "", "network ls: full network ids"),
                 (("--ip",), "ip", "value", "ADDRESS", "network connect: the container's address on the network"),
                 (("--alias",), "alias", "multi", "NAME", "network connect: another name the container has there"),
                 (("--force",), "force", "flag", "", "network disconnect: no error if it is not connected")],
                "create|ls|inspect|rm|connect|disconnect [NAME...]", "manage bridge networks"),
    "port": ([], "CONTAINER", "list a container's published ports"),
}

# Options that belong to one network subcommand only.
_ONLY = {"subnet": ("create",), "internal": ("create",), "label": ("create",), "filter": ("ls", "list"),
         "format": ("ls", "list", "inspect"), "quiet": ("ls", "list"),
         "no_trunc": ("ls", "list"), "ip": ("connect",), "alias": ("connect",), "force": ("disconnect",)}
USAGE = ("usage: pycontain network create [--subnet CIDR] [--internal] [--label K=V] NAME | ls [-q] [--filter F] "
         "[--format T] | inspect [--format T] NAME... "
         "| rm NAME... | connect [--ip A] [--alias N] NET CONTAINER | disconnect [--force] NET CONTAINER")


def cmd_network(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    if not pos:
        raise UsageError(USAGE)
    action, names = pos[0], pos[1:]
    for key, actions in _ONLY.items():
        if opts.get(key) not in (None, False, []) and action not in actions:
            flag = "--" + key.replace("_", "-")
            raise UsageError(f"{flag} belongs to `pycontain network {actions[0]}`")
    if action == "create":
        if len(names) != 1:
            raise UsageError("usage: pycontain network create [--subnet CIDR] [--internal] [--label K=V] NAME")
        labels = {}
        for item in opts.get("label") or ():
            key, _, value = item.partition("=")
            if not key:
                raise UsageError(f"invalid --label {item!r}: expected KEY=VALUE")
            labels[key] = value
        net = ipam.create(paths, _valid_name(names[0]), opts["subnet"], internal=bool(opts.get("internal")),
                          labels=labels)
        print(net["id"])
        return 0
    if action in ("ls", "list"):
        return _ls(paths, opts, names)
    if action == "inspect":
        return _inspect(paths, opts, names)
    if action in ("rm", "remove"):
        if not names:
            raise UsageError("usage: pycontain network rm NAME...")
        code = 0
        for name in names:
            try:
                if ipam.canonical(name) == ipam.DEFAULT_NETWORK:
                    raise UsageError(f"{name} is the default network and cannot be removed")
                remove(paths, name)
                print(name)
            except Exception as e:
                from pycontain.errors import PycontainError

                if not isinstance(e, PycontainError):
                    raise
                print(f"pycontain: {e}", file=sys.stderr)
                code = e.exit_code
        return code
    if action in ("connect", "disconnect"):
        if len(names) != 2:
            raise UsageError(f"usage: pycontain network {action} "
                             f"{'[--ip A] [--alias N]' if action == 'connect' else '[--force]'} NETWORK CONTAINER")
        from pycontain import state
        from pycontain.network import connect

        rec = state.find(paths, names[1])
        if action == "connect":
            connect.connect(paths, rec, names[0], ip=opts.get("ip"), aliases=list(opts.get("alias") or []))
        else:
            connect.disconnect(paths, rec, names[0], force=bool(opts.get("force")))
        return 0
    raise UsageError(f"unknown network command {action!r}: use create, ls, inspect, rm, connect or disconnect")


def _ls(paths: Any, opts: dict[str, Any], names: list[str]) -> int:
    if names:
        raise UsageError("usage: pycontain network ls [-q] [--no-trunc] [--filter KEY=VALUE] [--format TEMPLATE]")
    from pycontain.clifmt import parse_filters

    filters = parse_filters(list(opts.get("filter") or ()), ("label", "name", "id", "driver", "type", "scope"),
                            "network ls")
    rows = []
    for name in ipam.names(paths):
        try:
            n = ipam.load(paths, name)
            labels = {str(k): str(v) for k, v in (n.get("labels") or {}).items()}
            if not _matches(filters, n, labels):
                continue
            rows.append({"ID": n["id"] if opts.get("no_trunc") else n["id"][:12], "Name": ipam.display(n["name"]),
                         "Driver": "bridge", "Scope": "local", "IPv6": "false",
                         "Internal": "true" if n.get("internal") else "false",
                         "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
                         "CreatedAt": n.get("created", ""), "Subnet": n["subnet"],
                         "Containers": str(len(ipam.leases(paths, name)))})
        except ipam.DamagedNetwork as e:  # named on stderr; the others are listed
            print(f"pycontain: network {name}: {e}", file=sys.stderr)
    # Docker lists the default network first among bridges, then by name.
    rows.sort(key=lambda r: (r["Name"] != ipam.DEFAULT_ALIAS, r["Name"]))
    if opts.get("quiet"):
        for r in rows:
            print(r["ID"])
        return 0
    if opts.get("format"):
        from pycontain.clifmt import print_formatted

        print_formatted(opts["format"], rows, {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER",
                                                "Scope": "SCOPE", "Subnet": "SUBNET", "Containers": "CONTAINERS",
                                                "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS",
                                                "CreatedAt": "CREATED AT"})
        return 0
    from pycontain.clifmt import table

    table(["NETWORK ID", "NAME", "DRIVER", "SCOPE"], [[r["ID"], r["Name"], r["Driver"], r["Scope"]] for r in rows])
    return 0


def _matches(filters: dict[str, list[str]], net: dict[str, Any], labels: dict[str, str]) -> bool:
    """Docker's network ls filters: each key given must match (any of its values); label=K or K=V,
    name= a substring, id= a prefix, driver=bridge, type=custom|builtin, scope=local."""
    for key, values in filters.items():
        if key == "label":
            ok = all(k in labels and (not eq or labels[k] == v)
                     for k, eq, v in (item.partition("=") for item in values))
        elif key == "name":
            ok = any(v in ipam.display(net["name"]) for v in values)
        elif key == "id":
            ok = any(net["id"].startswith(v) for v in values)
        elif key == "driver":
            ok = "bridge" in values
        elif key == "scope":
            ok = "local" in values
        else:
            ok = ("builtin" if net["name"] == ipam.DEFAULT_NETWORK else "custom") in values
        if not ok:
            return False
    return True


def _inspect(paths: Any, opts: dict[str, Any], names: list[str]) -> int:
    import json

    from pycontain.errors import PycontainError

    if not names:
        raise UsageError("usage: pycontain network inspect [--format TEMPLATE] NAME...")
    if opts.get("format") and opts["format"] != "json":
        from pycontain import gotemplate

        gotemplate.parse(opts["format"])  # a bad template fails before anything is looked up
    out, code = [], 0
    for name in names:
        try:
            out.append(network_view(paths, name))
        except PycontainError as e:
            print(f"pycontain: {e}", file=sys.stderr)
            code = e.exit_code
    fmt = opts.get("format")
    if fmt and fmt != "json":
        from pycontain import gotemplate

        tmpl = gotemplate.parse(fmt)
        sys.stdout.write("".join(tmpl.execute(view) + "\n" for view in out))
    else:
        print(json.dumps(out, indent=4))
    return code


# Docker's pseudo-networks: `network inspect host|none` answers as Docker's does.
_PSEUDO = {"host": "host", "none": "null"}


def network_view(paths: Any, name: str) -> dict[str, Any]:
    """`network inspect NAME` in Docker's shape. The default network (`bridge`) exists from the start, as
    Docker's: inspecting it records it if no container has used it yet (no bridge is made until one does)."""
    import hashlib

    if name in _PSEUDO:
        return {"Name": name, "Id": hashlib.sha256(f"pycontain-network-{name}".encode()).hexdigest(),
                "Created": ZERO_TIME, "Scope": "local", "Driver": _PSEUDO[name], "EnableIPv6": False,
                "IPAM": {"Driver": "default", "Options": None, "Config": []}, "Internal": False,
                "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
                "Containers": _pseudo_members(paths, name), "Options": {}, "Labels": {}}
    canonical = ipam.canonical(name)
    net = ipam.load_or_create_default(paths, canonical) if canonical == ipam.DEFAULT_NETWORK \
        else ipam.load(paths, canonical)
    members = {}
    for addr, lease in sorted(ipam.leases(paths, net["name"]).items(), key=lambda kv: ipam.ip_to_int(kv[0])):
        members[lease["id"]] = {"Name": lease.get("name", ""), "EndpointID": ipam.endpoint_id(net["id"], lease["id"]),
                                "MacAddress": ipam.mac_of(addr), "IPv4Address": f"{addr}/{net['prefixlen']}",
                                "IPv6Address": ""}
    default = net["name"] == ipam.DEFAULT_NETWORK
    options = {"com.docker.network.bridge.name": net["bridge"],
               "com.docker.network.bridge.enable_ip_masquerade": "false" if net.get("internal") else "true",
               # pycontain's own key for the bridge's name (older scripts and tests read it)
               "bridge": net["bridge"]}
    if default:
        options["com.docker.network.bridge.default_bridge"] = "true"
    return {
        "Name": ipam.display(net["name"]), "Id": net["id"], "Created": net.get("created") or ZERO_TIME,
        "Scope": "local", "Driver": "bridge", "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None,
                 "Config": [{"Subnet": net["subnet"], "Gateway": net["gateway"]}]},
        "Internal": bool(net.get("internal")), "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""},
        "ConfigOnly": False, "Containers": members, "Options": options, "Labels": dict(net.get("labels") or {}),
    }


def _pseudo_members(paths: Any, mode: str) -> dict[str, Any]:
    from pycontain import state

    out = {}
    for rec in state.all_records(paths):
        try:
            if rec.config.network == mode and rec.status() == state.Status.RUNNING:
                out[rec.id] = {"Name": rec.name, "EndpointID": "", "MacAddress": "", "IPv4Address": "",
                               "IPv6Address": ""}
        except (OSError, ValueError):
            continue
    return out


ZERO_TIME = "0001-01-01T00:00:00Z"


def remove(paths: Any, name: str) -> None:
    """`network rm NAME`: the network, its bridge, its nft chains and its DNS resolver (stopped, waited for)."""
    from pycontain.network import nat, resolver

    net = ipam.remove(paths, ipam.canonical(name), resolver.stop)  # refuses while any container holds a lease
    from pycontain.network import bridge
    from pycontain.network.rtnl import Rtnl

    with Rtnl() as ipr:
        bridge.delete(ipr, net["bridge"])
    nat.remove_network(net)




def _valid_name(name: str) -> str:
    from pycontain.config import validate_network

    if validate_network(name) in ("none", "host", ipam.DEFAULT_NETWORK) or name in (ipam.DEFAULT_ALIAS,
                                                                                     ipam.DEFAULT_NETWORK):
        raise UsageError(f"{name} is a reserved network name")
    return name


def cmd_port(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain import state
    from pycontain.network import bridged

    if len(pos) != 1:
        raise UsageError("usage: pycontain port CONTAINER")
    for line in bridged.port_lines(state.find(paths, pos[0]).network):
        print(line)
    return 0


def prune(paths: Any) -> list[str]:
    """Networks no container is attached to, except the default one (what `network rm` refuses to remove)."""
    import os

    from pycontain.errors import PycontainError
    from pycontain.network import ipam, resolver

    if not os.path.isdir(ipam.root(paths)):
        return []
    removed = []
    for name in ipam.names(paths):
        if name in (ipam.DEFAULT_NETWORK, ipam.DEFAULT_ALIAS):
            continue
        try:
            if ipam.leases(paths, name):
                continue
            net = ipam.remove(paths, name, resolver.stop)  # refuses (and we skip it) if a container joined meanwhile
        except PycontainError:
            continue
        from pycontain.network import bridge, nat
        from pycontain.network.rtnl import Rtnl

        with Rtnl() as ipr:
            bridge.delete(ipr, net["bridge"])
        nat.remove_network(net)
        removed.append(name)
    return removed


def cmd_network_prune(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    """`network prune`: every network no container is attached to, but the default one (Docker's)."""
    if pos:
        raise UsageError("network prune takes no arguments")
    if not opts["force"]:
        from pycontain.clifmt import confirm

        if not confirm("WARNING! This will remove all custom networks not used by at least one container.",
                       "network prune removes every network no container uses"):
            return 0
    removed = prune(paths)
    if removed:
        print("Deleted Networks:")
        for name in removed:
            print(name)
    return 0


HANDLERS = {"network": cmd_network, "port": cmd_port, "network prune": cmd_network_prune}
