"""cgroup v2: one unified hierarchy; controllers are handed down through cgroup.subtree_control."""

from __future__ import annotations

import os

from pycontain.cgroups import CGROUP_ROOT
from pycontain.cgroups.base import Cgroup, host_memory, keyed, read, read_int, write

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pycontain.config import Limits

WANTED = ("cpu", "cpuset", "memory", "pids", "io")
CFS_PERIOD_US = 100_000


class CgroupV2(Cgroup):
    version = 2

    def roots(self) -> list[str]:
        return [CGROUP_ROOT]

    def dirs(self) -> list[str]:
        return [f"{CGROUP_ROOT}/{self.name}"]

    def create(self, limits: Limits) -> None:
        _enable_controllers(CGROUP_ROOT)
        path = self.dirs()[0]
        self.make_dir(path, _enable_controllers)
        self.apply(limits)

    def apply(self, limits: Limits) -> None:
        path = self.dirs()[0]
        _set(path, "pids.max", "max" if limits.pids is None else str(limits.pids))
        if limits.memory is not None:
            _set(path, "memory.max", str(limits.memory))
            swap = limits.memory_swap if limits.memory_swap is not None else 2 * limits.memory
            # v2 limits swap alone; Docker's --memory-swap counts memory plus swap.
            _set(path, "memory.swap.max", "max" if swap == -1 else str(max(0, swap - limits.memory)))
        if limits.memory_reservation is not None:
            _set(path, "memory.low", str(limits.memory_reservation))
        if limits.cpus is not None:
            period = limits.cpu_period or CFS_PERIOD_US
            _set(path, "cpu.max", f"{round(limits.cpus * period)} {period}")
        if limits.cpu_shares is not None:
            # v1 shares 2..262144 map onto v2 weight 1..10000 (the mapping runc and crun use).
            _set(path, "cpu.weight", str(1 + ((limits.cpu_shares - 2) * 9999) // 262142))
        if limits.cpuset_cpus is not None:
            _set(path, "cpuset.cpus", limits.cpuset_cpus)
        if limits.cpuset_mems:
            _set(path, "cpuset.mems", limits.cpuset_mems)

    def oom_killed(self) -> bool:
        return keyed(read(f"{self.dirs()[0]}/memory.events")).get("oom_kill", 0) > 0

    def stats(self) -> dict[str, int]:
        path = self.dirs()[0]
        limit_text = read(f"{path}/memory.max").strip()
        host = host_memory()
        limit = int(limit_text) if limit_text.isdigit() else host
        cache = keyed(read(f"{path}/memory.stat")).get("inactive_file", 0)
        read_bytes = write_bytes = 0
        for line in read(f"{path}/io.stat").splitlines():
            for field in line.split()[1:]:
                key, _, value = field.partition("=")
                if key == "rbytes":
                    read_bytes += int(value)
                elif key == "wbytes":
                    write_bytes += int(value)
        return {
            "cpu_ns": keyed(read(f"{path}/cpu.stat")).get("usage_usec", 0) * 1000,
            "memory": max(0, read_int(f"{path}/memory.current") - cache),
            "memory_limit": min(limit, host) if host else limit,
            "pids": read_int(f"{path}/pids.current"),
            "blk_read": read_bytes,
            "blk_write": write_bytes,
        }

    def inside_mounts(self) -> list[tuple[str, str, str]]:
        return [("cgroup2", "", "")]

    def bind_mounts(self) -> list[tuple[str, str, str]]:
        return [("bind", "", self.dirs()[0])]

    def freeze(self, frozen: bool) -> None:
        path = self.dirs()[0]
        write(f"{path}/cgroup.freeze", "1" if frozen else "0")
        for _ in range(1000):
            if keyed(read(f"{path}/cgroup.events")).get("frozen", 0) == int(frozen):
                return
            import time

            time.sleep(0.001)
        from pycontain.errors import PycontainError

        raise PycontainError("the cgroup did not settle into the freezer state")

    def frozen(self) -> bool:
        return keyed(read(f"{self.dirs()[0]}/cgroup.events")).get("frozen", 0) == 1

    def kill(self) -> None:
        path = f"{self.dirs()[0]}/cgroup.kill"  # Linux 5.14+: the kernel kills every member at once
        if os.path.exists(path):
            try:
                write(path, "1")
            except OSError:
                pass
        super().kill()


def _set(path: str, name: str, value: str) -> None:
    target = f"{path}/{name}"
    if not os.path.exists(target):
        from pycontain.errors import PycontainError

        raise PycontainError(f"this host's cgroup v2 has no {name} (controller not enabled); cannot apply the limit")
    write(target, value)


def _enable_controllers(path: str) -> None:
    """Hand the controllers pycontain uses down from `path` to the cgroups below it."""
    try:
        with open(f"{path}/cgroup.controllers") as f:
            available = set(f.read().split())
        with open(f"{path}/cgroup.subtree_control") as f:
            enabled = set(f.read().split())
    except OSError:
        return
    missing = [c for c in WANTED if c in available and c not in enabled]
    if missing:
        write(f"{path}/cgroup.subtree_control", " ".join(f"+{c}" for c in missing))
