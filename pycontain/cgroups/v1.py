"""cgroup v1: one hierarchy per controller (or per co-mounted group), each with its own directory."""

from __future__ import annotations

import os

from pycontain.cgroups.base import Cgroup, _write

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pycontain.config import Limits

# The controllers a container is placed in. cpuset is left out: a v1 cpuset cgroup refuses tasks until
# cpuset.cpus and cpuset.mems are filled in, and nothing here limits CPUs yet.
CONTROLLERS = ("pids", "memory", "cpu", "cpuacct", "blkio", "freezer", "devices")
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

    def create(self, limits: Limits) -> None:
        for d in self.dirs():
            try:
                os.mkdir(d, 0o755)
            except FileExistsError:
                pass
        pids = self.path("pids")
        if limits.pids is not None and pids:
            _write(f"{pids}/pids.max", str(limits.pids))
