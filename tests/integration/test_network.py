"""Bridge networking: real bridges, veths and nft rules, each test inside a network namespace it makes.

The test's namespace plays the host (pycontain0, the nft table, ip_forward live there and vanish with
it); a second namespace wired to it plays a remote client. Traffic goes only to 127.0.0.0/8 and to
addresses inside these namespaces.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import leaks as leaks_module
import support
from netns_support import (NetNs, NetPycontain, http_get, leakcheck_wrapper, monitor_pid, network_leftovers,
                           udp_echo, wire_remote)
from support import PYCONTAIN, SETTLE_TIMEOUT, assert_pycontain_error, describe

PAYLOAD = "served-from-the-container-" + "x" * 64
HTTPD = ["sh", "-c", f"mkdir -p /www && echo {PAYLOAD} > /www/index.html && exec httpd -f -p 80 -h /www"]
# Alpine's busybox nc speaks UDP; each listener answers one peer (the first it hears from), so one
# listener per client, and each client sends all its tries from one source port.
UDP_ECHOES = ["sh", "-c", "for p in 1001 1002 1003; do nc -u -lk -p $p -e /bin/cat & done; wait"]


@pytest.fixture
def npc(tmp_path: Path, ns: NetNs, busybox_tarball: Path, alpine_tarball: Path,
        monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetPycontain]:
    """pycontain in the test's namespace with busybox and alpine imported; after the test every
    container is removed and nothing of theirs may be left: no veth, nft rule, lease or host port
    (leakcheck, run inside the namespace, also covers mounts, cgroups and processes)."""
    monkeypatch.setattr(leaks_module, "LEAKCHECK", leakcheck_wrapper(tmp_path, ns))  # leaks.py runs it
    snapshot = support.leakcheck_snapshot(tmp_path / "leakcheck-before.json")
    p = NetPycontain(tmp_path / "root", ns)
    p.ok("import", "--change", 'CMD ["sh"]', busybox_tarball, "busybox")
    p.ok("import", alpine_tarball, "alpine")
    yield p
    p.remove_all()
    assert network_leftovers(p) == []
    kept_bridges = {json.loads(f.read_text())["bridge"] for f in (p.root / "run" / "networks").glob("*/network.json")}
    leaks = [line for line in support.leaks_since(snapshot, tmp_path_factory.getbasetemp())
             if not (line.startswith("leaked link: ") and line.split(": ", 1)[1] in kept_bridges)
             and not (line.startswith("leaked nft: ") and not re.search(r"[0-9a-f]{64}", line))]
    assert not leaks, "left behind:\n" + "\n".join(leaks)


def run_d(pc: NetPycontain, *args: str) -> str:
    return pc.ok("run", "-d", *args).stdout.strip()


def host_port(pc: NetPycontain, ref: str, spec: str) -> int:
    for line in pc.ok("port", ref).stdout.splitlines():
        if line.startswith(spec + " -> "):
            return int(line.rsplit(":", 1)[1])
    raise AssertionError(f"{spec} is not published by {ref}: {pc.ok('port', ref).stdout!r}")


# ---------------------------------------------------------------- the container's side

def test_container_has_eth0_with_an_address_in_the_subnet_and_a_default_route(npc: NetPycontain) -> None:
    res = npc.ok("run", "--rm", "--network", "bridge", "alpine", "sh", "-c",
                 "ip -4 -o addr show eth0; ip route; cat /etc/resolv.conf /etc/hosts")
    net = json.loads((npc.root / "run" / "networks" / "pycontain" / "network.json").read_text())
    m = re.search(r"eth0\s+inet (\d+\.\d+\.\d+\.\d+)/(\d+)", res.stdout)
    assert m, res.stdout
    prefix = net["subnet"].rsplit(".", 2)[0]  # a /16: the first two octets
    assert m.group(1).startswith(prefix + ".") and m.group(2) == "16", (m.group(0), net)
    assert f"default via {net['gateway']} dev eth0" in res.stdout
    assert "nameserver" in res.stdout and "nameserver 127." not in res.stdout
    assert m.group(1) in res.stdout.split("nameserver")[-1]  # /etc/hosts names the container's address
    assert npc.ns.links().count("pycontain0") == 1


def test_network_none_imports_no_netlink_code_and_a_bridge_no_pyroute2(npc: NetPycontain, tmp_path: Path) -> None:
    code = "\n".join([
        "import sys",
        "exec(next(l for l in open(sys.argv[1]).read().splitlines() if l.startswith('sys.path[:0]')))",
        "from pycontain.cli import main",
        "main(['--root', sys.argv[2], 'run', '--rm', '--network', sys.argv[3], 'busybox', 'cat', '/proc/net/dev'])",
        "heavy = ('pyroute2', 'asyncio', 'multiprocessing', 'pycontain.network.rtnl', 'pycontain.network.bridged')",
        "print('imported:', sorted({m for m in sys.modules if m.startswith(heavy)}))",
    ])
    res = npc.ns.run(sys.executable, "-c", code, PYCONTAIN, str(npc.root), "none")
    assert "imported: []" in res.stdout, res.stdout + res.stderr
    assert "eth0" not in res.stdout
    # A bridged run needs netlink, and pays for no more than rtnl.py: none of pyroute2's imports.
    res = npc.ns.run(sys.executable, "-c", code, PYCONTAIN, str(npc.root), "bridge")
    assert "eth0" in res.stdout
    assert "imported: ['pycontain.network.bridged', 'pycontain.network.rtnl']" in res.stdout, res.stdout + res.stderr


# ---------------------------------------------------------------- published ports

def test_published_tcp_port_serves_localhost_other_containers_itself_and_a_remote_client(
        npc: NetPycontain, ns: NetNs) -> None:
    remote = NetNs()
    try:
        wire_remote(ns, remote)
        web = run_d(npc, "--name", "web", "--network", "bridge", "-p", "8080:80", "busybox", *HTTPD)
        assert web
        assert PAYLOAD in http_get(ns, "127.0.0.1", 8080)                    # the host itself, via lo
        assert PAYLOAD in http_get(remote, "10.250.0.1", 8080)               # another machine
        gw = npc.net_of("web")["gateway"]
        other = npc.ok("run", "--rm", "--network", "bridge", "alpine", "wget", "-q", "-O", "-", "-T", "5",
                       f"http://{gw}:8080/")
        assert PAYLOAD in other.stdout                                        # a neighbour on the bridge
        self_hit = npc.ok("exec", "web", "sh", "-c",
                          f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {gw} 8080")
        assert PAYLOAD in self_hit.stdout                                     # hairpin: itself
        assert npc.ok("port", "web").stdout.strip() == "80/tcp -> 0.0.0.0:8080"
    finally:
        remote.close()


def test_published_udp_ports_echo_for_localhost_a_container_and_a_remote_client(npc: NetPycontain, ns: NetNs) -> None:
    remote = NetNs()
    try:
        wire_remote(ns, remote)
        run_d(npc, "--name", "echo", "--network", "bridge", "-p", "5001:1001/udp", "-p", "5002:1002/udp",
              "-p", "5003:1003/udp", "alpine", *UDP_ECHOES)
        assert udp_echo(ns, "127.0.0.1", 5001, "hello-local") == "hello-local\n"
        assert udp_echo(remote, "10.250.0.1", 5002, "hello-remote") == "hello-remote\n"
        gw = npc.net_of("echo")["gateway"]
        # Every try from the same source port (-p): a listener answers only the first peer it hears
        # from, so a retry from a new port after a lost first datagram could never be answered.
        res = npc.ok("run", "--rm", "--network", "bridge", "alpine", "sh", "-c",
                     f"for i in 1 2 3 4 5; do r=$(echo hello-ctr | nc -u -p 40003 -w 2 {gw} 5003); "
                     "[ -n \"$r\" ] && echo \"$r\" && break; done")
        assert "hello-ctr" in res.stdout
    finally:
        remote.close()


def test_a_container_port_alone_gets_a_free_host_port_shown_by_port(npc: NetPycontain, ns: NetNs) -> None:
    run_d(npc, "--name", "web", "--network", "bridge", "-p", "80", "busybox", *HTTPD)
    port = host_port(npc, "web", "80/tcp")
    assert 1024 < port < 65536
    assert PAYLOAD in http_get(ns, "127.0.0.1", port)
    assert npc.net_of("web")["ports"][0]["host_port"] == port


def test_a_host_port_published_twice_is_refused_and_the_loser_leaves_nothing(npc: NetPycontain) -> None:
    run_d(npc, "--name", "first", "--network", "bridge", "-p", "8080:80", "busybox", "sleep", "60")
    res = npc("run", "-d", "--name", "second", "--network", "bridge", "-p", "8080:80", "busybox", "sleep", "60")
    assert_pycontain_error(res)
    assert "8080" in res.stderr
    leases = json.loads((npc.root / "run" / "networks" / "pycontain" / "leases.json").read_text())["leases"]
    assert [lease["name"] for lease in leases.values()] == ["first"]


def test_a_stopped_container_has_no_dnat_rules_until_it_starts_again(npc: NetPycontain, ns: NetNs) -> None:
    run_d(npc, "--name", "web", "--network", "bridge", "-p", "8080:80", "busybox", *HTTPD)
    cid = npc.container_id("web")
    assert cid in ns.nft_ruleset()
    npc.ok("stop", "-t", "1", "web")
    assert cid not in ns.nft_ruleset()
    npc.ok("start", "web")
    npc.wait_until_running("web")
    assert PAYLOAD in http_get(ns, "127.0.0.1", 8080)


# ---------------------------------------------------------------- user networks

def test_containers_on_a_user_network_reach_each_other_by_ip_and_name_but_not_across_networks(
        npc: NetPycontain) -> None:
    npc.ok("network", "create", "front")
    npc.ok("network", "create", "--subnet", "10.201.0.0/24", "back")
    run_d(npc, "--name", "a1", "--network", "front", "busybox", *HTTPD)
    run_d(npc, "--name", "b1", "--network", "back", "busybox", *HTTPD)
    a1, b1 = npc.net_of("a1"), npc.net_of("b1")
    assert b1["address"].startswith("10.201.0.")
    fetch = "wget -q -O - -T 3 http://{}/"
    by_name = npc.ok("run", "--rm", "--name", "a2", "--network", "front", "alpine", "sh", "-c",
                     f"ping -c 1 -W 3 a1 && ping -c 1 -W 3 {a1['address']} && {fetch.format('a1')}")
    assert PAYLOAD in by_name.stdout
    across = npc("run", "--rm", "--network", "front", "alpine", "sh", "-c",
                 f"ping -c 1 -W 2 {b1['address']} || ping -c 1 -W 2 {b1['gateway']} || "
                 f"{fetch.format(b1['address'])} || {fetch.format('b1')}")
    assert across.returncode != 0, describe(across)
    back_to_front = npc("run", "--rm", "--network", "back", "alpine", "sh", "-c",
                        f"ping -c 1 -W 2 {a1['address']} || {fetch.format(a1['address'])}")
    assert back_to_front.returncode != 0, describe(back_to_front)


def test_network_rm_is_refused_while_in_use_and_then_removes_bridge_and_rules(npc: NetPycontain, ns: NetNs) -> None:
    npc.ok("network", "create", "--subnet", "10.202.0.0/24", "lab")
    bridge = json.loads(npc.ok("network", "inspect", "lab").stdout)[0]["Options"]["bridge"]
    run_d(npc, "--name", "member", "--network", "lab", "busybox", "sleep", "60")
    assert bridge in ns.links()
    res = npc("network", "rm", "lab")
    assert_pycontain_error(res)
    assert "in use" in res.stderr and "member" in res.stderr
    npc.ok("rm", "-f", "member")
    npc.ok("network", "rm", "lab")
    assert bridge not in ns.links()
    assert "lab-" not in ns.nft_ruleset()
    assert "lab" not in npc.ok("network", "ls").stdout


# ---------------------------------------------------------------- IPAM and teardown

def test_32_parallel_runs_get_distinct_addresses(npc: NetPycontain) -> None:
    def one(_: int) -> str:
        res = npc("run", "--rm", "--network", "bridge", "busybox", "ip", "-4", "-o", "addr", "show", "eth0")
        assert res.returncode == 0, describe(res)
        return res.stdout.split()[3]

    with ThreadPoolExecutor(32) as pool:
        addresses = list(pool.map(one, range(32)))
    assert len(set(addresses)) == 32, sorted(addresses)


def test_sigkill_of_the_supervisor_then_gc_leaves_no_rule_lease_or_veth(npc: NetPycontain, ns: NetNs) -> None:
    for name, extra in (("rmme", ["--rm"]), ("keep", [])):
        run_d(npc, "--name", name, *extra, "--network", "bridge", "-p", "80", "busybox", "sleep", "60")
    for name in ("rmme", "keep"):
        monitor = monitor_pid(npc, npc.container_id(name))
        os.kill(monitor, signal.SIGKILL)
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while "Dead" not in npc.ok("ps", "-a").stdout and time.monotonic() < deadline:
        time.sleep(0.05)
    npc.ok("gc")
    leftovers = network_leftovers(npc)
    # `keep` still exists (exited): it keeps its lease and host port until rm; nothing else remains.
    assert [x for x in leftovers if not x.startswith(("lease", "host port"))] == []
    assert len([x for x in leftovers if x.startswith("lease")]) == 1
    npc.ok("rm", "keep")
    assert network_leftovers(npc) == []


def test_sigkill_in_the_middle_of_setup_is_cleaned_by_gc(npc: NetPycontain) -> None:
    """Kill pycontain at many points of a bridged run with -p; gc must always leave nothing."""
    for delay in (0.05, 0.1, 0.15, 0.2, 0.3, 0.45):
        p = npc.popen("run", "--rm", "--network", "bridge", "-p", "80", "busybox", "sleep", "30")
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=SETTLE_TIMEOUT)
        # the container (if it got that far) dies by PR_SET_PDEATHSIG; gc then releases the rest
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while True:
            npc.ok("gc")
            left = network_leftovers(npc)
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # a record younger than gc's grace period (being created) is left alone
        assert left == [], f"after SIGKILL at {delay}s: {left}"


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "10.0.0.1/24", "nonsense"])
def test_network_create_rejects_a_bad_subnet(npc: NetPycontain, bad: str) -> None:
    assert_pycontain_error(npc("network", "create", "--subnet", bad, "x"))


def test_network_create_refuses_a_subnet_overlapping_a_route(npc: NetPycontain, ns: NetNs) -> None:
    ns.run("ip", "link", "add", "rtA", "type", "veth", "peer", "name", "rtB")
    try:
        ns.run("ip", "addr", "add", "10.203.0.1/24", "dev", "rtA")
        ns.run("ip", "link", "set", "rtA", "up")
        res = npc("network", "create", "--subnet", "10.203.0.0/16", "clash")
        assert_pycontain_error(res)
        assert "overlaps" in res.stderr
    finally:
        ns.run("ip", "link", "del", "rtA")



def test_dockers_getting_started_commands_pasted(npc: NetPycontain, ns: NetNs,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands of Docker's getting-started material, pasted as they are, give Docker's output shapes
    (the default network is the bridge again: the suite's PYCONTAIN_NETWORK=none is lifted; this test's
    bridge lives in its own network namespace)."""
    monkeypatch.delenv("PYCONTAIN_NETWORK", raising=False)
    cid = npc.ok("container", "run", "-d", "-p", "8080:80", "--name", "web", "busybox", *HTTPD).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid), cid
    listing = npc.ok("container", "ls", "--all").stdout.splitlines()
    assert re.split(r"\s{2,}", listing[0].strip()) == ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS",
                                                         "PORTS", "NAMES"], listing
    assert len(listing) == 2 and cid[:12] in listing[1] and "0.0.0.0:8080->80/tcp" in listing[1] \
        and listing[1].rstrip().endswith("web") and " Up " in f" {listing[1]} ", listing
    assert PAYLOAD in http_get(ns, "127.0.0.1", 8080)
    assert npc.ok("logs", "web").returncode == 0
    top = npc.ok("top", "web").stdout.splitlines()
    assert "PID" in top[0] and any("httpd" in line for line in top[1:]), top
    assert "index.html" in npc.ok("exec", "web", "ls", "/www").stdout
    assert npc.ok("inspect", "--format", "{{.State.Status}}", "web").stdout == "running\n"
    address = npc.ok("inspect", "--format", "{{.NetworkSettings.IPAddress}}", "web").stdout.strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", address), address
    assert npc.ok("inspect", "--format", "{{json .HostConfig.PortBindings}}", "web").stdout.strip() == \
        '{"80/tcp":[{"HostIp":"","HostPort":"8080"}]}'
    networks = npc.ok("network", "ls").stdout.splitlines()
    assert re.split(r"\s{2,}", networks[0].strip()) == ["NETWORK ID", "NAME", "DRIVER", "SCOPE"], networks
    assert any(re.split(r"\s+", line.strip())[1:] == ["bridge", "bridge", "local"] for line in networks[1:]), networks
    [bridge] = json.loads(npc.ok("network", "inspect", "bridge").stdout)
    assert bridge["Name"] == "bridge" and bridge["Driver"] == "bridge" and cid in bridge["Containers"]
    assert bridge["IPAM"]["Config"][0]["Subnet"] and address.startswith(bridge["IPAM"]["Config"][0]["Gateway"][:4])
    assert npc.ok("rm", "--force", "web").stdout == "web\n"
    assert npc.ok("container", "ls", "--all").stdout.splitlines()[1:] == []
