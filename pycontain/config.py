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
    """`-v SOURCE:TARGET[:ro]`: a host path bound into the container."""

    __slots__ = ("source", "target", "readonly")
    _fields = {"source": "", "target": "", "readonly": False}
    source: str
    target: str
    readonly: bool


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
    """

    __slots__ = ("pids", "memory", "memory_swap", "memory_reservation", "cpus", "cpu_shares", "cpuset_cpus",
                 "cpu_period", "cpuset_mems", "memory_swappiness", "oom_kill_disable", "net_classid",
                 "net_priorities")
    _fields = {"pids": 2048, "memory": None, "memory_swap": None, "memory_reservation": None, "cpus": None,
               "cpu_shares": None, "cpuset_cpus": None, "cpu_period": None, "cpuset_mems": None,
               "memory_swappiness": None, "oom_kill_disable": None, "net_classid": None, "net_priorities": None}
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


class ContainerConfig(Frozen):
    __slots__ = ("image", "command", "entrypoint", "name", "env", "workdir", "user", "hostname",
                 "interactive", "tty", "detach", "remove", "read_only", "network", "mounts", "limits", "ports",
                 "pull", "log_max_size", "log_max_files", "runtime")
    _fields = {
        "image": "", "command": (), "entrypoint": None, "name": None, "env": (), "workdir": None,
        "user": None, "hostname": None, "interactive": False, "tty": False, "detach": False,
        "remove": False, "read_only": False, "network": "none", "mounts": (), "limits": Limits(), "ports": (),
        "pull": "missing", "log_max_size": 10 * 1024 * 1024, "log_max_files": 3, "runtime": None,
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

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ContainerConfig:
        data = dict(data)
        data["mounts"] = tuple(BindMount(**m) for m in data.get("mounts", ()))
        data["limits"] = Limits(**data.get("limits", {}))
        data["ports"] = tuple(PortMapping(**p) for p in data.get("ports", ()))
        for key in ("command", "env"):
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
        hostname = self.hostname or short_id
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

    __slots__ = ("argv", "env", "workdir", "user", "hostname")
    _fields = {"argv": (), "env": (), "workdir": "/", "user": "", "hostname": ""}
    argv: tuple[str, ...]
    env: tuple[str, ...]
    workdir: str
    user: str
    hostname: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ResolvedConfig:
        return cls(argv=tuple(data["argv"]), env=tuple(data["env"]), workdir=data["workdir"],
                   user=data["user"], hostname=data["hostname"])


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


def parse_volume(spec: str) -> BindMount:
    """`-v /host/path:/container/path[:ro|rw]`."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise UsageError(f"invalid volume {spec!r}: expected /host/path:/container/path[:ro]")
    source, target = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise UsageError(f"invalid volume mode {mode!r} in {spec!r}: expected ro or rw")
    if not os.path.isabs(source):
        raise UsageError(f"invalid volume {spec!r}: the host path must be absolute (named volumes are not supported)")
    if not os.path.isabs(target):
        raise UsageError(f"invalid volume {spec!r}: the container path must be absolute")
    if not os.path.exists(source):
        raise UsageError(f"invalid volume {spec!r}: host path {source} does not exist")
    return BindMount(os.path.realpath(source), os.path.normpath(target), mode == "ro")


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
    """none, host, bridge (the default bridge network), or a network's name (checked when used)."""
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
        out["cpus"] = value
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
