"""The OCI runtime-spec document as plain data: what a container is, decided by whoever wrote it.

The front end (`pycontain run`) builds this document in memory from the image config and the flags
(container_spec); `pycontain-oci` reads it from a bundle's config.json that podman, containerd or a
person wrote, and checks it first (validate.py: a bundle is untrusted input). Either way the executor
reads nothing else. This module is on every start's path, so it holds only the defaults, the tables
and the conversions the start needs.

The document stays a dict of JSON values (no model classes): it is what the spec defines, what the
front end hands over without a JSON round trip, and what `pycontain-oci spec` prints.

The package is the executor that carries the document out, and reads nothing else:
    validate.py  checks of an untrusted bundle, and the default config.json `pycontain-oci spec` writes
    executor.py  spec -> clone flags, namespaces to join, mounts as data, the process to exec
    seccomp.py   linux.seccomp -> a BPF program (libseccomp, in the parent), installed in the child
    external.py  `pycontain run --runtime runc`: another runtime as the executor
    state.py     pycontain-oci's own records (one directory per container under --root)
    hooks.py     prestart/createRuntime/createContainer/startContainer/poststart/poststop
    cli.py       `pycontain-oci`: the runc command line that podman, containerd and Kubernetes call

The document's defaults and conversions live here, in the package itself: every start needs them, and
one module less to load is ~0.15 ms of it.
"""

from __future__ import annotations

# The capability tables live with the flags that name them (config.py); the spec uses the same names.
from pycontain.config import CAPABILITIES as CAPABILITIES
from pycontain.config import DEFAULT_CAPS as DEFAULT_CAPS
from pycontain.config import capability_mask as capability_mask
from pycontain.errors import PycontainError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pycontain.config import ContainerConfig, Limits, ResolvedConfig, Security

OCI_VERSION = "1.0.2"
NAMESPACES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")
HOOKS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
# Annotations only pycontain's own executor reads (other runtimes ignore unknown annotations). They
# carry what the front end cannot know before the container exists: the overlay its rootfs is built
# from (mounted inside the container's mount namespace, so nothing is ever mounted on the host), and
# a user given by name (looked up in the image's own /etc/passwd, after pivot_root).
OVERLAY = "org.pycontain.overlay"
USER_NAME = "org.pycontain.user"

# Paths a container must not read (kernel memory, keys, timers that leak host activity), as podman masks
# them: directories get an empty read-only tmpfs, files get /dev/null.
MASKED_PATHS = (
    "/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/sched_debug", "/proc/scsi", "/proc/timer_list", "/proc/timer_stats",
    "/sys/dev/block", "/sys/devices/virtual/powercap", "/sys/firmware", "/sys/fs/selinux",
)
# Paths a container may read but not write (kernel tunables and triggers).
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


# <asm-generic/resource.h>
RLIMITS = {name: n for n, name in enumerate((
    "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_RSS", "RLIMIT_NPROC",
    "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS", "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME",
))}


class SpecError(PycontainError):
    """The bundle's config.json is not something pycontain can run."""


# The bundle checks' two primitives (validate.py and seccomp.py), here where both find them without
# loading each other: seccomp.py is on every start's path, validate.py only on pycontain-oci's.
def field_error(field: str, why: str) -> SpecError:
    """One line naming the field: a key of the (untrusted) document may hold a newline or control bytes."""
    if not field.isprintable():
        field = "".join(c if c.isprintable() else repr(c)[1:-1] for c in field)
    return SpecError(f"config.json: {field}: {why}")


def array(value: Any, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise field_error(field, "must be an array")
    return value


def default_mounts() -> list[dict[str, Any]]:
    """The filesystems every container gets, as spec mounts: data, not hard-coded steps."""
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ]


