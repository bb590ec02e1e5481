"""The executor: a runtime-spec document turned into clone flags, namespaces to join, mounts as data
and the process to exec. It reads nothing but the spec (and where the bundle is).

Two callers share it. `pycontain run` builds the spec in memory and starts the process at once; the
`pycontain-oci create` command reads config.json, and the container's init then waits, set up and
just before execve, until `pycontain-oci start` opens its exec FIFO.

    parent (before clone): check the spec, open namespace paths, parse mounts, resolve capabilities,
                           make the cgroup and write its limits
    clone(new namespaces) -> child: join cgroup -> setns(paths) -> unshare(cgroup) -> lo up
                           -> mounts (spec.mounts) -> [createRuntime/prestart hooks in the parent,
                           createContainer in the child] -> pivot_root -> masked/read-only paths
                           -> hostname -> rlimits, umask -> user, capabilities, no_new_privs
                           -> [ready; wait for start; startContainer hooks] -> execve
"""

from __future__ import annotations

import os

from pycontain import cgroups, explain, mounts, syscalls
from pycontain.config import IPC_SYSCTLS  # sysctls of the IPC namespace (the rest are the host's)
from pycontain.errors import PycontainError
from pycontain.namespaces import Process
from pycontain import oci as ocispec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pycontain.cgroups.base import Cgroup
    from pycontain.config import Limits

CLONE_FLAGS = {
    "pid": syscalls.CLONE_NEWPID, "network": syscalls.CLONE_NEWNET, "mount": syscalls.CLONE_NEWNS,
    "ipc": syscalls.CLONE_NEWIPC, "uts": syscalls.CLONE_NEWUTS, "cgroup": syscalls.CLONE_NEWCGROUP,
    "user": syscalls.CLONE_NEWUSER,
}
PROC_NS = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts", "cgroup": "cgroup",
           "user": "user"}
RUNTIME_HOOKS = ("prestart", "createRuntime")


def cap_mask(names: list[str] | None) -> int:
    mask = 0
    for name in names or ():
        mask |= 1 << ocispec.CAPABILITIES[name[4:]]
    return mask


class Plan:
    """Everything the child needs, computed by the parent before clone."""

    def __init__(self) -> None:
        self.flags = 0
        self.join: list[tuple[str, int]] = []  # (proc ns name, fd) to setns in the child
        self.pid_ns_fd: int | None = None  # joined by the parent itself: it applies to its children
        self.new_cgroupns = False
        self.new_netns = False
        self.rootfs: mounts.RootfsPlan | None = None
        self.hostname: str | None = None
        self.cgroup: Cgroup | None = None
        self.limits: Limits | None = None
        self.device_rules: list[dict[str, Any]] = []
        self.process: Process | None = None
        self.hooks: dict[str, list[dict[str, Any]]] = {}
        self.oom_score_adj: int | None = None
        # The state hooks read on stdin (set by pycontain-oci; the pid is filled in when known).
        self.hook_state: dict[str, Any] = {}
        # A user namespace: a new one (CLONE_NEWUSER in flags, the parent writes these maps before the
        # child goes on) or one to join (userns_fd). early: the cgroup and the namespaces to join were
        # entered before clone, by the intermediate process of _clone_joined.
        self.uid_map = self.gid_map = ""
        self.userns_fd: int | None = None
        self.early = False

    def close(self) -> None:
        for _, fd in self.join:
            os.close(fd)
        self.join = []
        if self.userns_fd is not None:
            os.close(self.userns_fd)
            self.userns_fd = None
        if self.rootfs is not None:
            self.rootfs.close()
        if self.pid_ns_fd is not None:
            os.close(self.pid_ns_fd)
            self.pid_ns_fd = None


