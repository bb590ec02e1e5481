"""Configuration as data: the command line is parsed once into these frozen records.

The runtime never sees the argument parser or raw strings it has to re-parse; everything here is
validated (a bad value raises UsageError with a message that names the flag).

These are frozen classes with __slots__ rather than dataclasses: `import dataclasses` costs ~15 ms
on the reference VM (it imports inspect, re and enum), most of the start-time budget.
"""

from __future__ import annotations

import os

from pycontain.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NETWORK_MODES = ("none", "host")
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


# <linux/capability.h>: each capability's bit, by the name the spec uses without its CAP_ prefix (for
# capset(2) and PR_CAPBSET_DROP, called through csrc/: python-prctl's import cost 0.6 ms of every start).
CAPABILITIES = {name: bit for bit, name in enumerate((
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE",
))}


def capability_mask(caps: tuple[str, ...]) -> int:
    mask = 0
    for name in caps:
        mask |= 1 << CAPABILITIES[name]
    return mask


# podman's default capability set.
DEFAULT_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT",
)


class Frozen:
    """A small immutable record: fields and defaults in `_fields`, JSON in and out."""

    __slots__: tuple[str, ...] = ()
    _fields: dict[str, Any] = {}

    def __init__(self, *args: Any, **values: Any) -> None:
        if len(args) > len(self._fields):
            raise TypeError(f"{type(self).__name__} takes at most {len(self._fields)} values")
        values.update(zip(self._fields, args))
        unknown = set(values) - set(self._fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {sorted(unknown)[0]!r}")
        for name, default in self._fields.items():
            object.__setattr__(self, name, values.get(name, default))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(tuple(self.to_json().items()).__repr__())

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._fields)
        return f"{type(self).__name__}({inner})"

    def replace(self, **changes: Any) -> Any:
        values = {k: getattr(self, k) for k in self._fields}
        values.update(changes)
        return type(self)(**values)

    def to_json(self) -> dict[str, Any]:
        out = {}
        for k in self._fields:
            v = getattr(self, k)
            if isinstance(v, Frozen):
                v = v.to_json()
            elif isinstance(v, tuple):
                v = [x.to_json() if isinstance(x, Frozen) else x for x in v]
            out[k] = v
        return out


class BindMount(Frozen):
    """One mount the user asked for (-v, --mount, --tmpfs, --volumes-from, the image's VOLUME paths).

    kind "bind": a host path (source) bound at target. kind "volume": a volume (name; "" until `create`
    gives an anonymous one its name), whose directory on the host (source) is filled in at `create`.
    kind "tmpfs": a fresh tmpfs. options: the mount's own words, checked: a bind's propagation
    (rprivate ...) and "nonrecursive", a volume's "nocopy" (and volume-label=K=V / volume-opt=K=V for
    a volume `--mount` creates), a tmpfs's options (size=BYTES, mode=OCTAL, noexec ...).
    """

    __slots__ = ("source", "target", "readonly", "kind", "name", "options")
    _fields = {"source": "", "target": "", "readonly": False, "kind": "bind", "name": "", "options": ()}
    source: str
    target: str
    readonly: bool
    kind: str
    name: str
    options: tuple[str, ...]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BindMount:
        data = dict(data)
        data["options"] = tuple(data.get("options") or ())
        return cls(**data)


class PortMapping(Frozen):
    """`-p [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]`; host_port 0 means "pick a free one"."""

    __slots__ = ("host_ip", "host_port", "container_port", "protocol")
    _fields = {"host_ip": "", "host_port": 0, "container_port": 0, "protocol": "tcp"}
    host_ip: str
    host_port: int
    container_port: int
    protocol: str


class Limits(Frozen):
    """cgroup limits; None means not set (no limit). pids defaults to 2048 as in podman.

    memory, memory_swap (memory + swap, -1 unlimited) and memory_reservation are bytes; cpus is a
    fraction of CPUs (CFS quota); cpu_shares is the v1 weight (2..262144, 1024 = default);
    cpuset_cpus is a CPU list like "0-1,3". The rest come only from an OCI spec's linux.resources:
    cpu_period (the CFS period cpus is measured in; default 100 ms), cpuset_mems, memory_swappiness,
    oom_kill_disable, net_classid and net_priorities ({interface: priority}).
    run's --cpu-period, --cpu-quota (kept as given, for inspect; cpus is then quota / period),
    --memory-swappiness, --oom-kill-disable and --blkio-weight (10..1000) set some of these too.
    """

    __slots__ = ("pids", "memory", "memory_swap", "memory_reservation", "cpus", "cpu_shares", "cpuset_cpus",
                 "cpu_period", "cpuset_mems", "memory_swappiness", "oom_kill_disable", "net_classid",
                 "net_priorities", "cpu_quota", "blkio_weight")
    _fields = {"pids": 2048, "memory": None, "memory_swap": None, "memory_reservation": None, "cpus": None,
               "cpu_shares": None, "cpuset_cpus": None, "cpu_period": None, "cpuset_mems": None,
               "memory_swappiness": None, "oom_kill_disable": None, "net_classid": None, "net_priorities": None,
               "cpu_quota": None, "blkio_weight": None}
    pids: int | None
    memory: int | None
    memory_swap: int | None
    memory_reservation: int | None
    cpus: float | None
    cpu_shares: int | None
    cpuset_cpus: str | None
    cpu_period: int | None
    cpuset_mems: str | None
    memory_swappiness: int | None
    oom_kill_disable: bool | None
    net_classid: int | None
    net_priorities: dict[str, int] | None
    cpu_quota: int | None
    blkio_weight: int | None


class Security(Frozen):
    """What the container may do: the privilege flags of `run`, checked and normalised.

    cap_add/cap_drop: capability names without CAP_, upper case, or "ALL". seccomp: "default" (the
    project's profile, oci/profile.py), "unconfined", or the path of a profile file, whose content is
    read once at create time into seccomp_profile (a later change of the file does not change the
    container, as with Docker). devices: spec linux.devices entries with the cgroup rule that allows
    each ("rule"). ulimits: spec rlimits. sysctls: {key: value}, namespaced keys only. userns: "auto",
    "host", or None (the default of /etc/pycontain/config).
    """

    __slots__ = ("cap_add", "cap_drop", "privileged", "seccomp", "seccomp_profile", "no_new_privs", "devices",
                 "ulimits", "sysctls", "userns")
    _fields = {"cap_add": (), "cap_drop": (), "privileged": False, "seccomp": "default", "seccomp_profile": None,
               "no_new_privs": True, "devices": (), "ulimits": (), "sysctls": {}, "userns": None}
    cap_add: tuple[str, ...]
    cap_drop: tuple[str, ...]
    privileged: bool
    seccomp: str
    seccomp_profile: dict[str, Any] | None
    no_new_privs: bool
    devices: tuple[dict[str, Any], ...]
    ulimits: tuple[dict[str, Any], ...]
    sysctls: dict[str, str]
    userns: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Security:
        data = dict(data)
        for key in ("cap_add", "cap_drop", "devices", "ulimits"):
            data[key] = tuple(data.get(key, ()))
        return cls(**data)

    def capabilities(self) -> list[str]:
        """The container's capability set (the spec's CAP_ names), as Docker computes it: --privileged
        gives every capability; --cap-add ALL every one but the dropped; --cap-drop ALL only the added;
        else the default set less the dropped, plus the added."""
        if self.privileged:
            caps = available_capabilities()
        elif "ALL" in self.cap_add:
            caps = available_capabilities() - set(self.cap_drop)
        elif "ALL" in self.cap_drop:
            caps = set(self.cap_add)
        else:
            caps = ({c[4:] for c in DEFAULT_CAPS} - set(self.cap_drop)) | set(self.cap_add)
        return ["CAP_" + c for c in sorted(caps, key=CAPABILITIES.__getitem__)]


