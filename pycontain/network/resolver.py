"""The embedded DNS resolver of a user network: containers ask 127.0.0.11:53 inside their own netns.

One resident process per user network (never for the default network, which, as Docker's default
bridge, resolves no names), started on first need by the attach hooks and ending with the network:

    {network dir}/resolver.lock     taken while one is started, so two concurrent starts make one process
    {network dir}/resolver.pid      its pid; it holds an exclusive flock on this file while it lives, so
                                    a pid file nobody holds is stale (gc removes it)
    {network dir}/resolver.sock     its control socket (SOCK_SEQPACKET, root only)
    {network dir}/resolver.members  the containers registered and alive (JSON list of ids), read by the
                                    resolvers of the container's other networks

Registration: after a container's veth is set up, attach sends "register ID PID" with its netns fd and a
pidfd (SCM_RIGHTS) and waits for "ok". The resolver enters that netns (setns), binds UDP and TCP sockets to
127.0.0.11:53 with IP_FREEBIND (lo may not be up yet), and goes back. A socket holds its netns, and the
netns holds the veth peer: so the resolver watches the pidfd and closes the container's sockets the moment
it exits (detach also says "unregister ID" and waits, so that the veth is gone when detach returns). A
container on several networks registers with each resolver; the first (its eth0 network, attached first)
owns 127.0.0.11 and answers for all of its networks, looking up the others' leases and members files.

Answers: A for a running member's container name, hostname, short id or alias (a compose service name:
every replica, rotated per query), PTR for its address; AAAA and other types of a known name: no data.
Anything else goes to the host's resolvers (the nameservers in /etc/resolv.conf of the netns pycontain
runs in, or PYCONTAIN_DNS_UPSTREAM="none" | "IP[:PORT],..."), asynchronously, SERVFAIL when there are none
or none answers in time. The leases are re-read when leases.json changes (a stat per query).

The process imports only the standard library, dnslib and pycontain's syscalls (setns), and is started
with `python -S` (no site: ~11 MiB resident instead of ~14).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from pycontain.state import Paths

ADDRESS = "127.0.0.11"
PORT = 53
COMM = "pycontain-dns"  # what ps shows (PR_SET_NAME via /proc/self/comm)
MODULE = "pycontain.network.resolver"
SOCK, PIDFILE, LOCK, MEMBERS = "resolver.sock", "resolver.pid", "resolver.lock", "resolver.members"
UPSTREAM_ENV = "PYCONTAIN_DNS_UPSTREAM"
START_TIMEOUT = 10.0  # seconds: a hang guard (a start takes ~60 ms)
REQUEST_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0
TTL = 0  # answers change as containers come and go: nobody should cache them
UPSTREAM_TIMEOUT = 1.0  # per upstream server; musl's own timeout is 5 s over 2 attempts
MAX_FORWARDS = 256  # queries forwarded and not yet answered: beyond this, SERVFAIL at once
MAX_TCP = 16  # TCP connections per container
TCP_IDLE = 10.0


def wanted(network: str) -> bool:
    """Whether a network has a resolver: every user network, never the default one (as Docker)."""
    from pycontain.network import ipam

    return ipam.canonical(network) != ipam.DEFAULT_NETWORK


# ================================================================ client side (the CLI)

def _short(path: str) -> tuple[str, int]:
    """A name for `path` that fits sun_path (108 bytes; a --root in a deep temp dir does not): its
    directory through /proc/self/fd. Returns the name and the directory fd to close afterwards."""
    d, _, base = path.rpartition("/")
    dfd = os.open(d, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return f"/proc/self/fd/{dfd}/{base}", dfd


def _request(netdir: str, msg: bytes, fds: tuple[int, ...] = (), timeout: float = REQUEST_TIMEOUT) -> bytes:
    """One request on the resolver's control socket -> its reply. FileNotFoundError or
    ConnectionRefusedError when no resolver listens there."""
    import _socket

    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
    try:
        s.settimeout(timeout)
        name, dfd = _short(f"{netdir}/{SOCK}")
        try:
            s.connect(name)
        finally:
            os.close(dfd)
        if fds:
            import _struct

            s.sendmsg([msg], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, _struct.pack(f"{len(fds)}i", *fds))])
        else:
            s.send(msg)
        return bytes(s.recv(1024))
    finally:
        s.close()


def register(paths: Paths, network: str, cid: str, pid: int) -> None:
    """Make the network's resolver serve container `cid` (process `pid`, not yet running its command);
    started first if need be. Returns once the resolver listens in the container's netns."""
    from pycontain.errors import PycontainError
    from pycontain.network import ipam

    netdir = ipam.net_dir(paths, ipam.canonical(network))
    nsfd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        pidfd = os.pidfd_open(pid)
    except BaseException:
        os.close(nsfd)
        raise
    try:
        msg = f"register {cid} {pid}".encode()
        try:
            reply = _request(netdir, msg, (nsfd, pidfd))
        except (FileNotFoundError, ConnectionRefusedError):
            start(netdir)
            reply = _request(netdir, msg, (nsfd, pidfd))
    except OSError as e:
        raise PycontainError(f"the DNS resolver of network {ipam.display(network)} did not answer: "
                             f"{e.strerror or e}") from None
    finally:
        os.close(nsfd)
        os.close(pidfd)
    if reply != b"ok":
        raise PycontainError(f"the DNS resolver of network {ipam.display(network)} refused container "
                             f"{cid[:12]}: {reply.decode(errors='replace')}")