def plan(spec: dict[str, Any], bundle: str, cid: str, extra_controllers: tuple[str, ...] = (),
         seccomp_cache: str | None = None) -> Plan:
    """The spec (already checked) as a Plan. Opens the namespace paths it names; Plan.close() them.
    seccomp_cache: the directory of compiled filters (seccomp.compile_cached), None to compile each time."""
    linux = spec.get("linux") or {}
    annotations = spec.get("annotations") or {}
    p = Plan()
    try:
        namespaces = {ns["type"]: ns.get("path") for ns in linux.get("namespaces") or ()}
        _check_mappings(linux, namespaces)
        for kind, path in namespaces.items():
            if path is None:
                if kind != "cgroup":  # made after joining the cgroup, so that cgroup is its root
                    p.flags |= CLONE_FLAGS[kind]
                continue
            fd = _open_namespace(kind, path)
            if kind == "pid":
                p.pid_ns_fd = fd
            elif kind == "user":
                p.userns_fd = fd
            else:
                p.join.append((PROC_NS[kind], fd))
        # The mount namespace is joined last: it changes what paths mean.
        p.join.sort(key=lambda item: item[0] == "mnt")
        p.new_cgroupns = "cgroup" in namespaces and namespaces["cgroup"] is None
        p.new_netns = "network" in namespaces and namespaces["network"] is None
        root = spec["root"]
        rootfs = root["path"] if root["path"].startswith("/") else os.path.join(bundle, root["path"])
        rootfs = os.path.realpath(rootfs)
        if annotations.get(ocispec.OVERLAY) is None and not os.path.isdir(rootfs):
            raise ocispec.SpecError(f"config.json: root.path: {rootfs} is not a directory")
        p.device_rules = list((linux.get("resources") or {}).get("devices") or ())
        if p.device_rules and "devices" not in extra_controllers:
            # v1: the rules live in the devices hierarchy, which a container joins only when it has some.
            extra_controllers += ("devices",)
        # "" rather than None without a cgroupsPath: the same default name, with exactly the controllers
        # asked for here (the ones pycontain-oci records for delete).
        p.cgroup = cgroups.for_container(cid, linux.get("cgroupsPath") or "", extra_controllers)
        p.limits = ocispec.limits_from(linux.get("resources"))
        process = spec.get("process") or {}
        p.rootfs = mounts.RootfsPlan(
            rootfs=rootfs,
            mounts=[mounts.MountStep.parse(m, bundle) for m in spec.get("mounts") or ()],
            overlay=annotations.get(ocispec.OVERLAY),
            masked=tuple(linux.get("maskedPaths") or ()),
            readonly_paths=tuple(linux.get("readonlyPaths") or ()),
            read_only=bool(root.get("readonly")),
            cwd=process.get("cwd") or "/",
            devices=[_device(d) for d in linux.get("devices") or ()],
            propagation=_propagation(linux.get("rootfsPropagation")),
        )
        p.rootfs.sysctl = _sysctls(linux.get("sysctl") or {}, namespaces)
        if "user" in namespaces:
            _plan_userns(p, linux, bundle)
        p.hostname = spec.get("hostname") or None
        if p.hostname and "uts" not in namespaces:
            raise ocispec.SpecError("config.json: hostname: setting it needs a uts namespace of the container's own")
        p.hooks = {k: v for k, v in (spec.get("hooks") or {}).items() if v}
        p.process = process_from(process, annotations)
        p.oom_score_adj = process.get("oomScoreAdj")
        set_filter(p.process, linux.get("seccomp"), seccomp_cache)
    except BaseException:
        p.close()
        raise
    return p


def set_filter(proc: Process, seccomp: dict[str, Any] | None, cache_dir: str | None) -> None:
    """A spec's linux.seccomp onto the process that will load it: the compiled program (kept in
    cache_dir, see seccomp.compile_cached) and the spec's flags. The container's init and every exec'd
    process alike (run, exec, pycontain-oci)."""
    if seccomp is None:
        return
    from pycontain.oci import seccomp as filters  # libseccomp: only for a spec that asks for a filter

    proc.seccomp = filters.compile_cached(seccomp, cache_dir)
    proc.seccomp_flags = list(seccomp.get("flags") or ())