def available_capabilities() -> set[str]:
    """"Every capability", as --privileged and --cap-add ALL mean it: those in pycontain's own bounding
    set (a container cannot be given what its runtime lacks: here, root without CAP_SYS_RESOURCE)."""
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith("CapBnd:"))
    bounding = int(line.split()[1], 16)
    return {name for name, bit in CAPABILITIES.items() if bounding >> bit & 1}


class ContainerConfig(Frozen):
    __slots__ = ("image", "command", "entrypoint", "name", "env", "workdir", "user", "hostname",
                 "interactive", "tty", "detach", "remove", "read_only", "network", "mounts", "limits", "ports",
                 "pull", "log_max_size", "log_max_files", "runtime", "security", "volumes_from", "init",
                 "stop_signal", "stop_timeout", "restart", "healthcheck", "ip", "network_aliases", "mac_address",
                 "dns", "dns_search", "dns_options", "add_hosts", "expose", "publish_all", "labels", "cidfile",
                 "pid", "ipc", "uts", "shm_size", "group_add", "log_driver")
    _fields = {
        "image": "", "command": (), "entrypoint": None, "name": None, "env": (), "workdir": None,
        "user": None, "hostname": None, "interactive": False, "tty": False, "detach": False,
        "remove": False, "read_only": False, "network": "none", "mounts": (), "limits": Limits(), "ports": (),
        "pull": "missing", "log_max_size": 10 * 1024 * 1024, "log_max_files": 3, "runtime": None,
        "security": Security(), "volumes_from": (), "init": None, "stop_signal": None, "stop_timeout": None,
        "restart": None, "healthcheck": None, "ip": None, "network_aliases": (), "mac_address": None, "dns": (),
        "dns_search": (), "dns_options": (), "add_hosts": (), "expose": (), "publish_all": False, "labels": {},
        "cidfile": None, "pid": None, "ipc": None, "uts": None, "shm_size": None, "group_add": (),
        "log_driver": None,
    }
    image: str
    command: tuple[str, ...]
    entrypoint: tuple[str, ...] | None
    name: str | None
    env: tuple[str, ...]
    workdir: str | None
    user: str | None
    hostname: str | None
    interactive: bool
    tty: bool
    detach: bool
    remove: bool
    read_only: bool
    network: str
    mounts: tuple[BindMount, ...]
    limits: Limits
    ports: tuple[PortMapping, ...]
    pull: str
    runtime: str | None
    log_max_size: int
    log_max_files: int
    security: Security
    volumes_from: tuple[str, ...]  # --volumes-from CONTAINER[:ro|rw], as given (its mounts are in `mounts`)
    init: bool | None  # --init: tini as PID 1 (None: not asked for, shown as Docker shows it: null)
    stop_signal: str | None  # --stop-signal, else the image's StopSignal (filled in at create), else SIGTERM
    stop_timeout: int | None  # --stop-timeout: `stop`'s default seconds before SIGKILL (-1: wait for ever)
    restart: dict[str, Any] | None  # --restart: {"name": "on-failure", "max_retries": 3}; None is "no"
    healthcheck: dict[str, Any] | None  # the check in force, in the image config's shape (filled in at create)
    ip: str | None  # --ip: the address asked for on a user network
    network_aliases: tuple[str, ...]  # --network-alias: more names in a user network's hosts file
    mac_address: str | None  # --mac-address of eth0 (else 02:42 and the address's octets)
    dns: tuple[str, ...]  # --dns: nameservers replacing the host's in resolv.conf
    dns_search: tuple[str, ...]  # --dns-search: the search domains ("." clears the host's)
    dns_options: tuple[str, ...]  # --dns-option: resolv.conf options
    add_hosts: tuple[str, ...]  # --add-host HOST:IP ("host-gateway" resolved when the files are written)
    expose: tuple[str, ...]  # --expose as "80/tcp" (ranges expanded)
    publish_all: bool  # -P: every exposed port on a free host port
    labels: dict[str, str]  # --label and --label-file (the image's labels under them, merged at create)
    cidfile: str | None  # --cidfile: written with the id at create (refused if it exists)
    pid: str | None  # --pid host | container:ID (the id resolved at create); None: its own
    ipc: str | None  # --ipc private | shareable | host | container:ID; None: private
    uts: str | None  # --uts host; None: its own
    shm_size: int | None  # --shm-size: bytes of the /dev/shm tmpfs (None: 64m, as Docker)
    group_add: tuple[str, ...]  # --group-add: more groups, by gid or by name in the image's /etc/group
    log_driver: str | None  # --log-driver json-file | none (None: the default, json-file)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ContainerConfig:
        data = dict(data)
        data["mounts"] = tuple(BindMount.from_json(m) for m in data.get("mounts", ()))
        data["volumes_from"] = tuple(data.get("volumes_from", ()))
        data["limits"] = Limits(**data.get("limits", {}))
        data["ports"] = tuple(PortMapping(**p) for p in data.get("ports", ()))
        data["security"] = Security.from_json(data.get("security") or {})
        for key in ("command", "env", "network_aliases", "dns", "dns_search", "dns_options", "add_hosts", "expose",
                    "group_add"):
            data[key] = tuple(data.get(key, ()))
        if data.get("entrypoint") is not None:
            data["entrypoint"] = tuple(data["entrypoint"])
        return cls(**data)

    def with_image_defaults(self, image_config: dict[str, Any], short_id: str) -> ResolvedConfig:
        """Fill in what the user did not say from the image's config, as Docker does."""
        img = image_config.get("config") or {}
        if self.entrypoint is not None:
            # --entrypoint replaces the image's entrypoint and, like Docker, drops the image's Cmd.
            argv = list(self.entrypoint) + list(self.command)
        else:
            argv = list(img.get("Entrypoint") or []) + list(self.command or img.get("Cmd") or [])
        if not argv:
            raise UsageError(f"no command given and image {self.image} has no default command")
        # With the host's network a container answers to the host's name, as with Docker (its own UTS
        # namespace still keeps a `hostname x` inside from renaming the host).
        hostname = self.hostname or (os.uname().nodename if "host" in (self.network, self.uts) else short_id)
        env = merge_env(list(img.get("Env") or []), list(self.env))
        if not any(e.startswith("PATH=") for e in env):
            env.insert(0, f"PATH={DEFAULT_PATH}")
        env = merge_env(env, [f"HOSTNAME={hostname}"] if not _has(env, "HOSTNAME") else [])
        if self.tty and not _has(env, "TERM"):
            env.append("TERM=xterm")
        return ResolvedConfig(
            argv=tuple(argv),
            env=tuple(env),
            workdir=self.workdir or img.get("WorkingDir") or "/",
            user=self.user if self.user is not None else (img.get("User") or ""),
            hostname=hostname,
        )


