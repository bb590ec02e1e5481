"""`pycontain doctor`: check this host before class, one line per check, each with the fix.

Every check reads what the kernel and the state root already say (/proc, /sys/fs/cgroup, /etc/subuid,
the records) and changes nothing; three probes make a short-lived kernel object and drop it at once: a
detached idmapped bind mount (closed, so it never appears in any mount table), a one-instruction BPF
device program on cgroup v2 (freed when its descriptor closes), and libseccomp loaded into this process.
`nft` is run once (`nft -j list tables`). No network, no subprocess module: the whole run is meant to
stay under 300 ms, most of which is Python starting.

A check is "ok", "warning" (works, but something a lesson or flag relies on is absent or degraded) or
"missing" (something is absent). Only a *required* check that is missing makes `run` fail, and only that
makes the exit status 1. Each probe runs on its own: one that fails unexpectedly becomes a warning line
saying it could not check, never a traceback, and the other checks still run.

The probes take their file locations from a Host, so the unit tests point them at fake /proc, cgroup and
/etc trees; production always uses the real ones (there is no environment switch for that).
"""

from __future__ import annotations

import os
import sys

from pycontain.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

    from pycontain.state import Paths

OK, WARNING, MISSING = "ok", "warning", "missing"
GC_FIX = "run `pycontain gc`"
GIB = 1 << 30
WARN_FREE = 1 * GIB  # below this a pull, a build or a few containers' writes may fill the disk
MIN_FREE = 16 << 20  # below this even a record and a log may not fit: `run` fails
# openat2(2) (5.6) opens every path inside an image (mounts.py); pidfd_open (5.3) and the new mount API
# (5.2) are used on the same path. The probe below tries openat2 itself, so a backport counts as well.
MIN_KERNEL = (5, 6)
# overlayfs accepts idmapped lower layers from 5.19 on; older kernels make pycontain copy the layers.
IDMAP_OVERLAY_KERNEL = (5, 19)
# The namespaces every `run` creates (namespaces.RUN_FLAGS, the network and the cgroup namespace); user and
# time are used only when asked for.
REQUIRED_NS = ("mnt", "pid", "uts", "ipc", "net", "cgroup")
OPTIONAL_NS = ("user", "time")
# (controller, what pycontain uses it for, required): required ones are those without which a container
# would not start (v1 devices, v2 pids.max is always written) or a limit the README promises would be
# silently ignored (memory, pids).
CONTROLLER_USE = {
    "pids": ("--pids-limit", True),
    "memory": ("--memory and the OOM killer", True),
    "cpu": ("--cpus, --cpu-shares", False),
    "cpuacct": ("CPU time in `stats`", False),
    "blkio": ("--blkio-weight, block I/O in `stats`", False),
    "io": ("--blkio-weight, block I/O in `stats`", False),
    "cpuset": ("--cpuset-cpus", False),
    "freezer": ("`pause`", False),
    "devices": ("device access rules, for every container", True),
}


class Check:
    """One line of the report."""

    __slots__ = ("name", "status", "detail", "fix", "required")

    def __init__(self, name: str, status: str, detail: str, fix: str = "", required: bool = False) -> None:
        self.name, self.status, self.detail, self.fix, self.required = name, status, detail, fix, required

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix,
                "required": self.required}

    def __repr__(self) -> str:
        return f"Check({self.name!r}, {self.status!r}, {self.detail!r}, {self.fix!r}, {self.required!r})"


class Host:
    """Where the probes look, and the few probes that call into the kernel; unit tests replace either."""

    def __init__(self, proc: str = "/proc", cgroup_root: str = "/sys/fs/cgroup", subuid: str = "/etc/subuid",
                 subgid: str = "/etc/subgid", modules: str = "/lib/modules", release: str | None = None,
                 machine: str | None = None, config: str | None = None,
                 environ: dict[str, str] | None = None) -> None:
        uname = os.uname()
        self.proc, self.cgroup_root, self.subuid, self.subgid = proc, cgroup_root, subuid, subgid
        self.modules = modules
        self.release = uname.release if release is None else release
        self.machine = uname.machine if machine is None else machine
        self.config = config  # None: $PYCONTAIN_CONFIG or /etc/pycontain/config, as every create reads it
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.openat2: Callable[[], None] = probe_openat2
        self.idmap: Callable[[str], None] = probe_idmap
        self.bpf_device: Callable[[], None] = probe_bpf_device
        self.libseccomp: Callable[[], None] = probe_libseccomp
        self.nft: Callable[[], str] = probe_nft

    def read(self, path: str) -> str | None:
        """A small text file, or None if it cannot be read."""
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return f.read(1 << 20)
        except OSError:
            return None

    def default_network(self) -> str:
        # As `run` picks it (cli.py): PYCONTAIN_NETWORK, else Docker's default bridge.
        return self.environ.get("PYCONTAIN_NETWORK") or "bridge"


