"""Every raw kernel call pycontain makes that Python's os module lacks.

This is the only module that imports the cffi extension (`pycontain._native`, built from csrc/ by pip).
Each wrapper raises OSError(errno, "call(args)") so an error names the call that failed. It is also the
seam unit tests use: `install(fake)` swaps the backend for an object with the same `pc_*` functions.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# <linux/sched.h>: one bit per namespace (clone(2), unshare(2), setns(2)).
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

NAMESPACE_FLAGS = {
    "pid": CLONE_NEWPID, "mnt": CLONE_NEWNS, "uts": CLONE_NEWUTS,
    "ipc": CLONE_NEWIPC, "net": CLONE_NEWNET, "cgroup": CLONE_NEWCGROUP, "user": CLONE_NEWUSER,
}

# <sys/mount.h>: mount(2) flags.
_FLAG_NAMES = {
    "CLONE_NEWPID": CLONE_NEWPID, "CLONE_NEWNS": CLONE_NEWNS, "CLONE_NEWUTS": CLONE_NEWUTS,
    "CLONE_NEWIPC": CLONE_NEWIPC, "CLONE_NEWNET": CLONE_NEWNET, "CLONE_NEWCGROUP": CLONE_NEWCGROUP,
    "CLONE_NEWUSER": CLONE_NEWUSER,
}

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MNT_DETACH = 2

AT_FDCWD = -100

# <linux/openat2.h>: how openat2(2) may resolve a path.
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02  # refuse /proc/PID/{fd,cwd,root,exe}-style links
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08  # dirfd is a wall: no absolute path, no ".." above it
RESOLVE_IN_ROOT = 0x10  # treat dirfd as "/": absolute links and ".." cannot climb out of it

# <linux/mount.h>: the new mount API.
OPEN_TREE_CLONE = 1
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x04
MOVE_MOUNT_T_EMPTY_PATH = 0x40
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR_IDMAP = 0x100000
CLONE_PARENT = 0x00008000

_backend: Any = None


def _lib() -> Any:
    global _backend
    if _backend is None:
        from pycontain import _native  # type: ignore[attr-defined]

        _backend = _native.lib
    return _backend


def install(backend: Any) -> Any:
    """Replace the kernel with `backend` (tests); returns the previous one."""
    global _backend
    previous, _backend = _backend, backend
    return previous


def _check(result: int, call: str) -> int:
    if result < 0:
        err = _errno()
        raise OSError(err, f"{call}: {os.strerror(err)}")
    return result


def _errno() -> int:
    lib = _lib()
    if hasattr(lib, "errno"):  # fakes report their errno directly
        return int(lib.errno)
    from pycontain import _native  # type: ignore[attr-defined]

    return int(_native.ffi.errno)


def clone(flags: int) -> int:
    """Fork into new namespaces: 0 in the child, the child's pid in the parent."""
    return _check(_lib().pc_clone(flags), f"clone({flags_name(flags)})")


def unshare(flags: int) -> None:
    _check(_lib().pc_unshare(flags), f"unshare({flags_name(flags)})")


def setns(fd: int, nstype: int) -> None:
    _check(_lib().pc_setns(fd, nstype), f"setns({flags_name(nstype)})")


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_lib().pc_pivot_root(new_root.encode(), put_old.encode()), f"pivot_root({new_root}, {put_old})")


def mount(source: str, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    _check(
        _lib().pc_mount(source.encode(), target.encode(), fstype.encode() if fstype else _null(),
                        flags, data.encode() if data else _null()),
        f"mount({source!r}, {target!r}, {fstype or 'none'})",
    )


def umount2(target: str, flags: int = 0) -> None:
    _check(_lib().pc_umount2(target.encode(), flags), f"umount2({target!r})")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_lib().pc_sethostname(raw, len(raw)), f"sethostname({name!r})")


def close_range(first: int, last: int = 0xFFFFFFFF) -> None:
    _check(_lib().pc_close_range(first, last, 0), f"close_range({first}, {last})")


def malloc_trim() -> None:
    """Free heap pages back to the kernel (csrc/syscalls.h)."""
    _lib().pc_malloc_trim()


def mknod(path: str, mode: int, major: int, minor: int) -> None:
    """mknod(2) of a character device, with exactly `mode` (mknod alone applies the umask)."""
    lib = _lib()
    if hasattr(lib, "pc_mknod"):  # a fake backend
        lib.pc_mknod(path, mode, major, minor)
        return
    import stat

    os.mknod(path, mode | stat.S_IFCHR, os.makedev(major, minor))
    os.chmod(path, mode)


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0, what: str | None = None) -> int:
    """openat2(2): open `path` under `dirfd` with the `resolve` restrictions; returns the fd."""
    return _check(_lib().pc_openat2(dirfd, path.encode(), flags, mode, resolve), f"open {what or path}")