class ResolvedConfig(Frozen):
    """What actually runs: the user's config merged with the image's."""

    __slots__ = ("argv", "env", "workdir", "user", "hostname", "joins", "ids")
    _fields = {"argv": (), "env": (), "workdir": "/", "user": "", "hostname": "", "joins": {}, "ids": None}
    argv: tuple[str, ...]
    env: tuple[str, ...]
    workdir: str
    user: str
    hostname: str
    # Namespaces of another container it joins (--network/--ipc/--pid container:NAME): kind -> that
    # container's record directory; its PID (so the /proc/PID/ns path) is read at each start.
    joins: dict[str, str]
    # [uid, gid, [gids]] when --group-add asks for more groups: the user resolved at create from the
    # image's /etc/passwd and /etc/group (None: the executor resolves `user` by name in the container).
    ids: list[Any] | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ResolvedConfig:
        return cls(argv=tuple(data["argv"]), env=tuple(data["env"]), workdir=data["workdir"],
                   user=data["user"], hostname=data["hostname"], joins=data.get("joins") or {},
                   ids=data.get("ids"))


def _has(env: list[str], key: str) -> bool:
    return any(e.split("=", 1)[0] == key for e in env)


def merge_env(base: list[str], overrides: list[str]) -> list[str]:
    """Later KEY=VALUE entries replace earlier ones with the same KEY, keeping first position."""
    out: dict[str, str] = {}
    for item in base + overrides:
        key = item.split("=", 1)[0]
        out[key] = item
    return list(out.values())


def parse_env(items: list[str], environ: dict[str, str] | None = None) -> list[str]:
    """`-e KEY=VALUE` sets; `-e KEY` copies the host's value (skipped when the host has none)."""
    environ = os.environ if environ is None else environ  # type: ignore[assignment]
    out = []
    for item in items:
        key, sep, _ = item.partition("=")
        if not key or "\0" in item or any(c.isspace() for c in key):
            raise UsageError(f"invalid environment variable {item!r}: expected KEY=VALUE")
        if sep:
            out.append(item)
        elif key in environ:  # type: ignore[operator]
            out.append(f"{key}={environ[key]}")  # type: ignore[index]
    return out


def read_env_file(path: str) -> list[str]:
    """--env-file: one KEY=VALUE per line; blank lines and lines starting with # are skipped."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read --env-file {path}: {getattr(e, 'strerror', None) or e}") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


VOLUME_NAME_FIRST = _ALNUM
VOLUME_NAME_REST = _ALNUM | frozenset("_.-")
PROPAGATIONS = ("rprivate", "private", "rshared", "shared", "rslave", "slave")
# --tmpfs and --mount type=tmpfs: the options a tmpfs may take (flags, and key=value with a checked value).
TMPFS_FLAGS = frozenset(("ro", "rw", "noexec", "exec", "nosuid", "suid", "nodev", "dev", "sync", "async",
                         "dirsync", "noatime", "atime", "nodiratime", "diratime", "relatime", "norelatime",
                         "strictatime", "nostrictatime"))
TMPFS_NUMBERS = ("uid", "gid", "nr_inodes", "nr_blocks")


def valid_volume_name(name: str) -> bool:
    """Docker's rule for a volume name: [a-zA-Z0-9][a-zA-Z0-9_.-]*."""
    return bool(name) and name[0] in VOLUME_NAME_FIRST and set(name) <= VOLUME_NAME_REST and len(name) <= 255


def _target(path: str, what: str) -> str:
    if not path.startswith("/"):
        raise UsageError(f"invalid {what}: the container path must be absolute")
    target = os.path.normpath(path)
    if target == "/" or target.startswith("//"):
        target = "/" + target.lstrip("/")
    if target == "/":
        raise UsageError(f"invalid {what}: the container path cannot be /")
    return target


def _host_source(source: str, what: str) -> str:
    if not os.path.isabs(source):
        raise UsageError(f"invalid {what}: the host path must be absolute")
    if not os.path.exists(source):
        raise UsageError(f"invalid {what}: host path {source} does not exist")
    return os.path.realpath(source)


def parse_volume(spec: str) -> BindMount:
    """`-v /host/path:/ctr/path[:OPTS]` (a bind), `-v NAME:/ctr/path[:OPTS]` (a named volume, made on
    first use), `-v /ctr/path` (an anonymous volume). OPTS: ro or rw, nocopy (volumes), a propagation
    (binds), z/Z (accepted, no SELinux here). A source with no "/" that does not start with "." is a
    volume name, as Docker reads it."""
    what = f"volume {spec!r}"
    parts = spec.split(":")
    if "\0" in spec or len(parts) > 3 or not all(parts):
        raise UsageError(f"invalid {what}: expected /host/path:/container/path[:ro], NAME:/container/path[:ro] "
                         "or /container/path")
    if len(parts) == 1:
        return BindMount("", _target(parts[0], what), False, kind="volume")
    source, target = parts[0], _target(parts[1], what)
    words = parts[2].split(",") if len(parts) == 3 else []
    if source.startswith("/"):
        kind = "bind"
        source = _host_source(source, what)
    elif valid_volume_name(source):
        kind = "volume"
    else:
        raise UsageError(f"invalid {what}: {source!r} is neither an absolute host path nor a volume name "
                         "([a-zA-Z0-9][a-zA-Z0-9_.-]*)")
    readonly, options = False, []
    modes = [w for w in words if w in ("ro", "rw")]
    for word in words:
        if word in ("ro", "rw", "z", "Z"):
            continue
        if word == "nocopy" and kind == "volume":
            options.append(word)
        elif word in PROPAGATIONS and kind == "bind":
            options.append(word)
        else:
            raise UsageError(f"invalid volume mode {word!r} in {spec!r}: expected ro or rw"
                             + (", nocopy" if kind == "volume" else ", a propagation (rprivate, rshared, ...)"))
    if len(modes) > 1 or len([w for w in options if w in PROPAGATIONS]) > 1:
        raise UsageError(f"invalid {what}: conflicting modes {parts[2]!r}")
    readonly = modes == ["ro"]
    if kind == "volume":
        return BindMount("", target, readonly, kind="volume", name=source, options=tuple(options))
    return BindMount(source, target, readonly, options=tuple(options))