# ---------------------------------------------------------------- kernel probes (the real ones)

def probe_openat2() -> None:
    from pycontain import syscalls

    os.close(syscalls.openat2(syscalls.AT_FDCWD, "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC,
                              syscalls.RESOLVE_IN_ROOT, what="/"))


def probe_idmap(directory: str) -> None:
    """What `--userns=auto` does to each image layer (userns.idmapped_layers: a read-only, idmapped,
    detached bind mount), done to `directory` and closed at once: a detached mount goes with its last
    descriptor, so nothing is left. The mapping is one id (container root -> nobody): any will do."""
    from pycontain import userns

    mapping = [{"containerID": 0, "hostID": 65534, "size": 1}]
    for _, fd in userns.idmapped_layers([directory], mapping, mapping):
        os.close(fd)


def probe_bpf_device() -> None:
    """Load (and free) a device program that allows everything: what cgroups/v2.py attaches per container."""
    import struct

    from pycontain import syscalls

    insns = struct.pack("<BBhi", 0xB7, 0, 0, 1) + struct.pack("<BBhi", 0x95, 0, 0, 0)  # r0 = 1; exit
    os.close(syscalls.bpf_prog_load(syscalls.BPF_PROG_TYPE_CGROUP_DEVICE, insns))


def probe_libseccomp() -> None:
    from pycontain import syscalls

    syscalls.libseccomp()


def probe_nft() -> str:
    from pycontain.network import nat

    return nat.run([], ("list", "tables"))


# ---------------------------------------------------------------- checks

def _version(release: str) -> tuple[int, ...]:
    parts = []
    for piece in release.split("-", 1)[0].split(".")[:3]:
        digits = ""
        for c in piece:
            if not c.isdigit():
                break
            digits += c
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _dotted(v: tuple[int, ...]) -> str:
    return ".".join(map(str, v))


def check_root() -> Check:
    uid = os.geteuid()
    if uid != 0:
        return Check("root", MISSING, f"running as uid {uid}: containers need root's capabilities",
                     "sudo pycontain doctor (and sudo for every pycontain command)", True)
    return Check("root", OK, "running as uid 0", required=True)


def check_kernel(host: Host) -> Check:
    version = _version(host.release)
    detail = f"Linux {host.release} ({host.machine})"
    try:
        host.openat2()
    except OSError as e:
        # On a new enough kernel, something filters the call: a seccomp profile (pycontain run inside a
        # container) or a security module.
        fix = f"boot a kernel >= {_dotted(MIN_KERNEL)}" if version < MIN_KERNEL else \
            "run pycontain on the host, not inside a container whose seccomp profile blocks openat2"
        return Check("kernel", MISSING, f"{detail}; openat2(2) fails: {e.strerror or e}", fix, True)
    if version < MIN_KERNEL:
        return Check("kernel", WARNING, f"{detail}; older than {_dotted(MIN_KERNEL)}, but openat2(2) works",
                     f"a kernel >= {_dotted(MIN_KERNEL)} is what pycontain is tested on", True)
    return Check("kernel", OK, f"{detail}; openat2(2) works", required=True)


def _ns_types(host: Host) -> list[str]:
    return sorted(n for n in os.listdir(f"{host.proc}/self/ns") if not n.endswith("_for_children"))


def check_namespaces(host: Host) -> Check:
    have = _ns_types(host)
    lacking = [n for n in REQUIRED_NS if n not in have]
    detail = " ".join(have) or "none"
    if lacking:
        return Check("namespaces", MISSING, f"{detail}; no {', '.join(lacking)}",
                     "a kernel built with " + ", ".join(f"CONFIG_{_NS_CONFIG[n]}" for n in lacking), True)
    absent = [n for n in OPTIONAL_NS if n not in have]
    if absent:
        return Check("namespaces", WARNING, f"{detail}; no {', '.join(absent)} (only --userns=auto needs user)",
                     "a kernel built with " + ", ".join(f"CONFIG_{_NS_CONFIG[n]}" for n in absent), True)
    return Check("namespaces", OK, detail, required=True)


_NS_CONFIG = {"mnt": "NAMESPACES", "pid": "PID_NS", "uts": "UTS_NS", "ipc": "IPC_NS", "net": "NET_NS",
              "cgroup": "CGROUP_NS", "user": "USER_NS", "time": "TIME_NS"}


def userns_default(host: Host) -> str:
    """The userns mode a container gets without --userns ("auto" or "host"); UsageError if the config is bad."""
    from pycontain import config

    return config.default_mode(host.config)


