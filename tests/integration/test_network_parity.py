"""The network commands as Docker users know them: the default network answers to `bridge` (`--network
bridge`, `network ls`, `network inspect bridge` in Docker's shape), a second state root in the same
network namespace is refused rather than given a gateway its bridge lacks, and `network connect` /
`disconnect` add and remove a second interface. Every test runs in a network namespace it makes."""

from __future__ import annotations

import json
import time
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import leaks as leaks_module
import support
from netns_support import NetNs, NetPycontain, leakcheck_wrapper, network_leftovers
from support import assert_pycontain_error, describe


def _make(root: Path, ns: NetNs, busybox_tarball: Path, alpine: Path | None = None) -> NetPycontain:
    p = NetPycontain(root, ns)
    p.ok("import", "--change", 'CMD ["sh"]', busybox_tarball, "busybox")
    if alpine is not None:  # the built-in busybox's ping needs a raw socket; alpine's uses ICMP sockets
        p.ok("import", alpine, "alpine")
    return p


@pytest.fixture
def npc(tmp_path: Path, ns: NetNs, busybox_tarball: Path, alpine_tarball: Path, monkeypatch: pytest.MonkeyPatch,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetPycontain]:
    monkeypatch.setattr(leaks_module, "LEAKCHECK", leakcheck_wrapper(tmp_path, ns))
    snapshot = support.leakcheck_snapshot(tmp_path / "leakcheck-before.json")
    p = _make(tmp_path / "root", ns, busybox_tarball, alpine_tarball)
    yield p
    p.remove_all()
    assert network_leftovers(p) == []
    # Bridges and their chains stay while their network exists (they live and die with the namespace).
    leaks = [line for line in support.leaks_since(snapshot, tmp_path_factory.getbasetemp())
             if not re.match(r"leaked link: (pycontain0|pcbr[0-9a-f]{11})$", line)
             and not (line.startswith("leaked nft: ") and not re.search(r"[0-9a-f]{64}", line))]
    assert not leaks, "left behind:\n" + "\n".join(leaks)


def one_line(res: object, *words: str) -> None:
    assert_pycontain_error(res)  # type: ignore[arg-type]
    err = res.stderr  # type: ignore[attr-defined]
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, describe(res)  # type: ignore[arg-type]
    for w in words:
        assert w in err, describe(res)  # type: ignore[arg-type]


def inspect_net(p: NetPycontain, name: str) -> dict[str, object]:
    data = json.loads(p.ok("network", "inspect", name).stdout)
    assert isinstance(data, list) and len(data) == 1
    return dict(data[0])


def test_network_inspect_bridge_works_on_a_fresh_root_in_dockers_shape(npc: NetPycontain, ns: NetNs) -> None:
    net = inspect_net(npc, "bridge")
    assert net["Name"] == "bridge" and net["Driver"] == "bridge" and net["Scope"] == "local"
    assert re.fullmatch(r"[0-9a-f]{64}", str(net["Id"]))
    assert net["EnableIPv6"] is False and net["Internal"] is False and net["Attachable"] is False
    ipam = net["IPAM"]
    assert isinstance(ipam, dict) and ipam["Driver"] == "default"
    (config,) = ipam["Config"]
    assert set(config) == {"Subnet", "Gateway"} and config["Gateway"].endswith(".1")
    assert net["Containers"] == {} and net["Labels"] == {}
    options = net["Options"]
    assert isinstance(options, dict) and options["com.docker.network.bridge.name"] == "pycontain0"
    assert "pycontain0" not in ns.links()  # recorded, but no bridge until a container joins it
    assert inspect_net(npc, "pycontain")["Id"] == net["Id"]  # its stored name answers too


