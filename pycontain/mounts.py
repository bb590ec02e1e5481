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
from pycontain.oci import MASKED_PATHS, READONLY_PATHS
from pycontain.syscalls import MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# The device nodes every container gets (major, minor); nothing else from the host's /dev.
DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9), "tty": (5, 0)}
DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
             "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx"}


# mount(8) option words: the flag each sets (or clears), and the mount_setattr(2) attribute for binds.
MOUNT_FLAGS = {
    "ro": (MS_RDONLY, False), "rw": (MS_RDONLY, True), "nosuid": (MS_NOSUID, False), "suid": (MS_NOSUID, True),
    "nodev": (MS_NODEV, False), "dev": (MS_NODEV, True), "noexec": (MS_NOEXEC, False), "exec": (MS_NOEXEC, True),
    "sync": (16, False), "async": (16, True), "mand": (64, False), "nomand": (64, True),
    "dirsync": (128, False), "noatime": (1024, False), "atime": (1024, True), "nodiratime": (2048, False),
    "diratime": (2048, True), "relatime": (1 << 21, False), "norelatime": (1 << 21, True),
    "strictatime": (1 << 24, False), "nostrictatime": (1 << 24, True), "lazytime": (1 << 25, False),
    "nolazytime": (1 << 25, True), "silent": (1 << 15, False), "loud": (1 << 15, True),
    "iversion": (1 << 23, False), "noiversion": (1 << 23, True), "remount": (0, False),
}
BIND_ATTRS = {MS_RDONLY: syscalls.MOUNT_ATTR_RDONLY, MS_NOSUID: syscalls.MOUNT_ATTR_NOSUID,
              MS_NODEV: syscalls.MOUNT_ATTR_NODEV, MS_NOEXEC: syscalls.MOUNT_ATTR_NOEXEC}
PROPAGATION = {"private": syscalls.MS_PRIVATE, "shared": 1 << 20, "slave": syscalls.MS_SLAVE, "unbindable": 1 << 17}
# Words other runtimes accept that ask for something pycontain does not do (SELinux relabelling,
# copying the image's files up into a tmpfs): accepted and ignored, as a runtime without SELinux does.
IGNORED_OPTIONS = frozenset(("z", "Z", "tmpcopyup", "notmpcopyup", "copy", "nocopy"))


class MountStep:
    """One entry of spec.mounts, parsed by the parent before clone: the child only makes kernel calls."""

    __slots__ = ("destination", "fstype", "source", "flags", "data", "bind", "recursive", "propagation")

    def __init__(self, destination: str, fstype: str, source: str, flags: int = 0, data: str | None = None,
                 bind: bool = False, recursive: bool = False, propagation: int = 0) -> None:
        self.destination, self.fstype, self.source = destination, fstype, source
        self.flags, self.data, self.bind, self.recursive = flags, data, bind, recursive
        self.propagation = propagation

    @classmethod
    def parse(cls, m: dict[str, Any], bundle: str) -> MountStep:
        """A spec mount: options split into flags, propagation and filesystem data; a relative bind
        source is relative to the bundle, as the runtime spec says."""
        flags, data, bind, recursive, propagation = 0, [], False, False, 0
        for opt in m.get("options") or ():
            if opt in ("bind", "rbind"):
                bind, recursive = True, recursive or opt == "rbind"
            elif opt in MOUNT_FLAGS:
                bit, clear = MOUNT_FLAGS[opt]
                flags = flags & ~bit if clear else flags | bit
            elif opt.lstrip("r") in PROPAGATION and opt in (opt.lstrip("r"), "r" + opt.lstrip("r")):
                propagation = PROPAGATION[opt.lstrip("r")] | (MS_REC if opt.startswith("r") else 0)
            elif opt not in IGNORED_OPTIONS:
                data.append(opt)
        fstype = m.get("type") or ("bind" if bind else "none")
        bind = bind or fstype == "bind"
        source = m.get("source") or fstype
        if bind and not source.startswith("/"):
            source = os.path.join(bundle, source)
        return cls(os.path.normpath(m["destination"]), fstype, source, flags, ",".join(data) or None, bind,
                   recursive, propagation)

    def bind_attrs(self) -> int:
        attrs = 0
        for bit, attr in BIND_ATTRS.items():
            if self.flags & bit:
                attrs |= attr
        return attrs


