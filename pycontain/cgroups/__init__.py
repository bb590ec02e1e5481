"""cgroups: the one-time choice between v1 and v2, and a container's cgroup by id or by spec path.

The backends (v1.py, v2.py) share base.Cgroup and its cgroupfs file helpers; they take only CGROUP_ROOT
from this module, which imports them lazily.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pycontain.cgroups.base import Cgroup

CGROUP_ROOT = "/sys/fs/cgroup"


def detect() -> int:
    """2 on a unified (cgroup v2) host, 1 on a v1 or hybrid host."""
    return 2 if os.path.exists(f"{CGROUP_ROOT}/cgroup.controllers") else 1


def for_container(cid: str, path: str | None = None, extra: tuple[str, ...] = ()) -> Cgroup:
    """The cgroup of container `cid`: `pycontain-<cid>` under each hierarchy's root, or the spec's
    linux.cgroupsPath. extra: v1 controllers to join beyond the default ones (devices, freezer).

    A container of the front end's (no path: `run`, `exec`, `rm`, `gc` find it by id) is always in the v1
    devices hierarchy too: its spec always has device rules, so an `exec` must join that cgroup as well
    (or it could open any device), and `rm`/`gc` must remove it."""
    if path is None and "devices" not in extra:
        extra += ("devices",)
    if detect() == 2:
        from pycontain.cgroups.v2 import CgroupV2

        return CgroupV2(cid, path, extra)
    from pycontain.cgroups.v1 import CgroupV1

    return CgroupV1(cid, path, extra)
