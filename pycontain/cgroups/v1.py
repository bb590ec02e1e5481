"""cgroup v1: one hierarchy per controller (or per co-mounted group), each with its own directory."""

from __future__ import annotations

import os

from pycontain import explain
from pycontain.cgroups.base import (DEFAULT_DEVICE_RULES, Cgroup, host_memory, keyed, read, read_int, write,
                                    write_blkio_weight)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pycontain.config import Limits

# The controllers a container is placed in: the ones whose limits or counters pycontain uses. Each one
# costs a mkdir, a write and an rmdir per container (~0.2 ms together), so there are no idle extras.
# cpuset joins only when --cpuset-cpus asks for it: a v1 cpuset cgroup refuses tasks until cpuset.cpus
# and cpuset.mems are filled in, which costs reads and writes no other container needs.
CONTROLLERS = ("pids", "memory", "cpu", "cpuacct", "blkio", "cpuset")
# Joined only when asked for (Cgroup.extra): an OCI container's device rules and `pause`.
OPTIONAL = ("devices", "freezer", "net_cls", "net_prio")
CFS_PERIOD_US = 100_000
UNLIMITED = "-1"
_hierarchies: list[tuple[str, str]] | None = None


def hierarchies() -> list[tuple[str, str]]:
    """(mount point, controllers) of each v1 hierarchy carrying our controllers, read once from mountinfo."""
    global _hierarchies
    if _hierarchies is None:
        found: list[tuple[str, str]] = []
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields = right.split()
                if len(fields) < 3 or fields[0] != "cgroup":
                    continue
                point = left.split()[4]
                controllers = [o for o in fields[2].split(",") if o in CONTROLLERS or o in OPTIONAL]
                if controllers and point not in (p for p, _ in found):
                    found.append((point, ",".join(controllers)))
        _hierarchies = found
    return _hierarchies


_roots: dict[str, str] | None = None


def controller_roots() -> dict[str, str]:
    global _roots
    if _roots is None:
        _roots = {c: point for point, controllers in hierarchies() for c in controllers.split(",")}
    return _roots


