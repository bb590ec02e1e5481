"""cgroup v2: one unified hierarchy; controllers are handed down through cgroup.subtree_control."""

from __future__ import annotations

import os

from pycontain.cgroups.base import CGROUP_ROOT, Cgroup, _write

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pycontain.config import Limits

WANTED = ("cpu", "memory", "pids", "io")


class CgroupV2(Cgroup):
    version = 2

    def roots(self) -> list[str]:
        return [CGROUP_ROOT]

    def dirs(self) -> list[str]:
        return [f"{CGROUP_ROOT}/{self.name}"]

    def create(self, limits: Limits) -> None:
        _enable_controllers()
        path = self.dirs()[0]
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            pass
        if limits.pids is not None and os.path.exists(f"{path}/pids.max"):
            _write(f"{path}/pids.max", str(limits.pids))

    def kill(self) -> None:
        path = f"{self.dirs()[0]}/cgroup.kill"  # Linux 5.14+: the kernel kills every member at once
        if os.path.exists(path):
            try:
                _write(path, "1")
            except OSError:
                pass
        super().kill()


def _enable_controllers() -> None:
    try:
        with open(f"{CGROUP_ROOT}/cgroup.controllers") as f:
            available = set(f.read().split())
        with open(f"{CGROUP_ROOT}/cgroup.subtree_control") as f:
            enabled = set(f.read().split())
    except OSError:
        return
    missing = [c for c in WANTED if c in available and c not in enabled]
    if missing:
        _write(f"{CGROUP_ROOT}/cgroup.subtree_control", " ".join(f"+{c}" for c in missing))