def process_from(process: dict[str, Any], annotations: dict[str, str] | None = None) -> Process:
    """spec.process as the namespaces.Process the child execs."""
    user = process.get("user") or {}
    caps = process.get("capabilities") or {}
    proc = Process(
        tuple(process["args"]), tuple(process.get("env") or ()),
        (annotations or {}).get(ocispec.USER_NAME, ""), process.get("cwd") or "/",
        tty=bool(process.get("terminal")),
    )
    if ocispec.USER_NAME not in (annotations or {}):
        proc.ids = (user.get("uid", 0), user.get("gid", 0), list(user.get("additionalGids") or ()))
    proc.caps = (cap_mask(caps.get("bounding")), cap_mask(caps.get("effective")), cap_mask(caps.get("permitted")),
                 cap_mask(caps.get("inheritable")), cap_mask(caps.get("ambient")))
    proc.no_new_privs = bool(process.get("noNewPrivileges"))
    proc.rlimits = [(ocispec.RLIMITS[r["type"]], r["soft"], r["hard"]) for r in process.get("rlimits") or ()]
    proc.umask = user.get("umask")
    size = process.get("consoleSize") or {}
    if size:
        proc.console_size = (size.get("height", 0), size.get("width", 0))
    return proc


def _check_mappings(linux: dict[str, Any], namespaces: dict[str, str | None]) -> None:
    """A new user namespace needs its uid and gid mappings; mappings need a user namespace."""
    uid, gid = linux.get("uidMappings") or [], linux.get("gidMappings") or []
    if "user" not in namespaces:
        if uid or gid:
            raise ocispec.SpecError("config.json: linux.uidMappings: mappings without a user namespace "
                                    "(linux.namespaces has no user entry)")
        return
    if namespaces["user"] is None and not (uid and gid):
        raise ocispec.SpecError("config.json: linux.namespaces: a new user namespace needs both linux.uidMappings "
                                "and linux.gidMappings")


def _plan_userns(p: Plan, linux: dict[str, Any], bundle: str) -> None:
    """The parent's share of a user namespace, before clone: the maps to write, the host paths the child
    opens before it becomes the namespace's root (mounts.RootfsPlan.host_paths), and the image layers
    idmapped (or copied) so that the container's root owns them (userns.layers_for)."""
    from pycontain import userns

    assert p.rootfs is not None
    uid_mappings, gid_mappings = linux.get("uidMappings") or [], linux.get("gidMappings") or []
    p.uid_map, p.gid_map = userns.map_text(uid_mappings), userns.map_text(gid_mappings)
    rootfs = p.rootfs
    rootfs.userns = True
    paths = [rootfs.rootfs, os.path.dirname(rootfs.rootfs)]
    paths += [m.source for m in rootfs.mounts if m.bind]
    if rootfs.overlay is not None:
        options, rootfs.idmapped, how = userns.layers_for(rootfs.overlay, bundle, uid_mappings, gid_mappings,
                                                          p.userns_fd)
        rootfs.overlay = options
        lower, rest = userns.parse_overlay(options)
        paths += lower + [rest[k] for k in ("upperdir", "workdir") if rest.get(k)]
        explain.say(f"image layers for the user namespace: {how} ("
                    + ("open_tree + mount_setattr(MOUNT_ATTR_IDMAP) of each layer: shared, and owned by the "
                       "container's range as it sees them" if how == "idmapped" else
                       "a copy per container with its owners shifted: idmapped mounts were refused here, or "
                       "PYCONTAIN_IDMAP=off") + ")")
    rootfs.host_paths = list(dict.fromkeys(paths))


def _become_root() -> None:
    """In the new user namespace, now that the parent has written its maps: become its uid 0 (the
    range's first host uid). Before this the child is still the host's uid 0, unmapped in here; it
    joined its cgroup as that (owner of the cgroup files). Capabilities are kept (a change to the
    namespace's own root), and from here on count only inside the container's namespaces."""
    try:
        os.setgroups([])
    except PermissionError:
        pass  # a joined namespace whose creator denied setgroups: the groups are the kernel's to keep
    try:
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    except OSError as e:
        raise PycontainError(f"cannot become root in the container's user namespace (is uid and gid 0 mapped?): "
                             f"{e.strerror}") from None
    explain.say("setresuid(0)/setresgid(0) in the new user namespace: root inside, an unprivileged host uid "
                "outside")


def _open_namespace(kind: str, path: str) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise ocispec.SpecError(f"config.json: linux.namespaces: cannot open the {kind} namespace {path}: "
                                f"{e.strerror}") from None
    return fd


def _device(d: dict[str, Any]) -> tuple[str, int, int, int, int, int]:
    kinds = {"c": 0o020000, "u": 0o020000, "b": 0o060000, "p": 0o010000}
    file_mode: int = d["fileMode"] if d.get("fileMode") is not None else 0o666
    mode = kinds[d["type"]] | file_mode
    return (d["path"], mode, d.get("major") or 0, d.get("minor") or 0, d.get("uid") or 0, d.get("gid") or 0)