class RootfsPlan:
    """Everything the child needs to build the root filesystem, computed by the parent before clone.

    rootfs: the spec's root.path; overlay: overlayfs options to mount there first (pycontain's own
    front end: the image layers, mounted inside the container's mount namespace so the host never
    holds the mount), else root.path is bound onto itself. mounts: spec.mounts in order.
    """

    __slots__ = ("rootfs", "overlay", "mounts", "masked", "readonly_paths", "read_only", "cwd", "cgroup_mounts",
                 "devices", "propagation", "sysctl", "before_pivot", "userns", "host_paths", "host_fds", "idmapped")

    def __init__(self, rootfs: str, mounts: list[MountStep], overlay: str | None = None,
                 masked: tuple[str, ...] = MASKED_PATHS, readonly_paths: tuple[str, ...] = READONLY_PATHS,
                 read_only: bool = False, cwd: str = "/", cgroup_mounts: list[tuple[str, str, str]] | None = None,
                 devices: list[tuple[str, int, int, int, int, int]] | None = None,
                 propagation: int = MS_REC | syscalls.MS_SLAVE) -> None:
        self.rootfs, self.overlay, self.mounts = rootfs, overlay, mounts
        self.masked, self.readonly_paths, self.read_only = masked, readonly_paths, read_only
        self.cwd = cwd
        self.cgroup_mounts = cgroup_mounts or []
        self.devices = devices or []  # (path, mode, major, minor, uid, gid) from linux.devices
        self.propagation = propagation
        self.sysctl: list[tuple[str, str]] = []  # (path under the root, value) from linux.sysctl
        # Run just before pivot_root, with the container's mounts made: the OCI createRuntime and
        # createContainer hooks.
        self.before_pivot: Any = None
        # In a user namespace the child works as the container's root (a host uid like 100000), which
        # may not look up paths under the host's root-only directories (the state root is 0700). So it
        # opens the host paths it needs (host_paths, listed by the parent) first, while it is still the
        # host's uid 0 (owner of those directories), and then reaches each through /proc/self/fd/N, which
        # needs no search permission on the directories above it. The descriptors must be opened in the
        # child: one the parent opened names a mount of the parent's mount namespace, which no mount
        # call here accepts. idmapped: (layer directory, detached idmapped mount of it) to place.
        self.userns = False
        self.host_paths: list[str] = []
        self.host_fds: dict[str, int] = {}
        self.idmapped: list[tuple[str, int]] = []

    def open_host(self) -> None:
        """In the child, before it becomes the user namespace's root: open host_paths (O_PATH)."""
        for path in self.host_paths:
            if path not in self.host_fds:
                try:
                    self.host_fds[path] = os.open(path, PATH_FLAGS)
                except FileNotFoundError:
                    pass  # a missing bind source is reported when it is mounted, as without a user namespace

    def host(self, path: str) -> str:
        """A host path as the child reaches it: through its own descriptor when it has one."""
        fd = self.host_fds.get(path)
        return path if fd is None else fd_path(fd)

    def close(self) -> None:
        """The parent's idmapped mounts (the child's copies go with its execve)."""
        for _, tree in self.idmapped:
            os.close(tree)
        self.idmapped = []


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


def bind(source: str | int, target_fd: int, readonly: bool, what: str, recursive: bool = True,
         attrs: int = 0) -> None:
    """Bind `source` (a host path, or a descriptor) with everything mounted below it onto target_fd.

    The copy is made detached (open_tree), made read-only while nobody can see it, with every submount
    and with the flags it has (nosuid, nodev) kept (mount_setattr), and only then placed (move_mount).
    """
    flags = syscalls.OPEN_TREE_CLONE | (syscalls.AT_RECURSIVE if recursive else 0) | os.O_CLOEXEC
    if readonly:
        attrs |= syscalls.MOUNT_ATTR_RDONLY
    if isinstance(source, int):
        tree = syscalls.open_tree(source, "", flags | syscalls.AT_EMPTY_PATH, what)
    else:
        tree = syscalls.open_tree(syscalls.AT_FDCWD, source, flags, what)
    try:
        if attrs:
            syscalls.mount_setattr(tree, attrs, recursive, what)
        syscalls.move_mount(tree, target_fd, what)
    finally:
        os.close(tree)


