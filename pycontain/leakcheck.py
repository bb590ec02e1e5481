"""The host objects a container run can leave behind: record them, and later name the ones that are new.

    python -m pycontain.leakcheck snapshot FILE [--netns PATH]
    python -m pycontain.leakcheck diff FILE [--netns PATH]

`snapshot` writes what exists now to FILE (JSON: kind -> sorted list of objects); `diff` prints one
`leaked KIND: OBJECT` line per object present now and absent from FILE, and exits 1 if there is any
(0 if none, 2 on bad usage). With --netns the per-namespace kinds (links, nft and iptables rules) are read
inside that network namespace (a path such as /proc/PID/ns/net or /run/netns/NAME); everything else is the
host's either way. Run as root: other users cannot read every process's namespaces or the nft ruleset.

The kinds, and how each object is written (stable across a remount or a renumbering):

    mount     "MOUNTPOINT FSTYPE SOURCE" of this mount namespace
    link      a network interface name
    netns     a name under /run/netns
    nft       one stripped line of `nft list ruleset`
    iptables  "TABLE: RULE" from `iptables -t TABLE -S`, tables nat and filter
    cgroup    a directory under /sys/fs/cgroup (every hierarchy)
    process   "PID CMDLINE" (120 chars) of a process whose command line says pycontain, or that lives in
              another PID namespace (a container's)
    tmp       a name in /tmp that contains "pycontain"

Only appearances count: an object that was there before the snapshot is never reported, and one that
existed and went away is not a leak.

On a machine where other people (or other test runs) create the same kinds of objects meanwhile,
`Attribution` decides which of the new objects are someone else's (see its docstring); the pytest plugin's
--pycontain-leakcheck and the project's own test suite use it.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence

KINDS = ("mount", "link", "netns", "nft", "iptables", "cgroup", "process", "tmp")
Snapshot = dict[str, list[str]]

CGROUP_ROOT = "/sys/fs/cgroup"
NETNS_DIR = "/run/netns"
TMP = "/tmp"
MARK = "pycontain"
# A tool that does not answer within this is stuck; its kind then reads as empty.
TOOL_TIMEOUT = 20
PROCESS_CMD_WIDTH = 120

# Where pycontain keeps state when no --root is given: objects naming them are the user's own, not a test's.
DEFAULT_ROOTS = ("/run/pycontain", "/var/lib/pycontain")
CGROUP_PREFIX = "pycontain-"
# Names that the project's tools (scripts/bench, scripts/install and the pip it runs, scripts/vm-test), not
# the runtime, give their temp dirs and cgroups: never a test's leak.
TOOL_MARKERS = ("pycontain-bench-", "pycontain-install.", "pycontain-vm.", "pcbench-", ".whl")


# ---------------------------------------------------------------- reading the host

def _tool_lines(argv: list[str], netns: str | None) -> list[str]:
    if netns is not None:
        argv = ["nsenter", f"--net={netns}", "--", *argv]
    try:
        res = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return []  # the tool is not installed (no rules of its kind can exist then) or hangs
    return res.stdout.splitlines()


def mount_entries(mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    # Mount ids change when something is remounted; point, type and source identify a mount for this purpose.
    out = []
    with open(mountinfo) as f:
        for line in f:
            before, _, after = line.partition(" - ")
            fields = before.split()
            fstype, source = after.split()[:2]
            out.append(f"{fields[4]} {fstype} {source}")
    return out


def _links(netns: str | None) -> list[str]:
    if netns is None:
        with open("/proc/self/net/dev") as f:  # follows this process's netns (sysfs need not)
            text = f.read()
    else:
        text = "\n".join(_tool_lines(["cat", "/proc/self/net/dev"], netns))
    return [line.split(":", 1)[0].strip() for line in text.splitlines() if ":" in line]


def _named_netns(_netns: str | None) -> list[str]:
    try:
        return os.listdir(NETNS_DIR)
    except OSError:
        return []


def _nft(netns: str | None) -> list[str]:
    return [line.strip() for line in _tool_lines(["nft", "list", "ruleset"], netns) if line.strip()]


def _iptables(netns: str | None) -> list[str]:
    return [f"{table}: {rule}" for table in ("nat", "filter")
            for rule in _tool_lines(["iptables", "-t", table, "-S"], netns)]


def _cgroups(_netns: str | None) -> list[str]:
    found: list[str] = []
    pending = [CGROUP_ROOT]
    while pending:
        top = pending.pop()
        try:
            entries = list(os.scandir(top))
        except OSError:
            continue  # removed meanwhile
        for entry in entries:
            try:
                if not entry.is_dir():
                    continue
                found.append(entry.path)
                # v1's "cpu -> cpu,cpuacct" links are listed, not entered: their target is walked anyway.
                if not entry.is_symlink():
                    pending.append(entry.path)
            except OSError:
                continue
    return found


def _processes(_netns: str | None) -> list[str]:
    me = os.getpid()
    my_ns = os.readlink("/proc/self/ns/pid")
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            other_ns = os.readlink(f"/proc/{name}/ns/pid") != my_ns
        except OSError:
            continue  # exited meanwhile, or a kernel thread without namespaces to read
        if other_ns or MARK in cmd:
            out.append(f"{name} {cmd[:PROCESS_CMD_WIDTH]}")
    return out


def _tmp(_netns: str | None) -> list[str]:
    try:
        return [n for n in os.listdir(TMP) if MARK in n]
    except OSError:
        return []


PROBES: dict[str, Callable[[str | None], list[str]]] = {
    "mount": lambda _netns: mount_entries(),
    "link": _links,
    "netns": _named_netns,
    "nft": _nft,
    "iptables": _iptables,
    "cgroup": _cgroups,
    "process": _processes,
    "tmp": _tmp,
}


def take(netns: str | None = None) -> Snapshot:
    """What exists now, kind by kind (sorted, without duplicates)."""
    return {kind: sorted(set(probe(netns))) for kind, probe in PROBES.items()}


def new_since(before: Snapshot, now: Snapshot | None = None, netns: str | None = None) -> list[tuple[str, str]]:
    """(kind, object) for everything in `now` (default: the host as it is) that `before` did not have."""
    if now is None:
        now = take(netns)
    out = []
    for kind in KINDS:
        old = set(before.get(kind, ()))
        out += [(kind, obj) for obj in now.get(kind, ()) if obj not in old]
    return out


def line(kind: str, obj: str) -> str:
    return f"leaked {kind}: {obj}"


def parse_line(text: str) -> tuple[str, str]:
    """"leaked KIND: OBJECT" -> (kind, object)."""
    kind, _, obj = text.removeprefix("leaked ").partition(": ")
    return kind, obj


def save(path: str | os.PathLike[str], snap: Snapshot) -> None:
    with open(path, "w") as f:
        json.dump(snap, f)


def load(path: str | os.PathLike[str]) -> Snapshot:
    with open(path) as f:
        data = json.load(f)
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise ValueError(f"{path} is not a leakcheck snapshot")
    return {str(k): [str(o) for o in v] for k, v in data.items()}


# ---------------------------------------------------------------- whose is it

class Attribution:
    """Which new objects are positively someone else's, on a machine others use at the same time.

    `own` are path prefixes (a pytest basetemp, a state root) that only the checked code uses. A new
    object then counts as a leak unless it is gone again by the time we look, or it can be placed
    elsewhere:

    * it names one of `own`: ours; it names another live pycontain's --root, a default state root, or one
      of `foreign_markers` (names only other tools use; default: the project's own scripts'): someone
      else's;
    * a process in this PID namespace is ours when its command line names `own` or it descends from this
      process; one in another PID namespace (a container's) by the overlay upperdir of its root, which
      lies in its state root, or else by the first ancestor whose command line or cgroup names an owner;
    * a cgroup not named pycontain-<id> is not pycontain's; a pycontain-<id> one by its processes'
      overlays, or else by which state root has a record of that id (`record_globs` add the roots of
      other runs of the same test tool, e.g. "/tmp/pytest-of-*/pytest-*/*/*/run/containers/{cid}").

    Whatever cannot be placed counts as ours: a check that guesses "not mine" hides real leaks. With
    `unplaced_containers=False`, a process in another PID namespace that nothing places counts as someone
    else's instead (pycontain's own containers are always placed by their overlay): for checks that
    must not fail because another tool on the machine runs namespaced processes meanwhile.
    """

    def __init__(self, own: Iterable[str | os.PathLike[str]], foreign_markers: Sequence[str] = TOOL_MARKERS,
                 record_globs: Sequence[str] = (), unplaced_containers: bool = True) -> None:
        self.unplaced_containers = unplaced_containers
        self.own = tuple(os.path.realpath(p).rstrip("/") + "/" for p in own)
        # Read after the objects were made, so that it knows every root that may have made them.
        self.foreign_roots = {r for r in live_pycontain_roots() | set(DEFAULT_ROOTS)
                              if not any((r + "/").startswith(o) for o in self.own)}
        self.markers = tuple(self.foreign_roots) + tuple(foreign_markers)
        self.record_globs = tuple(record_globs)

    def owner(self, text: str) -> bool | None:
        """True: text names our paths; False: someone else's; None: neither."""
        if any(o in text for o in self.own):
            return True
        if any(m in text for m in self.markers):
            return False
        return None

    def ours(self, kind: str, obj: str) -> bool:
        if not still_there(kind, obj):
            return False
        if kind == "process":
            return self._process(int(obj.split()[0]))
        if kind == "cgroup":
            return self._cgroup(obj)
        return self.owner(obj) is not False

    def filter(self, found: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(kind, obj) for kind, obj in found if self.ours(kind, obj)]

    def _process(self, pid: int) -> bool:
        if in_my_pid_ns(pid):
            return any(o in " ".join(cmdline(pid)) for o in self.own) or descends_from(pid, os.getpid())
        upper = overlay_upperdir(pid)
        if upper is not None:
            return any(upper.startswith(o) for o in self.own)
        verdict = self._by_ancestors(pid)
        if verdict is None:
            return self.unplaced_containers or descends_from(pid, os.getpid())
        return verdict

    def _by_ancestors(self, pid: int) -> bool | None:
        for _ in range(64):
            if pid <= 1:
                return None
            try:
                with open(f"/proc/{pid}/cgroup") as f:
                    text = " ".join(cmdline(pid)) + "\n" + f.read()
                pid = parent_of(pid)
            except (OSError, ValueError):
                return None
            verdict = self.owner(text)
            if verdict is not None:
                return verdict
        return None

    def _cgroup(self, path: str) -> bool:
        verdict = self.owner(path)
        if verdict is not None:
            return verdict
        name = os.path.basename(path)
        if not name.startswith(CGROUP_PREFIX):
            return False  # pycontain names each cgroup it makes pycontain-<id>
        try:
            with open(os.path.join(path, "cgroup.procs")) as f:
                pids = [int(p) for p in f.read().split()]
        except OSError:
            pids = []
        for pid in pids:
            upper = overlay_upperdir(pid)
            if upper is not None:
                return any(upper.startswith(o) for o in self.own)
        cid = name[len(CGROUP_PREFIX):]
        for root in self.foreign_roots:
            if os.path.exists(f"{root}/run/containers/{cid}") or os.path.exists(f"{root}/containers/{cid}"):
                return False
        for pattern in self.record_globs:
            for record in glob.glob(pattern.format(cid=cid)):
                return any(record.startswith(o) for o in self.own)
        return True


