"""The container's filesystem, built inside its own mount namespace and then made its root.

Everything here runs in the cloned child, after clone(CLONE_NEWNS). Because every mount is made in
the container's own mount namespace, none of them is visible on the host, and the kernel drops them
all when the namespace's last process exits: there is nothing to unmount afterwards, whatever way the
container or pycontain dies.

Order: make / a slave (no propagation back to the host) -> overlayfs rootfs -> bind mounts ->
/proc /dev /sys -> /etc files -> pivot_root -> masked and read-only paths -> read-only root.
"""

from __future__ import annotations

import os
import stat

from pycontain import explain, syscalls
from pycontain.syscalls import MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC, MS_REMOUNT

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pycontain.config import BindMount

# Paths a container must not read (kernel memory, keys, timers that leak host activity), as podman masks
# them: directories get an empty read-only tmpfs, files get /dev/null.
MASKED_PATHS = (
    "/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/sched_debug", "/proc/scsi", "/proc/timer_list", "/proc/timer_stats",
    "/sys/dev/block", "/sys/devices/virtual/powercap", "/sys/firmware", "/sys/fs/selinux",
)
# Paths a container may read but not write (kernel tunables and triggers).
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# The device nodes every container gets (major, minor); nothing else from the host's /dev.
DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9), "tty": (5, 0)}
DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
             "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx"}


class RootfsPlan:
    """Everything the child needs to build the root filesystem, computed by the parent before clone."""

    __slots__ = ("rootfs", "lowerdirs", "upperdir", "workdir", "mounts", "etc_files", "read_only",
                 "container_workdir", "cgroup_mounts")

    def __init__(self, rootfs: str, lowerdirs: tuple[str, ...], upperdir: str, workdir: str,
                 mounts: tuple[BindMount, ...], etc_files: dict[str, str], read_only: bool,
                 container_workdir: str, cgroup_mounts: list[tuple[str, str, str]] = ()) -> None:  # type: ignore[assignment]
        self.rootfs = rootfs
        self.lowerdirs = lowerdirs
        self.upperdir = upperdir
        self.workdir = workdir
        self.mounts = mounts
        self.etc_files = etc_files
        self.read_only = read_only
        self.container_workdir = container_workdir
        self.cgroup_mounts = cgroup_mounts

    def overlay_options(self) -> str:
        # overlayfs lists lowerdirs top-most first; image layers are stored lowest first.
        lower = ":".join(reversed(self.lowerdirs))
        return f"lowerdir={lower},upperdir={self.upperdir},workdir={self.workdir}"


def resolve_inside(root: str, path: str) -> str:
    """The host path of `path` as seen from inside `root`, following symlinks *within* root.

    A symlink in an image (say /etc -> /) must not redirect a mount to the host: every link is read
    and re-resolved with `root` as "/", and ".." never climbs above it (CVE-2021-30465). Components
    that do not exist yet are kept as they are, for the caller to create.
    """
    parts = [p for p in path.split("/") if p]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root + "/" + "/".join(resolved + [part])
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 40:
                raise OSError(40, f"too many levels of symbolic links resolving {path} in the image")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        resolved.append(part)
    return root + "/" + "/".join(resolved) if resolved else root


def make_target(root: str, path: str, is_dir: bool) -> str:
    """Create a mount point inside root (resolved safely); returns its host path."""
    target = resolve_inside(root, path)
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        # Create missing parents one at a time, re-resolving so a symlink can't be followed out.
        make_target(root, os.path.dirname("/" + os.path.relpath(target, root)), True)
    if is_dir:
        if not os.path.isdir(target):
            os.mkdir(target, 0o755)
    elif not os.path.lexists(target):
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644))
    return target