def reopen(root_fd: int, path: str, fd: int) -> int:
    """`path` again, now resolving to what was just mounted on it (fd itself stays on the directory below)."""
    os.close(fd)
    return syscalls.openat2(root_fd, path, PATH_FLAGS | os.O_DIRECTORY | os.O_NOFOLLOW, IN_ROOT, what=path)


def _write_sysctls(root_fd: int, values: list[tuple[str, str]]) -> None:
    """linux.sysctl, written through the container's own procfs: this process is already in the
    container's network and IPC namespaces, which is what /proc/sys/net and /proc/sys/kernel/shm* show
    and set. Only procfs itself is written (CVE-2025-52881): the /proc mount must be a procfs, and each
    file is reached without crossing a mount (RESOLVE_NO_XDEV), so a bind mount over /proc/sys/... (a
    `-v hostfile:/proc/sys/net/ipv4/ip_forward`, or a bundle's mount) makes the write fail, never lands
    in the bound file; each opened file is checked to be procfs's as well."""
    try:
        proc = syscalls.openat2(root_fd, "proc", PATH_FLAGS | os.O_DIRECTORY | os.O_NOFOLLOW, IN_ROOT, what="/proc")
    except OSError as e:
        raise PycontainError(f"linux.sysctl needs the container's /proc: {e.strerror}") from None
    try:
        if syscalls.fstatfs_type(proc, "/proc") != syscalls.PROC_SUPER_MAGIC:
            raise PycontainError("linux.sysctl: the container's /proc is not a procfs; refusing to write sysctls")
        beneath = syscalls.RESOLVE_NO_XDEV | syscalls.RESOLVE_NO_SYMLINKS | syscalls.RESOLVE_NO_MAGICLINKS \
            | syscalls.RESOLVE_BENEATH
        for path, value in values:
            inside = path.removeprefix("proc/")
            try:
                fd = syscalls.openat2(proc, inside, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, beneath, what=path)
            except OSError as e:
                if e.errno == errno.EXDEV:
                    raise PycontainError(f"linux.sysctl: /{path} has something mounted over it; refusing to write "
                                         "the sysctl through a mount that is not procfs") from None
                raise
            try:
                if syscalls.fstatfs_type(fd, path) != syscalls.PROC_SUPER_MAGIC:
                    raise PycontainError(f"linux.sysctl: /{path} is not procfs's; refusing to write it")
                os.write(fd, value.encode())
            finally:
                os.close(fd)
            explain.say(f"write {value} > /{path}: a sysctl of the container's own namespace (checked: procfs)")
    finally:
        os.close(proc)