def limits_from(resources: dict[str, Any] | None, base: Limits | None = None) -> Limits:
    """linux.resources as the cgroup code's Limits (unset fields keep `base`'s, else no limit)."""
    from pycontain.config import Limits

    res = resources or {}
    out: dict[str, Any] = (base or Limits(pids=None)).to_json()
    memory, cpu, pids = res.get("memory") or {}, res.get("cpu") or {}, res.get("pids") or {}
    if memory.get("limit") is not None:
        out["memory"] = None if memory["limit"] < 0 else memory["limit"]
    if memory.get("swap") is not None:
        out["memory_swap"] = -1 if memory["swap"] < 0 else memory["swap"]
    if memory.get("reservation") is not None:
        out["memory_reservation"] = None if memory["reservation"] < 0 else memory["reservation"]
    if cpu.get("period"):
        out["cpu_period"] = cpu["period"]
    if cpu.get("quota") is not None:
        period = cpu.get("period") or out.get("cpu_period") or 100_000
        out["cpus"] = None if cpu["quota"] <= 0 else cpu["quota"] / period
    if cpu.get("mems"):
        out["cpuset_mems"] = cpu["mems"]
    if memory.get("swappiness") is not None:
        out["memory_swappiness"] = memory["swappiness"]
    if memory.get("disableOOMKiller") is not None:
        out["oom_kill_disable"] = bool(memory["disableOOMKiller"])
    network = res.get("network") or {}
    if network.get("classID") is not None:
        out["net_classid"] = network["classID"]
    if network.get("priorities"):
        out["net_priorities"] = {p["name"]: p["priority"] for p in network["priorities"]}
    if cpu.get("shares"):
        out["cpu_shares"] = cpu["shares"]
    if cpu.get("cpus"):
        out["cpuset_cpus"] = cpu["cpus"]
    if pids.get("limit") is not None:
        out["pids"] = None if pids["limit"] <= 0 else pids["limit"]
    weight = (res.get("blockIO") or {}).get("weight")
    if weight:
        out["blkio_weight"] = weight
    return Limits(**out)


def resources_from(limits: Limits) -> dict[str, Any]:
    """The front end's Limits as linux.resources (the inverse of limits_from)."""
    res: dict[str, Any] = {}
    if limits.pids is not None:
        res["pids"] = {"limit": limits.pids}
    memory: dict[str, Any] = {}
    if limits.memory is not None:
        memory["limit"] = limits.memory
    if limits.memory_swap is not None:
        memory["swap"] = limits.memory_swap
    if limits.memory_reservation is not None:
        memory["reservation"] = limits.memory_reservation
    if limits.memory_swappiness is not None:
        memory["swappiness"] = limits.memory_swappiness
    if limits.oom_kill_disable is not None:
        memory["disableOOMKiller"] = limits.oom_kill_disable
    if memory:
        res["memory"] = memory
    cpu: dict[str, Any] = {}
    period = limits.cpu_period or 100_000
    if limits.cpu_period is not None:
        cpu["period"] = period
    if limits.cpus is not None:
        cpu["quota"], cpu["period"] = round(limits.cpus * period), period  # --cpu-quota: cpus is quota / period
    if limits.cpu_shares is not None:
        cpu["shares"] = limits.cpu_shares
    if limits.cpuset_cpus is not None:
        cpu["cpus"] = limits.cpuset_cpus
    if cpu:
        res["cpu"] = cpu
    if limits.blkio_weight is not None:
        res["blockIO"] = {"weight": limits.blkio_weight}
    return res


# ---------------------------------------------------------------- the front end's spec

def overlay_options(lowerdirs: tuple[str, ...] | list[str], upperdir: str, workdir: str) -> str:
    # overlayfs lists lowerdirs top-most first; image layers are stored lowest first.
    lower = ":".join(reversed(lowerdirs))
    return f"lowerdir={lower},upperdir={upperdir},workdir={workdir}"


# --init: Debian's tini (package tini; its static build runs in any image, musl or none) or catatonit,
# bound read-only where Docker binds its docker-init: the container's /dev, a tmpfs of its own, so the
# mount point never touches the image or its upper directory.
INIT_BINARIES = ("/usr/bin/tini-static", "/usr/bin/catatonit", "/usr/libexec/podman/catatonit")
INIT_PATH = "/dev/init"