def _flag(value: str, key: str, what: str) -> bool:
    if value in ("", "1", "true"):
        return True
    if value in ("0", "false"):
        return False
    raise UsageError(f"invalid {what}: {key} takes true or false, not {value!r}")


def parse_mount(spec: str) -> BindMount:
    """`--mount type=bind|volume|tmpfs,source=..,target=..[,readonly][,...]`, Docker's keys."""
    what = f"--mount {spec!r}"
    fields: dict[str, str] = {}
    extra: list[str] = []
    for item in spec.split(","):
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not key:
            raise UsageError(f"invalid {what}: empty field")
        if key in ("volume-label", "volume-opt"):
            if "=" not in value or not value.partition("=")[0]:
                raise UsageError(f"invalid {what}: {key} takes KEY=VALUE")
            extra.append(f"{key}={value}")
            continue
        key = {"src": "source", "dst": "target", "destination": "target", "ro": "readonly"}.get(key, key)
        if key in fields:
            raise UsageError(f"invalid {what}: {key} given twice")
        if key not in ("type", "source", "target", "readonly", "bind-propagation", "bind-nonrecursive",
                       "volume-nocopy", "volume-driver", "tmpfs-size", "tmpfs-mode", "consistency"):
            raise UsageError(f"invalid {what}: unknown field {key!r}")
        if not eq and key not in ("readonly", "bind-nonrecursive", "volume-nocopy"):
            raise UsageError(f"invalid {what}: {key} needs a value ({key}=...)")
        fields[key] = value
    kind = fields.pop("type", "volume")
    if kind not in ("bind", "volume", "tmpfs"):
        raise UsageError(f"invalid {what}: type must be bind, volume or tmpfs")
    if not fields.get("target"):
        raise UsageError(f"invalid {what}: target is required")
    target = _target(fields.pop("target"), what)
    readonly = _flag(fields.pop("readonly"), "readonly", what) if "readonly" in fields else False
    fields.pop("consistency", None)  # a macOS hint, meaningless here (Docker ignores it on Linux too)
    for key in fields:
        if key != "source" and not key.startswith(kind + "-"):
            raise UsageError(f"invalid {what}: {key} is not an option of type={kind}")
    if extra and kind != "volume":
        raise UsageError(f"invalid {what}: volume-label and volume-opt need type=volume")
    source = fields.get("source", "")
    options: list[str] = []
    if kind == "bind":
        if not source:
            raise UsageError(f"invalid {what}: type=bind needs a source")
        if not os.path.isabs(source):
            raise UsageError(f"invalid {what}: the bind source must be an absolute host path")
        if not os.path.exists(source):
            raise UsageError(f"invalid {what}: bind source path does not exist: {source}")
        if "bind-propagation" in fields:
            if fields["bind-propagation"] not in PROPAGATIONS:
                raise UsageError(f"invalid {what}: bind-propagation must be one of " + ", ".join(PROPAGATIONS))
            options.append(fields["bind-propagation"])
        if "bind-nonrecursive" in fields and _flag(fields["bind-nonrecursive"], "bind-nonrecursive", what):
            options.append("nonrecursive")
        return BindMount(os.path.realpath(source), target, readonly, options=tuple(options))
    if kind == "tmpfs":
        if source:
            raise UsageError(f"invalid {what}: type=tmpfs takes no source")
        if "tmpfs-size" in fields:
            options.append(f"size={parse_bytes(fields['tmpfs-size'], 'tmpfs-size')}")
        if "tmpfs-mode" in fields:
            options.append(f"mode={_octal(fields['tmpfs-mode'], what)}")
        return BindMount("", target, readonly, kind="tmpfs", options=tuple(options))
    if source and not valid_volume_name(source):
        raise UsageError(f"invalid {what}: {source!r} is not a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)")
    if fields.get("volume-driver", "local") != "local":
        raise UsageError(f"invalid {what}: volume-driver: only the local driver exists here")
    if "volume-nocopy" in fields and _flag(fields["volume-nocopy"], "volume-nocopy", what):
        options.append("nocopy")
    return BindMount("", target, readonly, kind="volume", name=source, options=tuple(options + extra))


def _octal(text: str, what: str) -> str:
    if not text or not set(text) <= set("01234567") or int(text, 8) > 0o7777:
        raise UsageError(f"invalid {what}: mode must be octal permissions like 1777 or 0755")
    return f"{int(text, 8):o}"


def parse_tmpfs(spec: str) -> BindMount:
    """`--tmpfs /path[:OPTS]`, OPTS as mount(8) takes them for a tmpfs: size=64m, mode=1777, noexec, ..."""
    what = f"--tmpfs {spec!r}"
    path, _, opts = spec.partition(":")
    target = _target(path, what)
    options: list[str] = []
    readonly = False
    for word in opts.split(",") if opts else []:
        key, eq, value = word.partition("=")
        if not eq and key in TMPFS_FLAGS:
            if key in ("ro", "rw"):
                readonly = key == "ro"
            else:
                options.append(key)
        elif eq and key == "size":
            options.append(f"size={parse_bytes(value, '--tmpfs size')}")
        elif eq and key == "mode":
            options.append(f"mode={_octal(value, what)}")
        elif eq and key in TMPFS_NUMBERS and value.isdigit():
            options.append(f"{key}={int(value)}")
        else:
            raise UsageError(f"invalid {what}: unknown tmpfs option {word!r} (size=, mode=, uid=, gid=, "
                             "nr_inodes=, ro, noexec, exec, nosuid, nodev, ...)")
    return BindMount("", target, readonly, kind="tmpfs", options=tuple(options))


def parse_volumes_from(spec: str) -> str:
    """`--volumes-from CONTAINER[:ro|rw]`: checked here, resolved when the container is created."""
    ref, _, mode = spec.partition(":")
    if not ref or mode not in ("", "ro", "rw") or "/" in ref:
        raise UsageError(f"invalid --volumes-from {spec!r}: expected CONTAINER[:ro|rw]")
    return spec


def parse_mounts(volumes: list[str], mounts: list[str] = (), tmpfs: list[str] = ()  # type: ignore[assignment]
                 ) -> tuple[BindMount, ...]:
    """-v, --mount and --tmpfs together; two of them at one container path is an error, as in Docker."""
    out = [parse_volume(v) for v in volumes] if volumes else []
    if mounts:
        out += [parse_mount(m) for m in mounts]
    if tmpfs:
        out += [parse_tmpfs(t) for t in tmpfs]
    if len(out) > 1:
        seen = set()
        for m in out:
            if m.target in seen:
                raise UsageError(f"duplicate mount point: {m.target}")
            seen.add(m.target)
    return tuple(out)