def setup_rootfs(plan: RootfsPlan) -> None:
    """Build the root filesystem from the spec's mounts and pivot into it. Runs in the child, in its
    own mount namespace."""
    root = plan.rootfs
    # Stop mount events flowing back to the host: after this, nothing mounted here is seen outside.
    syscalls.mount("none", "/", None, plan.propagation)
    explain.say("mount(/, MS_REC|MS_SLAVE): mounts made from here on stay inside the container's mount namespace")
    if plan.propagation & PROPAGATION["shared"]:
        # pivot_root(2) refuses when the mount holding the new root (or the current root) is shared: that
        # one mount becomes private; everything below keeps the shared propagation the spec asked for.
        syscalls.mount("none", _mount_point_of(os.path.dirname(root)), None, syscalls.MS_PRIVATE)
    if plan.idmapped:
        _place_idmapped(plan)
    if plan.overlay is not None:
        syscalls.mount("overlay", plan.host(root), "overlay", 0, _overlay_options(plan))
        explain.say(f"mount(overlay, lowerdir={plan.overlay.count(':') + 1} image layer(s), upperdir=per-container): "
                    "the image stays read-only, writes go to this container's upperdir")
    else:
        # pivot_root needs the new root to be a mount point: the bundle's rootfs, bound onto itself.
        syscalls.mount(plan.host(root), plan.host(root), None, syscalls.MS_BIND | MS_REC)
        explain.say(f"mount({root}, MS_BIND|MS_REC): the bundle's rootfs becomes a mount point to pivot into")
    # What is now mounted on root.path: looked up again by name (from its parent, in a user namespace),
    # since a descriptor of the directory itself stays on the directory below the mount.
    mounted_root = _mounted(plan, root)
    root_fd = os.open(mounted_root, PATH_FLAGS | os.O_DIRECTORY)
    null_fd = None
    try:
        # The image's own /proc, /dev and /sys are checked before anything is mounted: a bind mount
        # must not be able to plant a mount under a path that is about to become a link.
        for path in PLAIN_DIRS:
            if any(m.destination == path for m in plan.mounts):
                os.close(open_plain_dir(root_fd, path))
        dev_mounted = False
        for m in plan.mounts:
            if m.fstype in ("cgroup", "cgroup2") and m.destination == "/sys/fs/cgroup" and plan.cgroup_mounts:
                _mount_cgroupfs(root_fd, plan.cgroup_mounts)
                continue
            _mount_one(root_fd, m, plan)
            dev_mounted = dev_mounted or m.destination == "/dev"
        if dev_mounted:
            dev = _open_dev(root_fd)
            try:
                _populate_dev(dev, plan.userns)
            finally:
                os.close(dev)
        _make_devices(root_fd, plan.devices, plan.userns)
        null_fd = _open_null(root_fd) if plan.masked else None
        try:
            os.close(open_in_root(root_fd, plan.cwd, "dir"))
        except OSError:
            pass  # a read-only root: the working directory is checked again (and reported) before exec
        if plan.sysctl:
            _write_sysctls(root_fd, plan.sysctl)
        if plan.before_pivot is not None:
            plan.before_pivot()
    except BaseException:
        if null_fd is not None:
            os.close(null_fd)
        raise
    finally:
        os.close(root_fd)

    pivot_root(mounted_root)
    try:
        mask_paths(null_fd, plan.masked, plan.readonly_paths)
    finally:
        if null_fd is not None:
            os.close(null_fd)
    if plan.read_only:
        new_root = os.open("/", PATH_FLAGS | os.O_DIRECTORY)
        try:
            syscalls.mount_setattr(new_root, syscalls.MOUNT_ATTR_RDONLY, False, "/")
        finally:
            os.close(new_root)
        explain.say("mount_setattr(/, MOUNT_ATTR_RDONLY): a read-only root")


def _place_idmapped(plan: RootfsPlan) -> None:
    """Attach each idmapped layer (a detached mount the parent made) over its own layer directory, here in
    the container's mount namespace only (/ is a slave by now: nothing propagates to the host). The
    overlay's lowerdir names the mounts themselves (/proc/self/fd/N), now that they are in this
    namespace: overlayfs cannot take them while detached (see userns.layers_for). They stay under the
    old root, which pivot_root detaches; overlayfs keeps its own private clones of them."""
    for layer, tree in plan.idmapped:
        target = plan.host_fds.get(layer)
        if target is None:
            raise PycontainError(f"cannot open the image layer {layer}")
        syscalls.move_mount(tree, target, "idmapped image layer")
    explain.say(f"open_tree + mount_setattr(MOUNT_ATTR_IDMAP) of {len(plan.idmapped)} image layer(s) in the parent, "
                "move_mount here: the shared layers appear owned by the container's uid range, nothing copied")


def _overlay_options(plan: RootfsPlan) -> str:
    """The overlay's options, every directory named through a descriptor in a user namespace: an
    idmapped layer by its mount (attached by now), the others by the child's own O_PATH descriptors."""
    assert plan.overlay is not None
    if not plan.userns:
        return plan.overlay
    trees = dict(plan.idmapped)
    out = []
    for opt in plan.overlay.split(","):
        key, eq, value = opt.partition("=")
        if key == "lowerdir":
            value = ":".join(fd_path(trees[d]) if d in trees else plan.host(d) for d in value.split(":"))
        elif key in ("upperdir", "workdir"):
            value = plan.host(value)
        out.append(key + eq + value)
    return ",".join(out)


def _mounted(plan: RootfsPlan, root: str) -> str:
    """The path that resolves to what is mounted on root (its parent reached through a descriptor of
    the parent's, in a user namespace)."""
    parent = os.path.dirname(root)
    if parent in plan.host_fds:
        return f"{fd_path(plan.host_fds[parent])}/{os.path.basename(root)}"
    return root