def _propagation(value: str | None) -> int:
    if not value:
        return syscalls.MS_REC | syscalls.MS_SLAVE
    base = mounts.PROPAGATION[value.lstrip("r")]
    return base | (syscalls.MS_REC if value.startswith("r") else 0)


def _sysctls(values: dict[str, str], namespaces: dict[str, str | None]) -> list[tuple[str, str]]:
    """linux.sysctl as (path under /proc/sys, value); only those of a namespace the container has."""
    out = []
    for name, value in values.items():
        ok = (name in IPC_SYSCTLS or name.startswith("fs.mqueue.")) and "ipc" in namespaces
        ok = ok or (name.startswith("net.") and "network" in namespaces)
        ok = ok or (name in ("kernel.hostname", "kernel.domainname") and "uts" in namespaces)
        if not ok or "/" in name or ".." in name.split("."):
            raise ocispec.SpecError(f"config.json: linux.sysctl: {name} is not a sysctl of a namespace this "
                                    "container has its own of: it would change the host")
        out.append(("proc/sys/" + name.replace(".", "/"), value))
    return out


def child_steps(p: Plan) -> Any:
    """The child's namespace work (runs after clone, in the new namespaces), as a closure."""
    from pycontain.network import loopback

    def prepare(proc: Process) -> None:
        if p.hooks.get("createContainer") or p.hooks.get("startContainer"):
            from pycontain.oci import hooks

            # The state these hooks read carries our pid as the host sees it: read now, while /proc is
            # still the host's (the parent only learns it after clone, in its own copy of the plan).
            p.hook_state["pid"] = hooks.host_pid()
        if p.cgroup is not None and not p.early:
            p.cgroup.join_self()
        for kind, fd in p.join if not p.early else ():
            syscalls.setns(fd, syscalls.NAMESPACE_FLAGS[kind])
            explain.say(f"setns({kind}): joined the namespace the spec names")
        if p.flags & syscalls.CLONE_NEWUSER or p.userns_fd is not None:
            assert p.rootfs is not None
            p.rootfs.open_host()
            _become_root()
        if p.new_cgroupns:
            # A cgroup namespace made now (after joining our cgroup) shows that cgroup as "/".
            syscalls.unshare(syscalls.CLONE_NEWCGROUP)
            explain.say("unshare(CLONE_NEWCGROUP): the container sees its own cgroup as the root")
        if p.new_netns:
            loopback.up()
            explain.say("ioctl(SIOCSIFFLAGS, lo, IFF_UP): the new network namespace has only a loopback device")
        assert p.rootfs is not None
        if p.hooks.get("createContainer") or any(p.hooks.get(k) for k in RUNTIME_HOOKS):
            p.rootfs.before_pivot = lambda: _before_pivot(p, proc)
        mounts.setup_rootfs(p.rootfs)
        if p.hostname:
            syscalls.sethostname(p.hostname)
            explain.say(f"sethostname({p.hostname!r}): only this UTS namespace sees it")

    return prepare


def _before_pivot(p: Plan, proc: Process) -> None:
    """Mounts made, pivot_root next: the parent runs prestart and createRuntime hooks (in the runtime's
    namespaces), then this process runs createContainer hooks (in the container's mount namespace,
    with the host's paths still in view), as the runtime spec orders them."""
    from pycontain.namespaces import CONTINUE, HOOKS
    from pycontain.oci import hooks

    if any(p.hooks.get(k) for k in RUNTIME_HOOKS):
        os.write(proc.status_w, HOOKS)
        if os.read(proc.go_r, 1) != CONTINUE:
            raise PycontainError("the runtime stopped before the createRuntime hooks finished")
    if p.hooks.get("createContainer"):
        hooks.run_all(p.hooks["createContainer"], p.hook_state, "createContainer")