def check_config(host: Host) -> Check:
    from pycontain import config

    path = host.config or host.environ.get(config.CONFIG_ENV) or config.CONFIG
    try:
        mode = userns_default(host)
    except UsageError as e:
        return Check("config", MISSING, str(e), f"fix or remove {path}: every create reads it", True)
    where = path if os.path.exists(path) else f"{path} absent"
    return Check("config", OK, f"userns = {mode} ({where})", required=True)


def _userns_required(host: Host) -> bool:
    try:
        return userns_default(host) == "auto"
    except UsageError:
        return False  # the config check says so


def check_userns(host: Host) -> Check:
    required = _userns_required(host)
    why = "the default is --userns=auto" if required else "for --userns=auto"
    bad = MISSING if required else WARNING
    if not os.path.exists(f"{host.proc}/self/ns/user"):
        return Check("user namespaces", bad, f"the kernel has none ({why})", "a kernel built with CONFIG_USER_NS",
                     required)
    text = (host.read(f"{host.proc}/sys/user/max_user_namespaces") or "").strip()
    if not text.isdigit():
        return Check("user namespaces", WARNING, f"cannot read user.max_user_namespaces ({why})", "", required)
    extra = ""
    clone = host.read(f"{host.proc}/sys/kernel/unprivileged_userns_clone")
    if clone is not None:
        # Debian's switch: it limits unprivileged users only; pycontain creates them as root.
        extra = f", kernel.unprivileged_userns_clone={clone.strip()} (does not apply to root)"
    if int(text) == 0:
        return Check("user namespaces", bad, f"disabled: user.max_user_namespaces=0{extra} ({why})",
                     "sysctl -w user.max_user_namespaces=15000", required)
    return Check("user namespaces", OK, f"user.max_user_namespaces={text}{extra}", required=required)


def _overlay_module(host: Host) -> str | None:
    """Where the overlay module is, if the kernel can load it."""
    base = f"{host.modules}/{host.release}"
    for index in ("modules.builtin", "modules.dep"):
        for line in (host.read(f"{base}/{index}") or "").splitlines():
            path = line.split(":", 1)[0]
            if path.rsplit("/", 1)[-1].split(".ko", 1)[0] == "overlay":
                return f"{base}/{path}"
    return None


def check_overlay(host: Host) -> Check:
    text = host.read(f"{host.proc}/filesystems") or ""
    if any(line.split()[-1:] == ["overlay"] for line in text.splitlines()):
        return Check("overlayfs", OK, "in /proc/filesystems", required=True)
    module = _overlay_module(host)
    if module:
        return Check("overlayfs", OK, f"not loaded yet; the first mount loads {module}", required=True)
    return Check("overlayfs", MISSING, "not in /proc/filesystems and no overlay module for this kernel",
                 "modprobe overlay, or a kernel built with CONFIG_OVERLAY_FS", True)


def _nearest_dir(path: str) -> str:
    while path not in ("/", "") and not os.path.isdir(path):
        path = os.path.dirname(path)
    return path or "/"


def check_idmap(host: Host, paths: Paths) -> Check:
    # The layers are what pycontain idmaps (userns.layers_for): probe the filesystem they live on.
    target = _nearest_dir(f"{paths.images}/layers")
    version = _version(host.release)
    fallback = "--userns=auto copies and chowns each image layer per container instead (slower, more disk)"
    try:
        host.idmap(target)
    except OSError as e:
        return Check("idmapped layers", WARNING, f"cannot idmap {target}: {e.strerror or e}; {fallback}",
                     "a filesystem that allows idmapped mounts (ext4, xfs, btrfs, tmpfs) on kernel >= "
                     f"{_dotted(IDMAP_OVERLAY_KERNEL)}")
    if version < IDMAP_OVERLAY_KERNEL:
        return Check("idmapped layers", WARNING, f"{target} can be idmapped, but overlayfs takes idmapped layers "
                     f"only from {_dotted(IDMAP_OVERLAY_KERNEL)}; {fallback}",
                     f"a kernel >= {_dotted(IDMAP_OVERLAY_KERNEL)}")
    return Check("idmapped layers", OK, f"{target} can be idmapped (--userns=auto shares the layers)")


def _v1_mounts(host: Host) -> dict[str, str]:
    """controller -> mount point of every cgroup v1 hierarchy in mountinfo that can be seen (mountinfo
    also lists a mount hidden under a later one at the same place: its cgroup.procs is not there then)."""
    out: dict[str, str] = {}
    for line in (host.read(f"{host.proc}/self/mountinfo") or "").splitlines():
        left, _, right = line.partition(" - ")
        fields, mine = right.split(), left.split()
        if len(fields) < 3 or fields[0] != "cgroup" or len(mine) < 5:
            continue
        if not os.path.exists(f"{mine[4]}/cgroup.procs"):
            continue
        for option in fields[2].split(","):
            out.setdefault(option, mine[4])
    return out