PROC_SUPER_MAGIC = 0x9FA0  # <linux/magic.h>


def fstatfs_type(fd: int, what: str) -> int:
    """fstatfs(2)'s f_type of an open descriptor: which kind of filesystem it is on (PROC_SUPER_MAGIC...)."""
    return _check(_lib().pc_fstatfs_type(fd), f"fstatfs({what})")


def open_tree(dirfd: int, path: str, flags: int, what: str) -> int:
    """open_tree(2): with OPEN_TREE_CLONE, a detached copy of a mount tree (a bind mount not yet placed)."""
    return _check(_lib().pc_open_tree(dirfd, path.encode(), flags), f"open_tree({what})")


def move_mount(from_fd: int, to_fd: int, what: str) -> None:
    """move_mount(2) from one descriptor onto another: no path is looked up again, so none can be swapped."""
    _check(_lib().pc_move_mount(from_fd, b"", to_fd, b"", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH),
           f"move_mount({what})")


def mount_setattr(fd: int, attr_set: int, recursive: bool, what: str) -> None:
    """mount_setattr(2) on the mount `fd` names: sets only `attr_set`, keeping every other flag (nosuid,
    nodev, ...), and with `recursive` on every mount below it too (MS_REMOUNT ignores MS_REC)."""
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    _check(_lib().pc_mount_setattr(fd, b"", flags, attr_set, 0, 0), f"mount_setattr({what})")


def mount_setattr_idmap(fd: int, userns_fd: int, what: str, attr_set: int = 0) -> None:
    """mount_setattr(MOUNT_ATTR_IDMAP) of a detached mount (open_tree(OPEN_TREE_CLONE)): its files appear
    owned through the mapping of the user namespace userns_fd. Needs CAP_SYS_ADMIN over the filesystem
    (the host's root) and a filesystem that allows it (FS_ALLOW_IDMAP: ext4, xfs, btrfs, tmpfs ...)."""
    _check(_lib().pc_mount_setattr_idmap(fd, AT_EMPTY_PATH, attr_set, userns_fd), f"mount_setattr(IDMAP, {what})")


def userns_fd(uid_map: str, gid_map: str) -> int:
    """A new user namespace with these /proc/PID/uid_map and gid_map lines, as a descriptor (O_CLOEXEC);
    the caller does not enter it. It carries the mapping of idmapped mounts."""
    return _check(_lib().pc_userns_fd(uid_map.encode(), gid_map.encode()), "clone(CLONE_NEWUSER) for an idmapping")


def join_session_keyring() -> None:
    """keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL): a new anonymous session keyring for this process."""
    _check(_lib().pc_join_session_keyring(_null()), "keyctl(KEYCTL_JOIN_SESSION_KEYRING)")


# <linux/prctl.h>
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2


def set_dumpable(dumpable: bool) -> None:
    _check(_lib().pc_prctl1(PR_SET_DUMPABLE, int(dumpable)), "prctl(PR_SET_DUMPABLE)")


def set_pdeathsig(signum: int) -> None:
    _check(_lib().pc_prctl1(PR_SET_PDEATHSIG, signum), "prctl(PR_SET_PDEATHSIG)")


def set_no_new_privs() -> None:
    _check(_lib().pc_prctl1(PR_SET_NO_NEW_PRIVS, 1), "prctl(PR_SET_NO_NEW_PRIVS)")


def set_child_subreaper() -> None:
    """PR_SET_CHILD_SUBREAPER: orphaned descendants (an OCI runtime's container init, once `create`
    exits) are reparented to this process, which can then wait for them."""
    _check(_lib().pc_prctl1(PR_SET_CHILD_SUBREAPER, 1), "prctl(PR_SET_CHILD_SUBREAPER)")


def set_keepcaps(keep: bool) -> None:
    """PR_SET_KEEPCAPS: keep the permitted set across setuid() to a non-zero uid (the spec asks for
    capabilities a non-root process should have)."""
    _check(_lib().pc_prctl1(PR_SET_KEEPCAPS, int(keep)), "prctl(PR_SET_KEEPCAPS)")


def cap_ambient_raise(cap: int) -> None:
    _check(_lib().pc_prctl2(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap), "prctl(PR_CAP_AMBIENT_RAISE)")


def capbset_keep(keep: int) -> None:
    """Drop every capability not in the bit mask `keep` from the bounding set (PR_CAPBSET_DROP)."""
    _check(_lib().pc_capbset_keep(keep), "prctl(PR_CAPBSET_DROP)")


