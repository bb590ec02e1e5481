"""A private network namespace per network test, so the real host's network is never touched.

    NetNs          a network namespace held open by a `sleep` made with `unshare --net`; commands run
                   in it with `nsenter --net=/proc/PID/ns/net`
    NetPycontain   support.Pycontain whose every command runs inside a NetNs: the "host" that
                   pycontain sees (bridge pycontain0, nft table ip pycontain, veths, ip_forward) is
                   the test's namespace, and it disappears with the test

Traffic in these tests only goes to 127.0.0.0/8 and to addresses inside namespaces made here.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from leaks import DEFAULT_LEAKCHECK
from support import COMMAND_TIMEOUT, SETTLE_TIMEOUT, Pycontain

HEX_ID = re.compile(r"[0-9a-f]{64}")
VETH = re.compile(r"^pc[0-9a-f]{12}$")


class NetNs:
    def __init__(self) -> None:
        self.holder = subprocess.Popen(["unshare", "--net", "--", "sleep", "infinity"], stdin=subprocess.DEVNULL)
        # unshare makes the namespace, then execs sleep. Until then /proc/PID/ns/net is still the
        # host's: nothing may run "in the namespace" before it really is another one.
        host = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while os.readlink(f"/proc/{self.holder.pid}/ns/net") == host:
            assert time.monotonic() < deadline and self.holder.poll() is None, "unshare --net never made a netns"
            time.sleep(0.005)
        self.pid = self.holder.pid
        self.path = f"/proc/{self.pid}/ns/net"
        self.run("ip", "link", "set", "lo", "up")

    def argv(self, *args: str | os.PathLike[str]) -> list[str]:
        return ["nsenter", f"--net={self.path}", "--", *map(str, args)]

    def run(self, *args: str | os.PathLike[str], check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=COMMAND_TIMEOUT, **kw)
        if check:
            assert res.returncode == 0, f"{' '.join(map(str, args))}: {res.stderr}"
        return res

    def python(self, code: str, *args: str) -> str:
        """Run a Python snippet inside the namespace (the test's client side); returns stdout."""
        return self.run("python3", "-c", code, *args).stdout

    def links(self) -> list[str]:
        dev = self.run("cat", "/proc/self/net/dev").stdout
        return [line.split(":")[0].strip() for line in dev.splitlines() if ":" in line]

    def nft_ruleset(self) -> str:
        return self.run("nft", "list", "ruleset").stdout

    def close(self) -> None:
        self.holder.send_signal(signal.SIGKILL)
        self.holder.wait(timeout=COMMAND_TIMEOUT)


class NetPycontain(Pycontain):
    """pycontain with this test's root, run inside the test's own network namespace."""

    def __init__(self, root: Path, ns: NetNs) -> None:
        super().__init__(root)
        self.ns = ns

    def argv(self, *args: str | os.PathLike[str]) -> list[str]:
        return self.ns.argv(*super().argv(*args))

    def remove_all(self) -> None:
        """The containers, then the networks they used: a user network's DNS resolver is a process that
        lives as long as its network (pycontain's resolver.py)."""
        super().remove_all()
        self("network", "prune", "-f")

    def net_of(self, ref: str) -> dict[str, Any]:
        """The network part of a container's record (what prepare() returned)."""
        cid = self.container_id(ref)
        data = json.loads((self.root / "run" / "containers" / cid / "config.json").read_text())
        return dict(data["network"])

    def container_id(self, ref: str) -> str:
        link = self.root / "run" / "names" / ref
        return os.readlink(link) if link.is_symlink() else ref


def wire_remote(ns: NetNs, remote: NetNs, host_addr: str = "10.250.0.1", remote_addr: str = "10.250.0.2") -> None:
    """A veth between the test's "host" namespace and a second one that plays a remote client."""
    ns.run("ip", "link", "add", "rc0", "type", "veth", "peer", "name", "eth0", "netns", str(remote.pid))
    ns.run("ip", "addr", "add", f"{host_addr}/30", "dev", "rc0")
    ns.run("ip", "link", "set", "rc0", "up")
    remote.run("ip", "addr", "add", f"{remote_addr}/30", "dev", "eth0")
    remote.run("ip", "link", "set", "eth0", "up")


HTTP_GET = """
import socket, sys, time
deadline = time.monotonic() + 10
while True:
    try:
        s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.1)
s.sendall(b"GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
sys.stdout.write(data.decode(errors="replace"))
"""

UDP_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
for _ in range(10):
    s.sendto(sys.argv[3].encode() + b"\\n", (sys.argv[1], int(sys.argv[2])))
    try:
        sys.stdout.write(s.recvfrom(1000)[0].decode())
        break
    except socket.timeout:
        continue
"""


def http_get(ns: NetNs, host: str, port: int) -> str:
    return ns.python(HTTP_GET, host, str(port))


def udp_echo(ns: NetNs, host: str, port: int, text: str) -> str:
    return ns.python(UDP_ECHO, host, str(port), text)


def leakcheck_wrapper(tmp_path: Path, ns: NetNs) -> str:
    """A command for leaks.LEAKCHECK: pycontain.leakcheck's command line run inside the test's namespace
    (links and nft rules are per network namespace; mounts, cgroups and processes are the host's anyway)."""
    wrapper = tmp_path / "leakcheck-in-netns"
    wrapper.write_text(f"#!/bin/sh\nexec nsenter --net={ns.path} -- {DEFAULT_LEAKCHECK} \"$@\"\n")
    wrapper.chmod(0o755)
    return str(wrapper)


def network_leftovers(pc: NetPycontain) -> list[str]:
    """Per-container network objects still present: veths, nft rules naming a container, leases, ports."""
    # A container's veth pair goes with its network namespace, which the kernel destroys
    # asynchronously after the last process exits: allow it a moment.
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while any(VETH.match(n) for n in pc.ns.links()) and time.monotonic() < deadline:
        time.sleep(0.05)
    out = [f"veth {n}" for n in pc.ns.links() if VETH.match(n)]
    out += [f"nft rule {line.strip()}" for line in pc.ns.nft_ruleset().splitlines() if HEX_ID.search(line)]
    nets = pc.root / "run" / "networks"
    if nets.is_dir():
        for leases in nets.glob("*/leases.json"):
            held = json.loads(leases.read_text()).get("leases", {})
            out += [f"lease {addr} ({lease['name']}) on {leases.parent.name}" for addr, lease in held.items()]
        ports = nets / "ports.json"
        if ports.exists():
            out += [f"host port {k}" for k in json.loads(ports.read_text())]
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def monitor_pid(pc: NetPycontain, cid: str) -> int:
    """The detached monitor of container `cid`: the process that has the record's lock file open."""
    lock = str(pc.root / "run" / "containers" / cid / "lock")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == lock for fd in os.listdir(f"/proc/{pid}/fd")):
                return int(pid)
        except OSError:
            continue
    raise AssertionError(f"no process holds the lock of {cid[:12]}")


@contextlib.contextmanager
def leak_checked(tmp_path: Path, ns: NetNs, busybox_tarball: Path, monkeypatch: Any, own_base: Path,
                 excuse: Any = None) -> Iterator[NetPycontain]:
    """pycontain in the test's namespace with busybox imported; afterwards its containers are removed and
    neither a per-container network object nor anything leakcheck sees (inside the namespace and on the
    host) may be left, but for the lines `excuse(line)` accepts (a network's own bridge, say)."""
    import leaks
    from support import leakcheck_snapshot, leaks_since

    monkeypatch.setattr(leaks, "LEAKCHECK", leakcheck_wrapper(tmp_path, ns))
    snapshot = leakcheck_snapshot(tmp_path / "leakcheck-before.json")
    p = NetPycontain(tmp_path / "root", ns)
    p.ok("import", "--change", 'CMD ["sh"]', busybox_tarball, "busybox")
    yield p
    p.remove_all()
    assert network_leftovers(p) == []
    found = [line for line in leaks_since(snapshot, own_base) if not (excuse and excuse(p, line))]
    assert not found, "left behind:\n" + "\n".join(found)