def _cgroup2_mount(host: Host) -> str | None:
    for line in (host.read(f"{host.proc}/self/mountinfo") or "").splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[:1] == ["cgroup2"] and len(left.split()) >= 5:
            return left.split()[4]
    return None


def _kernel_controllers(host: Host) -> dict[str, tuple[int, bool]]:
    """/proc/cgroups: controller -> (its v1 hierarchy, 0 if none; enabled, i.e. not switched off with
    cgroup_disable=). A controller the kernel lacks is not listed."""
    out = {}
    for line in (host.read(f"{host.proc}/cgroups") or "").splitlines():
        fields = line.split()
        if len(fields) >= 4 and not line.startswith("#") and fields[1].isdigit():
            out[fields[0]] = (int(fields[1]), fields[3] == "1")
    return out


def cgroup_version(host: Host) -> int:
    # cgroups.detect(), for the host's root: 2 when the unified hierarchy is mounted at the root itself.
    return 2 if os.path.exists(f"{host.cgroup_root}/cgroup.controllers") else 1


def check_cgroups(host: Host) -> list[Check]:
    version = cgroup_version(host)
    root = host.cgroup_root
    if not os.path.isdir(root):
        return [Check("cgroups", MISSING, f"{root} does not exist", f"mount -t cgroup2 none {root}", True)]
    if version == 2:
        why = _unwritable(root)
        if why:
            return [Check("cgroups", MISSING, f"v2 at {root}, {why}", _writable_fix(root, why), True)]
        checks = [Check("cgroups", OK, f"v2 (unified) at {root}", required=True)]
        checks += _v2_controllers(host)
        return checks
    mounts = _v1_mounts(host)
    unified = _cgroup2_mount(host)
    shape = f"v1, hybrid (cgroup2 also at {unified})" if unified else "v1"
    if not mounts:
        return [Check("cgroups", MISSING, f"{shape}: no v1 hierarchy mounted under {root}",
                      f"mount -t cgroup2 none {root} (or mount the v1 hierarchies)", True)]
    checks = [Check("cgroups", OK, f"{shape} at {root}, {len(set(mounts.values()))} hierarchies", required=True)]
    checks += _v1_controllers(host, mounts)
    return checks


def _unwritable(path: str) -> str | None:
    """Why pycontain could not make a cgroup in `path`, or None if it can."""
    if os.access(path, os.W_OK):
        return None
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return "read-only"
    except OSError:
        pass
    return f"not writable by uid {os.geteuid()}"


def _writable_fix(path: str, why: str) -> str:
    return f"mount -o remount,rw {path}" if why == "read-only" else "run pycontain as root"


def _v1_controllers(host: Host, mounts: dict[str, str]) -> list[Check]:
    from pycontain.cgroups import v1

    kernel = _kernel_controllers(host)
    out = []
    for name in (*v1.CONTROLLERS, *(c for c in v1.OPTIONAL if c in CONTROLLER_USE)):
        use, required = CONTROLLER_USE.get(name, ("", False))
        label = f"cgroup {name}"
        point = mounts.get(name)
        why = _unwritable(point) if point else None
        if point and why:
            out.append(Check(label, MISSING if required else WARNING, f"{point} is {why} ({use})",
                             _writable_fix(point, why), required))
        elif point:
            out.append(Check(label, OK, f"mounted at {point} ({use})", required=required))
        else:
            bad = MISSING if required else WARNING
            if name not in kernel:
                out.append(Check(label, bad, f"not in this kernel ({use})", "a kernel with this controller", required))
            elif not kernel[name][1]:
                out.append(Check(label, bad, f"disabled on the kernel command line ({use})",
                                 f"remove cgroup_disable={name} from the kernel command line", required))
            else:
                out.append(Check(label, bad, f"not mounted ({use})",
                                 f"mkdir -p {host.cgroup_root}/{name} && mount -t cgroup -o {name} cgroup "
                                 f"{host.cgroup_root}/{name}", required))
    return out