def _mount_point_of(path: str) -> str:
    """The mount point of the mount `path` is on (the longest one that contains it)."""
    best = "/"
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
                best = point
    return best


def _mount_one(root_fd: int, m: MountStep, plan: RootfsPlan | None = None) -> None:
    """One spec mount, on its destination opened inside the root (made if missing: a directory, or a
    file when a file is bound)."""
    if m.bind:
        source = plan.host(m.source) if plan is not None else m.source
        try:
            is_dir = stat.S_ISDIR(os.stat(source).st_mode)
        except FileNotFoundError:
            raise PycontainError(f"mount {m.source} on {m.destination}: the source does not exist") from None
        target = open_in_root(root_fd, m.destination, "dir" if is_dir else "file")
        try:
            bind(source, target, bool(m.flags & MS_RDONLY), f"{m.source} -> {m.destination}",
                 recursive=m.recursive, attrs=m.bind_attrs())
            if m.propagation:
                _propagate(root_fd, m)
        finally:
            os.close(target)
        explain.say(f"open_tree({m.source}, OPEN_TREE_CLONE{'|AT_RECURSIVE' if m.recursive else ''})"
                    + (" + mount_setattr(MOUNT_ATTR_RDONLY)" if m.flags & MS_RDONLY else "")
                    + f" + move_mount(-> {m.destination}): a host path shared into the container")
        return
    target = open_in_root(root_fd, m.destination, "dir")
    try:
        try:
            mount_new(m.source, target, m.fstype, m.flags, m.data, m.destination)
        except PermissionError:
            if not (m.fstype == "sysfs" and plan is not None and plan.userns):
                raise
            # A user namespace may mount sysfs only with a network namespace it owns (--network host, or
            # a joined one, is not): the host's /sys instead, read-only with everything below it, as runc.
            bind("/sys", target, True, f"/sys -> {m.destination}", attrs=m.bind_attrs() | syscalls.MOUNT_ATTR_NOSUID
                 | syscalls.MOUNT_ATTR_NODEV | syscalls.MOUNT_ATTR_NOEXEC)
            explain.say(f"rbind /sys read-only on {m.destination}: sysfs itself needs a network namespace of the "
                        "container's user namespace")
            return
    finally:
        os.close(target)
    if m.propagation:
        _propagate(root_fd, m)
    explain.say(f"mount({m.fstype}, {m.destination}): {WHY_MOUNT.get(m.destination, 'as the spec asks')}")


# Why each of the container's own filesystems is mounted: --explain's words (emit-shell's too).
WHY_MOUNT = {
    "/proc": "a new procfs instance that shows only the container's PID namespace",
    "/dev": "a tmpfs with only the standard device nodes: no host device is reachable",
    "/dev/pts": "a private devpts instance (newinstance): the container's own ptys",
    "/sys": "read-only, and it lists only the container's network devices",
    "/dev/shm": "the container's own POSIX shared memory",
    "/dev/mqueue": "the container's own POSIX message queues (its IPC namespace)",
}


def _propagate(root_fd: int, m: MountStep) -> None:
    fd = syscalls.openat2(root_fd, m.destination, PATH_FLAGS | os.O_NOFOLLOW, IN_ROOT, what=m.destination)
    try:
        syscalls.mount("none", fd_path(fd), None, m.propagation)
    finally:
        os.close(fd)


def _populate_dev(dev: int, userns: bool = False) -> None:
    """The standard nodes and links in the container's fresh /dev tmpfs (as runc makes them)."""
    base = fd_path(dev)
    for name, (major, minor) in DEVICES.items():
        if userns:
            _bind_device(dev, name, f"/dev/{name}", (major, minor))
            continue
        try:
            syscalls.mknod(f"{base}/{name}", 0o666, major, minor)
        except FileExistsError:
            pass
    for name, target in DEV_LINKS.items():
        try:
            os.symlink(target, name, dir_fd=dev)
        except FileExistsError:
            pass
    explain.say(("bind the host's" if userns else "mknod") + " null zero full random urandom tty in /dev: no other "
                "host device exists here" + (" (mknod needs the host's CAP_MKNOD, which a user namespace lacks)"
                                              if userns else ""))