def validate_name(name: str) -> str:
    if not name or name[0] not in _ALNUM or not set(name) <= _ALNUM | set("_.-") or len(name) > 128:
        raise UsageError(f"invalid container name {name!r}: use letters, digits, _ . - (first a letter or digit)")
    return name


def validate_hostname(name: str) -> str:
    if not name or name[0] not in _ALNUM or not set(name) <= _ALNUM | set(".-") or len(name) > 64:
        raise UsageError(f"invalid hostname {name!r}: use letters, digits, . and -, at most 64 characters")
    return name


def validate_workdir(path: str) -> str:
    if not os.path.isabs(path):
        raise UsageError(f"invalid working directory {path!r}: it must be an absolute path")
    return os.path.normpath(path)


def validate_network(mode: str) -> str:
    """none, host, bridge (the default bridge network), a network's name (checked when used), or
    container:NAME (that container's network namespace, resolved at create)."""
    if mode.startswith("container:"):
        ref = mode.partition(":")[2]
        if not ref or "/" in ref or not set(ref) <= _ALNUM | set("_.-"):
            raise UsageError(f"invalid --network {mode!r}: expected container:NAME")
        return mode
    if mode == "bridge":
        return "pycontain"
    if mode in NETWORK_MODES:
        return mode
    if not mode or mode[0] not in _ALNUM or not set(mode) <= _ALNUM | set("_.-") or len(mode) > 64:
        raise UsageError(f"invalid --network {mode!r}: use none, host, bridge or a network name")
    return mode


def parse_publish(spec: str) -> PortMapping:
    """-p 8080:80, -p 127.0.0.1:8080:80/udp, -p 80 (a free host port), -p 127.0.0.1::80."""
    text, _, proto = spec.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise UsageError(f"invalid -p {spec!r}: the protocol must be tcp or udp")
    parts = text.rsplit(":", 2)
    host_ip, host_port, ctr = ("", "", parts[-1]) if len(parts) == 1 else (
        ("", parts[0], parts[1]) if len(parts) == 2 else (parts[0], parts[1], parts[2]))
    host_ip = host_ip.strip("[]")

    def port(value: str, what: str, allow_zero: bool) -> int:
        if not value.isdigit() or not (0 if allow_zero else 1) <= int(value) <= 65535:
            raise UsageError(f"invalid -p {spec!r}: {what} must be a port number from 1 to 65535")
        return int(value)

    if host_ip:
        octets = host_ip.split(".")
        if len(octets) != 4 or not all(o.isdigit() and int(o) <= 255 for o in octets):
            raise UsageError(f"invalid -p {spec!r}: {host_ip!r} is not an IPv4 address")
    return PortMapping(host_ip=host_ip, host_port=port(host_port, "the host port", False) if host_port else 0,
                       container_port=port(ctr, "the container port", False), protocol=proto)



# ---------------------------------------------------------------- the rarer `run` flags (issue 13)
# Each is parsed only when given: the common `run` calls none of these.

def parse_ipv4(text: str, flag: str) -> str:
    octets = text.split(".")
    if len(octets) != 4 or not all(o.isdigit() and len(o) <= 3 and int(o) <= 255 for o in octets):
        raise UsageError(f"invalid {flag} {text!r}: expected an IPv4 address like 10.88.0.5")
    return ".".join(str(int(o)) for o in octets)


def _ip_address(text: str) -> bool:
    """An IPv4 or IPv6 address (inet_pton: no ipaddress import)."""
    import _socket

    for family in (_socket.AF_INET, _socket.AF_INET6):
        try:
            _socket.inet_pton(family, text)
            return True
        except OSError:
            continue
    return False


def parse_mac(text: str) -> str:
    """--mac-address 02:42:ac:11:00:02: six hex octets, a unicast address (the lowest bit of the first
    octet clear: the kernel refuses a multicast one for a link)."""
    octets = text.replace("-", ":").split(":")
    if len(octets) != 6 or not all(len(o) == 2 and set(o) <= set("0123456789abcdefABCDEF") for o in octets):
        raise UsageError(f"invalid --mac-address {text!r}: expected six hex octets like 02:42:ac:11:00:02")
    if int(octets[0], 16) & 1:
        raise UsageError(f"invalid --mac-address {text!r}: a multicast address (the first octet is odd)")
    if all(o == "00" for o in octets):
        raise UsageError(f"invalid --mac-address {text!r}: the all-zero address")
    return ":".join(octets).lower()


def parse_dns(text: str) -> str:
    if not _ip_address(text):
        raise UsageError(f"invalid --dns {text!r}: expected the IP address of a name server")
    return text


def parse_dns_search(text: str) -> str:
    if text == ".":
        return text  # as Docker: no search domains at all
    name = text.rstrip(".")
    if not name or len(name) > 253 or any(not part or len(part) > 63 or not set(part) <= _ALNUM | {"-", "_"}
                                          for part in name.split(".")):
        raise UsageError(f"invalid --dns-search {text!r}: expected a domain name like example.com (or .)")
    return name


def parse_dns_option(text: str) -> str:
    if not text or any(c.isspace() for c in text) or not text.isprintable():
        raise UsageError(f"invalid --dns-option {text!r}: expected one resolv.conf option like ndots:2")
    return text


def parse_add_host(text: str) -> str:
    """--add-host HOST:IP (or HOST=IP), IP v4 or v6, or the word host-gateway; kept as "HOST:IP"."""
    sep = "=" if "=" in text else ":"
    host, _, address = text.partition(sep)
    address = address.strip("[]")
    if not host or len(host) > 255 or not set(host) <= _ALNUM | set("_.-") or host[0] in ".-":
        raise UsageError(f"invalid --add-host {text!r}: expected HOST:IP, e.g. db:10.0.0.2 or gw:host-gateway")
    if address != "host-gateway" and not _ip_address(address):
        raise UsageError(f"invalid --add-host {text!r}: {address!r} is not an IP address (or host-gateway)")
    return f"{host}:{address}"


def parse_expose(text: str) -> list[str]:
    """--expose 80, 80/udp, 8000-8010/tcp -> ["80/tcp"] and so on (a range, one entry a port)."""
    ports, _, proto = text.partition("/")
    proto = proto or "tcp"
    first, dash, last = ports.partition("-")
    if proto not in ("tcp", "udp", "sctp") or not first.isdigit() or (dash and not last.isdigit()):
        raise UsageError(f"invalid --expose {text!r}: expected PORT[-PORT][/tcp|udp], e.g. 80 or 8000-8010/udp")
    lo, hi = int(first), int(last if dash else first)
    if not 1 <= lo <= hi <= 65535:
        raise UsageError(f"invalid --expose {text!r}: ports run from 1 to 65535, the first of a range lowest")
    return [f"{port}/{proto}" for port in range(lo, hi + 1)]


def parse_network_alias(text: str) -> str:
    if not text or text[0] not in _ALNUM or not set(text) <= _ALNUM | set("_.-") or len(text) > 64:
        raise UsageError(f"invalid --network-alias {text!r}: use letters, digits, _ . - (first a letter or digit)")
    return text