def unregister(paths: Paths, network: str, cid: str) -> None:
    """Close the container's sockets now (the resolver would on its exit anyway): best effort."""
    from pycontain.network import ipam

    try:
        _request(ipam.net_dir(paths, ipam.canonical(network)), f"unregister {cid}".encode(), timeout=2.0)
    except OSError:
        pass  # no resolver (never started, stopped, killed): nothing holds the container's netns


def start(netdir: str) -> None:
    """Start the network's resolver unless one answers; one at a time (resolver.lock)."""
    from pycontain.network.ipam import Locked

    with Locked(f"{netdir}/{LOCK}"):
        try:
            if _request(netdir, b"ping", timeout=2.0).startswith(b"ok"):
                return
        except OSError:
            pass
        _spawn(netdir)


def _spawn(netdir: str) -> None:
    """python -S -m pycontain.network.resolver NETDIR in a session of its own, stdio on /dev/null; it
    forks once more (so that it is nobody's child here) and reports "ok" or an error on fd 3."""
    import fcntl
    import select
    import sys

    from pycontain.errors import PycontainError

    pkg_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    lib_dirs = [p for p in sys.path if p and os.path.isdir(f"{p}/dnslib")]
    env = {"PYTHONPATH": ":".join(dict.fromkeys([pkg_parent, *lib_dirs])), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
           "PYTHONDONTWRITEBYTECODE": "1"}
    if UPSTREAM_ENV in os.environ:
        env[UPSTREAM_ENV] = os.environ[UPSTREAM_ENV]
    r, w = os.pipe()
    high = fcntl.fcntl(w, fcntl.F_DUPFD_CLOEXEC, 4)  # dup2 to 3 must not be a no-op that keeps CLOEXEC
    os.close(w)
    try:
        child = os.posix_spawn(sys.executable, [sys.executable, "-S", "-m", MODULE, netdir], env, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDWR, 0), (os.POSIX_SPAWN_DUP2, 0, 1),
            (os.POSIX_SPAWN_DUP2, 0, 2), (os.POSIX_SPAWN_DUP2, high, 3)], setsid=True)
    except OSError:
        os.close(r)
        raise
    finally:
        os.close(high)
    try:
        out = b""
        poller = select.poll()
        poller.register(r, select.POLLIN)
        import time

        deadline = time.monotonic() + START_TIMEOUT
        while (left := deadline - time.monotonic()) > 0 and poller.poll(left * 1000):
            chunk = os.read(r, 1024)
            if not chunk:
                break
            out += chunk
    finally:
        os.close(r)
        os.waitpid(child, 0)  # the intermediate process, gone as soon as it forked
    if out.strip() != b"ok":
        why = out.decode(errors="replace").strip().removeprefix("error ") or "it exited without a word"
        raise PycontainError(f"the DNS resolver of network {os.path.basename(netdir)} did not start: {why}")