def _v2_controllers(host: Host) -> list[Check]:
    from pycontain.cgroups import v2

    root = host.cgroup_root
    kernel = _kernel_controllers(host)
    available = set((host.read(f"{root}/cgroup.controllers") or "").split())
    enabled = set((host.read(f"{root}/cgroup.subtree_control") or "").split())
    out = []
    for name in v2.WANTED:
        use, required = CONTROLLER_USE[name]
        required = required or name == "pids"  # v2 writes pids.max for every container
        label = f"cgroup {name}"
        if name not in available:
            hierarchy, on = kernel.get(name, (0, False))
            if name not in kernel:
                fix = f"a kernel with the {name} controller"
            elif not on:
                fix = f"remove cgroup_disable={name} from the kernel command line"
            elif hierarchy:
                fix = ("it is bound to a v1 hierarchy: unmount that, or boot with "
                       "systemd.unified_cgroup_hierarchy=1")
            else:
                fix = f"enable {name} in the parent cgroups' cgroup.subtree_control"
            out.append(Check(label, MISSING if required else WARNING, f"not in {root}/cgroup.controllers ({use})",
                             fix, required))
        elif name in enabled:
            out.append(Check(label, OK, f"enabled in {root}/cgroup.subtree_control ({use})", required=required))
        else:
            out.append(Check(label, OK, f"available; pycontain enables it for its cgroups ({use})",
                             required=required))
    use, _ = CONTROLLER_USE["devices"]
    try:
        host.bpf_device()
        out.append(Check("cgroup devices", OK, f"BPF device programs load ({use})", required=True))
    except OSError as e:
        out.append(Check("cgroup devices", MISSING, f"cannot load a BPF device program: {e.strerror or e} ({use})",
                         "a kernel with CONFIG_CGROUP_BPF", True))
    return out


def check_seccomp(host: Host) -> Check:
    status = host.read(f"{host.proc}/self/status") or ""
    if not any(line.startswith("Seccomp:") for line in status.splitlines()):
        return Check("seccomp", MISSING, "no Seccomp field in /proc/self/status: the kernel has no seccomp",
                     "a kernel built with CONFIG_SECCOMP and CONFIG_SECCOMP_FILTER", True)
    actions = (host.read(f"{host.proc}/sys/kernel/seccomp/actions_avail") or "").split()
    if actions and "errno" not in actions:
        return Check("seccomp", MISSING, f"filters cannot return an errno (actions: {' '.join(actions)})",
                     "a kernel with CONFIG_SECCOMP_FILTER", True)
    return Check("seccomp", OK, "filter mode" + (f" ({len(actions)} actions)" if actions else ""), required=True)


def check_libseccomp(host: Host) -> Check:
    try:
        host.libseccomp()
    except OSError as e:
        return Check("libseccomp", MISSING, f"{e.strerror or e} (the default profile is compiled with it)",
                     "apt-get install libseccomp2 (or your distribution's libseccomp package)", True)
    return Check("libseccomp", OK, "loads (compiles the default seccomp profile)", required=True)


def check_nft(host: Host) -> Check:
    from pycontain import jsonfast
    from pycontain.errors import PycontainError

    network = host.default_network()
    required = network not in ("none", "host") and not network.startswith("container:")
    why = f"the default network is {network}" if required else "for bridge networks and -p"
    try:
        out = host.nft()
    except (OSError, PycontainError) as e:
        return Check("nft", MISSING if required else WARNING, f"{e} ({why})",
                     "apt-get install nftables (the nft command, run as root)", required)
    try:
        items = jsonfast.loads(out).get("nftables", [])
        version = next((i["metainfo"].get("version", "?") for i in items if "metainfo" in i), "?")
        tables = [f"{i['table'].get('family')} {i['table'].get('name')}" for i in items if "table" in i]
    except (ValueError, AttributeError, TypeError, KeyError):
        return Check("nft", WARNING, f"nft answered something that is not its JSON ({why})",
                     "install nftables >= 0.9 (JSON output)", required)
    ours = ", ip pycontain among them" if "ip pycontain" in tables else ""
    return Check("nft", OK, f"nftables {version}, lists {len(tables)} table{'s' * (len(tables) != 1)}{ours}",
                 required=required)


def check_ip_forward(host: Host) -> Check:
    value = (host.read(f"{host.proc}/sys/net/ipv4/ip_forward") or "").strip()
    if value == "1":
        return Check("ip forwarding", OK, "net.ipv4.ip_forward=1")
    if not value:
        return Check("ip forwarding", WARNING, "cannot read net.ipv4.ip_forward", "")
    return Check("ip forwarding", WARNING, f"net.ipv4.ip_forward={value} (pycontain sets it when a bridge is used)",
                 "nothing to do, or sysctl -w net.ipv4.ip_forward=1 beforehand")


