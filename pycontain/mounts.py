"""The container's filesystem, built inside its own mount namespace and then made its root.

Everything here runs in the cloned child, after clone(CLONE_NEWNS). Because every mount is made in
the container's own mount namespace, none of them is visible on the host, and the kernel drops them
all when the namespace's last process exits: there is nothing to unmount afterwards, whatever way the
container or pycontain dies.

Order: make / a slave (no propagation back to the host) -> overlayfs rootfs -> bind mounts ->
/proc /dev /sys -> /etc files -> pivot_root -> masked and read-only paths -> read-only root.

The image is untrusted: no path inside it is ever followed as a string. Each is opened with openat2(2)
relative to the rootfs and each mount lands on that descriptor (see open_in_root and bind).
"""

from __future__ import annotations

import errno
import os
import stat

from pycontain import explain, syscalls
from pycontain.errors import PycontainError
from pycontain.syscalls import MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC

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


# Every path inside the image is opened with openat2(2) relative to the rootfs, never as a string joined
# onto it: RESOLVE_IN_ROOT makes absolute links and ".." stop at the rootfs (CVE-2021-30465), and
# RESOLVE_NO_MAGICLINKS refuses /proc/PID/{cwd,root,fd/N} links, which the kernel would otherwise follow
# to the host once /proc is mounted (CVE-2025-31133: /dev -> /proc/self/cwd turned a masked path into a
# writable host sysctl). Mounts then land on the descriptor (move_mount, or /proc/self/fd/N), so nothing
# is looked up twice.
IN_ROOT = syscalls.RESOLVE_IN_ROOT | syscalls.RESOLVE_NO_MAGICLINKS
PATH_FLAGS = os.O_PATH | os.O_CLOEXEC
# Directories the runtime mounts its own filesystems on: the image may not make them links or files.
PLAIN_DIRS = ("/proc", "/dev", "/sys")


def open_in_root(root_fd: int, path: str, create: str | None = None) -> int:
    """An O_PATH descriptor of `path` inside the rootfs `root_fd`, resolved as if root_fd were "/".

    create="dir" or "file" makes what is missing (directories on the way, then the last component),
    each one created relative to its parent's descriptor. The caller closes the descriptor.
    """
    try:
        return syscalls.openat2(root_fd, path, PATH_FLAGS, IN_ROOT, what=path)
    except FileNotFoundError:
        if create is None:
            raise
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EXDEV):
            raise OSError(e.errno, f"open {path} in the image: a link on the way is one the container may not "
                                   "follow (a /proc magic link, or a loop)") from None
        raise
    return _make_in_root(root_fd, path, create)


def _make_in_root(root_fd: int, path: str, create: str) -> int:
    """The slow path of open_in_root: walk `path` one component at a time, following ordinary links
    inside the root (a dangling `/var/run -> /run` included) and creating whatever is missing."""
    todo = [p for p in path.split("/") if p]
    done: list[str] = []
    links = 0
    while todo:
        part = todo.pop(0)
        if part == "..":
            done = done[:-1]
        if part in (".", ".."):
            continue
        parent = syscalls.openat2(root_fd, "/".join(done) or ".", PATH_FLAGS | os.O_DIRECTORY, IN_ROOT, what=path)
        try:
            try:
                st = os.stat(part, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                if todo or create == "dir":
                    os.mkdir(part, 0o755, dir_fd=parent)
                else:
                    os.close(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                                     0o644, dir_fd=parent))
                done.append(part)
                continue
            if not stat.S_ISLNK(st.st_mode):
                done.append(part)
                continue
            links += 1
            _refuse_magic_link(root_fd, "/".join(done + [part]), path, links)
            target = os.readlink(part, dir_fd=parent)
        finally:
            os.close(parent)
        if target.startswith("/"):
            done = []
        todo[:0] = [p for p in target.split("/") if p]
    fd = syscalls.openat2(root_fd, "/".join(done) or ".", PATH_FLAGS | os.O_NOFOLLOW, IN_ROOT, what=path)
    if stat.S_ISLNK(os.fstat(fd).st_mode):
        os.close(fd)
        raise PycontainError(f"cannot mount on {path} in the image: it is a symbolic link")
    return fd


