"""Leak checking with ../shared/leakcheck (beside the repository) on a shared machine.

leakcheck reports every host object (mount, cgroup, process, link, netns, nft/iptables rule, /tmp entry)
that appeared since a snapshot. This VM is shared: the project's benchmark (scripts/bench, which also
runs runc and crun), scripts/vm-test, a `pip install`, or another session's test run may create such
objects while a test runs. So each reported object is attributed:

* it is gone again by the time we look: not a leak (something was still finishing);
* it belongs to this session when it names a path under this session's pytest basetemp (every state root
  the suite uses is there), or for a process, when it descends from this pytest;
* it belongs to someone else when it names another state root, or one of that root's container ids, or
  a name that only the project's tools (not the runtime) use;
* a container's process (in another PID namespace) is placed by its overlay upperdir, which lies in its
  state root; a `pycontain-<id>` cgroup by its processes, or else by where a record <id> exists.

Whatever is not positively someone else's counts as a leak of this test.
"""

from __future__ import annotations

import glob
import os
import subprocess
from pathlib import Path

# shared/ lies beside the repository, here and in CI's fresh clone.
LEAKCHECK = str(Path(__file__).resolve().parents[3] / "shared" / "leakcheck")
TIMEOUT = 60

# Names that the project's tools (not the runtime) give their temp dirs and cgroups, and the VM's own
# process supervisor's per-session memory cgroups.
TOOL_MARKERS = ("pycontain-bench-", "pycontain-install.", "pycontain-vm.", "pcbench-",
                "/sys/fs/cgroup/memory/process_api/")
DEFAULT_ROOTS = ("/run/pycontain", "/var/lib/pycontain")
CGROUP_PREFIX = "pycontain-"


def snapshot(path: Path) -> Path:
    subprocess.run([LEAKCHECK, "snapshot", str(path)], check=True, timeout=TIMEOUT)
    return path


def leaks_since(snapshot_file: Path, own_base: Path) -> list[str]:
    """leakcheck's `leaked KIND: OBJ` lines since the snapshot that are not positively someone else's."""
    res = subprocess.run([LEAKCHECK, "diff", str(snapshot_file)], capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert res.returncode in (0, 1), f"leakcheck itself failed: {res.stderr}"
    lines = [line for line in res.stdout.splitlines() if line.startswith("leaked ")]
    if not lines:
        return []
    judge = _Attribution(own_base)  # built after the diff, so it knows every root that made those objects
    return [line for line in lines if judge.ours(*line[len("leaked "):].split(": ", 1))]


class _Attribution:
    def __init__(self, own_base: Path) -> None:
        self.base = str(own_base.resolve()) + "/"
        self.foreign_roots = {r for r in _live_pycontain_roots() | set(DEFAULT_ROOTS)
                              if not (r + "/").startswith(self.base)}
        self.markers = tuple(self.foreign_roots) + TOOL_MARKERS

    def mine(self, text: str) -> bool | None:
        """True/False when text names this session's or someone else's paths; None when it names neither."""
        if self.base in text:
            return True
        if any(m in text for m in self.markers):
            return False
        return None

    def ours(self, kind: str, obj: str) -> bool:
        if not _exists(kind, obj):
            return False
        if kind == "process":
            return self.process(int(obj.split()[0]))
        if kind == "cgroup":
            return self.cgroup(obj)
        verdict = self.mine(obj)
        return verdict is not False

    def process(self, pid: int) -> bool:
        if _same_pid_ns(pid):
            # Every pycontain this suite starts names its --root (a detached monitor keeps that argv).
            return self.base in " ".join(_cmdline(pid)) or _descends_from(pid, os.getpid())
        upper = _overlay_upperdir(pid)
        if upper is not None:
            return upper.startswith(self.base)
        return self._ancestry(pid) is not False

    def _ancestry(self, pid: int) -> bool | None:
        """Walk up from a process: the first command line or cgroup that names an owner decides."""
        for _ in range(64):
            if pid <= 1:
                return None
            try:
                text = " ".join(_cmdline(pid)) + "\n" + Path(f"/proc/{pid}/cgroup").read_text()
                pid = _ppid(pid)
            except (OSError, ValueError):
                return None
            verdict = self.mine(text)
            if verdict is not None:
                return verdict
        return None

    def cgroup(self, path: str) -> bool:
        verdict = self.mine(path)
        if verdict is not None:
            return verdict
        name = os.path.basename(path)
        if not name.startswith(CGROUP_PREFIX):
            return False  # pycontain names every cgroup it makes pycontain-<id>: this one is not its
        try:
            pids = [int(p) for p in Path(path, "cgroup.procs").read_text().split()]
        except OSError:
            pids = []
        for pid in pids:
            upper = _overlay_upperdir(pid)
            if upper is not None:
                return upper.startswith(self.base)
        # No process says where it came from: find the state root that has a record for this id.
        cid = name[len(CGROUP_PREFIX):]
        for root in self.foreign_roots:
            if os.path.exists(f"{root}/run/containers/{cid}") or os.path.exists(f"{root}/containers/{cid}"):
                return False
        # Other pytest sessions on this machine keep their roots in the same layout as ours.
        for record in glob.glob(f"/tmp/pytest-of-*/pytest-*/*/*/run/containers/{cid}"):
            return record.startswith(self.base)
        return True


def _exists(kind: str, obj: str) -> bool:
    if kind == "cgroup":
        return os.path.isdir(obj)
    if kind == "tmp":
        return os.path.lexists(f"/tmp/{obj}")
    if kind == "process":
        pid, _, cmd = obj.partition(" ")
        return _alive(int(pid)) and " ".join(_cmdline(pid))[:40] == cmd[:40]
    if kind == "mount":
        return obj in _mount_lines()
    return True  # links, rules, netns: only ever reported as they are


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _mount_lines() -> set[str]:
    out = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            fstype, source = right.split()[:2]
            out.add(f"{left.split()[4]} {fstype} {source}")
    return out


def _cmdline(pid: int | str) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("PPid:"):
                return int(line.split()[1])
    raise ValueError(f"no PPid for {pid}")


def _same_pid_ns(pid: int) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid") == os.readlink("/proc/self/ns/pid")
    except OSError:
        return True


def _descends_from(pid: int, ancestor: int) -> bool:
    for _ in range(64):
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
        try:
            pid = _ppid(pid)
        except (OSError, ValueError):
            return False
    return False


def _overlay_upperdir(pid: int) -> str | None:
    """The upperdir of the overlay mounted at a container process's /, which lies in its state root."""
    try:
        with open(f"/proc/{pid}/mountinfo") as f:
            for line in f:
                left, right = line.split(" - ", 1)
                fields = right.split()
                if left.split()[4] == "/" and fields[0] == "overlay":
                    for option in fields[2].split(","):
                        if option.startswith("upperdir="):
                            return option[len("upperdir="):]
    except (OSError, IndexError):
        pass
    return None


def _live_pycontain_roots() -> set[str]:
    """The state root (--root) of every pycontain process running now."""
    roots = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        argv = _cmdline(pid)
        if not any(a.endswith("pycontain") for a in argv[:3]):
            continue
        for i, arg in enumerate(argv):
            if arg == "--root" and i + 1 < len(argv):
                roots.add(os.path.realpath(argv[i + 1]))
            elif arg.startswith("--root="):
                roots.add(os.path.realpath(arg.split("=", 1)[1]))
    return roots