def settled(found: list[tuple[str, str]], judge: Attribution, seconds: float = 2.0) -> list[tuple[str, str]]:
    """judge.filter(found), looked at again for up to `seconds` while anything is left: an object that is
    still being torn down (a cgroup after its last process, another tool's short-lived objects) is gone
    then; a leak stays. Costs nothing when nothing was found."""
    import time

    found = judge.filter(found)
    deadline = time.monotonic() + seconds
    while found and time.monotonic() < deadline:
        time.sleep(0.2)
        found = judge.filter(found)
    return found


def still_there(kind: str, obj: str) -> bool:
    """Whether a reported object still exists (a process: the same one, not a reused pid)."""
    if kind == "cgroup":
        return os.path.isdir(obj)
    if kind == "tmp":
        return os.path.lexists(os.path.join(TMP, obj))
    if kind == "process":
        pid, _, cmd = obj.partition(" ")
        return alive(int(pid)) and " ".join(cmdline(pid))[:40] == cmd[:40]
    if kind == "mount":
        return obj in set(mount_entries())
    return True  # links, rules and netns names are reported as they are now


def alive(pid: int) -> bool:
    """A live process (not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def cmdline(pid: int | str) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for text in f:
            if text.startswith("PPid:"):
                return int(text.split()[1])
    raise ValueError(f"process {pid} has no PPid")


def in_my_pid_ns(pid: int) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid") == os.readlink("/proc/self/ns/pid")
    except OSError:
        return True


def descends_from(pid: int, ancestor: int) -> bool:
    for _ in range(64):
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
        try:
            pid = parent_of(pid)
        except (OSError, ValueError):
            return False
    return False


def overlay_upperdir(pid: int) -> str | None:
    """The upperdir of the overlay at a process's / (a container's: it lies in the state root)."""
    try:
        with open(f"/proc/{pid}/mountinfo") as f:
            for text in f:
                before, _, after = text.partition(" - ")
                fields = after.split()
                if before.split()[4] != "/" or fields[0] != "overlay":
                    continue
                for option in fields[2].split(","):
                    if option.startswith("upperdir="):
                        return option[len("upperdir="):]
    except (OSError, IndexError):
        pass
    return None


def live_pycontain_roots() -> set[str]:
    """The --root of every pycontain process running now (resolved)."""
    roots = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        argv = cmdline(name)
        if not any(a.endswith("pycontain") for a in argv[:3]):
            continue
        for i, arg in enumerate(argv):
            if arg == "--root" and i + 1 < len(argv):
                roots.add(os.path.realpath(argv[i + 1]))
            elif arg.startswith("--root="):
                roots.add(os.path.realpath(arg.split("=", 1)[1]))
    return roots


# ---------------------------------------------------------------- command line

USAGE = "usage: python -m pycontain.leakcheck snapshot|diff FILE [--netns PATH]"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    netns = None
    if "--netns" in args:
        i = args.index("--netns")
        if i + 1 >= len(args):
            print("leakcheck: --netns needs a path", file=sys.stderr)
            return 2
        netns = args[i + 1]
        del args[i:i + 2]
        if not os.path.exists(netns):
            print(f"leakcheck: no network namespace at {netns}", file=sys.stderr)
            return 2
    if len(args) != 2 or args[0] not in ("snapshot", "diff"):
        print(USAGE, file=sys.stderr)
        return 2
    action, path = args
    if action == "snapshot":
        try:
            save(path, take(netns))
        except OSError as e:
            print(f"leakcheck: cannot write {path}: {e.strerror}", file=sys.stderr)
            return 2
        return 0
    try:
        before = load(path)
    except (OSError, ValueError) as e:
        print(f"leakcheck: cannot read a snapshot from {path}: {getattr(e, 'strerror', None) or e}",
              file=sys.stderr)
        return 2
    found = new_since(before, netns=netns)
    for kind, obj in found:
        print(line(kind, obj))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