def _bind_device(parent: int, name: str, host: str, expect: tuple[int, int] | None = None) -> None:
    """A device node in a user namespace: an empty file, with the host's node bound onto it (runc does the
    same: mknod of a device needs CAP_MKNOD in the host's namespace)."""
    st = os.stat(host)
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) or (
            expect is not None and st.st_rdev != os.makedev(*expect)):
        raise PycontainError(f"the host's {host} is not the expected device node")
    try:
        os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                         dir_fd=parent))
    except FileExistsError:
        pass
    target = syscalls.openat2(parent, name, PATH_FLAGS | os.O_NOFOLLOW, IN_ROOT | syscalls.RESOLVE_NO_SYMLINKS)
    try:
        # What was there already (a bundle's shared /dev, an image's node) must be a file: a link
        # would have the host's node bound wherever it points (CVE-2025-31133's trick, here).
        mode = os.fstat(target).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode)):
            raise PycontainError(f"cannot bind the host's {host} onto {name} in the container: it is not a file "
                                 "or a device node")
        bind(host, target, False, f"{host} -> /dev/{name}", recursive=False)
    finally:
        os.close(target)


def _make_devices(root_fd: int, devices: list[tuple[str, int, int, int, int, int]], userns: bool = False) -> None:
    """linux.devices: each node made inside the root, on a parent opened without following links out."""
    for path, mode, major, minor, uid, gid in devices:
        parent_path, _, name = path.rstrip("/").rpartition("/")
        parent = open_in_root(root_fd, parent_path or "/", "dir")
        if userns and (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)):
            # No mknod in a user namespace: the host's node of that number, bound (ownership as on the host).
            try:
                _bind_device(parent, name, _host_device(mode, major, minor, path), (major, minor))
            finally:
                os.close(parent)
            continue
        try:
            try:
                # mode carries the node's type (S_IFCHR, S_IFBLK, S_IFIFO); mknod applies the umask, so
                # the permissions are set again exactly.
                os.mknod(name, mode, os.makedev(major, minor), dir_fd=parent)
                os.chmod(name, mode & 0o7777, dir_fd=parent)
            except FileExistsError:
                pass
            os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(parent)


def _host_device(mode: int, major: int, minor: int, path: str) -> str:
    """The host's node for a device number: the same path if it is that device, else /dev/{char,block}/M:N,
    else any node of /dev with that number."""
    want = os.makedev(major, minor)
    block = stat.S_ISBLK(mode)
    candidates = [path, f"/dev/{'block' if block else 'char'}/{major}:{minor}"]
    try:  # a host without udev's /dev/char links: the node of that number anywhere in /dev
        with os.scandir("/dev") as it:
            candidates += sorted(entry.path for entry in it)
    except OSError:
        pass
    for candidate in candidates:
        try:
            st = os.stat(candidate, follow_symlinks=False)
        except OSError:
            continue
        if st.st_rdev == want and (stat.S_ISBLK(st.st_mode) if block else stat.S_ISCHR(st.st_mode)):
            return candidate
    raise PycontainError(f"linux.devices: {path} ({major}:{minor}): the host has no such device to bind into a "
                         "container with a user namespace (mknod is not allowed there)")


def _open_dev(root_fd: int) -> int:
    """The container's /dev directory (now the tmpfs mounted there), never through a link."""
    return syscalls.openat2(root_fd, "dev", PATH_FLAGS | os.O_DIRECTORY | os.O_NOFOLLOW, IN_ROOT, what="/dev")


def _open_null(root_fd: int) -> int:
    """The container's /dev/null as a descriptor, checked to be the null device (char 1:3)."""
    try:
        dev = _open_dev(root_fd)
    except OSError as e:
        raise PycontainError(f"cannot mask paths: the container has no /dev ({e.strerror})") from None
    try:
        return checked_null(dev)
    finally:
        os.close(dev)


def checked_null(dev_fd: int) -> int:
    """The /dev/null we just made, as a descriptor, after checking it is the null device (char 1:3)."""
    fd = syscalls.openat2(dev_fd, "null", PATH_FLAGS | os.O_NOFOLLOW, IN_ROOT | syscalls.RESOLVE_NO_SYMLINKS)
    st = os.fstat(fd)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(*DEVICES["null"]):
        os.close(fd)
        raise PycontainError("/dev/null in the container is not the null device")
    return fd


