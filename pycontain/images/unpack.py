"""Unpack one image layer (a tar stream) into a directory overlayfs can use as a lowerdir.

Layers are untrusted input. Nothing here follows a symlink on the host: every path is normalised and
checked to stay inside the layer directory (absolute names are taken relative to it, `..` refuses the
layer), no parent directory of an entry may be a symlink, files are created with O_EXCL|O_NOFOLLOW and
their owner/mode/times set through the open descriptor, directory modes are applied at the end through
an O_NOFOLLOW descriptor (a later entry may have replaced the directory by a symlink to the host), hard
links must point at an entry already inside the layer, and device nodes are skipped. Set-uid/set-gid
bits and file capabilities are kept exactly as the image says; other extended attributes are dropped,
above all `trusted.*`, with which an image could forge overlayfs whiteouts or redirects. A layer that
unpacks past a size or entry cap is refused as a decompression bomb.

OCI whiteouts become overlayfs whiteouts (a 0:0 character device) and opaque directories get the
`trusted.overlay.opaque` xattr, so the kernel applies them when the layers are stacked.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from typing import IO

from pycontain.errors import ImageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from pycontain.images.store import Reader

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
DEFAULT_MAX_BYTES = 8 << 30  # a layer that unpacks past 8 GiB is treated as a decompression bomb
DEFAULT_MAX_ENTRIES = 1 << 20  # ... and so is one with more than a million entries (headers cost too)
KEPT_XATTRS = ("security.capability",)  # file capabilities: part of what the image says a binary may do
KEPT_XATTR_PREFIXES = ("user.",)


def safe_relpath(name: str, refuse: Callable[[str], Exception] | None = None) -> str:
    """Normalise a tar member name to a relative path inside the layer, or raise (refuse(name): the
    caller's own error, e.g. `cp`'s)."""
    parts = []
    for part in name.replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if refuse is not None:
                raise refuse(name)
            raise ImageError(f"layer entry {name!r} climbs out of the layer with '..'; refusing the layer")
        parts.append(part)
    return "/".join(parts)


class LayerWriter:
    def __init__(self, dest: str, max_bytes: int = DEFAULT_MAX_BYTES, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.dest = dest
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.entries = 0
        self.written = 0
        self.dirs: list[tuple[str, tarfile.TarInfo]] = []
        self.skipped: list[str] = []

    def _check_parents(self, rel: str) -> str:
        """Create missing parent dirs; refuse if any existing parent is not a real directory."""
        path = str(self.dest)
        for part in rel.split("/")[:-1]:
            path = os.path.join(path, part)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                os.mkdir(path, 0o755)
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise ImageError(f"layer entry {rel!r} goes through a non-directory (a symlink?); refusing the layer")
        return os.path.join(str(self.dest), rel)

    def _clear(self, target: str, keep_dir: bool) -> None:
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return
            shutil.rmtree(target)
        else:
            os.unlink(target)

    def add(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        self.entries += 1
        if self.entries > self.max_entries:
            raise ImageError(f"layer has more than {self.max_entries} entries; refusing it as a decompression bomb")
        # Every entry's declared data counts, before any of it is read, not only the files written: tarfile
        # reads past what is not written in 10 kB reads, and a 200-byte layer whose whiteout declared 2**40
        # bytes, then ended, kept it reading nothing for minutes.
        self.written += m.size
        if self.written > self.max_bytes:
            raise ImageError(f"layer unpacks to more than {self.max_bytes >> 20} MiB; refusing it as a bomb")
        try:
            self._add(tf, m)
        except OSError as e:
            raise ImageError(f"cannot unpack layer entry {m.name!r}: {e.strerror or e}") from None

    def _add(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        rel = safe_relpath(m.name)
        if not rel:
            if m.isdir():
                self.dirs.append((str(self.dest), m))
            return
        base = os.path.basename(rel)
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(rel, base)
            return
        target = self._check_parents(rel)
        self._clear(target, keep_dir=m.isdir())
        if m.isdir():
            os.makedirs(target, 0o755, exist_ok=True)
            self.dirs.append((target, m))
            return
        if m.isreg():
            src = tf.extractfile(m)
            assert src is not None
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as out:
                _copy(src, out)
                out.flush()
                self._attrs(fd, m)
            return
        if m.issym():
            os.symlink(m.linkname, target)  # stored as-is: it is resolved inside the container, never here
            os.lchown(target, m.uid, m.gid)
            os.utime(target, (m.mtime, m.mtime), follow_symlinks=False)
        elif m.islnk():
            link_rel = safe_relpath(m.linkname)
            source = self._check_parents(link_rel) if link_rel else ""
            if not link_rel or not os.path.lexists(source) or (os.path.isdir(source) and not os.path.islink(source)):
                raise ImageError(f"layer hard link {rel!r} -> {m.linkname!r} does not name a file in the layer")
            os.link(source, target, follow_symlinks=False)
            # a hard link shares the inode's owner and mode
        elif m.isfifo():
            os.mkfifo(target, 0o600)
            self._attrs_nofollow(target, m)
        else:
            self.skipped.append(rel)  # device nodes: a container gets its own /dev

    def _whiteout(self, rel: str, base: str) -> None:
        parent_path = os.path.dirname(self._check_parents(rel))
        if base == OPAQUE_MARKER:
            os.makedirs(parent_path, 0o755, exist_ok=True)
            os.setxattr(parent_path, "trusted.overlay.opaque", b"y", follow_symlinks=False)
            return
        name = base[len(WHITEOUT_PREFIX):]
        if not name or name in (".", "..") or "/" in name:
            raise ImageError(f"layer whiteout {rel!r} names no entry; refusing the layer")
        target = os.path.join(parent_path, name)
        self._clear(target, keep_dir=False)
        os.mknod(target, 0o600 | stat.S_IFCHR, os.makedev(0, 0))

    def _attrs(self, fd: int, m: tarfile.TarInfo) -> None:
        """Owner, mode, xattrs and times through an open descriptor: nothing can swap the path under us."""
        os.fchown(fd, m.uid, m.gid)
        # chown clears set-uid/set-gid, so the mode (as the image says) goes on after it.
        os.fchmod(fd, stat.S_IMODE(m.mode))
        for key, value in (m.pax_headers or {}).items():
            if key.startswith("SCHILY.xattr."):
                name = key[len("SCHILY.xattr."):]
                if name in KEPT_XATTRS or name.startswith(KEPT_XATTR_PREFIXES):
                    os.setxattr(fd, name, value.encode("utf-8", "surrogateescape"))
        os.utime(fd, (m.mtime, m.mtime))

    def _attrs_nofollow(self, target: str, m: tarfile.TarInfo) -> None:
        """Open target without following a symlink (O_PATH works for fifos and dirs) and set its attrs."""
        try:
            fd = os.open(target, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # a later entry removed it (a whiteout or a replacement)
        try:
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode):
                return  # replaced by a symlink since: its target is not ours to change
            # fchmod/fchown refuse O_PATH descriptors; /proc/self/fd/N names exactly this inode.
            path = f"/proc/self/fd/{fd}"
            os.chown(path, m.uid, m.gid)
            os.chmod(path, stat.S_IMODE(m.mode))
            os.utime(path, (m.mtime, m.mtime))
        finally:
            os.close(fd)

    def finish(self) -> None:
        # Directory modes and times last: writing into a directory changes its mtime, and a 0555
        # directory set early would refuse the entries that follow.
        for target, m in reversed(self.dirs):
            try:
                fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except (FileNotFoundError, NotADirectoryError, OSError):
                continue  # replaced (by a file or a symlink to anywhere) or removed by a later entry
            try:
                self._attrs(fd, m)
            except OSError as e:
                raise ImageError(f"cannot set attributes of layer directory {m.name!r}: {e.strerror}") from None
            finally:
                os.close(fd)


def _copy(src: IO[bytes], out: IO[bytes]) -> None:
    while chunk := src.read(1 << 20):
        out.write(chunk)


class _HeaderGuard:
    """Counts what tarfile reads while it parses one header (with its PAX / GNU long-name data).

    tarfile reads a PAX header or a long name into memory in one piece, whatever size the archive
    claims: an 8 GiB "header" would exhaust memory before any size cap on file data could apply.
    """

    def __init__(self, src: Reader, cap: int) -> None:
        self.src, self.cap = src, cap
        self.in_header = True  # tarfile.open() reads the first header itself
        self.header_bytes = 0

    def read(self, n: int = -1) -> bytes:
        chunk = self.src.read(n)
        if self.in_header:
            self.header_bytes += len(chunk)
            if self.header_bytes > self.cap:
                raise ImageError(f"layer has a tar header (PAX data or long name) over {self.cap >> 20} MiB; "
                                 "refusing it as a decompression bomb")
        return chunk

    def readable(self) -> bool:
        return True


HEADER_CAP = 64 << 20


def unpack(stream: Reader, dest: str, max_bytes: int = DEFAULT_MAX_BYTES,
           max_entries: int = DEFAULT_MAX_ENTRIES) -> list[str]:
    """Unpack a (possibly compressed) tar stream into `dest`; returns the entries skipped."""
    writer = LayerWriter(dest, max_bytes, max_entries)
    guard = _HeaderGuard(stream, HEADER_CAP)
    try:
        with tarfile.open(fileobj=guard, mode="r|*") as tf:  # type: ignore[call-overload]
            while True:
                guard.in_header, guard.header_bytes = True, 0
                member = tf.next()
                guard.in_header = False
                if member is None:
                    break
                writer.add(tf, member)
    except tarfile.TarError as e:
        raise ImageError(f"layer is not a valid tar archive: {e}") from None
    except EOFError:
        raise ImageError("layer archive is truncated") from None
    writer.finish()
    return writer.skipped
