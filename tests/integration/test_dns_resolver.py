"""The embedded DNS resolver of user networks (pycontain/network/resolver.py), each test in a network
namespace of its own (the npc fixture: leakcheck runs there after every test, and the networks are
pruned, which ends their resolvers).

Queries are sent to 127.0.0.11 from inside the containers' namespaces (their own tools, or a raw client
entered with nsenter); unknown names go nowhere (PYCONTAIN_DNS_UPSTREAM=none, the suite's) or to a fake
upstream server the test runs on 127.0.0.1 of its own namespace.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from netns_support import NetNs, NetPycontain, free_port, monitor_pid, wire_remote
from support import COMMAND_TIMEOUT, SETTLE_TIMEOUT
from test_network import npc  # noqa: F401 - the network suite's fixture (ns is the conftest's)

# A DNS client on the standard library (the host's python3, entered into a container's netns): it
# prints one JSON line per query: [rcode, [addresses], seconds, truncated].
QUERY = r"""
import json, random, socket, struct, sys, time
def query(name, qtype=1, tcp=False):
    tid = random.randrange(65536)
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split("."))
    pkt = struct.pack(">HHHHHH", tid, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack(">HH", qtype, 1)
    start = time.perf_counter()
    if tcp:
        s = socket.create_connection(("127.0.0.11", 53), timeout=5)
        s.sendall(len(pkt).to_bytes(2, "big") + pkt)
        want, data = int.from_bytes(s.recv(2), "big"), b""
        while len(data) < want:
            data += s.recv(want - len(data))
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(5)
        s.sendto(pkt, ("127.0.0.11", 53))
        data = s.recv(65535)
    took = time.perf_counter() - start
    assert data[:2] == pkt[:2]
    i, addrs = len(pkt), []
    for _ in range(struct.unpack(">H", data[6:8])[0]):
        while data[i] and data[i] & 0xC0 != 0xC0:
            i += data[i] + 1
        i += 2 if data[i] & 0xC0 == 0xC0 else 1
        rtype, _, _, size = struct.unpack(">HHIH", data[i:i + 10])
        if rtype == 1:
            addrs.append(socket.inet_ntoa(data[i + 10:i + 10 + size]))
        i += 10 + size
    return [data[3] & 15, addrs, took, bool(data[2] & 2)]
mode, names = sys.argv[1], sys.argv[2:]
if mode == "bench":
    times = sorted(query(names[0])[2] for _ in range(200))
    print(json.dumps(times[len(times) // 2]))
else:
    for name in names:
        print(json.dumps(query(name, 28 if mode == "aaaa" else 1, tcp=mode == "tcp")))
"""

NOERROR, SERVFAIL, NXDOMAIN = 0, 2, 3

# A fake upstream name server (dnslib, run by this suite's interpreter in the test's namespace on
# 127.0.0.1): every name is 192.0.2.99, except big.* (60 addresses: truncated over UDP, whole over TCP).
FAKE_UPSTREAM = r"""
import socket, sys, threading
from dnslib import A, QTYPE, RR, DNSRecord
port = int(sys.argv[1])
def answer(data):
    q = DNSRecord.parse(data)
    r = q.reply()
    many = str(q.q.qname).startswith("big.")
    for i in range(60 if many else 1):
        r.add_answer(RR(q.q.qname, QTYPE.A, rdata=A(f"192.0.2.{i if many else 99}"), ttl=5))
    return r.pack()
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("127.0.0.1", port))
t.listen(8)
def serve_tcp():
    while True:
        c, _ = t.accept()
        n = int.from_bytes(c.recv(2), "big")
        out = answer(c.recv(n))
        c.sendall(len(out).to_bytes(2, "big") + out)
        c.close()
threading.Thread(target=serve_tcp, daemon=True).start()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("127.0.0.1", port))
print("ready", flush=True)
while True:
    data, peer = u.recvfrom(4096)
    out = answer(data)
    if len(out) > 512:
        r = DNSRecord.parse(out)
        r.rr = []
        r.header.tc = 1
        out = r.pack()
    u.sendto(out, peer)
"""


def pid_of(pc: NetPycontain, ref: str) -> int:
    return int(pc.inspect(ref)["State"]["Pid"])


def ask(pc: NetPycontain, ref: str, *names: str, mode: str = "a") -> list[list]:  # type: ignore[type-arg]
    """Queries to 127.0.0.11 from container ref's network namespace."""
    res = subprocess.run(["nsenter", "-n", "-t", str(pid_of(pc, ref)), "python3", "-c", QUERY, mode, *names],
                         capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines()]


def addresses(pc: NetPycontain, ref: str, name: str) -> list[str]:
    rcode, addrs, _, _ = ask(pc, ref, name)[0]
    return list(addrs) if rcode == NOERROR else []


def resolvers(pc: NetPycontain) -> dict[str, int]:
    """Network name -> pid of every resolver process of this test's state root."""
    nets = str(pc.root / "run" / "networks")
    out = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            comm = Path(f"/proc/{entry}/comm").read_text().strip()
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if comm == "pycontain-dns" and argv[-2:-1] and os.path.dirname(argv[-2]) == nets:
            assert os.path.basename(argv[-2]) not in out, "two resolvers for one network"
            out[os.path.basename(argv[-2])] = int(entry)
    return out


def wait_for(what: str, check, timeout: float = SETTLE_TIMEOUT) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: never happened"
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def upstream(ns: NetNs) -> tuple[int, subprocess.Popen[str]]:
    port = free_port()  # a free port of this test's namespace is what we bind there; any will do
    proc = subprocess.Popen(ns.argv(sys.executable, "-c", FAKE_UPSTREAM, str(port)), stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    yield port, proc
    proc.kill()
    proc.wait(timeout=COMMAND_TIMEOUT)


# ---------------------------------------------------------------- names


def test_names_and_aliases_resolve_from_musl_and_busybox(npc: NetPycontain) -> None:  # noqa: F811
    npc.ok("network", "create", "--subnet", "10.131.0.0/24", "front")
    npc.ok("run", "-d", "--name", "web", "--hostname", "webhost", "--network", "front", "--network-alias", "www",
           "alpine", "sleep", "60")
    npc.ok("run", "-d", "--name", "box", "--network", "front", "busybox", "sleep", "60")
    npc.wait_until_running("web")
    npc.wait_until_running("box")
    web, box = npc.net_of("web")["address"], npc.net_of("box")["address"]
    short = npc.container_id("web")[:12]
    conf = npc.ok("exec", "web", "cat", "/etc/resolv.conf").stdout.splitlines()
    assert conf[0] == "nameserver 127.0.0.11" and "ndots:0" in conf[-1], conf
    hosts = npc.ok("exec", "web", "cat", "/etc/hosts").stdout
    assert box not in hosts  # only itself: the others are the resolver's (as Docker's)
    # alpine (musl): its own getaddrinfo, busybox's nslookup, ping
    for name, addr in (("box", box), ("www", web), ("webhost", web), (short, web), ("BOX", box)):
        assert f"Address: {addr}" in npc.ok("exec", "web", "nslookup", name).stdout, name
    assert npc.ok("exec", "web", "getent", "hosts", "box").stdout.split()[0] == box
    assert "1 packets received" in npc.ok("exec", "web", "ping", "-c", "1", "-W", "5", "box").stdout
    # the built-in busybox image: nslookup, and wget's getaddrinfo ("Connecting to NAME (ADDRESS...)")
    assert f"Address: {web}" in npc.ok("exec", "box", "nslookup", "www").stdout
    res = npc("exec", "box", "wget", "-O", "/dev/null", "http://web:1/")
    assert f"({web}:1)" in res.stdout + res.stderr, res.stderr
    res = npc("exec", "box", "wget", "-O", "/dev/null", "http://nobody:1/")
    assert "bad address" in res.stderr
    # AAAA of a known name: no data, not NXDOMAIN (musl would give up on the name otherwise)
    rcode, addrs, _, _ = ask(npc, "web", "box", mode="aaaa")[0]
    assert (rcode, addrs) == (NOERROR, [])
    # Docker's DNSNames: the names the resolver answers to
    names = npc.inspect("web")["NetworkSettings"]["Networks"]["front"]["DNSNames"]
    assert set(names) == {"web", short, "www"}


def test_replicas_share_a_name_rotate_and_follow_start_stop_within_a_second(npc: NetPycontain) -> None:  # noqa: F811
    npc.ok("network", "create", "--subnet", "10.132.0.0/24", "app")
    npc.ok("run", "-d", "--name", "client", "--network", "app", "busybox", "sleep", "60")
    for n in (1, 2):
        npc.ok("run", "-d", "--name", f"worker-{n}", "--network", "app", "--network-alias", "worker",
               "busybox", "sleep", "60")
    npc.wait_until_running("worker-2")
    w1, w2 = npc.net_of("worker-1")["address"], npc.net_of("worker-2")["address"]
    answers = [r[1] for r in ask(npc, "client", *["worker"] * 4)]
    assert all(sorted(a) == sorted([w1, w2]) for a in answers), answers
    assert answers[0] != answers[1] and answers[0] == answers[2]  # round robin: the order turns
    # a third replica (a scale up) appears at once
    npc.ok("run", "-d", "--name", "worker-3", "--network", "app", "--network-alias", "worker", "busybox",
           "sleep", "60")
    npc.wait_until_running("worker-3")
    w3 = npc.net_of("worker-3")["address"]
    assert sorted(addresses(npc, "client", "worker")) == sorted([w1, w2, w3])
    # stopped: gone within a second; started again: back within a second
    npc.ok("kill", "worker-2")
    stopped = time.monotonic()
    wait_for("worker-2 to drop out", lambda: w2 not in addresses(npc, "client", "worker"), timeout=1.0)
    assert time.monotonic() - stopped < 1.0
    assert ask(npc, "client", "worker-2")[0][0] != NOERROR
    npc.ok("start", "worker-2")
    started = time.monotonic()
    wait_for("worker-2 to come back", lambda: w2 in addresses(npc, "client", "worker"), timeout=1.0)
    assert time.monotonic() - started < 1.0
    npc.ok("rm", "-f", "worker-3")
    assert sorted(addresses(npc, "client", "worker")) == sorted([w1, w2])


def test_unknown_names_are_servfail_at_once_without_upstream(npc: NetPycontain) -> None:  # noqa: F811
    npc.ok("network", "create", "--subnet", "10.133.0.0/24", "lone")
    npc.ok("run", "-d", "--name", "c", "--network", "lone", "busybox", "sleep", "60")
    npc.wait_until_running("c")
    rcode, addrs, took, _ = ask(npc, "c", "example.com")[0]
    assert (rcode, addrs) == (SERVFAIL, []) and took < 0.5
    assert "SERVFAIL" in npc("exec", "c", "nslookup", "example.com").stdout


def test_unknown_names_go_to_the_upstream_servers_udp_and_tcp(npc: NetPycontain, upstream, monkeypatch) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    port, _ = upstream
    monkeypatch.setenv("PYCONTAIN_DNS_UPSTREAM", f"127.0.0.1:{port}")  # read when the resolver starts
    npc.ok("network", "create", "--subnet", "10.134.0.0/24", "fw")
    npc.ok("run", "-d", "--name", "m", "--network", "fw", "alpine", "sleep", "60")
    npc.wait_until_running("m")
    assert ask(npc, "m", "example.org")[0][:2] == [NOERROR, ["192.0.2.99"]]
    assert "Address: 192.0.2.99" in npc.ok("exec", "m", "nslookup", "example.org").stdout
    # too big for UDP: truncated; musl asks again over TCP, which the resolver forwards over TCP
    rcode, addrs, _, truncated = ask(npc, "m", "big.example.org")[0]
    assert truncated
    rcode, addrs, _, truncated = ask(npc, "m", "big.example.org", mode="tcp")[0]
    assert rcode == NOERROR and len(addrs) == 60 and not truncated
    assert npc.ok("exec", "m", "getent", "hosts", "big.example.org").stdout.split()[0].startswith("192.0.2.")
    # its own names are still its own
    assert addresses(npc, "m", "m") == [npc.net_of("m")["address"]]
    # an --internal network forwards nothing
    npc.ok("network", "create", "--internal", "--subnet", "10.135.0.0/24", "closed")
    npc.ok("run", "-d", "--name", "i", "--network", "closed", "busybox", "sleep", "60")
    npc.wait_until_running("i")
    assert ask(npc, "i", "example.org")[0][0] == SERVFAIL


# ---------------------------------------------------------------- one process per network, its lifetime


def test_one_resolver_per_network_and_network_rm_ends_it(npc: NetPycontain) -> None:  # noqa: F811
    npc.ok("network", "create", "--subnet", "10.136.0.0/24", "one")
    npc.ok("network", "create", "--subnet", "10.137.0.0/24", "two")
    assert resolvers(npc) == {}  # started on first need, not by `network create`
    # four concurrent first starts on one network make one resolver
    with ThreadPoolExecutor(4) as pool:
        for res in pool.map(lambda n: npc("run", "-d", "--name", f"a{n}", "--network", "one", "busybox", "sleep",
                                          "60"), range(4)):
            assert res.returncode == 0, res.stderr
    npc.ok("run", "-d", "--name", "b", "--network", "two", "busybox", "sleep", "60")
    npc.wait_until_running("b")
    found = resolvers(npc)
    assert set(found) == {"one", "two"}
    for n in range(4):
        assert addresses(npc, f"a{n}", f"a{(n + 1) % 4}") == [npc.net_of(f"a{(n + 1) % 4}")["address"]]
    assert addresses(npc, "b", "a0") == []  # another network's names are not b's
    status = Path(f"/proc/{found['one']}/status").read_text()
    rss_kib = int(next(ln for ln in status.splitlines() if ln.startswith("VmRSS:")).split()[1])
    assert rss_kib <= 15 * 1024, f"resolver RSS {rss_kib} KiB"
    bench = subprocess.run(["nsenter", "-n", "-t", str(pid_of(npc, "a0")), "python3", "-c", QUERY, "bench", "a1"],
                           capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    assert float(bench.stdout) < 0.005, bench.stdout  # ~0.1 ms here; 5 ms only guards against a gross regression
    ps = subprocess.run(["ps", "-o", "comm=", "-p", str(found["one"])], capture_output=True, text=True)
    assert ps.stdout.strip() == "pycontain-dns"
    # stopped containers: the resolver may stay (idle); `network rm` ends it, and has waited for it
    npc.ok("rm", "-f", "a0", "a1", "a2", "a3")
    assert alive(found["one"])
    npc.ok("network", "rm", "one")
    assert not alive(found["one"])
    assert set(resolvers(npc)) == {"two"}
    npc.ok("rm", "-f", "b")
    npc.ok("network", "prune", "-f")
    assert not alive(found["two"]) and resolvers(npc) == {}


def test_a_container_on_two_networks_resolves_names_of_both(npc: NetPycontain) -> None:  # noqa: F811
    npc.ok("network", "create", "--subnet", "10.138.0.0/24", "front")
    npc.ok("network", "create", "--subnet", "10.139.0.0/24", "back")
    npc.ok("run", "-d", "--name", "db", "--network", "back", "busybox", "sleep", "60")
    npc.ok("run", "-d", "--name", "web", "--network", "front", "alpine", "sleep", "60")
    npc.wait_until_running("web")
    assert addresses(npc, "web", "db") == []
    npc.ok("network", "connect", "--alias", "api", "back", "web")
    db = npc.net_of("db")["address"]
    assert addresses(npc, "web", "db") == [db]  # front's resolver answers web for back's names too
    assert "1 packets received" in npc.ok("exec", "web", "ping", "-c", "1", "-W", "5", "db").stdout
    api = addresses(npc, "db", "api")
    assert len(api) == 1 and api[0].startswith("10.139.0.")  # its address on back, not on front
    npc.ok("network", "disconnect", "back", "web")
    assert addresses(npc, "web", "db") == [] and addresses(npc, "db", "api") == []


def test_gc_cleans_after_a_killed_resolver_and_a_killed_monitor(npc: NetPycontain) -> None:  # noqa: F811
    npc.ok("network", "create", "--subnet", "10.140.0.0/24", "net")
    npc.ok("run", "-d", "--name", "x", "--network", "net", "busybox", "sleep", "60")
    npc.ok("run", "-d", "--name", "y", "--network", "net", "busybox", "sleep", "60")
    npc.wait_until_running("y")
    netdir = npc.root / "run" / "networks" / "net"
    old = resolvers(npc)["net"]
    os.kill(old, signal.SIGKILL)
    wait_for("the resolver to die", lambda: not alive(old))
    assert (netdir / "resolver.pid").exists()  # stale: nobody holds it
    out = npc.ok("gc").stdout
    assert "dead DNS resolver" in out and "started network net's DNS resolver again" in out, out
    assert resolvers(npc)["net"] != old
    assert addresses(npc, "x", "y") == [npc.net_of("y")["address"]]  # it adopted the running members
    # a killed monitor: its container is stopped by gc, and nothing of it stays in the resolver (the
    # container's netns, its veth: the fixture checks them)
    monitor = monitor_pid(npc, npc.container_id("y"))
    os.kill(monitor, signal.SIGKILL)
    wait_for("the monitor to die", lambda: not alive(monitor))
    npc.ok("gc")
    wait_for("y to drop out", lambda: addresses(npc, "x", "y") == [], timeout=2)
    # an orphan: a resolver whose network is gone (it would notice by itself within a second; gc ends it
    # at once, stopped or not)
    orphan = resolvers(npc)["net"]
    os.kill(orphan, signal.SIGSTOP)
    (netdir / "network.json").rename(netdir / "network.json.away")
    try:
        out = npc.ok("gc").stdout
        assert f"stopped the orphan DNS resolver {orphan}" in out, out
        assert not alive(orphan)
    finally:
        (netdir / "network.json.away").rename(netdir / "network.json")


def test_internal_networks_and_labels(npc: NetPycontain, ns: NetNs) -> None:  # noqa: F811
    from netns_support import NetNs as Remote

    remote = Remote()
    try:
        wire_remote(ns, remote)
        npc.ok("network", "create", "--subnet", "10.141.0.0/24", "--label", "tier=back", "--label", "x=1", "open")
        npc.ok("network", "create", "--subnet", "10.142.0.0/24", "--internal", "--label", "tier=db", "shut")
        view = json.loads(npc.ok("network", "inspect", "shut").stdout)[0]
        assert view["Internal"] is True and view["Labels"] == {"tier": "db"}
        assert json.loads(npc.ok("network", "inspect", "open").stdout)[0]["Internal"] is False
        listed = npc.ok("network", "ls", "--filter", "label=tier", "--format", "{{.Name}}").stdout.split()
        assert sorted(listed) == ["open", "shut"]
        assert npc.ok("network", "ls", "--filter", "label=tier=db", "-q").stdout.split() == \
            [view["Id"][:12]]
        assert npc.ok("network", "ls", "--filter", "label=nope", "-q").stdout.strip() == ""
        npc.ok("run", "-d", "--name", "o", "--network", "open", "alpine", "sleep", "60")
        npc.ok("run", "-d", "--name", "s1", "--network", "shut", "alpine", "sleep", "60")
        npc.ok("run", "-d", "--name", "s2", "--network", "shut", "alpine", "sleep", "60")
        npc.wait_until_running("s2")
        ping = ["ping", "-c", "1", "-W", "2"]
        assert "1 packets received" in npc.ok("exec", "o", *ping, "10.250.0.2").stdout  # out, masqueraded
        assert "1 packets received" in npc.ok("exec", "s1", *ping, "s2").stdout  # its own network
        assert npc("exec", "s1", *ping, "10.250.0.2").returncode != 0  # nothing out of an internal one
    finally:
        remote.close()