def parse_labels(items: list[str], files: list[str]) -> dict[str, str]:
    """--label-file (lines of K=V, # comments) then --label K=V (K alone: an empty value), as Docker
    reads them; later ones win."""
    lines: list[tuple[str, str]] = []
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read(1 << 20)
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read --label-file {path}: {getattr(e, 'strerror', None) or e}") from None
        lines += [(f"--label-file {path}", line.strip()) for line in text.splitlines()
                  if line.strip() and not line.lstrip().startswith("#")]
    lines += [("--label", item) for item in items]
    out: dict[str, str] = {}
    for what, item in lines:
        key, _, value = item.partition("=")
        if not key.strip() or "\0" in item or any(c.isspace() for c in key):
            raise UsageError(f"invalid {what} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def parse_namespace_mode(value: str, flag: str, allowed: tuple[str, ...]) -> str:
    """--pid/--ipc/--uts: one of `allowed`, or container:NAME where "container:" is among them."""
    kind, sep, ref = value.partition(":")
    if sep and "container:" in allowed and kind == "container" and ref and "/" not in ref:
        return value
    if not sep and value in allowed:
        return value
    raise UsageError(f"invalid {flag} {value!r}: use " + ", ".join(a + ("NAME" if a.endswith(":") else "")
                                                               for a in allowed))


def parse_shm_size(text: str) -> int:
    size = parse_bytes(text, "--shm-size")
    if size < 4096:
        raise UsageError(f"invalid --shm-size {text!r}: at least 4k")
    return size


def parse_group(text: str) -> str:
    if text.isdigit() and int(text) < 1 << 32:
        return str(int(text))
    if not text or text[0] in "-." or not set(text) <= _ALNUM | set("_.-$") or len(text) > 64:
        raise UsageError(f"invalid --group-add {text!r}: a group name of the image's /etc/group, or a gid")
    return text


def host_platform() -> str:
    """This host's platform in Docker's words: linux/amd64, linux/arm64 ..."""
    machine = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "arm64", "i686": "386", "armv7l": "arm/v7", "ppc64le": "ppc64le",
            "s390x": "s390x", "riscv64": "riscv64"}.get(machine, machine)
    return f"linux/{arch}"


def validate_platform(text: str) -> str:
    """--platform: only this host's (pycontain runs images natively, no emulation)."""
    here = host_platform()
    value = text.strip().lower()
    aliases = {here, here.split("/", 1)[1], "linux"}
    if here == "linux/amd64":
        aliases |= {"linux/x86_64", "x86_64", "linux/amd64/v1"}
    if value not in aliases:
        raise UsageError(f"invalid --platform {text!r}: this host runs only {here} images (no emulation)")
    return here


LOG_DRIVERS = ("json-file", "none")


def validate_log_driver(text: str) -> str:
    if text not in LOG_DRIVERS:
        raise UsageError(f"invalid --log-driver {text!r}: use json-file (the default) or none")
    return text