def init_binary() -> str:
    import os

    for path in INIT_BINARIES:
        if os.access(path, os.X_OK):
            return path
    raise UsageError("--init needs tini (or catatonit) on the host: apt-get install tini")


# With --read-only, the places programs expect to write stay writable (as `podman run --read-only`).
READ_ONLY_TMPFS = ("/tmp", "/var/tmp", "/run")


def parse_security(cap_add: list[str] = [], cap_drop: list[str] = [], privileged: bool = False,  # noqa: B006
                   security_opt: list[str] = [], devices: list[str] = [], ulimits: list[str] = [],  # noqa: B006
                   sysctls: list[str] = [], userns: str | None = None, network: str = "none") -> Security:  # noqa: B006
    """The privilege flags of `run`/`create` as one checked Security record (config.Security). It lives
    here, not in config.py, because it reads a seccomp profile file and the host's device nodes with
    this package's profile.py and devices.py (config must not import the spec package: a cycle)."""
    from pycontain.config import USERNS_MODES, Security, parse_capability, parse_sysctl, parse_ulimit

    values: dict[str, Any] = {
        "cap_add": tuple(parse_capability(c, "--cap-add") for c in cap_add),
        "cap_drop": tuple(parse_capability(c, "--cap-drop") for c in cap_drop),
        "privileged": privileged,
    }
    for opt in security_opt:
        key, sep, value = opt.partition("=") if "=" in opt else opt.partition(":")
        if key == "seccomp" and value:
            if value == "unconfined":
                values["seccomp"], values["seccomp_profile"] = "unconfined", None
            else:
                import os

                from pycontain.oci import profile

                values["seccomp"] = os.path.abspath(value)
                values["seccomp_profile"] = profile.load(value)
        elif key in ("no-new-privileges", "no_new_privileges") and value in ("", "true", "false"):
            values["no_new_privs"] = value != "false"
        else:
            raise UsageError(f"invalid --security-opt {opt!r}: expected seccomp=unconfined, seccomp=FILE.json "
                             "or no-new-privileges[=true|false]")
    if devices:
        from pycontain.oci import devices as devs

        values["devices"] = tuple(entry for d in devices for entry in devs.parse_device(d))
    values["ulimits"] = tuple(parse_ulimit(u) for u in ulimits)
    values["sysctls"] = dict(parse_sysctl(s, network) for s in sysctls)
    if userns is not None:
        if userns not in USERNS_MODES:
            raise UsageError(f"invalid --userns {userns!r}: use auto (map root to an unprivileged host range) "
                             "or host (share the host's user ids)")
        values["userns"] = userns
    return Security(**values)


def seccomp_spec(sec: Security, cache_dir: str | None = None) -> dict[str, Any] | None:
    """linux.seccomp of a container (None: no filter, with --privileged or seccomp=unconfined): its
    profile, the project's default or the user's file, resolved for the capabilities it has, so that
    --cap-add SYS_ADMIN opens exactly the calls the profile ties to SYS_ADMIN.

    With cache_dir, the default profile's resolution is kept there (seccomp.memo) under a key made of
    what decides it: profile.py's file identity, the capability set, the kernel release and the machine.
    Importing profile.py and resolving it cost 0.36 ms of every start; reading the kept object, 0.05."""
    if sec.privileged or sec.seccomp == "unconfined":
        return None
    caps = [c[4:] for c in sec.capabilities()]
    if sec.seccomp_profile is None and cache_dir is not None:
        import os

        from pycontain.oci import seccomp

        st = os.stat(os.path.join(os.path.dirname(__file__), "profile.py"))
        uname = os.uname()
        key = (f"default-{st.st_ino}-{st.st_size}-{st.st_mtime_ns}-{capability_mask(tuple(caps)):x}-"
               f"{uname.release}-{uname.machine}")
        return seccomp.memo(cache_dir, key, lambda: _resolve(sec, caps))
    return _resolve(sec, caps)


