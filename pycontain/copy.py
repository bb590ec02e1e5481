"""`cp`: copy files between a container and the host, or a tar stream on stdin/stdout, as `docker cp` does.

    pycontain cp [-a] [-L] [-q] SRC|- CONTAINER:DST
    pycontain cp [-a] [-L] [-q] CONTAINER:SRC DST|-

Docker's path rules (its cp reference): container paths are relative to the container's "/"; SRC
`dir` copies the directory itself, `dir/.` its contents; an existing directory DST receives SRC by its
basename; a DST that does not exist is created with that name (its parent must exist); a DST ending in
"/" must be an existing directory for a file SRC; a directory cannot replace a file. The last component
of SRC is not followed when it is a symbolic link unless -L is given (the copy gets SRC's name); the last
component of DST is followed. Without -a, what is copied into a container belongs to the container's
root (uid 0, or the range's root with --userns=auto) and what is copied out to the user running cp;
with -a the uid/gid of the source are kept (mapped into the container's range with --userns=auto).

Safety (CVE-2018-15664): every container path is resolved with openat2(RESOLVE_IN_ROOT) from a
descriptor of the container's root, so no symlink in the container, absolute or full of "..", leads
out of it; everything after that is done relative to the descriptors (openat/mkdirat/linkat with
O_NOFOLLOW), never by a path looked up again, so a container swapping a directory for a link while cp
runs cannot redirect it. Entries written below a destination directory (a tar on stdin, a directory
tree) go through no symlink at all (RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), as image layers do
(images/unpack.py): no "..", absolute names are taken relative to the destination. No user or group
name is ever looked up, so no container NSS module can be loaded (CVE-2019-14271).

Where the container's files are: a running container's root is /proc/PID/root of its PID 1 (with its
volumes and bind mounts). A stopped one has no mounted root anywhere: a child process makes a private
mount namespace, mounts the overlay (and the container's bind mounts and /etc files) there, copies,
and exits; the kernel drops its mounts with the namespace, even if pycontain is SIGKILLed (the child
dies with it: PR_SET_PDEATHSIG). The container's lock is held meanwhile, so it cannot start with its
overlay mounted twice. With --userns=auto, ids are mapped into the container's range: a running one's
overlay takes new files only from inside its user namespace, so a child joins it and unpacks a tar
stream the host side writes; a stopped one's image layers are idmapped in the child's namespace (as
its executor does), so directories the overlay copies up keep the ids the container sees.
Device nodes and sockets are not copied (only listed in a tar written to stdout); /proc, /sys and the
other kernel filesystems of a running container are never read.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import tarfile

from pycontain import syscalls
from pycontain.cli import FLAG, VALUE, need
from pycontain.errors import PycontainError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import IO, Any

    from pycontain.state import Record

    from typing import Protocol

    class Readable(Protocol):
        def read(self, n: int = -1, /) -> bytes: ...

COMMANDS: dict[str, tuple[list[Any], str, str]] = {
    "cp": ([(("-a", "--archive"), "archive", FLAG, "", "archive mode: keep the uid/gid of what is copied"),
            (("-L", "--follow-link"), "follow", FLAG, "", "copy what a symbolic link SRC points to, not the link"),
            (("-q", "--quiet"), "quiet", FLAG, "", "no progress output")],
           "CONTAINER:SRC DST|-  or  SRC|- CONTAINER:DST",
           "copy files between a container and the host (- for a tar stream on stdin or stdout)"),
    "export": ([(("-o", "--output"), "output", VALUE, "FILE", "write to FILE instead of stdout")], "CONTAINER",
               "write a container's filesystem as a tar archive"),
}

IN_ROOT = syscalls.RESOLVE_IN_ROOT | syscalls.RESOLVE_NO_MAGICLINKS
# Below a destination directory: no symlink at all on the way, nothing above it.
BENEATH = syscalls.RESOLVE_BENEATH | syscalls.RESOLVE_NO_SYMLINKS | syscalls.RESOLVE_NO_MAGICLINKS
PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
MAX_LINKS = 40
CHUNK = 1 << 20
# Kernel filesystems a running container has mounted (<linux/magic.h>): never read, never descended
# into. Docker's cp sees the container's rootfs and volumes only, not its /proc or /sys.
DRIVER_MOUNT = "driver-mount"  # volumes.py: a tmpfs-typed volume, mounted on its directory only while in use
KERNEL_FS = {
    0x9FA0: "proc", 0x62656572: "sysfs", 0x27E0EB: "cgroup", 0x63677270: "cgroup2", 0x1CD1: "devpts",
    0x19800202: "mqueue", 0x73636673: "securityfs", 0x64626720: "debugfs", 0x74726163: "tracefs",
    0xCAFE4A11: "bpf", 0x6165676C: "pstore", 0x62656570: "configfs", 0x65735543: "fusectl",
}


class CopyError(PycontainError):
    """A cp that cannot be done (exit 125, one line)."""


# ---------------------------------------------------------------- arguments

def split_arg(arg: str) -> tuple[str, str]:
    """Docker's split: an absolute path or one starting with "." is local; else CONTAINER:PATH if it has a
    colon (so a local name with a colon is written ./a:b)."""
    if arg.startswith("/"):
        return "", arg
    ctr, colon, path = arg.partition(":")
    if not colon or ctr.startswith("."):
        return "", arg
    return ctr, path


def container_path(path: str) -> str:
    """An absolute container path that keeps a trailing "/" or "/." (they change what is copied)."""
    clean = os.path.normpath("/" + path)
    clean = "/" + clean.lstrip("/")
    if path.endswith("/.") or path == ".":
        return clean.rstrip("/") + "/."
    if path.endswith("/") and clean != "/":
        return clean + "/"
    return clean


def _trailing(path: str) -> tuple[bool, bool]:
    """(ends with "/." (contents), ends with "/" (asserts a directory))."""
    return path.endswith("/.") or path == ".", path.endswith("/")


# ---------------------------------------------------------------- ids

class Ids:
    """Container ids <-> host ids. Identity without a user namespace; with --userns=auto, container id N
    is host id base+N (N < size). Files of a stopped container's image layers show their unshifted ids."""

    def __init__(self, lease: dict[str, Any] | None) -> None:
        self.uid = int(lease["uid"]) if lease else 0
        self.gid = int(lease["gid"]) if lease else 0
        self.size = int(lease.get("size", 65536)) if lease else 0

    def to_host(self, uid: int, gid: int) -> tuple[int, int]:
        if not self.size:
            return uid, gid
        if not (0 <= uid < self.size and 0 <= gid < self.size):
            raise CopyError(f"uid:gid {uid}:{gid} is outside the container's user namespace (0-{self.size - 1})")
        return self.uid + uid, self.gid + gid

    def to_container(self, uid: int, gid: int) -> tuple[int, int]:
        if not self.size:
            return uid, gid
        uid = uid - self.uid if self.uid <= uid < self.uid + self.size else uid
        gid = gid - self.gid if self.gid <= gid < self.gid + self.size else gid
        return uid, gid