def _refuse_magic_link(root_fd: int, link: str, path: str, links: int) -> None:
    """A link is followed by name only if the kernel would follow it inside the root as well: a magic
    link (or a loop) fails that test with ELOOP, a dangling ordinary link with ENOENT."""
    if links > 40:
        raise OSError(errno.ELOOP, f"open {path}: too many levels of symbolic links")
    try:
        os.close(syscalls.openat2(root_fd, link, PATH_FLAGS, IN_ROOT, what=path))
    except FileNotFoundError:
        pass
    except OSError as e:
        raise OSError(e.errno, f"open {path}: /{link} is a link the container may not follow "
                               f"({os.strerror(e.errno or 0)})") from None


def open_plain_dir(root_fd: int, path: str) -> int:
    """/proc, /dev or /sys of the image: a real directory (made if missing), never a link or a file."""
    try:
        st = os.stat(path.lstrip("/"), dir_fd=root_fd, follow_symlinks=False)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISDIR(st.st_mode):
            kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a directory"
            raise PycontainError(f"the image's {path} is {kind}: refusing to mount over it "
                                 "(it must be a plain directory)")
    return open_in_root(root_fd, path, "dir")


def fd_path(fd: int) -> str:
    """The path mount(2) follows to exactly the object `fd` is open on (the runtime's own procfs)."""
    return f"/proc/self/fd/{fd}"


def mount_new(source: str, target_fd: int, fstype: str, flags: int, data: str | None, what: str) -> None:
    """A new filesystem instance (proc, tmpfs, sysfs, ...) on the descriptor target_fd."""
    try:
        syscalls.mount(source, fd_path(target_fd), fstype, flags, data)
    except OSError as e:
        raise OSError(e.errno, f"mount {fstype} on {what}: {os.strerror(e.errno or 0)}") from None


def bind(source: str | int, target_fd: int, readonly: bool, what: str) -> None:
    """Bind `source` (a host path, or a descriptor) with everything mounted below it onto target_fd.

    The copy is made detached (open_tree), made read-only while nobody can see it, with every submount
    and with the flags it has (nosuid, nodev) kept (mount_setattr), and only then placed (move_mount).
    """
    flags = syscalls.OPEN_TREE_CLONE | syscalls.AT_RECURSIVE | os.O_CLOEXEC
    if isinstance(source, int):
        tree = syscalls.open_tree(source, "", flags | syscalls.AT_EMPTY_PATH, what)
    else:
        tree = syscalls.open_tree(syscalls.AT_FDCWD, source, flags, what)
    try:
        if readonly:
            syscalls.mount_setattr(tree, syscalls.MOUNT_ATTR_RDONLY, True, what)
        syscalls.move_mount(tree, target_fd, what)
    finally:
        os.close(tree)


def reopen(root_fd: int, path: str, fd: int) -> int:
    """`path` again, now resolving to what was just mounted on it (fd itself stays on the directory below)."""
    os.close(fd)
    return syscalls.openat2(root_fd, path, PATH_FLAGS | os.O_DIRECTORY | os.O_NOFOLLOW, IN_ROOT, what=path)


