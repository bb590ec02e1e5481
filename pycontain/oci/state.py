"""pycontain-oci's records: one directory per container under --root (default /run/pycontain-oci).

    <root>/<id>/state.json   pid (+ its start time, so a reused pid is never mistaken for it), bundle,
                             created, cgroup path, annotations
    <root>/<id>/config.json  the spec as the bundle had it at create (hooks, namespaces, process)
    <root>/<id>/exec.fifo    exists from create until start: the init blocks opening it for writing
    <root>/<id>/fast         what the C fast path of start/delete needs (csrc/oci_fast.c), as plain lines

The status is never stored: it is read off the kernel each time (is the pid alive, does the FIFO
still exist, is the cgroup frozen), so a record cannot go stale whatever process died.
"""

from __future__ import annotations

import fcntl
import os

from pycontain import jsonfast
from pycontain.errors import PycontainError
from pycontain.safefile import replace_file
from pycontain.state import proc_stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pycontain.cgroups.base import Cgroup

DEFAULT_ROOT = "/run/pycontain-oci"
CREATING, CREATED, RUNNING, PAUSED, STOPPED = "creating", "created", "running", "paused", "stopped"
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")
V1_EXTRA = ("devices", "freezer", "net_cls", "net_prio")


def v1_extra(spec: dict[str, Any]) -> tuple[str, ...]:
    """The optional v1 controllers a container needs: the freezer always (pause), devices and
    net_cls/net_prio only when its spec has rules for them (each is a mkdir and an rmdir per container)."""
    resources = (spec.get("linux") or {}).get("resources") or {}
    return ("freezer",) + (("devices",) if resources.get("devices") else ()) + \
        (("net_cls", "net_prio") if resources.get("network") else ())


class ContainerNotFound(PycontainError):
    pass


def check_id(cid: str) -> str:
    if not cid or not set(cid) <= _ID_CHARS or cid in (".", "..") or len(cid) > 1024:
        raise PycontainError(f"invalid container id {cid!r}: use letters, digits and _ + - .")
    return cid


class Container:
    """One container's record directory."""

    def __init__(self, root: str, cid: str) -> None:
        self.root = root
        self.id = check_id(cid)
        self.dir = f"{root}/{cid}"
        self.fifo = f"{self.dir}/exec.fifo"
        self._state: dict[str, Any] | None = None
        self._spec: dict[str, Any] | None = None

    @classmethod
    def load(cls, root: str, cid: str) -> Container:
        c = cls(root, cid)
        if not os.path.isfile(f"{c.dir}/state.json"):
            raise ContainerNotFound(f"container {cid} does not exist")
        return c

    # ------------------------------------------------------------ stored data

    @property
    def state(self) -> dict[str, Any]:
        if self._state is None:
            try:
                with open(f"{self.dir}/state.json", "rb") as f:
                    self._state = jsonfast.loads(f.read())
            except FileNotFoundError:
                raise ContainerNotFound(f"container {self.id} does not exist") from None
        return self._state

    def save(self, **changes: Any) -> None:
        data = dict(self.state if os.path.exists(f"{self.dir}/state.json") else {}, **changes)
        replace_file(f"{self.dir}/state.json", jsonfast.dumps(data).encode(), 0o600, False)
        self._state = data

    @property
    def spec(self) -> dict[str, Any]:
        if self._spec is None:
            with open(f"{self.dir}/config.json", "rb") as f:
                self._spec = jsonfast.loads(f.read())
        return self._spec

    def write_fast(self, spec: dict[str, Any], cg: Cgroup) -> None:
        """The `fast` file csrc/oci_fast.c reads to `start` and `delete` without Python: the init's pid and
        start time, whether any poststart/poststop hook needs Python, and the cgroup directories (leaves,
        then the parents this container made, deepest first). Plain lines, written like every record."""
        hooks = spec.get("hooks") or {}
        lines = [f"pid {self.pid()} {self.state.get('pid_start')}",
                 f"hooks {int(bool(hooks.get('poststart') or hooks.get('poststop')))}"]
        lines += [f"cgroup {d}" for d in cg.existing_dirs()]
        lines += [f"parent {d}" for d in sorted(cg.parents_made, key=len, reverse=True)]
        replace_file(f"{self.dir}/fast", ("\n".join(lines) + "\n").encode(), 0o600, False)

    def cgroup(self) -> Cgroup:
        from pycontain import cgroups

        st = self.state
        cg = cgroups.for_container(self.id, st.get("cgroup_path"), tuple(st.get("cgroup_extra") or V1_EXTRA))
        cg.parents_made = list(st.get("cgroup_parents") or ())
        return cg

    def lock(self) -> int:
        """An exclusive flock on the record: start, delete, pause and update never interleave."""
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    # ------------------------------------------------------------ the kernel's view

    def pid(self) -> int:
        return int(self.state.get("pid") or 0)

    def alive(self) -> bool:
        pid = self.pid()
        if not pid:
            return False
        st = proc_stat(pid)
        # A zombie has finished: it only waits for its parent (conmon, a shim) to collect its status.
        return st is not None and st[0] not in ("Z", "X") and st[1] == self.state.get("pid_start")

    def status(self) -> str:
        if not self.pid():
            return CREATING if self.alive_creator() else STOPPED
        if not self.alive():
            return STOPPED
        if os.path.exists(self.fifo):
            return CREATED
        try:
            if self.cgroup().frozen():
                return PAUSED
        except OSError:
            pass
        return RUNNING

    def alive_creator(self) -> bool:
        creator = self.state.get("creator")
        return bool(creator) and os.path.exists(f"/proc/{creator}")

    def oci_state(self) -> dict[str, Any]:
        """The state document `state` prints and hooks read (runtime spec "State", plus runc's fields)."""
        st = self.state
        status = self.status()
        return {
            "ociVersion": st.get("ociVersion", "1.0.2"), "id": self.id, "status": status,
            "pid": self.pid() if status != STOPPED else 0, "bundle": st.get("bundle", ""),
            "rootfs": st.get("rootfs", ""), "created": st.get("created", ""), "owner": "",
            "annotations": st.get("annotations") or {},
        }


def all_ids(root: str) -> list[str]:
    try:
        return sorted(d for d in os.listdir(root) if os.path.isfile(f"{root}/{d}/state.json"))
    except FileNotFoundError:
        return []