def setup_rootfs(plan: RootfsPlan) -> None:
    """Build the root filesystem and pivot into it. Runs in the child, in its own mount namespace."""
    root = plan.rootfs
    # Stop mount events flowing back to the host: after this, nothing mounted here is seen outside.
    syscalls.mount("none", "/", None, MS_REC | syscalls.MS_SLAVE)
    explain.say("mount(/, MS_REC|MS_SLAVE): mounts made from here on stay inside the container's mount namespace")

    syscalls.mount("overlay", root, "overlay", 0, plan.overlay_options())
    explain.say(f"mount(overlay, lowerdir={len(plan.lowerdirs)} image layer(s), upperdir=per-container): "
                "the image stays read-only, writes go to this container's upperdir")

    for bind in plan.mounts:
        target = make_target(root, bind.target, os.path.isdir(bind.source))
        syscalls.mount(bind.source, target, None, MS_BIND | MS_REC)
        if bind.readonly:
            syscalls.mount(bind.source, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC)
        explain.say(f"mount({bind.source} -> {bind.target}, MS_BIND{'|MS_RDONLY' if bind.readonly else ''}): "
                    "a host path shared into the container, as asked with -v")

    syscalls.mount("proc", make_target(root, "/proc", True), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    explain.say("mount(proc, /proc): a new procfs instance that shows only the container's PID namespace")
    _setup_dev(root)
    syscalls.mount("sysfs", make_target(root, "/sys", True), "sysfs",
                   MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    explain.say("mount(sysfs, /sys, MS_RDONLY): read-only, and it lists only the container's network devices")
    _mount_cgroupfs(root, plan.cgroup_mounts)

    for target, source in plan.etc_files.items():
        syscalls.mount(source, make_target(root, target, False), None, MS_BIND)
    explain.say("mount(MS_BIND) /etc/hostname /etc/hosts /etc/resolv.conf: per-container copies, image untouched")

    make_target(root, plan.container_workdir, True)
    if plan.read_only:
        for path in ("/tmp", "/var/tmp", "/run"):
            syscalls.mount("tmpfs", make_target(root, path, True), "tmpfs",
                           MS_NOSUID | MS_NODEV, "mode=1777,size=65536k")

    pivot_root(root)
    mask_paths()
    if plan.read_only:
        syscalls.mount("/", "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        explain.say("mount(/, MS_REMOUNT|MS_RDONLY): --read-only root; /tmp /var/tmp /run are tmpfs")


def _setup_dev(root: str) -> None:
    dev = make_target(root, "/dev", True)
    syscalls.mount("tmpfs", dev, "tmpfs", MS_NOSUID, "mode=755,size=65536k")
    for name, (major, minor) in DEVICES.items():
        syscalls.mknod(f"{dev}/{name}", 0o666, major, minor)
    for name, target in DEV_LINKS.items():
        os.symlink(target, f"{dev}/{name}")
    os.mkdir(f"{dev}/pts", 0o755)
    syscalls.mount("devpts", f"{dev}/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                   "newinstance,ptmxmode=0666,mode=0620,gid=5")
    os.mkdir(f"{dev}/shm", 0o1777)
    syscalls.mount("shm", f"{dev}/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k")
    os.mkdir(f"{dev}/mqueue", 0o755)
    syscalls.mount("mqueue", f"{dev}/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    explain.say("mount(tmpfs, /dev) + mknod null zero full random urandom tty + devpts(newinstance) + "
                "shm + mqueue: no host device is reachable")


def _mount_cgroupfs(root: str, specs: list[tuple[str, str, str]]) -> None:
    """The container's own cgroup, read-only, at /sys/fs/cgroup (its cgroup namespace makes it the root)."""
    if not specs:
        return
    base = f"{root}/sys/fs/cgroup"
    ro = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    if specs[0][0] == "cgroup":  # v1: a tmpfs to hold one directory per hierarchy
        syscalls.mount("tmpfs", base, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755,size=64k")
        for _, subdir, _ in specs:
            os.mkdir(f"{base}/{subdir}", 0o755)
    for fstype, subdir, options in specs:
        target = f"{base}/{subdir}" if subdir else base
        syscalls.mount(fstype, target, fstype, ro, options or None)
    if specs[0][0] == "cgroup":
        syscalls.mount("tmpfs", base, None, MS_BIND | MS_REMOUNT | ro)
    explain.say(f"mount({specs[0][0]}, /sys/fs/cgroup, MS_RDONLY): the container sees its own cgroup, read-only")


def pivot_root(root: str) -> None:
    """Make `root` the root and detach the old one, so no path leads back to the host's files."""
    os.chdir(root)
    # pivot_root(".", ".") stacks the old root on top of the new one; unmounting "." then drops it
    # without needing a directory inside the image to park it in.
    syscalls.pivot_root(".", ".")
    syscalls.umount2(".", syscalls.MNT_DETACH)
    os.chdir("/")
    explain.say("pivot_root(rootfs) + umount2(old root, MNT_DETACH): the host's filesystem is gone from view")


def mask_paths() -> None:
    for path in MASKED_PATHS:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            syscalls.mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0")
        else:
            syscalls.mount("/dev/null", path, None, MS_BIND)
    for path in READONLY_PATHS:
        if os.path.exists(path):
            syscalls.mount(path, path, None, MS_BIND | MS_REC)
            syscalls.mount(path, path, None, MS_BIND | MS_REC | MS_REMOUNT | MS_RDONLY)
    explain.say(f"mount over {len(MASKED_PATHS)} masked paths (/proc/kcore, /proc/keys, ...) and "
                f"remount {len(READONLY_PATHS)} read-only (/proc/sys, ...): kernel knobs stay out of reach")