def setup_rootfs(plan: RootfsPlan) -> None:
    """Build the root filesystem and pivot into it. Runs in the child, in its own mount namespace."""
    root = plan.rootfs
    # Stop mount events flowing back to the host: after this, nothing mounted here is seen outside.
    syscalls.mount("none", "/", None, MS_REC | syscalls.MS_SLAVE)
    explain.say("mount(/, MS_REC|MS_SLAVE): mounts made from here on stay inside the container's mount namespace")

    syscalls.mount("overlay", root, "overlay", 0, plan.overlay_options())
    explain.say(f"mount(overlay, lowerdir={len(plan.lowerdirs)} image layer(s), upperdir=per-container): "
                "the image stays read-only, writes go to this container's upperdir")
    root_fd = os.open(root, PATH_FLAGS | os.O_DIRECTORY)
    plain: dict[str, int] = {}
    try:
        # The image's own /proc, /dev and /sys are checked (and opened) before anything else is mounted:
        # a -v target must not be able to plant a mount under a path that is about to become a link.
        for path in PLAIN_DIRS:
            plain[path] = open_plain_dir(root_fd, path)
        for m in plan.mounts:
            target = open_in_root(root_fd, m.target, "dir" if os.path.isdir(m.source) else "file")
            try:
                bind(m.source, target, m.readonly, f"{m.source} -> {m.target}")
            finally:
                os.close(target)
            explain.say(f"open_tree({m.source}, OPEN_TREE_CLONE|AT_RECURSIVE)"
                        + (" + mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY)" if m.readonly else "")
                        + f" + move_mount(-> {m.target}): a host path shared into the container, as asked with -v")

        mount_new("proc", plain["/proc"], "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None, "/proc")
        explain.say("mount(proc, /proc): a new procfs instance that shows only the container's PID namespace")
        null_fd = _setup_dev(root_fd, plain.pop("/dev"))
        mount_new("sysfs", plain["/sys"], "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, None, "/sys")
        explain.say("mount(sysfs, /sys, MS_RDONLY): read-only, and it lists only the container's network devices")
        _mount_cgroupfs(root_fd, plan.cgroup_mounts)

        for target_path, source in plan.etc_files.items():
            target = open_in_root(root_fd, target_path, "file")
            try:
                bind(source, target, False, target_path)
            finally:
                os.close(target)
        explain.say("bind /etc/hostname /etc/hosts /etc/resolv.conf: per-container copies, image untouched")

        os.close(open_in_root(root_fd, plan.container_workdir, "dir"))
        if plan.read_only:
            for path in ("/tmp", "/var/tmp", "/run"):
                target = open_in_root(root_fd, path, "dir")
                try:
                    mount_new("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=65536k", path)
                finally:
                    os.close(target)
    finally:
        for fd in plain.values():
            os.close(fd)
        os.close(root_fd)

    pivot_root(root)
    try:
        mask_paths(null_fd)
    finally:
        os.close(null_fd)
    if plan.read_only:
        new_root = os.open("/", PATH_FLAGS | os.O_DIRECTORY)
        try:
            syscalls.mount_setattr(new_root, syscalls.MOUNT_ATTR_RDONLY, False, "/")
        finally:
            os.close(new_root)
        explain.say("mount_setattr(/, MOUNT_ATTR_RDONLY): --read-only root; /tmp /var/tmp /run are tmpfs")


def _setup_dev(root_fd: int, dev: int) -> int:
    """A fresh tmpfs /dev (on `dev`, the image's plain /dev directory, which this closes) with only the
    standard nodes; returns an O_PATH descriptor of its null device."""
    try:
        mount_new("tmpfs", dev, "tmpfs", MS_NOSUID, "mode=755,size=65536k", "/dev")
    except BaseException:
        os.close(dev)
        raise
    dev = reopen(root_fd, "/dev", dev)
    try:
        base = fd_path(dev)
        for name, (major, minor) in DEVICES.items():
            syscalls.mknod(f"{base}/{name}", 0o666, major, minor)
        for name, target in DEV_LINKS.items():
            os.symlink(target, name, dir_fd=dev)
        for name, source, fstype, flags, data in (
            ("pts", "devpts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"),
            ("shm", "shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k"),
            ("mqueue", "mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, None),
        ):
            os.mkdir(name, 0o755, dir_fd=dev)
            sub = syscalls.openat2(dev, name, PATH_FLAGS | os.O_NOFOLLOW, IN_ROOT | syscalls.RESOLVE_NO_SYMLINKS)
            try:
                mount_new(source, sub, fstype, flags, data, f"/dev/{name}")
            finally:
                os.close(sub)
        null_fd = checked_null(dev)
    finally:
        os.close(dev)
    explain.say("mount(tmpfs, /dev) + mknod null zero full random urandom tty + devpts(newinstance) + "
                "shm + mqueue: no host device is reachable")
    return null_fd


def checked_null(dev_fd: int) -> int:
    """The /dev/null we just made, as a descriptor, after checking it is the null device (char 1:3)."""
    fd = syscalls.openat2(dev_fd, "null", PATH_FLAGS | os.O_NOFOLLOW, IN_ROOT | syscalls.RESOLVE_NO_SYMLINKS)
    st = os.fstat(fd)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(*DEVICES["null"]):
        os.close(fd)
        raise PycontainError("/dev/null in the container is not the null device")
    return fd


def _mount_cgroupfs(root_fd: int, specs: list[tuple[str, str, str]]) -> None:
    """The container's own cgroup, read-only, at /sys/fs/cgroup (its cgroup namespace makes it the root)."""
    if not specs:
        return
    ro = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    base = open_in_root(root_fd, "/sys/fs/cgroup")
    try:
        if specs[0][0] == "cgroup":  # v1: a tmpfs to hold one directory per hierarchy
            mount_new("tmpfs", base, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755,size=64k", "/sys/fs/cgroup")
            base = reopen(root_fd, "/sys/fs/cgroup", base)
            for _, subdir, _ in specs:
                os.mkdir(subdir, 0o755, dir_fd=base)
        for fstype, subdir, options in specs:
            target = syscalls.openat2(base, subdir or ".", PATH_FLAGS | os.O_NOFOLLOW, IN_ROOT)
            try:
                mount_new(fstype, target, fstype, ro, options or None, f"/sys/fs/cgroup/{subdir}")
            finally:
                os.close(target)
        if specs[0][0] == "cgroup":
            syscalls.mount_setattr(base, syscalls.MOUNT_ATTR_RDONLY, False, "/sys/fs/cgroup")
    finally:
        os.close(base)
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


def mask_paths(null_fd: int) -> None:
    """Hide MASKED_PATHS (null_fd's device on files, an empty read-only tmpfs on directories) and make
    READONLY_PATHS read-only with every mount below them. Runs after pivot_root, on the container's own
    /proc and /sys; every path is opened without following magic links, and /dev/null is bound from the
    descriptor of the node we made, never looked up by name (CVE-2025-31133)."""
    root_fd = os.open("/", PATH_FLAGS | os.O_DIRECTORY)
    try:
        for path in MASKED_PATHS:
            fd = _open_optional(root_fd, path)
            if fd is None:
                continue
            try:
                mode = os.fstat(fd).st_mode
                if stat.S_ISDIR(mode):
                    mount_new("tmpfs", fd, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0", path)
                elif not stat.S_ISLNK(mode):
                    bind(null_fd, fd, False, f"/dev/null -> {path}")
            finally:
                os.close(fd)
        for path in READONLY_PATHS:
            fd = _open_optional(root_fd, path)
            if fd is None:
                continue
            try:
                bind(fd, fd, True, path)
            finally:
                os.close(fd)
    finally:
        os.close(root_fd)
    explain.say(f"bind /dev/null or an empty tmpfs over {len(MASKED_PATHS)} masked paths (/proc/kcore, /proc/keys, "
                f"...) and make {len(READONLY_PATHS)} read-only with everything below them (mount_setattr "
                "AT_RECURSIVE): kernel knobs stay out of reach")


def _open_optional(root_fd: int, path: str) -> int | None:
    try:
        return syscalls.openat2(root_fd, path, PATH_FLAGS | os.O_NOFOLLOW, IN_ROOT, what=path)
    except FileNotFoundError:
        return None
