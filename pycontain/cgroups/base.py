"""What every cgroup backend offers, and the one-time choice between v1 and v2.

A container's cgroup is named `pycontain-<container id>` directly under each hierarchy's root, so `gc`
can find an orphan by name alone, and nothing is left behind once that one directory is removed.
"""

from __future__ import annotations

import os
import time

from pycontain import explain

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pycontain.config import Limits

CGROUP_ROOT = "/sys/fs/cgroup"
PREFIX = "pycontain-"


class Cgroup:
    """One container's cgroup (in one or several hierarchies)."""

    version = 0

    def __init__(self, cid: str) -> None:
        self.cid = cid
        self.name = PREFIX + cid

    def dirs(self) -> list[str]:
        raise NotImplementedError

    def roots(self) -> list[str]:
        raise NotImplementedError

    def create(self, limits: Limits) -> None:
        """mkdir the cgroup and write its limits, before any process joins it."""
        raise NotImplementedError

    def apply(self, limits: Limits) -> None:
        """Write limits (also to a live cgroup: `pycontain update`)."""
        raise NotImplementedError

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer killed a process of this cgroup."""
        raise NotImplementedError

    def stats(self) -> dict[str, int]:
        """cpu_ns, memory (bytes, page cache excluded), memory_limit, pids, blk_read, blk_write."""
        raise NotImplementedError

    def inside_mounts(self) -> list[tuple[str, str, str]]:
        """(fstype, path under /sys/fs/cgroup, options) that show the container its own cgroup."""
        raise NotImplementedError

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self.dirs())

    def add(self, pid: int) -> None:
        """Move a process in (cgroup.procs); its future children are born inside."""
        for d in self.existing_dirs():
            _write(f"{d}/cgroup.procs", str(pid))

    def join_self(self) -> None:
        """Move the calling process in, before it runs anything of the container's."""
        for d in self.dirs():
            _write(f"{d}/cgroup.procs", "0")
        explain.say(f"write 0 > {self.dirs()[0]}/cgroup.procs: the child joins its cgroup before exec")

    def existing_dirs(self) -> list[str]:
        return [d for d in self.dirs() if os.path.isdir(d)]

    def procs(self) -> list[int]:
        for d in self.existing_dirs():
            try:
                with open(f"{d}/cgroup.procs") as f:
                    return [int(line) for line in f.read().split()]
            except FileNotFoundError:
                continue
        return []

    def kill(self) -> None:
        """SIGKILL every process inside, repeating until none is left (a fork may race the first pass)."""
        for _ in range(100):
            pids = self.procs()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)

    def remove(self) -> None:
        """rmdir every directory; the kernel refuses (EBUSY) until the last process has gone."""
        for d in self.dirs():
            for attempt in range(200):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != 16 or attempt == 199:  # EBUSY: exiting tasks are still being reaped
                        raise
                    if attempt == 20:
                        self.kill()
                    time.sleep(0.005)


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _read_int(path: str) -> int:
    text = _read(path).strip()
    return int(text) if text.isdigit() else 0


def _keyed(text: str) -> dict[str, int]:
    """Parse "key value" lines (memory.stat, memory.events, cpu.stat) into a dict."""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


def host_memory() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def detect() -> int:
    """2 on a unified (cgroup v2) host, 1 on a v1 or hybrid host."""
    return 2 if os.path.exists(f"{CGROUP_ROOT}/cgroup.controllers") else 1


def for_container(cid: str) -> Cgroup:
    if detect() == 2:
        from pycontain.cgroups.v2 import CgroupV2

        return CgroupV2(cid)
    from pycontain.cgroups.v1 import CgroupV1

    return CgroupV1(cid)