def make_cgroup(p: Plan) -> Cgroup:
    """mkdir the container's cgroup and write its limits and device rules, before any process joins.
    The caller removes it (Cgroup.remove) on every path."""
    assert p.cgroup is not None and p.limits is not None and p.rootfs is not None
    cg = p.cgroup
    cg.create(p.limits)
    if p.device_rules:
        cg.devices(p.device_rules)
    # What the container's /sys/fs/cgroup shows: its own cgroup, now that it exists.
    p.rootfs.cgroup_mounts = cg.inside_mounts() if p.new_cgroupns else cg.bind_mounts()
    explain.say(f"mkdir {cg.dirs()[0]} (cgroup v{cg.version}, pids.max={p.limits.pids}"
                + (f", memory {p.limits.memory}" if p.limits.memory else "")
                + (f", cpus {p.limits.cpus}" if p.limits.cpus else "") + "): "
                "the container's processes are accounted and limited as one group")
    return cg


def spawn(p: Plan) -> Any:
    """clone the container's init into its namespaces (it then waits for Child.go())."""
    from pycontain import namespaces

    assert p.process is not None
    if p.pid_ns_fd is not None:
        # setns on a PID namespace changes where this process's children are born, not this process.
        syscalls.setns(p.pid_ns_fd, syscalls.CLONE_NEWPID)
    joined = p.userns_fd is not None or bool(p.flags & syscalls.CLONE_NEWUSER and p.join)
    child = namespaces.spawn(p.flags, child_steps(p), p.process, clone=_clone_joined(p) if joined else None)
    try:
        if p.flags & syscalls.CLONE_NEWUSER:
            # The child waits for go: nothing it does before needs the mapping.
            _write_maps(child.pid, p)
        if p.oom_score_adj is not None:
            with open(f"/proc/{child.pid}/oom_score_adj", "w") as f:
                f.write(str(p.oom_score_adj))
    except BaseException:
        child.close()  # EOF on the go pipe: the child exits
        os.waitpid(child.pid, 0)
        raise
    return child


def _write_maps(pid: int, p: Plan) -> None:
    """/proc/PID/uid_map and gid_map of the child's new user namespace (the host's root may map any
    range, so setgroups stays allowed and the container's root may set its groups)."""
    for name, text in (("uid_map", p.uid_map), ("gid_map", p.gid_map)):
        try:
            fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
        except OSError as e:
            raise ocispec.SpecError(f"config.json: linux.{'uid' if name == 'uid_map' else 'gid'}Mappings: the "
                                    f"kernel refused them ({e.strerror})") from None
    explain.say(f"write /proc/{pid}/uid_map ({p.uid_map.strip()}) and gid_map: the user namespace's ids "
                "are this range of the host's")


def _clone_joined(p: Plan) -> Any:
    """clone for a user namespace that must come after namespaces the host owns: a user namespace to
    join (p.userns_fd), or a new one with namespaces to join by path (runc's order: join them as the
    host's root first, then make the user namespace, which then owns only what is made with it).

    An intermediate process (fork) joins the cgroup and those namespaces, then the user namespace, and
    clones the container's init with CLONE_PARENT, so that the init is this process's own child (to
    wait for, as always) and born inside all of them. Returns a function with clone's contract."""

    def clone(flags: int) -> int:
        r, w = os.pipe()
        mid = os.fork()
        if mid == 0:
            pid = -1
            try:
                os.close(r)
                if p.cgroup is not None:
                    p.cgroup.join_self()
                for kind, fd in p.join:
                    syscalls.setns(fd, syscalls.NAMESPACE_FLAGS[kind])
                if p.userns_fd is not None:
                    syscalls.setns(p.userns_fd, syscalls.CLONE_NEWUSER)
                p.early = True
                pid = syscalls.clone(flags | syscalls.CLONE_PARENT)
            except BaseException as e:  # noqa: BLE001 - reported to the parent as one line
                os.write(w, f"!{getattr(e, 'strerror', None) or e}".encode())
                os._exit(125)
            if pid == 0:
                os.close(w)
                return 0  # the container's init: namespaces.spawn carries on as its child
            os.write(w, str(pid).encode())
            os._exit(0)
        os.close(w)
        chunks = []
        while chunk := os.read(r, 4096):
            chunks.append(chunk)
        os.close(r)
        os.waitpid(mid, 0)
        answer = b"".join(chunks).decode(errors="replace")
        if not answer.isdigit():
            raise PycontainError(f"cannot enter the namespaces the spec names: {answer.lstrip('!') or 'died'}")
        return int(answer)

    return clone