class CgroupV1(Cgroup):
    version = 1

    def roots(self) -> list[str]:
        return [point for point, controllers in self.hierarchies()]

    _mine: list[tuple[str, str]] | None = None

    def hierarchies(self) -> list[tuple[str, str]]:
        """The hierarchies this cgroup lives in: the default controllers', plus any `extra` ones."""
        if self._mine is None:  # asked for on every path() and dirs(): worked out once per object
            wanted = set(CONTROLLERS) | set(self.extra)
            self._mine = [(p, c) for p, c in hierarchies() if wanted & set(c.split(","))]
        return self._mine

    def dirs(self) -> list[str]:
        return [f"{root}/{self.name}" for root in self.roots()]

    def path(self, controller: str) -> str | None:
        if controller in OPTIONAL and controller not in self.extra:
            return None
        root = controller_roots().get(controller)
        return f"{root}/{self.name}" if root else None

    def join_self(self) -> None:
        """Move the calling (single-threaded) process in by writing "0" to each `tasks` file.

        Moving another process by pid, or a whole thread group through cgroup.procs, takes the kernel's
        global cgroup_threadgroup_rwsem for writing, which waits for an RCU grace period: 5-20 ms per
        start on the reference VM. A thread moving itself skips that lock (kernel/cgroup/cgroup.c,
        cgroup_procs_write_start), and our child has exactly one thread.
        """
        joined = 0
        for d in self.dirs():
            try:
                write(f"{d}/tasks", "0")
                joined += 1
            except FileNotFoundError:  # cpuset, when no --cpuset-cpus asked for it
                pass
        explain.say(f"write 0 > {self.name}/tasks in {joined} v1 hierarchies: "
                    "the child joins its cgroup before exec")

    def create(self, limits: Limits) -> None:
        cpuset = self.path("cpuset")
        for d in self.dirs():
            if d == cpuset and limits.cpuset_cpus is None:
                continue
            self.make_dir(d, _inherit_cpuset if d == cpuset else None)
        if cpuset and limits.cpuset_cpus is not None:
            # A new v1 cpuset starts empty: give it the parent's memory nodes, then the CPUs asked for.
            parent = os.path.dirname(cpuset)
            write(f"{cpuset}/cpuset.mems", read(f"{parent}/cpuset.mems").strip())
        self.apply(limits)

    def apply(self, limits: Limits) -> None:
        memory, pids, cpu, cpuset = self.path("memory"), self.path("pids"), self.path("cpu"), self.path("cpuset")
        if pids:
            write(f"{pids}/pids.max", "max" if limits.pids is None else str(limits.pids))
        if memory and limits.memory is not None:
            memsw = f"{memory}/memory.memsw.limit_in_bytes"  # present only with swap accounting
            swap = limits.memory_swap if limits.memory_swap is not None else 2 * limits.memory
            current = read_int(f"{memory}/memory.limit_in_bytes")
            # memory+swap may never be below memory: raise it first when growing, lower it last when shrinking.
            order = ["mem", "memsw"] if limits.memory <= current else ["memsw", "mem"]
            for which in order:
                if which == "mem":
                    write(f"{memory}/memory.limit_in_bytes", str(limits.memory))
                elif os.path.exists(memsw):
                    write(memsw, UNLIMITED if swap == -1 else str(swap))
        if memory and limits.memory_reservation is not None:
            write(f"{memory}/memory.soft_limit_in_bytes", str(limits.memory_reservation))
        period = limits.cpu_period or CFS_PERIOD_US
        if cpu and (limits.cpus is not None or limits.cpu_period):
            write(f"{cpu}/cpu.cfs_period_us", str(period))
        if cpu and limits.cpus is not None:
            write(f"{cpu}/cpu.cfs_quota_us", str(round(limits.cpus * period)))
        if cpu and limits.cpu_shares is not None:
            write(f"{cpu}/cpu.shares", str(limits.cpu_shares))
        if cpuset and limits.cpuset_cpus is not None and os.path.isdir(cpuset):
            write(f"{cpuset}/cpuset.cpus", limits.cpuset_cpus)
            if limits.cpuset_mems:
                write(f"{cpuset}/cpuset.mems", limits.cpuset_mems)
        if memory and limits.memory_swappiness is not None:
            write(f"{memory}/memory.swappiness", str(limits.memory_swappiness))
        if memory and limits.oom_kill_disable is not None:
            write(f"{memory}/memory.oom_control", "1" if limits.oom_kill_disable else "0")
        if limits.blkio_weight is not None:
            # CFQ's file, or BFQ's on kernels that dropped CFQ; same 10..1000 scale as --blkio-weight.
            weight = str(limits.blkio_weight)
            write_blkio_weight(self.path("blkio"), (("blkio.weight", weight), ("blkio.bfq.weight", weight)))
        net_cls, net_prio = self.path("net_cls"), self.path("net_prio")
        if net_cls and limits.net_classid is not None:
            write(f"{net_cls}/net_cls.classid", str(limits.net_classid))
        if net_prio and limits.net_priorities:
            for name, priority in limits.net_priorities.items():
                write(f"{net_prio}/net_prio.ifpriomap", f"{name} {priority}")

    def oom_killed(self) -> bool:
        memory = self.path("memory")
        return bool(memory) and keyed(read(f"{memory}/memory.oom_control")).get("oom_kill", 0) > 0

    def stats(self) -> dict[str, int]:
        memory, cpuacct = self.path("memory"), self.path("cpuacct")
        pids, blkio = self.path("pids"), self.path("blkio")
        limit = read_int(f"{memory}/memory.limit_in_bytes") if memory else 0
        host = host_memory()
        usage = read_int(f"{memory}/memory.usage_in_bytes") if memory else 0
        cache = keyed(read(f"{memory}/memory.stat")).get("total_inactive_file", 0) if memory else 0
        read_bytes = write_bytes = 0
        for line in read(f"{blkio}/blkio.throttle.io_service_bytes_recursive").splitlines() if blkio else []:
            parts = line.split()
            if len(parts) == 3 and parts[1] == "Read":
                read_bytes += int(parts[2])
            elif len(parts) == 3 and parts[1] == "Write":
                write_bytes += int(parts[2])
        return {
            "cpu_ns": read_int(f"{cpuacct}/cpuacct.usage") if cpuacct else 0,
            "memory": max(0, usage - cache),
            "memory_limit": min(limit, host) if limit and host else limit or host,
            "pids": read_int(f"{pids}/pids.current") if pids else 0,
            "blk_read": read_bytes,
            "blk_write": write_bytes,
        }

    def freeze(self, frozen: bool) -> None:
        freezer = self.path("freezer")
        if not freezer or not os.path.isdir(freezer):
            from pycontain.errors import PycontainError

            raise PycontainError("this container's cgroup has no freezer: it cannot be paused")
        want = "FROZEN" if frozen else "THAWED"
        for _ in range(1000):
            write(f"{freezer}/freezer.state", want)
            if read(f"{freezer}/freezer.state").strip() == want:
                return
            import time

            time.sleep(0.001)  # FREEZING: some task is still on its way
        from pycontain.errors import PycontainError

        raise PycontainError("the freezer did not settle")

    def frozen(self) -> bool:
        freezer = self.path("freezer")
        return bool(freezer) and read(f"{freezer}/freezer.state").strip() == "FROZEN"

    def devices(self, rules: list[dict[str, object]]) -> None:
        """The v1 devices controller: each rule written in order to devices.allow or devices.deny, then
        the nodes every container needs (as runc allows them by default)."""
        devices = self.path("devices")
        if not devices:
            # Never run a container without the rules it asked for: with no devices cgroup it could open
            # any device node it can make.
            from pycontain.errors import PycontainError

            raise PycontainError("this host mounts no v1 devices controller: cannot restrict the container's "
                                 "device access" if "devices" not in controller_roots() else
                                 f"cgroup {self.name} was not made in the devices hierarchy")
        # Each file opened once (a cgroupfs open costs more than the write), and a rule that repeats one
        # already written, with no rule of the other verdict since, is left out: it changes nothing in the
        # kernel's exception list, and the defaults appended below repeat most of the front end's spec
        # (20 writes less per start).
        written: dict[str, bool] = {}
        fds: dict[bool, int] = {}
        last_verdict = None
        try:
            for rule in list(rules) + DEFAULT_DEVICE_RULES:
                kind = rule.get("type") or "a"
                entry = "a" if kind == "a" else \
                    f"{kind} {_num(rule.get('major'))}:{_num(rule.get('minor'))} {rule.get('access') or 'rwm'}"
                allow = bool(rule.get("allow"))
                if written.get(entry) is allow and last_verdict is allow:
                    continue
                if allow is not last_verdict:
                    written = {}  # the other verdict may have undone any earlier rule
                path = f"{devices}/devices.{'allow' if allow else 'deny'}"
                if allow not in fds:
                    fds[allow] = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.write(fds[allow], entry.encode())
                except OSError as e:
                    raise OSError(e.errno, f"cannot write {entry!r} to {path}: {e.strerror}") from None
                written[entry], last_verdict = allow, allow
        finally:
            for fd in fds.values():
                os.close(fd)

    def bind_mounts(self) -> list[tuple[str, str, str]]:
        return [("bind", os.path.basename(point), f"{point}/{self.name}") for point, _ in self.hierarchies()
                if os.path.isdir(f"{point}/{self.name}")]

    def inside_mounts(self) -> list[tuple[str, str, str]]:
        # With a cgroup namespace, each hierarchy mounted inside shows the container's cgroup as its root.
        cpuset = self.path("cpuset")
        return [("cgroup", os.path.basename(point), controllers) for point, controllers in self.hierarchies()
                if not (controllers == "cpuset" and cpuset and not os.path.isdir(cpuset))]


def _num(value: object) -> str:
    return "*" if value is None or value == -1 else str(value)


def _inherit_cpuset(path: str) -> None:
    """A v1 cpuset directory starts with no CPUs and no memory nodes: copy its parent's."""
    parent = os.path.dirname(path)
    for name in ("cpuset.cpus", "cpuset.mems"):
        write(f"{path}/{name}", read(f"{parent}/{name}").strip())