# ---------------------------------------------------------------- reading a tree as tar entries

def _info(name: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.mtime = int(st.st_mtime)
    info.uname = info.gname = ""  # never looked up: no NSS (CVE-2019-14271)
    return info


class Walker:
    """Reads one file or directory tree through descriptors (never by path) as (TarInfo, file) pairs.

    guard: refuse and skip kernel filesystems (a running container's /proc, /sys, ...).
    """

    def __init__(self, ids: Ids | None, guard: bool) -> None:
        self.ids = ids
        self.guard = guard
        self.links: dict[tuple[int, int], str] = {}
        self.bytes = 0

    def _kernel_fs(self, fd: int, what: str) -> str | None:
        if not self.guard:
            return None
        return KERNEL_FS.get(syscalls.fstatfs_type(fd, what))

    def entries(self, parent: int, name: str, arcname: str, what: str,
                top: bool = True) -> Iterator[tuple[tarfile.TarInfo, Readable | None]]:
        """`name` in the directory `parent` (name "." for the directory itself), archived as `arcname`."""
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        kind = stat.S_IFMT(st.st_mode)
        if kind == stat.S_IFDIR:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            try:
                fs = self._kernel_fs(fd, what)
                if fs is not None:
                    if top:
                        raise CopyError(f"cannot copy {what}: it is on the container's {fs} filesystem")
                    return  # a kernel filesystem mounted below what is copied: left out
                yield from self._dir(fd, arcname, what)
            finally:
                os.close(fd)
            return
        info = self._header(arcname, st)
        if kind == stat.S_IFREG:
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self.links:
                info.type, info.linkname, info.size = tarfile.LNKTYPE, self.links[key], 0
                yield info, None
                return
            # O_PATH first: opening a device node (one swapped in since the stat) may itself act on the
            # device. Only a regular file is then opened for reading, through its own descriptor.
            path_fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            try:
                if not stat.S_ISREG(os.fstat(path_fd).st_mode):
                    return  # swapped for something else since the stat: not what was asked for
                fd = os.open(f"/proc/self/fd/{path_fd}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            finally:
                os.close(path_fd)
            with os.fdopen(fd, "rb") as f:
                fst = os.fstat(fd)
                fs = self._kernel_fs(fd, what)
                if fs is not None:
                    raise CopyError(f"cannot copy {what}: it is on the container's {fs} filesystem")
                info = self._header(arcname, fst)
                info.size = fst.st_size
                if st.st_nlink > 1:
                    self.links[key] = arcname
                self.bytes += fst.st_size
                yield info, _Exact(f, fst.st_size)
        elif kind == stat.S_IFLNK:
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=parent)
            yield info, None
        elif kind == stat.S_IFIFO:
            info.type = tarfile.FIFOTYPE
            yield info, None
        elif kind in (stat.S_IFCHR, stat.S_IFBLK):
            info.type = tarfile.CHRTYPE if kind == stat.S_IFCHR else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            yield info, None
        # sockets: nothing a tar can hold

    def _header(self, arcname: str, st: os.stat_result) -> tarfile.TarInfo:
        info = _info(arcname, st)
        if self.ids is not None:
            info.uid, info.gid = self.ids.to_container(st.st_uid, st.st_gid)
        return info

    def _dir(self, fd: int, arcname: str, what: str) -> Iterator[tuple[tarfile.TarInfo, Readable | None]]:
        info = self._header(arcname, os.fstat(fd))
        info.type = tarfile.DIRTYPE
        yield info, None
        for child in sorted(os.listdir(fd)):
            try:
                yield from self.entries(fd, child, f"{arcname}/{child}", _child_path(what, child), top=False)
            except FileNotFoundError:
                continue  # removed while we copied (a running container)


def _child_path(parent: str, child: str) -> str:
    """For messages: the container path of `child` in the directory `parent` ("/a/." or "/a/")."""
    return os.path.join(os.path.normpath(parent), child)


class _Exact:
    """A file read as exactly `size` bytes (a file that grows or shrinks meanwhile keeps the tar valid)."""

    def __init__(self, f: IO[bytes], size: int) -> None:
        self.f, self.left = f, size

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        want = self.left if n < 0 else min(n, self.left)
        data = self.f.read(want)
        if len(data) < want:
            data += b"\0" * (want - len(data))
        self.left -= len(data)
        return data


# ---------------------------------------------------------------- writing entries below a directory

def relname(name: str) -> str:
    """A tar entry's name relative to the destination: absolute names stay below it, ".." is refused."""
    from pycontain.images.unpack import safe_relpath

    return safe_relpath(name, lambda n: CopyError(f"tar entry {n!r} climbs out of the destination with '..'; "
                                                  "refusing it"))


class Extractor:
    """Writes entries below the directory `dest` (a descriptor): parents are opened with
    RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS from it, the entry itself is made relative to its parent's
    descriptor with O_EXCL|O_NOFOLLOW, and attributes are set through descriptors.

    owner: callable(uid, gid) -> host (uid, gid), or None to leave files to whoever runs cp.
    """

    def __init__(self, dest: int, owner: Callable[[int, int], tuple[int, int]] | None, where: str) -> None:
        self.dest = dest
        self.owner = owner
        self.where = where
        self.dirs: list[tuple[str, tarfile.TarInfo]] = []
        self.bytes = 0

    def _parent(self, rel: str) -> int:
        """The directory holding `rel`, made (as the owner's root) where missing."""
        head = os.path.dirname(rel)
        try:
            return syscalls.openat2(self.dest, head or ".", PATH_DIR, BENEATH, what=rel)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise self._refuse(rel, e) from None
        done = "."
        for part in head.split("/"):
            fd = syscalls.openat2(self.dest, done, PATH_DIR, BENEATH, what=rel)
            try:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                    if self.owner is not None:
                        os.chown(part, *self.owner(0, 0), dir_fd=fd, follow_symlinks=False)
                except FileExistsError:
                    pass
            finally:
                os.close(fd)
            done = f"{done}/{part}"
        try:
            return syscalls.openat2(self.dest, head, PATH_DIR, BENEATH, what=rel)
        except OSError as e:
            raise self._refuse(rel, e) from None

    def _refuse(self, rel: str, e: OSError) -> CopyError:
        if e.errno in (errno.ELOOP, errno.EXDEV):
            return CopyError(f"cannot copy {rel!r} into {self.where}: a directory on its way is a symbolic link")
        if e.errno == errno.ENOTDIR:
            return CopyError(f"cannot copy {rel!r} into {self.where}: a component of its path is not a directory")
        return CopyError(f"cannot copy {rel!r} into {self.where}: {os.strerror(e.errno or 0)}")

    def add(self, info: tarfile.TarInfo, data: Readable | None) -> None:
        rel = relname(info.name)
        try:
            self._add(rel, info, data)
        except OSError as e:
            if e.errno == errno.EROFS:
                raise CopyError(f"cannot copy into {self.where}: read-only file system") from None
            raise CopyError(f"cannot copy {rel or '.'!r} into {self.where}: {e.strerror or e}") from None

    def _add(self, rel: str, info: tarfile.TarInfo, data: Readable | None) -> None:
        if not rel:  # the destination itself ("." of a contents copy): left as it is
            return
        parent = self._parent(rel)
        base = os.path.basename(rel)
        try:
            try:
                st: os.stat_result | None = os.stat(base, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None:
                if stat.S_ISDIR(st.st_mode):
                    if info.isdir():
                        self.dirs.append((rel, info))
                        return
                    raise CopyError(f"cannot overwrite directory {self._show(rel)} with non-directory")
                if info.isdir():
                    raise CopyError(f"cannot overwrite non-directory {self._show(rel)} with directory")
                os.unlink(base, dir_fd=parent)
            self._make(parent, base, rel, info, data)
        finally:
            os.close(parent)

    def _show(self, rel: str) -> str:
        return f"{self.where.rstrip('/')}/{rel}"

    def _ids(self, info: tarfile.TarInfo) -> tuple[int, int] | None:
        return None if self.owner is None else self.owner(info.uid, info.gid)

    def _make(self, parent: int, base: str, rel: str, info: tarfile.TarInfo, data: Readable | None) -> None:
        ids = self._ids(info)
        if info.isdir():
            os.mkdir(base, 0o700, dir_fd=parent)
            if ids is not None:
                os.chown(base, *ids, dir_fd=parent, follow_symlinks=False)
            self.dirs.append((rel, info))
        elif info.isreg():
            fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=parent)
            with os.fdopen(fd, "wb") as out:
                if data is not None:
                    while chunk := data.read(CHUNK):
                        out.write(chunk)
                        self.bytes += len(chunk)
                out.flush()
                if ids is not None:
                    os.fchown(fd, *ids)
                os.fchmod(fd, info.mode & 0o7777)  # after chown, which clears set-id bits
                os.utime(fd, (info.mtime, info.mtime))
        elif info.issym():
            os.symlink(info.linkname, base, dir_fd=parent)
            if ids is not None:
                os.chown(base, *ids, dir_fd=parent, follow_symlinks=False)
            os.utime(base, (info.mtime, info.mtime), dir_fd=parent, follow_symlinks=False)
        elif info.islnk():
            target = relname(info.linkname)
            if not target:
                raise CopyError(f"hard link {rel!r} names no file")
            src_parent = self._parent(target)
            try:
                src = os.stat(os.path.basename(target), dir_fd=src_parent, follow_symlinks=False)
                if stat.S_ISDIR(src.st_mode):
                    raise CopyError(f"hard link {rel!r} -> {info.linkname!r} names a directory")
                os.link(os.path.basename(target), base, src_dir_fd=src_parent, dst_dir_fd=parent,
                        follow_symlinks=False)
            finally:
                os.close(src_parent)
        elif info.isfifo():
            os.mkfifo(base, 0o600, dir_fd=parent)
            self._attrs_nofollow(parent, base, info, ids)
        # devices: never made (a container gets its own /dev, the host keeps its own)

    def _attrs_nofollow(self, parent: int, base: str, info: tarfile.TarInfo, ids: tuple[int, int] | None) -> None:
        fd = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        try:
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                return  # replaced by a link since: its target is not ours to change
            path = f"/proc/self/fd/{fd}"  # exactly this inode (fchmod refuses O_PATH descriptors)
            if ids is not None:
                os.chown(path, *ids)
            os.chmod(path, info.mode & 0o7777)
            os.utime(path, (info.mtime, info.mtime))
        finally:
            os.close(fd)

    def finish(self) -> None:
        """Directory modes and times last (writing into a directory changes its mtime; a 0555 one set
        early would refuse what follows), each through a descriptor opened without following links."""
        for rel, info in reversed(self.dirs):
            try:
                fd = syscalls.openat2(self.dest, rel, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, BENEATH, what=rel)
            except OSError:
                continue  # replaced or removed meanwhile
            try:
                os.fchmod(fd, info.mode & 0o7777)
                os.utime(fd, (info.mtime, info.mtime))
            finally:
                os.close(fd)


# ---------------------------------------------------------------- resolving container paths

class Root:
    """The container's root directory (a descriptor) and how its ids map. userns_pid: a running container
    with a user namespace of its own, whose overlay (mounted in that namespace) takes new files only
    from a process inside it (the host's root is not mapped there: EOVERFLOW)."""

    def __init__(self, fd: int, ids: Ids, ref: str, running: bool, userns_pid: int | None = None) -> None:
        self.fd, self.ids, self.ref, self.running, self.userns_pid = fd, ids, ref, running, userns_pid

    def open_dir(self, path: str) -> int:
        """An O_PATH descriptor of the directory `path`, every link followed inside the root."""
        return syscalls.openat2(self.fd, path.lstrip("/") or ".", PATH_DIR, IN_ROOT, what=path)

    def lookup(self, path: str, follow_last: bool) -> tuple[int, str, os.stat_result | None, str]:
        """(descriptor of the parent directory, last name, its lstat or None, the path resolved) of a
        container path; with follow_last a symlink at the end is followed (inside the root)."""
        for _ in range(MAX_LINKS):
            clean = os.path.normpath(path)
            head, base = os.path.split(clean)
            if not base:  # "/": the root itself, as "." of itself
                return os.dup(self.fd), ".", os.stat(".", dir_fd=self.fd), "/"
            try:
                parent = self.open_dir(head)
            except FileNotFoundError:
                raise CopyError(f"Could not find the file {head} in container {self.ref}") from None
            except NotADirectoryError:
                raise CopyError(f"cannot copy {self.ref}:{path}: {head} is not a directory") from None
            except OSError as e:
                raise _container_error(self.ref, path, e) from None
            try:
                st = os.stat(base, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                return parent, base, None, clean
            except BaseException:
                os.close(parent)
                raise
            if not (follow_last and stat.S_ISLNK(st.st_mode)):
                return parent, base, st, clean
            target = os.readlink(base, dir_fd=parent)
            os.close(parent)
            path = target if target.startswith("/") else os.path.join(head, target)
        raise CopyError(f"cannot copy {self.ref}:{path}: too many levels of symbolic links")


def _container_error(ref: str, path: str, e: OSError) -> CopyError:
    if e.errno in (errno.ELOOP, errno.EXDEV):
        return CopyError(f"cannot resolve {ref}:{path}: a link on the way is one cp may not follow "
                         "(a /proc magic link, or a loop)")
    return CopyError(f"cannot resolve {ref}:{path}: {os.strerror(e.errno or 0)}")


# ---------------------------------------------------------------- copy out

def _source_in_container(root: Root, src: str, follow: bool) -> tuple[int, str, str, bool]:
    """(parent descriptor, name in it, archive name, is a directory) of a container SRC, Docker's way:
    "dir" archives as "dir/...", "dir/." as "./..." (its contents), a trailing "/" follows a link, and
    -L follows a link at the end but keeps SRC's name."""
    contents, slash = _trailing(src)
    path = container_path(src)
    arcname = os.path.basename(os.path.normpath(path)) or "."
    parent, base, st, _ = root.lookup(path, follow_last=follow or slash or contents)
    if st is None:
        os.close(parent)
        raise CopyError(f"Could not find the file {os.path.normpath(path)} in container {root.ref}")
    is_dir = stat.S_ISDIR(st.st_mode)
    if (slash or contents) and not is_dir:
        os.close(parent)
        raise CopyError(f"cannot copy {root.ref}:{src}: not a directory")
    if contents:
        arcname = "."
    return parent, base, arcname, is_dir


def copy_out(root: Root, src: str, dst: str, follow: bool) -> tuple[int, str]:
    """Container SRC to the host DST (or a tar on stdout for "-"): (bytes, where it went)."""
    parent, base, arcname, is_dir = _source_in_container(root, src, follow)
    walker = Walker(root.ids, guard=True)
    try:
        if dst == "-":
            out = os.fdopen(os.dup(1), "wb")
            with out, tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for info, data in walker.entries(parent, base, arcname, container_path(src)):
                    tar.addfile(info, data)
            return walker.bytes, "-"
        dst_dir, name = host_destination(dst, is_dir)
        try:
            ex = Extractor(dst_dir, None, dst)
            for info, data in walker.entries(parent, base, arcname if name is None else name, container_path(src)):
                ex.add(info, data)
            ex.finish()
        finally:
            os.close(dst_dir)
        return walker.bytes, dst
    finally:
        os.close(parent)


def host_destination(dst: str, src_is_dir: bool) -> tuple[int, str | None]:
    """Docker's rules for a host DST: (descriptor of the directory to write in, the name SRC gets there,
    or None for its own). Symlinks in DST are the user's own and are followed, as Docker does."""
    path = os.path.abspath(dst) + ("/" if dst.endswith("/") else "")
    for _ in range(10):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        except NotADirectoryError:
            raise CopyError(f"cannot copy to {dst}: a component of its path is not a directory") from None
        if st is None or not stat.S_ISLNK(st.st_mode):
            break
        target = os.readlink(path)
        path = target if target.startswith("/") else os.path.join(os.path.dirname(path.rstrip("/")), target)
    else:
        raise CopyError(f"too many symlinks in {dst}")
    if st is not None and stat.S_ISDIR(st.st_mode):
        return os.open(path, PATH_DIR), None  # into it, by SRC's own name
    if st is not None and src_is_dir:
        raise CopyError(f"cannot copy directory to {dst}: it is not a directory")
    if st is None and not src_is_dir and path.endswith("/"):
        raise CopyError(f"no such directory: {dst} (a destination ending in / must be an existing directory)")
    head, name = os.path.split(path.rstrip("/"))
    try:
        fd = os.open(head or "/", PATH_DIR)
    except FileNotFoundError:
        raise CopyError(f"stat {head}: no such file or directory") from None
    except NotADirectoryError:
        raise CopyError(f"stat {head}: not a directory") from None
    return fd, name


# ---------------------------------------------------------------- copy in

def host_source(src: str, follow: bool) -> tuple[int, str, str, bool]:
    """(parent descriptor, name, archive name, is a directory) of a host SRC (Docker's rules: the last
    component is a link copied as a link unless -L or a trailing "/")."""
    contents, slash = _trailing(src)
    path = os.path.abspath(src)
    arcname = os.path.basename(path) or "."
    real = os.path.realpath(path) if (follow or slash or contents) else os.path.join(
        os.path.realpath(os.path.dirname(path)), os.path.basename(path))
    try:
        st = os.lstat(real)
    except FileNotFoundError:
        raise CopyError(f"lstat {path}: no such file or directory") from None
    except NotADirectoryError:
        raise CopyError(f"lstat {path}: not a directory") from None
    is_dir = stat.S_ISDIR(st.st_mode)
    if (slash or contents) and not is_dir:
        raise CopyError(f"lstat {path}: not a directory")
    head, base = os.path.split(real)
    if not base:
        head, base = "/", "."
    fd = os.open(head, PATH_DIR)
    return fd, base, "." if contents else arcname, is_dir


def check_writable(rec: Record, path: str, running: bool) -> None:
    """Docker's refusals: a read-only volume or bind mount, or a read-only root outside any mount. A
    stopped container's tmpfs mounts do not exist: what is copied there would be hidden at its start."""
    from pycontain.oci import READ_ONLY_TMPFS

    clean = os.path.normpath(path)
    mounts = [(m.target, m.readonly, m.kind == "tmpfs" or DRIVER_MOUNT in m.options) for m in rec.config.mounts]
    if rec.config.read_only:
        mounts += [(t, False, True) for t in READ_ONLY_TMPFS]
    for target, readonly, tmpfs in sorted(mounts, key=lambda m: len(m[0]), reverse=True):
        target = os.path.normpath(target)
        if clean == target or clean.startswith(target.rstrip("/") + "/"):
            if readonly:
                raise CopyError(f"cannot copy to {rec.name}:{path}: mounted volume is marked read-only")
            if tmpfs and not running:
                raise CopyError(f"cannot copy to {rec.name}:{path}: it is on a tmpfs, which a stopped container "
                                "does not have (start the container first)")
            return
    if rec.config.read_only:
        raise CopyError(f"cannot copy to {rec.name}:{path}: container rootfs is marked read-only")


def copy_in(rec: Record, root: Root, src: str, dst: str, follow: bool, archive: bool) -> tuple[int, str]:
    """Host SRC (or a tar on stdin for "-") into the container's DST: (bytes, where it went)."""
    ref = root.ref
    _, slash = _trailing(dst)
    path = container_path(dst)
    ids = root.ids if root.userns_pid is None else Ids({"uid": 0, "gid": 0, "size": root.ids.size})
    owner = (lambda uid, gid: ids.to_host(uid, gid)) if archive else (lambda uid, gid: ids.to_host(0, 0))
    if src == "-":
        parent, base, st, resolved = root.lookup(path, follow_last=True)
        try:
            if st is None or not stat.S_ISDIR(st.st_mode):
                raise CopyError(f'destination "{ref}:{dst}" must be a directory')
            check_writable(rec, resolved, root.running)
            fd = os.open(base, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        finally:
            os.close(parent)
        try:
            ex = Extractor(fd, owner, f"{ref}:{dst}")
            if root.userns_pid is not None:
                return _in_userns(root.userns_pid, lambda: extract_stdin(ex)), f"{ref}:{dst}"
            return extract_stdin(ex), f"{ref}:{dst}"
        finally:
            os.close(fd)
    src_parent, src_base, arcname, src_is_dir = host_source(src, follow)
    try:
        parent, base, st, resolved = root.lookup(path, follow_last=True)
        try:
            if slash and st is not None and not stat.S_ISDIR(st.st_mode):
                raise CopyError(f"no such directory: {ref}:{dst} is not a directory")
            if st is not None and stat.S_ISDIR(st.st_mode):
                into = os.open(base, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
                name = arcname
                check_writable(rec, os.path.join(resolved, "x"), root.running)
            elif st is not None and src_is_dir:
                raise CopyError(f"cannot copy directory {src} to {ref}:{dst}: it is not a directory")
            elif st is None and slash and not src_is_dir:
                raise CopyError(f"no such directory: {ref}:{dst} (a destination ending in / must be an existing "
                                "directory)")
            else:
                into, name = os.dup(parent), base
                check_writable(rec, resolved, root.running)
        finally:
            os.close(parent)
        try:
            ex = Extractor(into, owner, f"{ref}:{dst}")
            walker = Walker(None, guard=False)
            entries = walker.entries(src_parent, src_base, name, src)
            if root.userns_pid is None:
                for info, data in entries:
                    ex.add(info, data)
                ex.finish()
            else:
                _through_userns(root.userns_pid, entries, ex)
        finally:
            os.close(into)
        return walker.bytes, f"{ref}:{dst}"
    finally:
        os.close(src_parent)


def _through_userns(pid: int, entries: Iterator[tuple[tarfile.TarInfo, Readable | None]], ex: Extractor) -> None:
    """Host files (read here, with the host's privileges) written by a child inside the container's user
    namespace: a tar stream through a pipe between the two."""
    r, w = os.pipe()

    def extract() -> int:
        os.close(w)
        _join_userns(pid)
        return extract_tar(ex, os.fdopen(r, "rb"))

    child = _fork_report(extract)
    os.close(r)
    try:
        with os.fdopen(w, "wb") as out, tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for info, data in entries:
                tar.addfile(info, data)
    except BrokenPipeError:
        pass  # the child stopped reading: its report says why
    finally:
        _child_result(child)


def _in_userns(pid: int, work: Callable[[], int]) -> int:
    """work() in a child that has joined the user namespace of the container's PID 1."""
    def joined() -> int:
        _join_userns(pid)
        return work()

    return int(_child_result(_fork_report(joined))[0])


def _join_userns(pid: int) -> None:
    fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.setns(fd, syscalls.CLONE_NEWUSER)
    finally:
        os.close(fd)
    # setns keeps the host's ids, which the namespace does not map: become its root (the range's base).
    try:
        os.setgroups([])
    except OSError:
        pass  # groups denied in that namespace: the host's root's group list is then left as it is
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def extract_stdin(ex: Extractor) -> int:
    return extract_tar(ex, sys.stdin.buffer)


def extract_tar(ex: Extractor, stream: Readable) -> int:
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:  # type: ignore[call-overload]
            for member in tar:
                ex.add(member, tar.extractfile(member) if member.isreg() else None)
    except tarfile.TarError as e:
        raise CopyError(f"the tar stream on stdin is not a valid tar archive: {e}") from None
    except EOFError:
        raise CopyError("the tar stream on stdin is truncated") from None
    ex.finish()
    return ex.bytes


# ---------------------------------------------------------------- the container's root

def _lease(rec: Record) -> dict[str, Any] | None:
    lease = rec.meta().get("userns")
    return dict(lease) if isinstance(lease, dict) else None


def in_container(rec: Record, ref: str, work: Callable[[Root], tuple[int, str]]) -> tuple[int, str]:
    """Run work(root) with the container's root: a running container's as its PID 1 sees it, a stopped
    one's mounted in a child's private mount namespace."""
    from pycontain import runtime, state

    ids = Ids(_lease(rec))
    for _ in range(20):
        pid = runtime.live_pid(rec)
        if pid is not None:
            try:
                fd = os.open(f"/proc/{pid}/root", PATH_DIR)
            except (FileNotFoundError, ProcessLookupError):
                continue  # it exited meanwhile: try again, as a stopped one
            try:
                # The same process as state.json names (not a pid reused since): then fd is its root.
                if state.proc_starttime(pid) == rec.read_state().pid_start:
                    return work(Root(fd, ids, ref, True, pid if ids.size else None))
            finally:
                os.close(fd)
            continue
        try:
            lock = rec.acquire(create=False)
        except BlockingIOError:
            import time

            time.sleep(0.1)  # starting (or stopping): its status settles in a moment
            continue
        try:
            return _stopped(rec, ref, ids, work)
        finally:
            os.close(lock)
    raise CopyError(f"container {ref} is starting or stopping; try again")


def _stopped(rec: Record, ref: str, ids: Ids, work: Callable[[Root], tuple[int, str]]) -> tuple[int, str]:
    """Fork a child that mounts the container's root in a mount namespace of its own and runs work()
    there; its result or error comes back through a pipe."""
    result = _child_result(_fork_report(lambda: _mount_and_work(rec, ref, ids, work)))
    return int(result[0]), result[1]


def _fork_report(work: Callable[[], object]) -> tuple[int, int]:
    """Fork a child that runs work() and reports its result (or its error, as one line) through a pipe;
    it dies with pycontain (PR_SET_PDEATHSIG). (pid, read end of the pipe) for _child_result."""
    import signal

    sys.stdout.flush()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: ends in os._exit whatever happens
        code = 125
        try:
            os.close(r)
            syscalls.set_pdeathsig(signal.SIGKILL)
            try:
                result = work()
                parts = result if isinstance(result, tuple) else (result,)
                os.write(w, "\t".join(["ok", *map(str, parts)]).encode())
                code = 0
            except PycontainError as e:
                os.write(w, f"err\t{e}".encode())
            except OSError as e:
                os.write(w, f"err\t{e.strerror or e}".encode() + (f": {e.filename}".encode() if e.filename else b""))
            except BaseException as e:  # noqa: BLE001 - reported as one line by the parent
                os.write(w, f"err\tinternal error: {type(e).__name__}: {e}".encode())
        finally:
            os._exit(code)
    os.close(w)
    return pid, r


def _child_result(child: tuple[int, int]) -> list[str]:
    """Wait for a _fork_report child: its result's fields, or its error raised here."""
    pid, r = child
    report = b""
    try:
        while chunk := os.read(r, 65536):
            report += chunk
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    kind, _, rest = report.decode(errors="replace").partition("\t")
    if kind == "ok":
        return rest.split("\t", 1) + [""]
    raise CopyError(rest or "the copy process died")


def _mount_and_work(rec: Record, ref: str, ids: Ids, work: Callable[[Root], tuple[int, str]]) -> tuple[int, str]:
    from pycontain import mounts
    from pycontain.oci import overlay_options

    syscalls.unshare(syscalls.CLONE_NEWNS)
    # Nothing mounted from here on is seen outside this process; it all goes when the process does.
    syscalls.mount("none", "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
    storage = rec.storage
    layers = rec.layers
    for layer in layers:
        if not os.path.isdir(layer):
            raise CopyError(f"container {ref}: its image layer {layer} is missing")
    lower = list(layers)
    lease = _lease(rec)
    trees: list[int] = []
    if lease is not None:
        lower = _idmap_layers(layers, lease, trees)
    options = overlay_options(lower, f"{storage}/upper", f"{storage}/work")
    target = f"{storage}/rootfs"
    os.makedirs(target, 0o755, exist_ok=True)
    syscalls.mount("overlay", target, "overlay", 0, options)
    root_fd = os.open(target, PATH_DIR)
    try:
        # Its binds and volumes (their directories on the host), then its /etc files, in the order its
        # executor mounts them; its tmpfs mounts do not exist while it is stopped (check_writable).
        binds = [(m.target, m.source, m.readonly, "nonrecursive" not in m.options)
                 for m in rec.config.mounts if m.kind != "tmpfs"]
        binds += [(t, s, False, False) for t, s in rec.etc_files.items()]
        for dest, source, readonly, recursive in binds:
            if not source.startswith("/"):
                raise CopyError(f"container {ref}: cannot mount {dest} of a stopped container (source {source!r})")
            kind = "dir" if os.path.isdir(source) else "file"
            fd = mounts.open_in_root(root_fd, dest, kind)
            try:
                mounts.bind(source, fd, readonly, dest, recursive=recursive)
            finally:
                os.close(fd)
        return work(Root(root_fd, ids, ref, False))
    finally:
        os.close(root_fd)
        for fd in trees:
            os.close(fd)


def _idmap_layers(layers: list[str], lease: dict[str, Any], trees: list[int]) -> list[str]:
    """The image layers seen as the container's range owns them (as its executor mounts them), placed
    over themselves in this private namespace: files the overlay copies up (a parent directory of what
    cp writes) keep the ids the container sees, not the host's root."""
    from pycontain import userns

    lz = userns.Lease.from_json(lease)
    try:
        placed = userns.idmapped_layers(list(reversed(layers)), lz.uid_mappings(), lz.gid_mappings())
    except OSError as e:
        raise CopyError(f"cannot copy with a stopped --userns=auto container here: its image layers cannot be "
                        f"idmapped ({os.strerror(e.errno or 0)}); start it and copy again") from None
    out = {}
    for layer, tree in placed:
        trees.append(tree)
        target = os.open(layer, PATH_DIR)
        try:
            syscalls.move_mount(tree, target, "idmapped image layer")
        finally:
            os.close(target)
        out[layer] = f"/proc/self/fd/{tree}"
    return [out[layer] for layer in layers]


# ---------------------------------------------------------------- the command

def cmd_cp(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain import state
    from pycontain.clifmt import size

    need(pos, "SRC and DST", exactly=2)
    src_ctr, src = split_arg(pos[0])
    dst_ctr, dst = split_arg(pos[1])
    if src_ctr and dst_ctr:
        raise UsageError("copying between containers is not supported")
    if not src_ctr and not dst_ctr:
        raise UsageError("must specify at least one container source (CONTAINER:PATH)")
    if not src or not dst:
        raise UsageError("filesystem path cannot be empty")
    if src_ctr:
        rec = state.find(paths, src_ctr)
        nbytes, where = in_container(rec, src_ctr, lambda root: copy_out(root, src, dst, opts["follow"]))
    else:
        if src != "-" and not os.path.lexists(src):
            raise CopyError(f"lstat {os.path.abspath(src)}: no such file or directory")
        rec = state.find(paths, dst_ctr)
        nbytes, where = in_container(
            rec, dst_ctr, lambda root: copy_in(rec, root, src, dst, opts["follow"], opts["archive"]))
    if not opts["quiet"] and where != "-" and sys.stderr.isatty():
        print(f"Successfully copied {size(nbytes)} to {where}", file=sys.stderr)
    return 0


def export(root: Root, out: IO[bytes]) -> tuple[int, str]:
    """The container's whole filesystem as a tar (`export`), names relative to its root ("./etc/..."),
    walked like `cp CTR:/. -`: through descriptors inside the root, kernel filesystems left out."""
    parent, base, _, _ = _source_in_container(root, "/", False)
    walker = Walker(root.ids, guard=True)
    try:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for info, data in walker.entries(parent, base, ".", "/"):
                tar.addfile(info, data)
    finally:
        os.close(parent)
    return walker.bytes, "-"


def cmd_export(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain import state
    from pycontain.safefile import create_new

    need(pos, "a container", exactly=1)
    rec = state.find(paths, pos[0])
    target = opts["output"]
    if target is None and sys.stdout.isatty():
        raise UsageError("cowardly refusing to write a tar archive to a terminal: use -o FILE or a pipe")
    if target is None:
        with os.fdopen(os.dup(1), "wb") as out:
            in_container(rec, pos[0], lambda root: export(root, out))
        return 0
    tmp = f"{target}.tmp-{os.getpid()}"
    try:
        with os.fdopen(create_new(tmp), "wb") as out:
            in_container(rec, pos[0], lambda root: export(root, out))
        os.replace(tmp, target)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    return 0


HANDLERS = {"cp": cmd_cp, "export": cmd_export}
