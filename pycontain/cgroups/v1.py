"""cgroup v1: one hierarchy per controller (or per co-mounted group), each with its own directory."""

from __future__ import annotations

import os

from pycontain import explain
from pycontain.cgroups.base import Cgroup, _write

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pycontain.config import Limits

# The controllers a container is placed in: the ones whose limits or counters pycontain uses. Each one
# costs a mkdir, a write and an rmdir per container (~0.2 ms together), so there are no idle extras.
# cpuset is left out: a v1 cpuset cgroup refuses tasks until cpuset.cpus and cpuset.mems are filled in.
CONTROLLERS = ("pids", "memory", "cpu", "cpuacct", "blkio")
_by_controller: dict[str, str] | None = None


def controller_roots() -> dict[str, str]:
    """controller -> mount point of its v1 hierarchy, read once from /proc/self/mountinfo."""
    global _by_controller
    if _by_controller is None:
        found: dict[str, str] = {}
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields = right.split()
                if len(fields) < 3 or fields[0] != "cgroup":
                    continue
                point = left.split()[4]
                for option in fields[2].split(","):
                    if option in CONTROLLERS:
                        found.setdefault(option, point)
        _by_controller = found
    return _by_controller


class CgroupV1(Cgroup):
    version = 1

    def roots(self) -> list[str]:
        return list(dict.fromkeys(controller_roots().values()))

    def dirs(self) -> list[str]:
        return [f"{root}/{self.name}" for root in self.roots()]

    def path(self, controller: str) -> str | None:
        root = controller_roots().get(controller)
        return f"{root}/{self.name}" if root else None

    def join_self(self) -> None:
        """Move the calling (single-threaded) process in by writing "0" to each `tasks` file.

        Moving another process by pid, or a whole thread group through cgroup.procs, takes the kernel's
        global cgroup_threadgroup_rwsem for writing, which waits for an RCU grace period: 5-20 ms per
        start on the reference VM. A thread moving itself skips that lock (kernel/cgroup/cgroup.c,
        cgroup_procs_write_start), and our child has exactly one thread.
        """
        for d in self.dirs():
            _write(f"{d}/tasks", "0")
        explain.say(f"write 0 > {self.name}/tasks in {len(self.dirs())} v1 hierarchies: "
                    "the child joins its cgroup before exec")

    def create(self, limits: Limits) -> None:
        for d in self.dirs():
            try:
                os.mkdir(d, 0o755)
            except FileExistsError:
                pass
        pids = self.path("pids")
        if limits.pids is not None and pids:
            _write(f"{pids}/pids.max", str(limits.pids))