def _resolve(sec: Security, caps: list[str]) -> dict[str, Any]:
    from pycontain.oci import profile

    source = sec.seccomp_profile if sec.seccomp_profile is not None else profile.default()
    return profile.resolve(source, caps)


def process_spec(sec: Security, args: list[str], env: list[str], cwd: str, terminal: bool) -> dict[str, Any]:
    """spec.process for the container's command, and for every `exec` in it: the same capabilities,
    no_new_privs and rlimits (an exec'd process gets no more than the container's init)."""
    caps = sec.capabilities()
    process: dict[str, Any] = {
        "terminal": terminal,
        "user": {"uid": 0, "gid": 0},
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": sec.no_new_privs,
    }
    if sec.ulimits:
        process["rlimits"] = [dict(u) for u in sec.ulimits]
    return process


def container_spec(cid: str, cfg: ContainerConfig, res: ResolvedConfig, limits: Limits, storage: str,
          layers: list[str], etc_files: dict[str, str], own_executor: bool = True,
          seccomp_cache: str | None = None) -> dict[str, Any]:
    """The front end's half of the contract: the spec for one container, from the image config merged
    with the `run` flags (res), its limits and its files. own_executor: pycontain's executor mounts the
    overlay itself (inside the container's mount namespace); another runtime gets a rootfs that is
    already mounted. The document stays in memory for pycontain's own executor: no JSON on the start
    path."""
    mounts = default_mounts()
    for m in cfg.mounts:
        if m.kind == "tmpfs":
            # Docker's defaults for --tmpfs and --mount type=tmpfs; the user's words come after and win.
            mounts.append({"destination": m.target, "type": "tmpfs", "source": "tmpfs",
                           "options": ["noexec", "nosuid", "nodev", *m.options, *(["ro"] if m.readonly else [])]})
            continue
        # A bind, or a volume: its directory on the host (source, filled in at create) bound the same way.
        options = ["bind" if "nonrecursive" in m.options else "rbind", *(["ro"] if m.readonly else [])]
        if m.options and m.kind == "bind":
            options += [o for o in m.options if o != "nonrecursive"]
        mounts.append({"destination": m.target, "type": "bind", "source": m.source, "options": options})
    for target, source in etc_files.items():
        mounts.append({"destination": target, "type": "bind", "source": source, "options": ["bind"]})
    if cfg.read_only:
        for path in READ_ONLY_TMPFS:
            mounts.append({"destination": path, "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "nodev", "mode=1777", "size=65536k"]})
    namespaces = [{"type": t} for t in ("pid", "mount", "uts", "ipc", "cgroup")]
    if cfg.network != "host":
        namespaces.append({"type": "network"})
    hostname: str | None = res.hostname
    if cfg.pid or cfg.ipc or cfg.uts or res.joins or cfg.shm_size:
        hostname = _namespace_modes(cfg, res, namespaces, mounts)
    sec = cfg.security
    annotations = {USER_NAME: res.user}
    if res.ids is not None:  # --group-add: the user resolved at create, with the added groups
        del annotations[USER_NAME]
    if own_executor:
        annotations[OVERLAY] = overlay_options(layers, f"{storage}/upper", f"{storage}/work")
    argv = list(res.argv)
    if cfg.init:
        # PID 1 is the init; it runs the command as its child, forwards it the signals it gets, reaps
        # every orphan, and exits with the command's status (as `docker run --init`).
        mounts.append({"destination": INIT_PATH, "type": "bind", "source": init_binary(),
                       "options": ["bind", "ro", "nosuid", "nodev"]})
        argv = [INIT_PATH, "--", *argv]
    process = process_spec(sec, argv, list(res.env), res.workdir, cfg.tty)
    if res.ids is not None:
        uid, gid, groups = res.ids
        process["user"] = {"uid": uid, "gid": gid, "additionalGids": list(groups)}
        if uid != 0:  # as for a user given by name: a non-root user keeps capabilities only in its bounding set
            process["capabilities"]["effective"] = process["capabilities"]["permitted"] = []
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "cgroupsPath": f"/pycontain-{cid}",
        "resources": resources_from(limits),
    }
    if sec.privileged:
        # As Docker documents --privileged: /sys and the cgroup tree writable, nothing masked.
        for mount in mounts:
            if mount["type"] in ("sysfs", "cgroup"):
                mount["options"] = [o for o in mount["options"] if o != "ro"]
    else:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
    if sec.sysctls:
        linux["sysctl"] = dict(sec.sysctls)
    seccomp = seccomp_spec(sec, seccomp_cache)
    if seccomp is not None:
        linux["seccomp"] = seccomp
    from pycontain.oci import devices

    # Deny every device but the standard nodes and --device's (all of the host's with --privileged).
    linux["devices"], linux["resources"]["devices"] = devices.spec_fields(sec.devices, sec.privileged)
    spec = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": f"{storage}/rootfs", "readonly": cfg.read_only},
        "hostname": hostname,
        "mounts": mounts,
        "linux": linux,
        "annotations": annotations,
    }
    if hostname is None:  # --uts host: the host's name, which the container may not set
        del spec["hostname"]
    return spec


