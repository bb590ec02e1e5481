"""`pycontain network create|ls|inspect|rm` and `pycontain port`: loaded only when used (cli.PLUGINS)."""

from __future__ import annotations

import sys

from pycontain.errors import UsageError
from pycontain.network import ipam

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

COMMANDS: dict[str, tuple[list[Any], str, str]] = {
    "network": ([(("--subnet",), "subnet", "value", "CIDR", "network create: the subnet (default: a free one)")],
                "create|ls|inspect|rm [NAME...]", "manage bridge networks"),
    "port": ([], "CONTAINER", "list a container's published ports"),
}


def cmd_network(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    if not pos:
        raise UsageError("usage: pycontain network create [--subnet CIDR] NAME | ls | inspect NAME... | rm NAME...")
    action, names = pos[0], pos[1:]
    if opts["subnet"] is not None and action != "create":
        raise UsageError("--subnet belongs to `pycontain network create`")
    if action == "create":
        if len(names) != 1:
            raise UsageError("usage: pycontain network create [--subnet CIDR] NAME")
        net = ipam.create(paths, _valid_name(names[0]), opts["subnet"])
        print(net["id"])
        return 0
    if action in ("ls", "list"):
        from pycontain.clifmt import table

        rows = []
        for name in ipam.names(paths):
            try:
                n = ipam.load(paths, name)
                rows.append([n["id"][:12], n["name"], "bridge", n["subnet"], str(len(ipam.leases(paths, name)))])
            except ipam.DamagedNetwork as e:  # named on stderr; the others are listed
                print(f"pycontain: network {name}: {e}", file=sys.stderr)
        table(["NETWORK ID", "NAME", "DRIVER", "SUBNET", "CONTAINERS"], rows)
        return 0
    if action == "inspect":
        import json

        if not names:
            raise UsageError("usage: pycontain network inspect NAME...")
        out = []
        for name in names:
            net = ipam.load(paths, name)
            out.append({
                "Name": net["name"], "Id": net["id"], "Created": net["created"], "Driver": "bridge",
                "IPAM": {"Config": [{"Subnet": net["subnet"], "Gateway": net["gateway"]}]},
                "Options": {"bridge": net["bridge"]},
                "Containers": {lease["id"]: {"Name": lease["name"], "IPv4Address": f"{addr}/{net['prefixlen']}"}
                               for addr, lease in ipam.leases(paths, name).items()},
            })
        print(json.dumps(out, indent=4))
        return 0
    if action == "rm":
        if not names:
            raise UsageError("usage: pycontain network rm NAME...")
        code = 0
        for name in names:
            try:
                if name == ipam.DEFAULT_NETWORK:
                    raise UsageError(f"{name} is the default network and cannot be removed")
                _remove(paths, name)
                print(name)
            except Exception as e:
                from pycontain.errors import PycontainError

                if not isinstance(e, PycontainError):
                    raise
                print(f"pycontain: {e}", file=sys.stderr)
                code = e.exit_code
        return code
    raise UsageError(f"unknown network command {action!r}: use create, ls, inspect or rm")


def _remove(paths: Any, name: str) -> None:
    from pycontain.network import nat

    net = ipam.remove(paths, name)  # refuses while any container holds a lease on it
    from pycontain.network import bridge
    from pycontain.network.rtnl import Rtnl

    with Rtnl() as ipr:
        bridge.delete(ipr, net["bridge"])
    nat.remove_network(net)


def _valid_name(name: str) -> str:
    from pycontain.config import validate_network

    if validate_network(name) in ("none", "host") or name == "bridge":
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


HANDLERS = {"network": cmd_network, "port": cmd_port}