def stop(netdir: str) -> bool:
    """Stop the network's resolver and wait until it is gone (SIGKILL after STOP_TIMEOUT). True if one ran."""
    import fcntl
    import time

    try:
        fd = os.open(f"{netdir}/{PIDFILE}", os.O_RDWR | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _remove_files(netdir)  # nobody holds it: a dead resolver's
            return False
        except BlockingIOError:
            pass
        try:
            pid = int(os.pread(fd, 32, 0).decode().strip() or 0)
        except ValueError:
            pid = 0
        deadline = time.monotonic() + STOP_TIMEOUT
        for sig in (15, 9):  # SIGTERM, then SIGKILL if it does not go
            if pid > 1:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            while time.monotonic() < deadline:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    _remove_files(netdir)
                    return True
                except BlockingIOError:
                    time.sleep(0.005)
            deadline = time.monotonic() + STOP_TIMEOUT
        return True
    finally:
        os.close(fd)


def _remove_files(netdir: str) -> None:
    for name in (SOCK, MEMBERS, PIDFILE):
        try:
            os.unlink(f"{netdir}/{name}")
        except (FileNotFoundError, NotADirectoryError):
            pass


def gc(paths: Paths) -> list[str]:
    """Stale pid files (a killed resolver's) and orphan resolvers (whose network is gone, or was made
    again) of this state root."""
    import fcntl

    from pycontain import state
    from pycontain.errors import PycontainError
    from pycontain.network import ipam

    done = []
    root = ipam.root(paths)
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        names = []
    for name in names:
        netdir = f"{root}/{name}"
        if not wanted(name) or not os.path.exists(f"{netdir}/network.json"):
            continue
        try:
            fd = os.open(f"{netdir}/{PIDFILE}", os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            fd = -1
        if fd >= 0:
            try:
                with ipam.Locked(f"{netdir}/{LOCK}"):  # not while one is being started
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    _remove_files(netdir)
                    done.append(f"removed the files of network {ipam.display(name)}'s dead DNS resolver")
            except BlockingIOError:
                continue  # alive
            finally:
                os.close(fd)
        # Its members run, and nobody serves them (it was killed): a new one does (it adopts them).
        try:
            if any(state.Record(paths, lease["id"]).is_locked() for lease in ipam.leases(paths, name).values()):
                start(netdir)
                done.append(f"started network {ipam.display(name)}'s DNS resolver again for its running members")
        except (OSError, PycontainError):
            pass
    for pid, netdir in _processes():
        if os.path.dirname(netdir) != root or _owner(netdir) == pid:
            continue
        if os.path.exists(f"{netdir}/network.json"):
            try:
                with ipam.Locked(f"{netdir}/{LOCK}"):  # one being started is no orphan: wait until it is up
                    if _owner(netdir) == pid:
                        continue
            except OSError:
                pass
        try:
            os.kill(pid, 15)
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            import select

            if not select.select([pidfd], [], [], STOP_TIMEOUT)[0]:
                os.kill(pid, 9)
                select.select([pidfd], [], [], STOP_TIMEOUT)  # gone when gc says so
        finally:
            os.close(pidfd)
        done.append(f"stopped the orphan DNS resolver {pid} of network {ipam.display(os.path.basename(netdir))}")
    return done


def _processes() -> Iterable[tuple[int, str]]:
    """(pid, network dir) of every resolver process on this host."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                if f.read().strip() != COMM:
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if MODULE.encode() in argv and argv.index(MODULE.encode()) + 1 < len(argv):
            yield int(entry), argv[argv.index(MODULE.encode()) + 1].decode(errors="replace")


def _owner(netdir: str) -> int:
    """The pid in the network's pid file if its network exists and the file is held; else 0."""
    import fcntl

    if not os.path.exists(f"{netdir}/network.json"):
        return 0
    try:
        fd = os.open(f"{netdir}/{PIDFILE}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return 0  # nobody holds it
        except BlockingIOError:
            pass
        try:
            return int(os.pread(fd, 32, 0).decode().strip() or 0)
        except ValueError:
            return 0
    finally:
        os.close(fd)


# ================================================================ the answers (pure: unit-tested)

def names_of(lease: dict[str, Any]) -> set[str]:
    """The names a member answers to: container name, hostname, short id, aliases (lower case)."""
    cid = str(lease.get("id", ""))
    names = {str(lease.get("name", "")), str(lease.get("hostname", "")), cid[:12], *map(str, lease.get("aliases", ()))}
    return {n.lower().rstrip(".") for n in names if n}


def index(leases: dict[str, dict[str, Any]]) -> dict[str, list[tuple[int, str, str]]]:
    """name -> [(address as int, address, container id)] sorted by address."""
    out: dict[str, list[tuple[int, str, str]]] = {}
    for addr, lease in leases.items():
        for name in names_of(lease):
            out.setdefault(name, []).append((_ip_int(addr), addr, str(lease.get("id", ""))))
    for entries in out.values():
        entries.sort()
    return out


def _ip_int(addr: str) -> int:
    import _socket

    try:
        return int.from_bytes(_socket.inet_aton(addr), "big")
    except OSError:
        return -1


def candidates(qname: str, search: Iterable[str]) -> list[str]:
    """A query name and, if it ends in a search domain, the name without it (lower case, no final dot)."""
    q = qname.lower().rstrip(".")
    out = [q]
    for domain in search:
        d = domain.lower().strip(".")
        if d and q.endswith("." + d) and len(q) > len(d) + 1:
            out.append(q[:-len(d) - 1])
    return out


def find(qname: str, search: Iterable[str],
         networks: Iterable[tuple[dict[str, list[tuple[int, str, str]]], set[str]]]) -> list[str] | None:
    """The addresses of the running members named qname on the first network (in order) that has any:
    networks are (index, ids of running members). None: nobody by that name."""
    names = candidates(qname, search)
    for idx, running in networks:
        for name in names:
            addrs = [addr for _, addr, cid in idx.get(name, ()) if cid in running]
            if addrs:
                return addrs
    return None


def rotate(addrs: list[str], turn: int) -> list[str]:
    """Round robin: each query gets the list started one further along."""
    if len(addrs) < 2:
        return addrs
    k = turn % len(addrs)
    return addrs[k:] + addrs[:k]


def reverse_address(qname: str) -> str | None:
    """'7.0.88.10.in-addr.arpa.' -> '10.88.0.7'; None for another name."""
    q = qname.lower().rstrip(".")
    if not q.endswith(".in-addr.arpa"):
        return None
    parts = q[:-len(".in-addr.arpa")].split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
        return None
    return ".".join(reversed(parts))


FORWARD = "forward"


def answer(data: bytes, lookup: Callable[[str], list[str] | None], ptr: Callable[[str], str | None],
           limit: int = 512) -> bytes | str | None:
    """The reply to one query: bytes; FORWARD when the name is not ours; None to drop it (not a query).
    lookup(name) -> addresses or None; ptr(address) -> a member's name or None; limit: the UDP size
    (replies over it are truncated, TC set)."""
    from dnslib import QTYPE, RCODE, RR, A, DNSRecord, PTR  # type: ignore[import-untyped, unused-ignore]

    try:
        q = DNSRecord.parse(data)
    except Exception:  # noqa: BLE001 - DNSError mostly; whatever garbage makes dnslib raise is a FORMERR
        return _formerr(data)
    if q.header.qr or q.header.opcode != 0:
        return None if q.header.qr else _rcode(q, RCODE.NOTIMP)
    if len(q.questions) != 1:
        return _rcode(q, RCODE.FORMERR)
    qname, qtype = str(q.q.qname), q.q.qtype
    if qtype == QTYPE.PTR:
        address = reverse_address(qname)
        name = ptr(address) if address else None
        if name is None:
            return FORWARD
        r = q.reply()
        r.add_answer(RR(q.q.qname, QTYPE.PTR, rdata=PTR(name + "."), ttl=TTL))
        return _pack(r, limit)
    addrs = lookup(qname)
    if addrs is None:
        return FORWARD
    r = q.reply()
    if qtype in (QTYPE.A, QTYPE.ANY):
        for addr in addrs:
            r.add_answer(RR(q.q.qname, QTYPE.A, rdata=A(addr), ttl=TTL))
    return _pack(r, limit)  # AAAA, MX...: the name exists, with no data of that type (not NXDOMAIN)


def _pack(r: Any, limit: int) -> bytes:
    out = bytes(r.pack())
    while len(out) > limit and r.rr:
        r.header.tc = 1
        del r.rr[max(1, len(r.rr) // 2):]  # keep what fits; the client asks again over TCP
        out = bytes(r.pack())
    return out


def _rcode(q: Any, rcode: int) -> bytes:
    r = q.reply()
    r.header.rcode = rcode
    return bytes(r.pack())


def _formerr(data: bytes) -> bytes | None:
    if len(data) < 12 or data[2] & 0x80:
        return None  # not even a header, or a response: nothing to answer
    return data[:2] + bytes((0x80 | (data[2] & 0x79), 0x80 | 1)) + b"\0" * 8  # qr, rd kept, ra, FORMERR


def servfail(data: bytes) -> bytes | None:
    """SERVFAIL for a query (its question kept), None if it does not parse."""
    from dnslib import RCODE, DNSRecord

    try:
        return _rcode(DNSRecord.parse(data), RCODE.SERVFAIL)
    except Exception:  # noqa: BLE001 - any parse failure: a FORMERR of the header instead
        return _formerr(data)


def edns_size(data: bytes) -> int:
    """The UDP reply size a query allows: 512, or its EDNS OPT record's (at most 4096)."""
    from dnslib import QTYPE, DNSRecord

    try:
        q = DNSRecord.parse(data)
    except Exception:  # noqa: BLE001
        return 512
    for rr in q.ar:
        if rr.rtype == QTYPE.OPT:
            return max(512, min(int(rr.rclass), 4096))
    return 512


def upstreams(env: str | None, resolv_conf: str) -> list[tuple[str, int]]:
    """The servers unknown names go to: PYCONTAIN_DNS_UPSTREAM ("none", or "IP[:PORT],...", an IPv6
    address in brackets when it has a port) if set, else resolv.conf's nameservers."""
    out: list[tuple[str, int]] = []
    if env is not None:
        for item in env.replace(" ", ",").split(","):
            item = item.strip()
            if not item or item == "none":
                continue
            if item.startswith("["):
                host, _, port = item[1:].partition("]")
                out.append((host, int(port[1:]) if port.startswith(":") else 53))
            elif item.count(":") == 1:
                host, _, port = item.partition(":")
                out.append((host, int(port)))
            else:
                out.append((item, 53))
        return out
    for line in resolv_conf.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            out.append((words[1].split("%")[0], 53))
    return out


def search_domains(resolv_conf: str) -> list[str]:
    domains: list[str] = []
    for line in resolv_conf.splitlines():
        words = line.split()
        if words[:1] in (["search"], ["domain"]):
            domains += words[1:]
    return domains


# ================================================================ the resolver process

class _Member:
    __slots__ = ("cid", "pidfd", "socks", "conns")

    def __init__(self, cid: str, pidfd: int) -> None:
        self.cid = cid
        self.pidfd = pidfd
        self.socks: list[Any] = []
        self.conns: dict[Any, list[Any]] = {}  # TCP connection -> [buffer, last activity]


class _Server:
    def __init__(self, netdir: str) -> None:
        import _signal
        import fcntl
        import json
        import selectors
        import socket

        import dnslib  # type: ignore[import-untyped, unused-ignore]  # noqa: F401 - now, not at the first query

        self.socket, self.json = socket, json
        self.netdir = netdir
        self.root, self.name = os.path.split(netdir)
        net = self._network()
        if net is None:
            raise RuntimeError(f"no network at {netdir}")
        self.net_id = net.get("id")
        self.lock_fd = os.open(f"{netdir}/{PIDFILE}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        import time

        deadline = time.monotonic() + 3  # a resolver that is just exiting still holds it for a moment
        while True:
            try:
                fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError("another resolver of this network holds its pid file") from None
                time.sleep(0.01)
        os.ftruncate(self.lock_fd, 0)
        os.pwrite(self.lock_fd, f"{os.getpid()}\n".encode(), 0)
        self.home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            with open("/etc/resolv.conf") as f:
                conf = f.read()
        except OSError:
            conf = ""
        self.upstreams = [] if net.get("internal") else upstreams(os.environ.get(UPSTREAM_ENV), conf)
        self.search = search_domains(conf)
        self.sel = selectors.DefaultSelector()
        self.members: dict[str, _Member] = {}
        self.turns: dict[str, int] = {}
        self.cache: dict[str, tuple[tuple[int, int, int], Any]] = {}  # path -> (stat key, parsed)
        self.forwards = 0
        self.timers: list[tuple[float, int, Callable[[], None]]] = []
        self.seq = 0
        self.running = True
        _signal.signal(_signal.SIGTERM, self._terminate)
        _signal.signal(_signal.SIGINT, self._terminate)
        # A signal wakes the loop at once (`network rm` waits for this process to end).
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        _signal.set_wakeup_fd(wake_w)
        self.sel.register(wake_r, selectors.EVENT_READ, lambda fd: os.read(fd, 512))
        self._write_members()
        self.control = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        path = f"{netdir}/{SOCK}"
        try:
            os.unlink(path)  # we hold the pid file: a socket file there is a dead resolver's
        except FileNotFoundError:
            pass
        name, dfd = _short(path)
        old = os.umask(0o177)
        try:
            self.control.bind(name)
        finally:
            os.umask(old)
            os.close(dfd)
        self.control.listen(64)
        self.control.setblocking(False)
        self.sel.register(self.control, selectors.EVENT_READ, self._accept_control)
        self._adopt()

    def _adopt(self) -> None:
        """Serve the members that run already: this resolver was started again after one was killed."""
        containers = f"{os.path.dirname(self.root)}/containers"
        _, leases = self._index(self.name)
        for lease in list(leases.values()):
            cid = str(lease.get("id", ""))
            try:
                with open(f"{containers}/{cid}/state.json") as f:
                    st = self.json.load(f)
                if st.get("status") != "running" or not st.get("pid"):
                    continue
                pidfd = os.pidfd_open(int(st["pid"]))
            except (OSError, ValueError, TypeError, AttributeError):
                continue
            try:
                # The pid names that container only if the process started when its state says (pid reuse).
                with open(f"/proc/{int(st['pid'])}/stat", "rb") as f:
                    if int(f.read().rsplit(b")", 1)[1].split()[19]) != st.get("pid_start"):
                        continue
                nsfd = os.open(f"/proc/{int(st['pid'])}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
                try:
                    self._register(cid, nsfd, pidfd)
                finally:
                    os.close(nsfd)
            except (OSError, ValueError, IndexError):
                continue
            finally:
                os.close(pidfd)

    def _terminate(self, *_: object) -> None:
        self.running = False

    # ---------------------------------------------------------------- event loop

    def later(self, delay: float, fn: Callable[[], None]) -> None:
        import heapq
        import time

        self.seq += 1
        heapq.heappush(self.timers, (time.monotonic() + delay, self.seq, fn))

    def serve(self) -> None:
        import heapq
        import time

        next_check = time.monotonic() + 1
        while self.running:
            now = time.monotonic()
            wake = min(next_check, self.timers[0][0]) if self.timers else next_check
            for key, _ in self.sel.select(max(0.0, wake - now)):
                try:
                    key.data(key.fileobj)
                except Exception:  # noqa: BLE001 - one peer's trouble (gone, refused, garbage) is never the network's
                    pass
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                heapq.heappop(self.timers)[2]()
            if now >= next_check:
                next_check = now + 1
                net = self._network()
                if net is None or net.get("id") != self.net_id:
                    return  # the network was removed (or made again): this resolver is an orphan
                self._sweep_tcp(now)

    def close(self) -> None:
        for cid in list(self.members):
            self._drop(cid, write=False)
        self.control.close()
        # Only our own files: after `network rm` the directory is gone, and a new resolver of a network
        # made again under the same name has its own.
        try:
            if os.stat(f"{self.netdir}/{PIDFILE}").st_ino == os.fstat(self.lock_fd).st_ino:
                for name in (SOCK, MEMBERS, PIDFILE):
                    try:
                        os.unlink(f"{self.netdir}/{name}")
                    except FileNotFoundError:
                        pass
        except OSError:
            pass

    def _network(self) -> dict[str, Any] | None:
        try:
            with open(f"{self.netdir}/network.json") as f:
                net = self.json.load(f)
        except (OSError, ValueError):
            return None
        return net if isinstance(net, dict) else None

    # ---------------------------------------------------------------- control socket

    def _accept_control(self, sock: Any) -> None:
        conn, _ = sock.accept()
        try:
            conn.settimeout(1.0)
            fds: list[int] = []
            try:
                msg, ancdata, _, _ = conn.recvmsg(1024, self.socket.CMSG_SPACE(2 * 4))
                for level, kind, data in ancdata:
                    if level == self.socket.SOL_SOCKET and kind == self.socket.SCM_RIGHTS:
                        fds += [int.from_bytes(data[i:i + 4], "little", signed=True)
                                for i in range(0, len(data) - len(data) % 4, 4)]
                reply = self._command(msg.decode(errors="replace").split(), fds)
            finally:
                for fd in fds:
                    os.close(fd)
            conn.send(reply.encode())
        finally:
            conn.close()

    def _command(self, words: list[str], fds: list[int]) -> str:
        if words == ["ping"]:
            return f"ok {os.getpid()}"
        if words[:1] == ["register"] and len(words) == 3 and len(fds) == 2:
            return self._register(words[1], fds[0], fds[1])
        if words[:1] == ["unregister"] and len(words) == 2:
            if words[1] in self.members:
                self._drop(words[1])
            return "ok"
        if words == ["stop"]:
            self.running = False
            return "ok"
        return "error: unknown request"

    def _register(self, cid: str, nsfd: int, pidfd: int) -> str:
        import select
        import selectors

        from pycontain import syscalls

        if cid in self.members:  # started again (a restart): the old sockets are in a dead netns
            self._drop(cid, write=False)
        if select.select([pidfd], [], [], 0)[0]:
            self._write_members()
            return "ok"  # it died already: nothing to serve
        member = _Member(cid, os.dup(pidfd))
        try:
            syscalls.setns(nsfd, syscalls.CLONE_NEWNET)
            try:
                member.socks = self._listen()
            finally:
                syscalls.setns(self.home, syscalls.CLONE_NEWNET)
        except OSError as e:
            for s in member.socks:
                s.close()
            os.close(member.pidfd)
            return f"error: {e.strerror or e}"
        self.members[cid] = member
        self.sel.register(member.pidfd, selectors.EVENT_READ, lambda _fd, cid=cid: self._drop(cid))
        for s in member.socks:
            handler = self._udp if s.type == self.socket.SOCK_DGRAM else self._tcp_accept
            self.sel.register(s, selectors.EVENT_READ, lambda sock, m=member, h=handler: h(sock, m))
        self._write_members()
        return "ok"

    def _listen(self) -> list[Any]:
        """UDP and TCP sockets on 127.0.0.11:53 of the current netns; none if another resolver (of the
        container's other network) has them already."""
        socket = self.socket
        socks = []
        try:
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                s = socket.socket(socket.AF_INET, kind | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
                socks.append(s)
                s.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND: lo may not be up (have 127/8) yet
                if kind == socket.SOCK_STREAM:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((ADDRESS, PORT))
                if kind == socket.SOCK_STREAM:
                    s.listen(16)
        except OSError as e:
            for s in socks:
                s.close()
            if e.errno == 98:  # EADDRINUSE: the resolver of its first network serves it
                return []
            raise
        return socks

    def _drop(self, cid: str, write: bool = True) -> None:
        member = self.members.pop(cid, None)
        if member is None:
            return
        for s in [*member.socks, *member.conns]:
            try:
                self.sel.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()
        try:
            self.sel.unregister(member.pidfd)
        except (KeyError, ValueError):
            pass
        os.close(member.pidfd)
        if write:
            self._write_members()

    def _write_members(self) -> None:
        tmp = f"{self.netdir}/.{MEMBERS}.tmp"
        try:
            with open(tmp, "w") as f:
                self.json.dump(sorted(self.members), f)
            os.rename(tmp, f"{self.netdir}/{MEMBERS}")
        except OSError:
            pass  # the network's directory is gone: the periodic check ends this process

    # ---------------------------------------------------------------- lookups

    def _cached(self, path: str, parse: Callable[[Any], Any]) -> Any:
        try:
            st = os.stat(path)
        except OSError:
            self.cache.pop(path, None)
            return None
        key = (st.st_mtime_ns, st.st_ino, st.st_size)
        hit = self.cache.get(path)
        if hit is not None and hit[0] == key:
            return hit[1]
        try:
            with open(path) as f:
                value = parse(self.json.load(f))
        except (OSError, ValueError, TypeError, AttributeError):
            value = None
        self.cache[path] = (key, value)
        return value

    def _index(self, name: str) -> tuple[dict[str, list[tuple[int, str, str]]], dict[str, Any]]:
        data = self._cached(f"{self.root}/{name}/leases.json",
                            lambda d: (index(d["leases"]), d["leases"]) if isinstance(d.get("leases"), dict) else None)
        return data if data is not None else ({}, {})

    def _running(self, name: str) -> set[str]:
        if name == self.name:
            return set(self.members)
        got = self._cached(f"{self.root}/{name}/{MEMBERS}", lambda d: set(map(str, d)) if isinstance(d, list) else None)
        return got if got is not None else set()

    def _networks(self, cid: str) -> Iterable[tuple[str, dict[str, list[tuple[int, str, str]]], set[str]]]:
        """This network first, then the querier's other networks (by name)."""
        idx, _ = self._index(self.name)
        yield self.name, idx, self._running(self.name)
        try:
            others = sorted(os.listdir(self.root))
        except OSError:
            return
        for name in others:
            if name != self.name and os.path.isdir(f"{self.root}/{name}"):
                idx, leases = self._index(name)
                if any(lease.get("id") == cid for lease in leases.values()):
                    yield name, idx, self._running(name)

    def lookup(self, qname: str, cid: str) -> list[str] | None:
        for name, idx, running in self._networks(cid):
            addrs = find(qname, self.search, [(idx, running)])
            if addrs is not None:
                key = f"{name}/{candidates(qname, ())[0]}"
                turn = self.turns.get(key, 0)
                self.turns[key] = turn + 1
                if len(self.turns) > 4096:
                    self.turns.clear()
                return rotate(addrs, turn)
        return None

    def ptr(self, address: str, cid: str) -> str | None:
        """The container name of a running member at `address` on one of the querier's networks."""
        for name, _, running in self._networks(cid):
            lease = self._index(name)[1].get(address)
            if isinstance(lease, dict) and lease.get("id") in running and lease.get("name"):
                return str(lease["name"])
        return None

    def respond(self, data: bytes, member: _Member, send: Callable[[bytes], None], limit: int,
                tcp: bool = False) -> None:
        out = answer(data, lambda q: self.lookup(q, member.cid), lambda a: self.ptr(a, member.cid), limit)
        if isinstance(out, bytes):
            send(out)
        elif out == FORWARD:
            self._forward(data, send, tcp)

    # ---------------------------------------------------------------- container sockets

    def _udp(self, sock: Any, member: _Member) -> None:
        for _ in range(64):  # a burst, without starving the other sockets
            try:
                data, peer = sock.recvfrom(4096)
            except BlockingIOError:
                return

            def send(out: bytes, sock: Any = sock, peer: Any = peer) -> None:
                if sock.fileno() >= 0:
                    try:
                        sock.sendto(out, peer)
                    except OSError:
                        pass
            self.respond(data, member, send, edns_size(data) if len(data) > 12 and data[11] else 512)

    def _tcp_accept(self, sock: Any, member: _Member) -> None:
        import selectors
        import time

        conn, _ = sock.accept()
        if len(member.conns) >= MAX_TCP:
            conn.close()
            return
        conn.setblocking(False)
        member.conns[conn] = [b"", time.monotonic()]
        self.sel.register(conn, selectors.EVENT_READ, lambda c, m=member: self._tcp_read(c, m))

    def _tcp_read(self, conn: Any, member: _Member) -> None:
        import time

        state = member.conns.get(conn)
        if state is None:
            return
        try:
            data = conn.recv(65537)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._tcp_close(conn, member)
            return
        state[0] += data
        state[1] = time.monotonic()
        while len(state[0]) >= 2 and len(state[0]) >= 2 + int.from_bytes(state[0][:2], "big"):
            n = int.from_bytes(state[0][:2], "big")
            msg, state[0] = state[0][2:2 + n], state[0][2 + n:]

            def send(out: bytes, conn: Any = conn) -> None:
                if conn.fileno() >= 0:
                    try:
                        conn.setblocking(True)
                        conn.settimeout(1.0)
                        conn.sendall(len(out).to_bytes(2, "big") + out)
                        conn.setblocking(False)
                    except OSError:
                        self._tcp_close(conn, member)
            self.respond(msg, member, send, 65535, tcp=True)

    def _tcp_close(self, conn: Any, member: _Member) -> None:
        if member.conns.pop(conn, None) is not None:
            try:
                self.sel.unregister(conn)
            except (KeyError, ValueError):
                pass
            conn.close()

    def _sweep_tcp(self, now: float) -> None:
        for member in list(self.members.values()):
            for conn, state in list(member.conns.items()):
                if now - state[1] > TCP_IDLE:
                    self._tcp_close(conn, member)

    # ---------------------------------------------------------------- forwarding

    def _forward(self, data: bytes, send: Callable[[bytes], None], tcp: bool) -> None:
        if not self.upstreams or self.forwards >= MAX_FORWARDS:
            out = servfail(data)
            if out:
                send(out)
            return
        self.forwards += 1
        _Forward(self, data, send, tcp).next()


class _Forward:
    """One query on its way to the upstream servers, one after the other (UPSTREAM_TIMEOUT each); UDP,
    or TCP when the container asked over TCP (a truncated UDP answer makes it ask again that way)."""

    def __init__(self, server: _Server, data: bytes, send: Callable[[bytes], None], tcp: bool) -> None:
        self.server, self.data, self.send, self.tcp = server, data, send, tcp
        self.tried = 0
        self.sock: Any = None
        self.buf = b""
        self.done = False
        self.attempt = 0

    def next(self) -> None:
        import selectors

        self._close()
        srv = self.server
        if self.tried >= len(srv.upstreams):
            self.finish(servfail(self.data))
            return
        host, port = srv.upstreams[self.tried]
        self.tried += 1
        self.attempt += 1
        socket = srv.socket
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            if self.tcp:
                self.sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
                self.sock.connect_ex((host, port))
                srv.sel.register(self.sock, selectors.EVENT_WRITE, self._tcp_connected)
            else:
                self.sock = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
                self.sock.connect((host, port))
                self.sock.send(self.data)
                srv.sel.register(self.sock, selectors.EVENT_READ, self._udp_reply)
        except OSError:
            self.next()  # unreachable (no route): the next one
            return
        attempt = self.attempt
        srv.later(UPSTREAM_TIMEOUT * (2 if self.tcp else 1),
                  lambda: self.next() if not self.done and self.attempt == attempt else None)

    def _udp_reply(self, sock: Any) -> None:
        try:
            out = sock.recv(65535)
        except OSError:
            self.next()  # refused (ICMP port unreachable): the next one
            return
        if out[:2] == self.data[:2]:  # the same query id (a late answer to another is not ours)
            self.finish(out)

    def _tcp_connected(self, sock: Any) -> None:
        import selectors

        srv = self.server
        if sock.getsockopt(srv.socket.SOL_SOCKET, srv.socket.SO_ERROR):
            self.next()
            return
        try:
            sock.send(len(self.data).to_bytes(2, "big") + self.data)
        except OSError:
            self.next()
            return
        srv.sel.modify(sock, selectors.EVENT_READ, self._tcp_reply)

    def _tcp_reply(self, sock: Any) -> None:
        try:
            chunk = sock.recv(65537)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.next()
            return
        self.buf += chunk
        if len(self.buf) >= 2 and len(self.buf) >= 2 + int.from_bytes(self.buf[:2], "big"):
            self.finish(self.buf[2:2 + int.from_bytes(self.buf[:2], "big")])

    def finish(self, out: bytes | None) -> None:
        if self.done:
            return
        self.done = True
        self._close()
        self.server.forwards -= 1
        if out:
            self.send(out)

    def _close(self) -> None:
        if self.sock is not None:
            try:
                self.server.sel.unregister(self.sock)
            except (KeyError, ValueError):
                pass
            self.sock.close()
            self.sock = None


def main(argv: list[str]) -> int:
    # Whatever the CLI left open (it is a container's monitor: its pipes, its record's lock) is not ours.
    os.closerange(4, os.sysconf("SC_OPEN_MAX"))
    os.chdir("/")  # nor its working directory (a mount it would keep busy)
    if len(argv) != 1:
        os.write(3, b"error usage: python -m pycontain.network.resolver NETWORK_DIR")
        return 2
    if os.fork():
        os._exit(0)  # the CLI waits for this intermediate; the resolver becomes nobody's child there
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(COMM)
        server = _Server(argv[0])
    except Exception as e:  # noqa: BLE001 - told to the CLI, which prints it as one line
        os.write(3, f"error {e}".encode())
        return 1
    os.write(3, b"ok")
    os.close(3)
    try:
        server.serve()
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