def _mount_cgroupfs(root_fd: int, specs: list[tuple[str, str, str]]) -> None:
    """The container's own cgroup, read-only, at /sys/fs/cgroup.

    specs are (fstype, subdir, options): with a cgroup namespace a new cgroupfs instance shows the
    container's cgroup as its root. Without one, fstype is "bind" and the third field is the host
    directory of the container's cgroup, bound read-only, so the rest of the host's tree stays unseen.
    """
    if not specs:
        return
    ro = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    v1 = any(subdir for _, subdir, _ in specs)
    base = open_in_root(root_fd, "/sys/fs/cgroup", "dir")
    try:
        if v1:  # a tmpfs to hold one directory per hierarchy
            mount_new("tmpfs", base, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755,size=64k", "/sys/fs/cgroup")
            base = reopen(root_fd, "/sys/fs/cgroup", base)
            for _, subdir, _ in specs:
                os.mkdir(subdir, 0o755, dir_fd=base)
        for fstype, subdir, options in specs:
            target = syscalls.openat2(base, subdir or ".", PATH_FLAGS | os.O_NOFOLLOW, IN_ROOT)
            try:
                if fstype == "bind":
                    bind(options, target, True, f"/sys/fs/cgroup/{subdir}", attrs=syscalls.MOUNT_ATTR_NOSUID
                         | syscalls.MOUNT_ATTR_NODEV | syscalls.MOUNT_ATTR_NOEXEC)
                else:
                    mount_new(fstype, target, fstype, ro, options or None, f"/sys/fs/cgroup/{subdir}")
            finally:
                os.close(target)
        if v1:
            syscalls.mount_setattr(base, syscalls.MOUNT_ATTR_RDONLY, False, "/sys/fs/cgroup")
    finally:
        os.close(base)
    explain.say("mount(cgroup, /sys/fs/cgroup, MS_RDONLY): the container sees its own cgroup, read-only")


def pivot_root(root: str) -> None:
    """Make `root` the root and detach the old one, so no path leads back to the host's files."""
    os.chdir(root)
    # pivot_root(".", ".") stacks the old root on top of the new one; unmounting "." then drops it
    # without needing a directory inside the image to park it in.
    syscalls.pivot_root(".", ".")
    syscalls.umount2(".", syscalls.MNT_DETACH)
    os.chdir("/")
    explain.say("pivot_root(rootfs) + umount2(old root, MNT_DETACH): the host's filesystem is gone from view")


def mask_paths(null_fd: int | None, masked: tuple[str, ...] = MASKED_PATHS,
               readonly: tuple[str, ...] = READONLY_PATHS) -> None:
    """Hide MASKED_PATHS (null_fd's device on files, an empty read-only tmpfs on directories) and make
    READONLY_PATHS read-only with every mount below them. Runs after pivot_root, on the container's own
    /proc and /sys; every path is opened without following magic links, and /dev/null is bound from the
    descriptor of the node we made, never looked up by name (CVE-2025-31133)."""
    root_fd = os.open("/", PATH_FLAGS | os.O_DIRECTORY)
    try:
        for path in masked:
            fd = _open_optional(root_fd, path)
            if fd is None:
                continue
            try:
                mode = os.fstat(fd).st_mode
                if stat.S_ISDIR(mode):
                    mount_new("tmpfs", fd, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0", path)
                elif not stat.S_ISLNK(mode) and null_fd is not None:
                    bind(null_fd, fd, False, f"/dev/null -> {path}")
            finally:
                os.close(fd)
        for path in readonly:
            fd = _open_optional(root_fd, path)
            if fd is None:
                continue
            try:
                bind(fd, fd, True, path)
            finally:
                os.close(fd)
    finally:
        os.close(root_fd)
    explain.say(f"bind /dev/null or an empty tmpfs over {len(masked)} masked paths (/proc/kcore, /proc/keys, "
                f"...) and make {len(readonly)} read-only with everything below them (mount_setattr "
                "AT_RECURSIVE): kernel knobs stay out of reach")


def _open_optional(root_fd: int, path: str) -> int | None:
    try:
        return syscalls.openat2(root_fd, path, PATH_FLAGS | os.O_NOFOLLOW, IN_ROOT, what=path)
    except FileNotFoundError:
        return None