# ---------------------------------------------------------------- --pid/--ipc/--uts, container:NAME

NS_FILES = {"network": "net", "ipc": "ipc", "pid": "pid"}


def _namespace_modes(cfg: ContainerConfig, res: ResolvedConfig, namespaces: list[dict[str, Any]],
                     mounts: list[dict[str, Any]]) -> str | None:
    """--pid, --ipc, --uts and --shm-size in the spec: the host's namespace (no entry), another
    container's (an entry with its /proc/PID/ns path, read now: its PID changes when it restarts), and
    /dev/shm to match. Returns the spec's hostname (None: the host's, with --uts host)."""
    modes = {"pid": cfg.pid, "ipc": cfg.ipc, "uts": cfg.uts}
    paths = {kind: namespace_path(kind, record) for kind, record in res.joins.items()}
    for entry in list(namespaces):
        kind = entry["type"]
        if modes.get(kind) == "host":
            namespaces.remove(entry)
        elif kind in paths:
            entry["path"] = paths[kind]
    shm = next(m for m in mounts if m["destination"] == "/dev/shm")
    if cfg.ipc == "host":
        # The host's IPC namespace, and its /dev/shm with it (POSIX shared memory lives there), as Docker.
        shm.update(type="bind", source="/dev/shm", options=["rbind", "nosuid", "noexec", "nodev"])
    elif "ipc" in paths:
        # The donor's System V objects are shared; its /dev/shm is a tmpfs mounted only inside its own
        # mount namespace, which the kernel does not let another namespace bind (open_tree: EINVAL), so
        # this one keeps a /dev/shm of its own (Docker mounts a shareable one on the host instead).
        pass
    elif cfg.shm_size:
        shm["options"] = [o for o in shm["options"] if not o.startswith("size=")] + [f"size={cfg.shm_size}"]
    return None if cfg.uts == "host" else res.hostname


def namespace_path(kind: str, record_dir: str) -> str:
    """/proc/PID/ns/KIND of the running container whose record is record_dir (one line if it is not running)."""
    import json
    import os

    from pycontain import state

    name = os.path.basename(record_dir)[:12]
    try:
        with open(f"{record_dir}/config.json") as f:
            name = json.load(f).get("name") or name
        with open(f"{record_dir}/state.json") as f:
            st = json.load(f)
    except (OSError, ValueError):
        raise PycontainError(f"cannot join the {kind} namespace of container {name}: it no longer exists") from None
    pid = st.get("pid")
    if st.get("status") != state.RUNNING or not pid or state.proc_starttime(pid) != st.get("pid_start"):
        raise PycontainError(f"cannot join the {kind} namespace of container {name}: it is not running")
    return f"/proc/{pid}/ns/{NS_FILES[kind]}"


