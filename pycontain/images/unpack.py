"""Unpack one image layer (a tar stream) into a directory overlayfs can use as a lowerdir.

Layers are untrusted input. Nothing here follows a symlink on the host: every path is normalised and
checked to stay inside the layer directory, no parent directory of an entry may be a symlink, hard links
must point at an entry already inside the layer, and device nodes are skipped. OCI whiteouts become
overlayfs whiteouts (a 0:0 character device) and opaque directories get the `trusted.overlay.opaque`
xattr, so the kernel applies them when the layers are stacked.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from typing import IO

from pycontain.errors import ImageError

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
DEFAULT_MAX_BYTES = 8 << 30  # a layer that unpacks past 8 GiB is treated as a decompression bomb


def safe_relpath(name: str) -> str:
    """Normalise a tar member name to a relative path inside the layer, or raise."""
    parts = []
    for part in name.replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise ImageError(f"layer entry {name!r} climbs out of the layer with '..'; refusing the layer")
        parts.append(part)
    return "/".join(parts)


class LayerWriter:
    def __init__(self, dest: str, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.dest = dest
        self.max_bytes = max_bytes
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
            self.written += m.size
            if self.written > self.max_bytes:
                raise ImageError(f"layer unpacks to more than {self.max_bytes >> 20} MiB; refusing it as a bomb")
            src = tf.extractfile(m)
            assert src is not None
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as out:
                _copy(src, out)
        elif m.issym():
            os.symlink(m.linkname, target)  # stored as-is: it is resolved inside the container, never here
        elif m.islnk():
            link_rel = safe_relpath(m.linkname)
            source = self._check_parents(link_rel) if link_rel else ""
            if not link_rel or not os.path.lexists(source) or (os.path.isdir(source) and not os.path.islink(source)):
                raise ImageError(f"layer hard link {rel!r} -> {m.linkname!r} does not name a file in the layer")
            os.link(source, target, follow_symlinks=False)
            return  # a hard link shares the inode's owner and mode
        elif m.isfifo():
            os.mkfifo(target)
        else:
            self.skipped.append(rel)  # device nodes: a container gets its own /dev
            return
        self._attrs(target, m)

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

    def _attrs(self, target: str, m: tarfile.TarInfo) -> None:
        os.lchown(target, m.uid, m.gid)
        if not m.issym():
            # chown clears setuid/setgid, so the mode (as the image says) goes on after it.
            os.chmod(target, stat.S_IMODE(m.mode))
        os.utime(target, (m.mtime, m.mtime), follow_symlinks=False)

    def finish(self) -> None:
        # Directory modes and times last: writing into a directory changes its mtime, and a 0555
        # directory set early would refuse the entries that follow.
        for target, m in reversed(self.dirs):
            self._attrs(target, m)


def _copy(src: IO[bytes], out: IO[bytes]) -> None:
    while chunk := src.read(1 << 20):
        out.write(chunk)


def unpack(stream: IO[bytes], dest: str, max_bytes: int = DEFAULT_MAX_BYTES) -> list[str]:
    """Unpack a (possibly compressed) tar stream into `dest`; returns the entries skipped."""
    writer = LayerWriter(dest, max_bytes)
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tf:
            for member in tf:
                writer.add(tf, member)
    except tarfile.TarError as e:
        raise ImageError(f"layer is not a valid tar archive: {e}") from None
    except EOFError:
        raise ImageError("layer archive is truncated") from None
    writer.finish()
    return writer.skipped