def parse_extra_limits(limits: Limits, swappiness: str | None = None, oom_kill_disable: bool = False,
                       cpu_period: str | None = None, cpu_quota: str | None = None,
                       blkio_weight: str | None = None) -> Limits:
    """--memory-swappiness, --oom-kill-disable, --cpu-period, --cpu-quota, --blkio-weight over `limits`,
    checked as Docker checks them (--cpus conflicts with the two CFS flags)."""
    out: dict[str, Any] = limits.to_json()

    def whole(text: str, flag: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise UsageError(f"invalid {flag} {text!r}: expected a whole number") from None

    if swappiness is not None:
        value = whole(swappiness, "--memory-swappiness")
        if not -1 <= value <= 100:
            raise UsageError(f"invalid --memory-swappiness {swappiness!r}: use 0 to 100 (-1: the host's)")
        out["memory_swappiness"] = None if value == -1 else value
    if oom_kill_disable:
        out["oom_kill_disable"] = True
    if (cpu_period is not None or cpu_quota is not None) and out["cpus"] is not None:
        raise UsageError("conflicting options: --cpus and --cpu-period/--cpu-quota (give one or the other)")
    if cpu_period is not None:
        value = whole(cpu_period, "--cpu-period")
        if value and not 1000 <= value <= 1_000_000:
            raise UsageError(f"invalid --cpu-period {cpu_period!r}: use 1000 to 1000000 microseconds")
        out["cpu_period"] = value or None
    if cpu_quota is not None:
        value = whole(cpu_quota, "--cpu-quota")
        if value > 0 and value < 1000:
            raise UsageError(f"invalid --cpu-quota {cpu_quota!r}: at least 1000 microseconds (-1 or 0: none)")
        if value > 0:
            out["cpu_quota"] = value
            out["cpus"] = value / (out["cpu_period"] or 100_000)
    if blkio_weight is not None:
        value = whole(blkio_weight, "--blkio-weight")
        if value and not 10 <= value <= 1000:
            raise UsageError(f"invalid --blkio-weight {blkio_weight!r}: use 10 to 1000 (0: none)")
        out["blkio_weight"] = value or None
    return Limits(**out)



_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
MIN_MEMORY = 6 << 20  # below this a container cannot even start its command


def parse_bytes(text: str, flag: str) -> int:
    """Docker's memory units: 512m, 1g, 1.5g, 1024k, 65536 (bytes); case-insensitive, optional 'b'/'ib'."""
    value = text.strip().lower()
    for suffix in ("ib", "b"):
        if value.endswith(suffix) and len(value) > len(suffix) and value[-len(suffix) - 1] in "kmgt":
            value = value[: -len(suffix)]
            break
    unit = value[-1] if value and value[-1] in "kmgtb" else ""
    number = value[: -1] if unit else value
    try:
        amount = float(number)
    except ValueError:
        raise UsageError(f"invalid {flag} {text!r}: expected a size like 512m or 1g") from None
    if amount <= 0 or amount != amount or amount == float("inf"):
        raise UsageError(f"invalid {flag} {text!r}: must be positive")
    return int(amount * _UNITS[unit])


def parse_limits(memory: str | None = None, memory_swap: str | None = None, memory_reservation: str | None = None,
                 cpus: str | None = None, cpu_shares: str | None = None, cpuset_cpus: str | None = None,
                 pids: str | None = None, base: Limits | None = None) -> Limits:
    """Validate the resource flags as Docker does; values not given keep `base`'s."""
    out: dict[str, Any] = (base or Limits()).to_json()
    if memory is not None:
        out["memory"] = parse_bytes(memory, "--memory")
        if out["memory"] < MIN_MEMORY:
            raise UsageError(f"invalid --memory {memory!r}: the minimum is 6m")
    if memory_swap is not None:
        out["memory_swap"] = -1 if memory_swap.strip() == "-1" else parse_bytes(memory_swap, "--memory-swap")
    if out["memory_swap"] not in (None, -1):
        if out["memory"] is None:
            raise UsageError("--memory-swap needs --memory as well")
        if out["memory_swap"] < out["memory"]:
            raise UsageError("--memory-swap must be at least --memory (it counts memory plus swap)")
    if memory_reservation is not None:
        out["memory_reservation"] = parse_bytes(memory_reservation, "--memory-reservation")
    if out["memory_reservation"] is not None and out["memory"] is not None \
            and out["memory_reservation"] > out["memory"]:
        raise UsageError("--memory-reservation must not exceed --memory")
    if cpus is not None:
        try:
            value = float(cpus)
        except ValueError:
            raise UsageError(f"invalid --cpus {cpus!r}: expected a number like 1.5") from None
        ncpu = os.cpu_count() or 1
        if not 0.01 <= value <= ncpu:
            raise UsageError(f"invalid --cpus {cpus!r}: use a number between 0.01 and {ncpu} (this host's CPUs)")
        out["cpus"], out["cpu_quota"] = value, None  # `update --cpus` replaces a --cpu-quota
    if cpu_shares is not None:
        if not cpu_shares.isdigit() or not 2 <= int(cpu_shares) <= 262144:
            raise UsageError(f"invalid --cpu-shares {cpu_shares!r}: use a whole number from 2 to 262144")
        out["cpu_shares"] = int(cpu_shares)
    if cpuset_cpus is not None:
        out["cpuset_cpus"] = validate_cpuset(cpuset_cpus)
    if pids is not None:
        try:
            n = int(pids)
        except ValueError:
            raise UsageError(f"invalid --pids-limit {pids!r}: expected a whole number") from None
        if n == 0 or n < -1:
            raise UsageError(f"invalid --pids-limit {n}: use a positive number, or -1 for no limit")
        out["pids"] = None if n == -1 else n
    return Limits(**out)


def validate_cpuset(text: str) -> str:
    ncpu = os.cpu_count() or 1
    try:
        for part in text.split(","):
            first, _, last = part.partition("-")
            lo, hi = int(first), int(last or first)
            if not 0 <= lo <= hi < ncpu:
                raise ValueError
    except ValueError:
        raise UsageError(f"invalid --cpuset-cpus {text!r}: use CPU numbers from 0 to {ncpu - 1}, like 0-1,3") from None
    return text


PULL_POLICIES = ("missing", "never", "always")
RESTART_POLICIES = ("no", "on-failure", "always", "unless-stopped")


def parse_restart(text: str) -> dict[str, Any] | None:
    """--restart no | on-failure[:N] | always | unless-stopped, as Docker spells them (None: no)."""
    name, sep, count = text.partition(":")
    if name not in RESTART_POLICIES or (sep and name != "on-failure"):
        raise UsageError(f"invalid --restart {text!r}: use no, on-failure[:MAX_RETRIES], always or unless-stopped")
    if sep and (not count.isdigit() or len(count) > 9):
        raise UsageError(f"invalid --restart {text!r}: the maximum retry count must be a whole number")
    if name == "no":
        return None
    return {"name": name, "max_retries": int(count) if sep else 0}


_DURATION_UNITS = {"ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
                   "m": 60_000_000_000, "h": 3_600_000_000_000}


def parse_duration(text: str, flag: str) -> int:
    """A Go duration (what Docker's --health-* flags take): 30s, 1m30s, 1.5h, 500ms; in nanoseconds."""
    rest = text.strip()
    if rest == "0":
        return 0
    total = 0.0
    bad = UsageError(f"invalid {flag} {text!r}: expected a duration like 30s, 1m30s or 500ms")
    if not rest:
        raise bad
    while rest:
        i = 0
        while i < len(rest) and (rest[i].isdigit() or rest[i] == "."):
            i += 1
        j = i
        while j < len(rest) and not (rest[j].isdigit() or rest[j] == "."):
            j += 1
        number, unit, rest = rest[:i], rest[i:j], rest[j:]
        if unit not in _DURATION_UNITS:
            raise bad
        try:
            total += float(number) * _DURATION_UNITS[unit]
        except ValueError:
            raise bad from None
    return int(total)


def parse_healthcheck(cmd: str | None, interval: str | None, timeout: str | None, retries: str | None,
                      start_period: str | None, disabled: bool) -> dict[str, Any] | None:
    """The --health-* flags as a Healthcheck in the image config's shape (durations in ns): only the
    fields given, merged over the image's at create (merge_healthcheck). None: no flag given."""
    given = {"Interval": interval, "Timeout": timeout, "StartPeriod": start_period}
    if disabled:
        if cmd is not None or retries is not None or any(v is not None for v in given.values()):
            raise UsageError("--no-healthcheck conflicts with the --health-* options")
        return {"Test": ["NONE"]}
    out: dict[str, Any] = {}
    if cmd is not None:
        if not cmd.strip():
            raise UsageError("--health-cmd is empty: give a command, or --no-healthcheck to disable the image's")
        out["Test"] = ["CMD-SHELL", cmd]
    flags = {"Interval": "--health-interval", "Timeout": "--health-timeout", "StartPeriod": "--health-start-period"}
    for key, value in given.items():
        if value is not None:
            ns = parse_duration(value, flags[key])
            if 0 < ns < 1_000_000 or ns < 0:
                raise UsageError(f"invalid {flags[key]} {value!r}: it must be at least 1ms (or 0 for the default)")
            out[key] = ns
    if retries is not None:
        if not retries.isdigit() or len(retries) > 9:
            raise UsageError(f"invalid --health-retries {retries!r}: expected a whole number")
        out["Retries"] = int(retries)
    return out or None


def merge_healthcheck(image: Any, flags: dict[str, Any] | None) -> dict[str, Any] | None:
    """The check a container runs: the image's HEALTHCHECK with the flags' fields over it, as Docker
    merges them; {"Test": ["NONE"]} when disabled; None when there is none."""
    base = dict(image) if isinstance(image, dict) and image.get("Test") else {}
    if flags is not None and flags.get("Test") == ["NONE"]:
        return {"Test": ["NONE"]}
    merged = {**base, **(flags or {})}
    return merged if merged.get("Test") else None


def validate_stop_signal(text: str) -> str:
    """--stop-signal: a signal by name or number, kept as the user wrote it (checked here)."""
    parse_signal(text)
    return text


def parse_stop_timeout(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"invalid --stop-timeout {text!r}: expected whole seconds (-1: wait for ever)") from None
    if value < -1:
        raise UsageError(f"invalid --stop-timeout {text!r}: use whole seconds, or -1 to wait for ever")
    return value


def validate_pull(policy: str | None) -> str:
    """--pull; PYCONTAIN_PULL sets the default (the test suite sets `never`: it must never go online)."""
    value = policy or os.environ.get("PYCONTAIN_PULL") or "missing"
    if value not in PULL_POLICIES:
        raise UsageError(f"invalid --pull {value!r}: use missing, never or always")
    return value


def validate_runtime(name: str | None) -> str | None:
    """--runtime (PYCONTAIN_RUNTIME sets the default): pycontain's own executor (None), or another OCI
    runtime by name on $PATH (runc, crun) or by absolute path, resolved now to the file that will run."""
    value = name or os.environ.get("PYCONTAIN_RUNTIME") or "pycontain"
    if value == "pycontain":
        return None
    if "/" in value:
        if not os.path.isabs(value):
            raise UsageError(f"invalid --runtime {value!r}: give a name on $PATH or an absolute path")
        path: str | None = value
    else:
        import shutil

        path = shutil.which(value)
    if not path or not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise UsageError(f"invalid --runtime {value!r}: no such executable OCI runtime")
    return os.path.realpath(path)


def parse_log_opts(items: list[str]) -> dict[str, int]:
    """`--log-opt max-size=10m` and `--log-opt max-file=3`: the rotation of a detached container's log."""
    out: dict[str, int] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if key == "max-size" and sep:
            out["log_max_size"] = parse_bytes(value, "--log-opt max-size")
            if out["log_max_size"] < 4096:
                raise UsageError(f"invalid --log-opt {item!r}: max-size must be at least 4k")
        elif key == "max-file" and sep:
            if not value.isdigit() or not 1 <= int(value) <= 100:
                raise UsageError(f"invalid --log-opt {item!r}: max-file must be a number from 1 to 100")
            out["log_max_files"] = int(value)
        else:
            raise UsageError(f"invalid --log-opt {item!r}: expected max-size=SIZE or max-file=N")
    return out


# --ulimit names, as Docker spells them, and the spec's rlimit each one is.
ULIMITS = {"as": "RLIMIT_AS", "core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA",
           "fsize": "RLIMIT_FSIZE", "locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK",
           "msgqueue": "RLIMIT_MSGQUEUE", "nice": "RLIMIT_NICE", "nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC",
           "rss": "RLIMIT_RSS", "rtprio": "RLIMIT_RTPRIO", "rttime": "RLIMIT_RTTIME",
           "sigpending": "RLIMIT_SIGPENDING", "stack": "RLIMIT_STACK"}
RLIM_INFINITY = 2**64 - 1
# Sysctls a container may set: those of a namespace it has its own of (IPC, network, UTS), as Docker
# allows them. Everything else under /proc/sys is the host's.
IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax",
               "kernel.shmmni", "kernel.shm_rmid_forced")