def join_targets(paths: Any, cfg: ContainerConfig) -> tuple[ContainerConfig, dict[str, Any]]:
    """At create: the containers named by --network/--ipc/--pid container:NAME, by full id from now on
    (a rename must not change what it joins). Returns the config and {kind: that container's Record}."""
    from pycontain import state

    found: dict[str, Any] = {}
    changes: dict[str, str] = {}
    for kind, mode in (("network", cfg.network), ("ipc", cfg.ipc), ("pid", cfg.pid)):
        if not mode or not mode.startswith("container:"):
            continue
        other = state.find(paths, mode.partition(":")[2])
        if kind == "ipc" and (other.config.ipc or "private") not in ("shareable", "host"):
            raise UsageError(f"--ipc container:{other.name}: its IPC namespace is not shareable (create it with "
                             "--ipc shareable), as with Docker")
        found[kind] = other
        changes[kind] = f"container:{other.id}"
    return cfg.replace(**changes), found


def image_ids(layers: list[str], user: str, groups: tuple[str, ...]) -> list[Any]:
    """--group-add: [uid, gid, [gids]] for `user` (name or uid[:group]) with `groups` (gids or names) added,
    looked up in the image's /etc/passwd and /etc/group as the container will see them."""
    passwd = [line.split(":") for line in image_file(layers, "etc/passwd").splitlines() if line and line[0] != "#"]
    group_db = [line.split(":") for line in image_file(layers, "etc/group").splitlines() if line and line[0] != "#"]
    name, _, group = user.partition(":")
    number = name or "0"  # no -u: root, whatever the image's first user is called
    entry = next((e for e in passwd if len(e) >= 7 and (e[2] == number if number.isdigit() else e[0] == name)), None)
    if name and not name.isdigit() and entry is None:
        raise UsageError(f"unable to find user {name}: no matching entries in the image's /etc/passwd")
    uid = int(number) if number.isdigit() else int(entry[2]) if entry else 0
    gid = int(entry[3]) if entry and entry[3].isdigit() else 0
    login = entry[0] if entry else None

    def gid_of(g: str, flag: str) -> int:
        if g.isdigit():
            return int(g)
        match = next((e for e in group_db if len(e) >= 3 and e[0] == g and e[2].isdigit()), None)
        if match is None:
            raise UsageError(f"{flag} {g}: no such group in the image's /etc/group")
        return int(match[2])

    if group:
        gid = gid_of(group, "--user")
    extra = [int(e[2]) for e in group_db if len(e) >= 4 and login and login in e[3].split(",") and e[2].isdigit()]
    gids = sorted({gid, *([] if group else extra), *(gid_of(g, "--group-add") for g in groups)})
    return [uid, gid, gids]


def image_file(layers: list[str] | tuple[str, ...], rel: str, strict: bool = True) -> str:
    """A small file of the image (etc/passwd), read from its unpacked layers, topmost first: as the
    overlay shows it (a whiteout or an opaque directory above hides the lower ones). Untrusted: no
    symlink is followed (openat2 RESOLVE_NO_SYMLINKS), only a regular file of at most 4 MiB is read
    (anything else: an error, or with strict=False as if there were no such file)."""
    import os
    import stat

    from pycontain import syscalls

    parent = rel.rpartition("/")[0]
    for layer in reversed(layers):
        try:
            st = os.lstat(f"{layer}/{rel}")
        except FileNotFoundError:
            try:
                opaque = os.getxattr(f"{layer}/{parent}", "trusted.overlay.opaque", follow_symlinks=False) == b"y"
            except OSError:
                opaque = False
            if opaque:
                return ""
            continue
        except NotADirectoryError:
            return ""
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            return ""  # deleted by this layer
        if not stat.S_ISREG(st.st_mode) or st.st_size > 4 << 20:
            if not strict:
                return ""
            raise UsageError(f"--group-add: the image's /{rel} is not a regular file of at most 4 MiB")
        root = os.open(layer, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fd = syscalls.openat2(root, rel, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC,
                                  syscalls.RESOLVE_NO_SYMLINKS | syscalls.RESOLVE_BENEATH, what=f"the image's /{rel}")
        finally:
            os.close(root)
        with os.fdopen(fd, "rb") as f:
            return f.read(4 << 20).decode("utf-8", "replace")
    return ""