def check_subids(host: Host) -> Check:
    from pycontain import userns

    required = _userns_required(host)
    why = "the default is --userns=auto" if required else "for --userns=auto"
    counts = []
    lacking = []
    for path in (host.subuid, host.subgid):
        slots = sum(count // userns.SIZE for _, count in userns.subid_ranges(path))
        counts.append(slots)
        if not slots:
            lacking.append(path)
    if lacking:
        line = f"{userns.OWNER}:100000:{userns.SIZE * 1024}"
        return Check("subuid/subgid", MISSING if required else WARNING,
                     f"no range of {userns.SIZE} ids for {userns.OWNER!r} in {' and '.join(lacking)} ({why})",
                     " && ".join(f"echo {line} >> {p}" for p in lacking) + " (scripts/install adds them)", required)
    n = min(counts)
    return Check("subuid/subgid", OK, f"{n} container range{'s' * (n != 1)} of {userns.SIZE} ids for "
                 f"{userns.OWNER!r}", required=required)


def _free(path: str) -> tuple[str, int]:
    where = _nearest_dir(path)
    st = os.statvfs(where)
    return where, st.f_bavail * st.f_frsize


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB" if n >= GIB // 10 else f"{n >> 20} MiB"


def check_disk(paths: Paths) -> Check:
    found = []
    worst = None
    for what, path in (("storage", paths.storage), ("state", paths.state)):
        where, free = _free(path)
        found.append(f"{what} {path}: {_gib(free)} free")
        if worst is None or free < worst[1]:
            worst = (path, free)
    detail = "; ".join(found)
    assert worst is not None
    if worst[1] < MIN_FREE:
        return Check("disk space", MISSING, detail, f"free space on the filesystem of {worst[0]} "
                     "(`pycontain system prune`, `pycontain rmi`)", True)
    if worst[1] < WARN_FREE:
        return Check("disk space", WARNING, f"{detail} (under {_gib(WARN_FREE)})",
                     f"free space on the filesystem of {worst[0]} (`pycontain system prune`, `pycontain rmi`)", True)
    return Check("disk space", OK, detail, required=True)


def check_images(paths: Paths) -> Check:
    from pycontain.images import reference
    from pycontain.images.store import DamagedStore, Store

    store = Store(paths)
    ids = store.image_ids()
    if not ids:
        return Check("images", WARNING, f"none in {paths.images}",
                     "pycontain import ROOTFS.tar.gz NAME (a local tarball), pycontain load -i FILE.tar, "
                     "or pycontain pull alpine")
    try:
        refs = store.refs()
    except DamagedStore:
        refs = {}
    names = []
    for ref, image_id in sorted(refs.items()):
        if image_id in ids:
            try:
                names.append(reference.parse(ref).familiar)
            except UsageError:
                continue
    shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
    count = f"{len(ids)} image{'s' * (len(ids) != 1)}"
    tagged = {refs[r] for r in refs if refs[r] in ids}
    if len(tagged) < len(ids):
        count += f", {len(ids) - len(tagged)} untagged"
    return Check("images", OK, count + (f"; tagged: {shown}" if shown else ""))


# ---------------------------------------------------------------- leftovers of killed runs (read-only)

def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _held(path: str) -> bool:
    """Whether some process holds an flock on `path` (probed as Record.is_locked does: taken and let go)."""
    from pycontain import state

    return state.flock_held(path)


def _pid_alive(pid: str) -> bool:
    return pid.isdigit() and os.path.exists(f"/proc/{pid}")


def leftovers(paths: Paths, proc: str = "/proc", now: float | None = None) -> list[tuple[str, str]]:
    """(kind, which) of everything `pycontain gc` would clean in this state root, found by reading only.

    Mirrors runtime.gc's judgement: a record whose supervisor is gone (Dead), or that is damaged, or still
    has a cgroup or an attach socket, or is a --rm container that exited; a record directory whose
    creator died before writing its config; container storage without a record; a killed build's
    working directory; a name whose container is gone; a user namespace lease of a removed container;
    half-written image data; a damaged tags file; a DNS resolver whose pid file nobody holds, or that
    serves a network of this root that has another resolver or none."""
    import time

    from pycontain import cgroups, state

    found: list[tuple[str, str]] = []
    now = time.time() if now is None else now
    live: set[str] = set()
    for rec in state.all_records(paths):
        try:
            rec.check_config()
            st = rec.read_state()
            status = rec.status(st)
        except state.DamagedRecord:
            found.append(("damaged container record", rec.short_id))
            continue
        if status == state.DEAD:
            found.append(("dead container (its monitor was killed)", rec.short_id))
            continue
        if rec.is_locked():
            live.add(rec.id)
            continue
        if os.path.exists(f"{rec.dir}/attach.sock"):
            found.append(("attach socket of a killed monitor", rec.short_id))
        elif cgroups.for_container(rec.id).exists():
            found.append(("cgroup of a stopped container", rec.short_id))
        elif rec.config.remove and status == state.EXITED:
            found.append(("--rm container not removed", rec.short_id))
    for cid in _listdir(paths.containers):
        d = paths.record(cid)
        if os.path.exists(f"{d}/config.json"):
            continue
        try:
            age = now - os.stat(d).st_mtime
        except OSError:
            continue
        if age > 5 and not _held(f"{d}/lock"):
            found.append(("incomplete container record", cid[:12]))
    build = f"{paths.storage}/build"
    for entry in _listdir(build):
        if _held(f"{build}/{entry}/lock"):
            try:
                with open(f"{build}/{entry}/cids") as f:
                    live.update(line.strip() for line in f)
            except OSError:
                pass
        else:
            found.append(("working files of a killed build", entry[:12]))
    storage = f"{paths.storage}/containers"
    for cid in _listdir(storage):
        if cid not in live and not os.path.exists(paths.record(cid)) and \
                not os.path.exists(f"{storage}/{cid}/restart-record.json"):
            found.append(("container storage without a record", cid[:12]))
    for name in _listdir(paths.names):
        try:
            owner = os.readlink(f"{paths.names}/{name}")
        except OSError:
            continue
        if not os.path.exists(paths.record(owner)):
            found.append(("name of a removed container", name))
    for slot in _listdir(paths.userns):
        if slot.isdigit():
            try:
                with open(f"{paths.userns}/{slot}") as f:
                    owner = f.read(200).strip()
            except OSError:
                continue
            if not owner or "/" in owner or not os.path.isdir(paths.record(owner)):
                found.append(("user namespace range of a removed container", f"slot {slot}"))
    found += _image_leftovers(paths)
    found += _resolver_leftovers(paths, proc)
    return found


def _image_leftovers(paths: Paths) -> list[tuple[str, str]]:
    from pycontain.images.store import Store

    store = Store(paths)
    found = []
    for d in (store.blobs, store.layers, store.root, f"{store.root}/meta", f"{store.root}/cache"):
        for entry in _listdir(d):
            # Temp names carry their writer's pid (`.tmp-<pid>-...`, `.<name>.tmp-<pid>-...`): see Store.gc_temp.
            if entry.startswith(".") and ".tmp-" in entry \
                    and not _pid_alive(entry.rsplit(".tmp-", 1)[1].split("-", 1)[0]):
                found.append(("half-written image data", entry))
    found += [("damaged image tags", line.split(";")[0]) for line in store.problems()]
    return found


def _resolver_leftovers(paths: Paths, proc: str) -> list[tuple[str, str]]:
    from pycontain.network import ipam, resolver

    root = ipam.root(paths)
    found = []
    owners: dict[str, int] = {}
    for name in _listdir(root):
        netdir = f"{root}/{name}"
        pidfile = f"{netdir}/{resolver.PIDFILE}"
        if not os.path.exists(f"{netdir}/network.json") or not os.path.exists(pidfile):
            continue
        if _held(pidfile):
            try:
                with open(pidfile) as f:
                    owners[netdir] = int(f.read(32).strip() or 0)
            except (OSError, ValueError):
                pass
        else:
            found.append(("pid file of a killed DNS resolver", ipam.display(name)))
    if not os.path.isdir(root):
        return found
    for pid, netdir in _resolver_processes(proc):
        if os.path.dirname(netdir) == root and owners.get(netdir) != pid:
            found.append(("orphaned DNS resolver", f"pid {pid}"))
    return found


def _resolver_processes(proc: str) -> Iterable[tuple[int, str]]:
    """(pid, network dir) of each resolver process: its comm, then the argument after its module name."""
    from pycontain.network import resolver

    module = resolver.MODULE.encode()
    for entry in _listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(f"{proc}/{entry}/comm", "rb") as f:
                if f.read().strip() != resolver.COMM.encode():
                    continue
            with open(f"{proc}/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if module in argv and argv.index(module) + 1 < len(argv):
            yield int(entry), argv[argv.index(module) + 1].decode(errors="replace")


def check_leftovers(paths: Paths, host: Host) -> Check:
    found = leftovers(paths, host.proc)
    if not found:
        return Check("leftovers", OK, "none of a killed run")
    kinds: dict[str, list[str]] = {}
    for kind, which in found:
        kinds.setdefault(kind, []).append(which)
    parts = [f"{len(w)} {kind} ({', '.join(w[:3])}{', ...' if len(w) > 3 else ''})" for kind, w in kinds.items()]
    return Check("leftovers", WARNING, "; ".join(parts), GC_FIX)


# ---------------------------------------------------------------- running them

def probes(paths: Paths, host: Host) -> list[tuple[str, Callable[[], Check | list[Check]], bool]]:
    """(name, probe, required) in report order. `required` is the default for a probe that breaks."""
    return [
        ("root", check_root, True),
        ("kernel", lambda: check_kernel(host), True),
        ("namespaces", lambda: check_namespaces(host), True),
        ("config", lambda: check_config(host), True),
        ("user namespaces", lambda: check_userns(host), False),
        ("subuid/subgid", lambda: check_subids(host), False),
        ("overlayfs", lambda: check_overlay(host), True),
        ("idmapped layers", lambda: check_idmap(host, paths), False),
        ("cgroups", lambda: check_cgroups(host), True),
        ("seccomp", lambda: check_seccomp(host), True),
        ("libseccomp", lambda: check_libseccomp(host), True),
        ("nft", lambda: check_nft(host), False),
        ("ip forwarding", lambda: check_ip_forward(host), False),
        ("disk space", lambda: check_disk(paths), True),
        ("images", lambda: check_images(paths), False),
        ("leftovers", lambda: check_leftovers(paths, host), False),
    ]


def run_checks(paths: Paths, host: Host | None = None) -> list[Check]:
    """Every check, in order; a probe that raises becomes one warning line (it could not look)."""
    host = host or Host()
    out: list[Check] = []
    for name, probe, required in probes(paths, host):
        try:
            result = probe()
        except Exception as e:  # noqa: BLE001 - one broken probe must not hide the others' lines
            out.append(Check(name, WARNING, f"could not check: {type(e).__name__}: {e}",
                             "set PYCONTAIN_DEBUG=1 and report the traceback", required))
            if os.environ.get("PYCONTAIN_DEBUG"):
                import traceback

                traceback.print_exc()
            continue
        out += result if isinstance(result, list) else [result]
    return out


def runnable(checks: list[Check]) -> bool:
    """`run` will work: no required check is missing."""
    return not any(c.required and c.status == MISSING for c in checks)


_COLOURS = {OK: "\033[32m", WARNING: "\033[33m", MISSING: "\033[31m"}


def render(checks: list[Check], colour: bool = False) -> str:
    """The plain-text report: CHECK, STATUS, FOUND, FIX columns, then a one-line verdict."""
    header = ("CHECK", "STATUS", "FOUND", "FIX" if any(c.fix for c in checks) else "")
    name_w = max(len(header[0]), *(len(c.name) for c in checks))
    status_w = max(len(header[1]), *(len(c.status) for c in checks))
    # The FOUND column is as wide as its longest entry that has a fix beside it, so the fixes line up.
    detail_w = max([len(header[2]), *(len(c.detail) for c in checks if c.fix)])
    lines = []
    for row in [header, *((c.name, c.status, c.detail, c.fix) for c in checks)]:
        name, status, detail, fix = row
        padded = status.ljust(status_w)
        if colour and status in _COLOURS:
            padded = f"{_COLOURS[status]}{status}\033[0m" + " " * (status_w - len(status))
        text = f"{name.ljust(name_w)}   {padded}   " + (f"{detail.ljust(detail_w)}   {fix}" if fix else detail)

        lines.append(text.rstrip())
    missing = [c.name for c in checks if c.status == MISSING]
    warnings = sum(c.status == WARNING for c in checks)
    note = f" ({warnings} warning{'s' * (warnings != 1)})" if warnings else ""
    if runnable(checks):
        verdict = f"pycontain run will work here{note}"
        if missing:
            verdict += f"; missing but optional: {', '.join(missing)}"
    else:
        need = [c.name for c in checks if c.required and c.status == MISSING]
        verdict = f"pycontain run will not work here: missing {', '.join(need)}{note}"
    lines.append("")
    lines.append(verdict)
    return "\n".join(lines) + "\n"


def to_json(checks: list[Check]) -> str:
    from pycontain import jsonfast

    return jsonfast.dumps({"ok": runnable(checks), "checks": [c.to_json() for c in checks]})


def cmd_doctor(paths: Paths, opts: dict[str, Any], pos: list[str]) -> int:
    if pos:
        raise UsageError(f"`pycontain doctor` takes no arguments (got {pos[0]!r})")
    fmt = opts.get("format")
    if fmt not in (None, "", "json"):
        raise UsageError(f"--format {fmt!r}: doctor prints a table, or one JSON document with --format json")
    checks = run_checks(paths)
    if fmt == "json":
        sys.stdout.write(to_json(checks) + "\n")
    else:
        colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        sys.stdout.write(render(checks, colour))
    sys.stdout.flush()
    return 0 if runnable(checks) else 1


COMMANDS: dict[str, tuple[list[Any], str, str]] = {
    "doctor": ([(("--format",), "format", "value", "json", "json: one JSON document with every check")], "",
               "check that this host can run containers, and say how to fix what is missing"),
}

HANDLERS = {"doctor": cmd_doctor}
