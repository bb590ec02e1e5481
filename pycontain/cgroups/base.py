"""What every cgroup backend offers, and the one-time choice between v1 and v2.

A container's cgroup is named `pycontain-<container id>` directly under each hierarchy's root, so `gc`
can find an orphan by name alone, and nothing is left behind once that one directory is removed. A
container made from an OCI bundle lives where its linux.cgroupsPath says (podman's
`/libpod_parent/libpod-<id>`, containerd's `/<namespace>/<id>`); only its own leaf is removed.
"""

from __future__ import annotations

import os
import time

from pycontain import explain

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from pycontain.config import Limits

PREFIX = "pycontain-"
# The device rules a runtime appends after a spec's own (runc does the same, so a bundle behaves alike under
# either): the nodes every container's /dev has (null, zero, full, random, urandom, tty, console, ptmx and
# the ptys), and mknod of any node, which alone opens nothing. Both backends apply them: v1 writes them
# to devices.allow, v2 compiles them into its BPF filter. runc also allows /dev/net/tun (10:200) here; its
# maintainers call that a mistake kept for compatibility (runc PRs 3468, 4555), so pycontain leaves it to
# --device /dev/net/tun.
DEFAULT_DEVICE_RULES: list[dict[str, object]] = [
    {"allow": True, "type": "c", "major": None, "minor": None, "access": "m"},
    {"allow": True, "type": "b", "major": None, "minor": None, "access": "m"},
    *(dict[str, object](allow=True, type="c", major=ma, minor=mi, access="rwm")
      for ma, mi in ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (136, None))),
]


class Cgroup:
    """One container's cgroup (in one or several hierarchies)."""

    version = 0

    def __init__(self, cid: str, path: str | None = None, extra: tuple[str, ...] = ()) -> None:
        self.cid = cid
        name = (path or "").strip("/")
        if ".." in name.split("/"):
            from pycontain.errors import PycontainError

            raise PycontainError(f"cgroup path {path!r} climbs out of the cgroup hierarchy")
        self.name = name or PREFIX + cid
        self.extra = extra
        # Parent directories this object made for a nested path: removed with the leaf when empty.
        self.parents_made: list[str] = []

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

    def bind_mounts(self) -> list[tuple[str, str, str]]:
        """inside_mounts for a container without a cgroup namespace: ("bind", subdir, host directory)."""
        raise NotImplementedError

    def freeze(self, frozen: bool) -> None:
        """Stop (or resume) every process of the cgroup: `pause`/`resume`."""
        raise NotImplementedError

    def frozen(self) -> bool:
        raise NotImplementedError

    def devices(self, rules: list[dict[str, object]]) -> None:
        """linux.resources.devices: which device nodes the container may open or create."""

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self.dirs())

    def add(self, pid: int) -> None:
        """Move a process in (cgroup.procs); its future children are born inside."""
        for d in self.existing_dirs():
            write(f"{d}/cgroup.procs", str(pid))

    def join_self(self) -> None:
        """Move the calling process in, before it runs anything of the container's."""
        for d in self.dirs():
            write(f"{d}/cgroup.procs", "0")
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
        self._remove_leaves()
        self.remove_parents()

    def _remove_leaves(self) -> None:
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

    def make_dir(self, path: str, prepare_parent: Callable[[str], None] | None = None) -> None:
        """mkdir the cgroup's directory, and any parents a nested spec path names (remembered in
        parents_made, so the ones we made go again with the container)."""
        try:
            os.mkdir(path, 0o755)
            return
        except FileExistsError:
            return
        except FileNotFoundError:
            pass
        missing = []
        parent = os.path.dirname(path)
        while not os.path.isdir(parent):
            missing.append(parent)
            parent = os.path.dirname(parent)
        for d in reversed(missing):
            try:
                os.mkdir(d, 0o755)
                self.parents_made.append(d)
            except FileExistsError:
                pass
            if prepare_parent is not None:
                prepare_parent(d)
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            pass

    def remove_parents(self) -> None:
        for d in sorted(self.parents_made, key=len, reverse=True):
            try:
                os.rmdir(d)
            except OSError:
                pass  # another container still lives below it, or it has gone already


# ---------------------------------------------------------------- cgroupfs files, shared by v1 and v2

def write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


_weight_warned = False


def write_blkio_weight(path: str | None, choices: tuple[tuple[str, str], ...]) -> bool:
    """Write a block I/O weight to the first file of `choices` ((file name, value) pairs) present in
    `path`. Without one (no CFQ/BFQ scheduler on this kernel) warn once on stderr and go on, as Docker
    does: a weight is a hint, not a limit whose absence should stop the container. True if written."""
    global _weight_warned
    for name, value in choices:
        if path and os.path.exists(f"{path}/{name}"):
            write(f"{path}/{name}", value)
            return True
    if not _weight_warned:
        _weight_warned = True
        import sys

        files = " or ".join(name for name, _ in choices)
        print(f"pycontain: warning: this kernel has no block I/O weight file ({files}): --blkio-weight discarded",
              file=sys.stderr)
    return False


def read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def read_int(path: str) -> int:
    text = read(path).strip()
    return int(text) if text.isdigit() else 0


def keyed(text: str) -> dict[str, int]:
    """Parse "key value" lines (memory.stat, memory.events, cpu.stat) into a dict."""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


def host_memory() -> int:
    for line in read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0