def test_the_default_network_is_bridge_in_ls_inspect_and_run(npc: NetPycontain) -> None:
    npc.ok("run", "-d", "--name", "web", "--network", "bridge", "busybox", "sleep", "60")
    npc.wait_until_running("web")
    lines = npc.ok("network", "ls").stdout.splitlines()
    assert lines[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    row = lines[1].split()
    assert row[1:] == ["bridge", "bridge", "local"] and len(row[0]) == 12, lines
    net = inspect_net(npc, "bridge")
    info = json.loads(npc.ok("inspect", "web").stdout)[0]
    members = net["Containers"]
    assert isinstance(members, dict) and list(members) == [info["Id"]]
    member = members[info["Id"]]
    addr = npc.net_of("web")["address"]
    assert member == {"Name": "web", "EndpointID": info["NetworkSettings"]["Networks"]["bridge"]["EndpointID"],
                      "MacAddress": npc.net_of("web")["mac"], "IPv4Address": f"{addr}/16", "IPv6Address": ""}
    assert npc.ok("network", "ls", "-q").stdout.split() == [row[0]]
    for name in ("bridge", "pycontain"):
        one_line(npc("network", "rm", name), "default network")
        one_line(npc("network", "create", name), "reserved")


def test_network_ls_and_inspect_format(npc: NetPycontain) -> None:
    pytest.importorskip("pycontain.gotemplate")
    npc.ok("network", "create", "--subnet", "10.207.0.0/24", "front")
    assert npc.ok("network", "ls", "--format", "{{.Name}} {{.Driver}}").stdout.splitlines() == ["front bridge"]
    table = npc.ok("network", "ls", "--format", "table {{.Name}}\t{{.Subnet}}").stdout.splitlines()
    assert table[0].split() == ["NAME", "SUBNET"] and table[1].split() == ["front", "10.207.0.0/24"]
    out = npc.ok("network", "inspect", "--format", "{{.Name}} {{(index .IPAM.Config 0).Subnet}}", "front").stdout
    assert out.strip() == "front 10.207.0.0/24"
    one_line(npc("network", "ls", "--format", "{{.Name"))


def test_a_second_state_root_in_the_same_namespace_is_refused_in_one_line(
        npc: NetPycontain, ns: NetNs, busybox_tarball: Path, tmp_path: Path) -> None:
    npc.ok("run", "-d", "--name", "first", "--network", "bridge", "busybox", "sleep", "60")
    npc.wait_until_running("first")
    other = _make(tmp_path / "other-root", ns, busybox_tarball)
    try:
        # Before: the second root picked a free subnet, joined pycontain0, and its container got a
        # gateway the bridge did not have.
        one_line(other("run", "--rm", "--network", "bridge", "busybox", "true"), "pycontain0", "another state root")
        # Both roots recorded the same subnet before either made the bridge: the bridge's tag tells them apart.
        npc.ok("rm", "-f", "first")
        mine = json.loads((npc.root / "run" / "networks" / "pycontain" / "network.json").read_text())
        other_nets = other.root / "run" / "networks" / "pycontain"
        other_nets.mkdir(parents=True, exist_ok=True)
        (other_nets / "network.json").write_text(json.dumps(dict(mine, id="f" * 64)))
        one_line(other("run", "--rm", "--network", "bridge", "busybox", "true"), "pycontain0", "another state root")
        assert network_leftovers(other) == []
        # The first root is unharmed.
        res = npc.ok("run", "--rm", "--network", "bridge", "alpine", "ping", "-c", "1", "-W", "3", mine["gateway"])
        assert "1 packets received" in res.stdout or "1 received" in res.stdout, res.stdout
    finally:
        other.remove_all()


def test_network_connect_adds_a_second_interface_and_disconnect_removes_it(npc: NetPycontain) -> None:
    npc.ok("network", "create", "--subnet", "10.208.0.0/24", "back")
    npc.ok("run", "-d", "--name", "peer", "--network", "back", "alpine", "sleep", "60")
    npc.ok("run", "-d", "--name", "app", "--network", "bridge", "alpine", "sleep", "60")
    npc.wait_until_running("app")
    npc.ok("network", "connect", "--ip", "10.208.0.50", "--alias", "db", "back", "app")
    shown = npc.ok("exec", "app", "ip", "-4", "-o", "addr").stdout
    assert re.search(r"eth1\s+inet 10\.208\.0\.50/24", shown), shown
    assert npc.ok("exec", "app", "ip", "route").stdout.count("default") == 1  # still via eth0
    assert "1 packets received" in npc.ok("exec", "app", "ping", "-c", "1", "-W", "3",
                                          npc.net_of("peer")["address"]).stdout
    # A member of `back` reaches it by name and alias (the network's DNS resolver).
    assert "1 packets received" in npc.ok("exec", "peer", "ping", "-c", "1", "-W", "3", "db").stdout
    info = json.loads(npc.ok("inspect", "app").stdout)[0]
    nets = info["NetworkSettings"]["Networks"]
    assert set(nets) == {"bridge", "back"}
    assert nets["back"]["IPAddress"] == "10.208.0.50" and nets["back"]["Aliases"] == ["db"]
    assert nets["back"]["IPAMConfig"] == {"IPv4Address": "10.208.0.50"}
    assert info["Id"] in inspect_net(npc, "back")["Containers"]  # type: ignore[operator]
    one_line(npc("network", "connect", "back", "app"), "already connected")
    one_line(npc("network", "connect", "back", "peer"), "already connected")  # its first network
    one_line(npc("network", "connect", "--ip", "10.208.0.50", "bridge", "peer"), "10.208.0.50")
    # Stopped and started again, it rejoins `back` at the same address.
    npc.ok("stop", "-t", "1", "app")
    npc.ok("start", "app")
    npc.wait_until_running("app")
    assert "10.208.0.50/24" in npc.ok("exec", "app", "ip", "-4", "-o", "addr").stdout
    npc.ok("network", "disconnect", "back", "app")
    assert "eth1" not in npc.ok("exec", "app", "ip", "-o", "link").stdout
    assert set(json.loads(npc.ok("inspect", "app").stdout)[0]["NetworkSettings"]["Networks"]) == {"bridge"}
    one_line(npc("network", "disconnect", "back", "app"), "not connected")
    npc.ok("network", "disconnect", "--force", "back", "app")
    one_line(npc("network", "disconnect", "bridge", "app"), "first network")
    # A lease of a connected network goes with the container.
    npc.ok("network", "connect", "back", "app")
    npc.ok("rm", "-f", "app")
    assert [lease for lease in network_leftovers(npc) if "(app)" in lease] == []


def test_network_connect_refuses_what_it_cannot_do_in_one_line(npc: NetPycontain) -> None:
    npc.ok("network", "create", "--subnet", "10.209.0.0/24", "side")
    npc.ok("create", "--name", "lonely", "--network", "none", "busybox", "true")
    npc.ok("create", "--name", "b", "--network", "bridge", "busybox", "true")
    one_line(npc("network", "connect", "side", "lonely"), "--network none")
    one_line(npc("network", "connect", "nosuch", "b"), "nosuch")
    one_line(npc("network", "connect", "side", "nosuch"), "nosuch")
    one_line(npc("network", "connect", "--ip", "10.1.2.3", "side", "b"), "10.1.2.3")
    one_line(npc("network", "connect", "--ip", "10.209.0.1", "side", "b"), "10.209.0.1")
    one_line(npc("network", "ls", "--ip", "1.2.3.4"), "--ip")


def test_network_events_create_connect_disconnect_destroy(npc: NetPycontain) -> None:
    since = f"{time.time():.3f}"
    npc.ok("network", "create", "--subnet", "10.209.0.0/24", "evnet")
    net_id = inspect_net(npc, "evnet")["Id"]
    cid = npc.ok("run", "-d", "--name", "ev", "--network", "bridge", "busybox", "sleep", "60").stdout.strip()
    npc.wait_until_running("ev")
    npc.ok("network", "connect", "evnet", "ev")
    npc.ok("network", "disconnect", "evnet", "ev")
    npc.ok("rm", "-f", "ev")
    npc.ok("network", "rm", "evnet")
    until = f"{time.time() + 0.001:.3f}"
    shown = npc.ok("events", "--since", since, "--until", until, "--filter", "type=network", "--format",
                   "{{.Type}} {{.Action}} {{.Actor.ID}} {{.Actor.Attributes.name}} {{.Actor.Attributes.type}} "
                   "{{.Actor.Attributes.container}}").stdout.splitlines()
    bridge_id = inspect_net(npc, "bridge")["Id"]
    # The default network is recorded (and its create event written) when the first container wants it.
    assert shown == [
        f"network create {net_id} evnet bridge <no value>",
        f"network create {bridge_id} bridge bridge <no value>",
        f"network connect {bridge_id} bridge bridge {cid}",
        f"network connect {net_id} evnet bridge {cid}",
        f"network disconnect {net_id} evnet bridge {cid}",
        f"network disconnect {bridge_id} bridge bridge {cid}",
        f"network destroy {net_id} evnet bridge <no value>",
    ], shown
    every = npc.ok("events", "--since", since, "--until", until).stdout
    assert "container create" in every and "network connect" in every  # unfiltered: both kinds


def test_network_prune_removes_only_unused_networks(npc: NetPycontain) -> None:
    npc.ok("network", "create", "keep")
    npc.ok("network", "create", "spare")
    npc.ok("run", "-d", "--name", "user", "--network", "keep", "busybox", "sleep", "60")
    res = npc("network", "prune")  # no terminal to ask: refused, nothing removed
    assert res.returncode == 125 and "add -f" in res.stderr, res.stderr
    assert npc.ok("network", "prune", "-f").stdout == "Deleted Networks:\nspare\n"
    names = npc.ok("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert "keep" in names and "spare" not in names
    npc.ok("rm", "-f", "user")
    assert npc.ok("network", "prune", "-f").stdout == "Deleted Networks:\nkeep\n"