USERNS_MODES = ("auto", "host")
CONFIG = "/etc/pycontain/config"  # host-wide defaults (like Docker's daemon.json): `key = value` lines
CONFIG_ENV = "PYCONTAIN_CONFIG"  # another config file (tests; a second installation)


def parse_capability(name: str, flag: str) -> str:
    """`--cap-add net_admin`, `CAP_NET_ADMIN`, `ALL` -> "NET_ADMIN" / "ALL"."""
    value = name.strip().upper()
    value = value[4:] if value.startswith("CAP_") else value
    if value != "ALL" and value not in CAPABILITIES:
        raise UsageError(f"invalid {flag} {name!r}: not a capability (e.g. NET_ADMIN, CAP_SYS_TIME, ALL)")
    return value


def parse_ulimit(text: str) -> dict[str, Any]:
    """`--ulimit nofile=1024:2048`, `--ulimit core=-1` (-1: unlimited; one number sets soft and hard)."""
    name, sep, values = text.partition("=")
    if not sep or name not in ULIMITS:
        raise UsageError(f"invalid --ulimit {text!r}: expected NAME=SOFT[:HARD] with NAME one of "
                         + ", ".join(sorted(ULIMITS)))
    soft_text, _, hard_text = values.partition(":")
    try:
        soft, hard = (int(v) for v in (soft_text, hard_text or soft_text))
    except ValueError:
        raise UsageError(f"invalid --ulimit {text!r}: the limits must be whole numbers (-1: unlimited)") from None
    if soft < -1 or hard < -1:
        raise UsageError(f"invalid --ulimit {text!r}: a limit must be -1 (unlimited) or at least 0")
    soft, hard = (RLIM_INFINITY if v == -1 else v for v in (soft, hard))
    if soft > hard:
        raise UsageError(f"invalid --ulimit {text!r}: the soft limit is above the hard limit")
    return {"type": ULIMITS[name], "soft": soft, "hard": hard}


def parse_sysctl(text: str, network: str) -> tuple[str, str]:
    """`--sysctl net.ipv4.ip_forward=1`: only keys of a namespace the container has its own of."""
    key, sep, value = text.partition("=")
    key = key.strip().replace("/", ".")
    if not sep or not key or ".." in key or key.startswith(".") or key.endswith(".") or "\0" in text:
        raise UsageError(f"invalid --sysctl {text!r}: expected KEY=VALUE, e.g. net.ipv4.ip_forward=1")
    if key.startswith("net."):
        if network == "host":
            raise UsageError(f"invalid --sysctl {key}: the container shares the host's network namespace "
                             "(--network host), so this would change the host")
    elif key not in IPC_SYSCTLS and not key.startswith("fs.mqueue.") and key not in ("kernel.domainname",):
        raise UsageError(f"invalid --sysctl {key}: not a namespaced sysctl, so it would change the host; "
                         "allowed: net.*, fs.mqueue.*, kernel.domainname, " + ", ".join(IPC_SYSCTLS))
    return key, value


def read_config(path: str | None = None) -> dict[str, str]:
    """/etc/pycontain/config (or $PYCONTAIN_CONFIG): `key = value` lines, `#` comments. Missing: {}."""
    path = path or os.environ.get(CONFIG_ENV) or CONFIG
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(1 << 20)
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    values = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        key, eq, value = line.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"{path}:{number}: expected `key = value`, got {line!r}")
        values[key.strip()] = value.strip()
    return values


def default_mode(path: str | None = None) -> str:
    """The userns mode of a container started without --userns: the config's `userns`, else host."""
    value = read_config(path).get("userns", "host")
    if value not in USERNS_MODES:
        raise UsageError(f"{path or os.environ.get(CONFIG_ENV) or CONFIG}: userns = {value!r}: use auto or host")
    return value


def mode(value: str | None) -> str:
    """The mode a container gets: its --userns flag (ContainerConfig.security.userns) or the default."""
    if value is None:
        return default_mode()
    if value not in USERNS_MODES:
        raise UsageError(f"invalid --userns {value!r}: use auto or host")
    return value


def parse_signal(text: str) -> int:
    """A signal by name (TERM, SIGTERM, any case) or number; UsageError otherwise."""
    import signal

    if text.isdigit() and 0 < int(text) < signal.NSIG:
        return int(text)
    name = text.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    value = getattr(signal, name, None)
    if not isinstance(value, int) or name.startswith("SIG_"):
        raise UsageError(f"invalid signal {text!r}: use a name like TERM or KILL, or a number")
    return int(value)