def capset(effective: int, permitted: int, inheritable: int) -> None:
    _check(_lib().pc_capset(effective, permitted, inheritable), "capset")


def cap_ambient_clear_all() -> None:
    _check(_lib().pc_cap_ambient_clear_all(), "prctl(PR_CAP_AMBIENT_CLEAR_ALL)")


def _null() -> Any:
    lib = _lib()
    if hasattr(lib, "errno"):
        return None
    from pycontain import _native  # type: ignore[attr-defined]

    return _native.ffi.NULL


def flags_name(flags: int) -> str:
    names = [name for name, bit in _FLAG_NAMES.items() if flags & bit]
    return "|".join(names) or hex(flags)


def seccomp_set_filter(prog: bytes, flags: int = 0) -> None:
    """seccomp(SECCOMP_SET_MODE_FILTER, flags): install a compiled classic-BPF program (8 bytes an
    instruction) on this process. It needs no_new_privs or CAP_SYS_ADMIN, and it survives execve."""
    _check(_lib().pc_seccomp_set_filter(prog, len(prog) // 8, flags), "seccomp(SECCOMP_SET_MODE_FILTER)")


def libseccomp() -> Any:
    """The pc_scmp_* functions (csrc/syscalls.c) with libseccomp.so.2 loaded, on first use: no start
    without a seccomp filter loads it. They return libseccomp's codes (0 or a negative errno)."""
    lib = _lib()
    if lib.pc_scmp_open() < 0:
        from pycontain import _native  # type: ignore[attr-defined]

        why = _native.ffi.string(lib.pc_scmp_error()).decode(errors="replace")
        raise OSError(0, f"cannot load libseccomp ({why}): install libseccomp2")
    return lib


# <linux/bpf.h>: a cgroup v2 device filter (pycontain/cgroups/v2.py writes the program itself).
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6  # the attach type
BPF_F_ALLOW_MULTI = 2  # programs of nested cgroups all run: a container may still filter its own children


def bpf_prog_load(prog_type: int, insns: bytes, license: str = "MIT") -> int:
    """bpf(BPF_PROG_LOAD) of eBPF instructions (8 bytes each): the program's fd. When the verifier
    refuses it, the load is repeated with a log, whose last line says why."""
    lib = _lib()
    count = len(insns) // 8
    fd = lib.pc_bpf_prog_load(prog_type, insns, count, license.encode(), _null(), 0)
    if fd >= 0:
        return int(fd)
    err = _errno()
    why = ""
    if not hasattr(lib, "errno") and err in (22, 13):  # EINVAL, EACCES: the verifier has something to say
        from pycontain import _native  # type: ignore[attr-defined]

        log = _native.ffi.new("char[]", 1 << 16)
        lib.pc_bpf_prog_load(prog_type, insns, count, license.encode(), log, 1 << 16)
        lines = _native.ffi.string(log).decode(errors="replace").strip().splitlines()
        why = f" (verifier: {lines[-1]})" if lines else ""
    raise OSError(err, f"bpf(BPF_PROG_LOAD): {os.strerror(err)}{why}")


def bpf_prog_attach(target_fd: int, prog_fd: int, attach_type: int, flags: int) -> None:
    _check(_lib().pc_bpf_prog_attach(target_fd, prog_fd, attach_type, flags), "bpf(BPF_PROG_ATTACH)")


def bpf_prog_detach(target_fd: int, prog_fd: int, attach_type: int) -> None:
    _check(_lib().pc_bpf_prog_detach(target_fd, prog_fd, attach_type), "bpf(BPF_PROG_DETACH)")


def bpf_prog_query(target_fd: int, attach_type: int) -> list[int]:
    """The ids of the programs attached to this cgroup itself (not those inherited from its parents)."""
    lib = _lib()
    if hasattr(lib, "errno"):  # a fake backend
        return list(lib.pc_bpf_prog_query(target_fd, attach_type))
    from pycontain import _native  # type: ignore[attr-defined]

    room = 64
    while True:
        ids = _native.ffi.new("unsigned int[]", room)
        count = _native.ffi.new("unsigned int *", room)
        if lib.pc_bpf_prog_query(target_fd, attach_type, ids, count) >= 0:
            return [int(ids[i]) for i in range(min(count[0], room))]
        if _errno() != 28 or count[0] <= room:  # ENOSPC: more programs than room; count says how many
            _check(-1, "bpf(BPF_PROG_QUERY)")
        room = int(count[0])


def bpf_prog_get_fd_by_id(prog_id: int) -> int:
    return _check(_lib().pc_bpf_prog_get_fd_by_id(prog_id), f"bpf(BPF_PROG_GET_FD_BY_ID, {prog_id})")
