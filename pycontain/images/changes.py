"""What a container changed: `diff` (A/C/D lines), `commit` (a new image), and layer_from_dir, which turns
an overlayfs upperdir into an image layer (the builder uses it for every RUN and COPY step).

An upperdir is overlayfs's record of changes over the lower layers: a deleted path is a whiteout (a 0:0
character device), a directory removed and made again is opaque (xattr trusted.overlay.opaque=y, or
user.overlay.opaque with the userxattr mount option). pycontain mounts its overlays with lowerdir,
upperdir and workdir only; this host's kernel defaults are redirect_dir=off and metacopy=off. A
directory renamed with redirect_dir=on, or a file copied up metadata-only with metacopy=on, is not
self-contained in the upperdir, so layer_from_dir refuses such a tree rather than write a layer that
misses data.

cli.py loads this module only for these commands (cli.PLUGINS).
"""

from __future__ import annotations

import os
import stat
import sys
import time

from pycontain import faults
from pycontain.cli import VALUE, MULTI, need
from pycontain.errors import ImageError, PycontainError, UsageError
from pycontain.state import rmtree

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection, Iterator
    from typing import Any

    from pycontain.images.budget import Budget
    from pycontain.images.store import Store
    from pycontain.state import Paths, Record

COMMANDS: dict[str, tuple[list[Any], str, str]] = {
    "diff": ([], "CONTAINER", "list the files a container added (A), changed (C) and deleted (D)"),
    "commit": ([(("-m", "--message"), "message", VALUE, "MSG", "commit message (the history entry's comment)"),
                (("-a", "--author"), "author", VALUE, "AUTHOR", 'author, e.g. "Jane <jane@example.com>"'),
                (("-c", "--change"), "change", MULTI, "INSTR", "apply a Dockerfile instruction to the image's "
                 "config: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR"),
                (("-p", "--pause"), "pause", VALUE, "true|false",
                 "freeze the container while its layer is written (default true)")],
               "CONTAINER [REPOSITORY[:TAG]]", "make an image from a container's changes"),
}

# Which xattrs go into a layer (and into its unpacked copy): file capabilities and user.* ones, as
# images/unpack.py keeps them. overlayfs's own (trusted.overlay.*, user.overlay.*) are its bookkeeping.
_OVERLAY_XATTRS = ("trusted.overlay.", "user.overlay.")
_OPAQUE = ("trusted.overlay.opaque", "user.overlay.opaque")
_NOT_SELF_CONTAINED = ("redirect", "metacopy")
# The gzip level of a layer: measured on a 50 MB upperdir (random data plus 3000 small files), level 1
# costs ~0.15 s less than 6 and compresses text nearly as well; higher levels mostly cost time.
GZIP_LEVEL = 1
CHUNK = 1 << 20
# Chunks of tar being compressed or waiting to be written: 32 MiB at most, so that the tree walk (a file
# create costs up to ~0.4 ms on the reference VM's ext4) goes on while a big file is compressed.
QUEUED = 32
SAMPLE = 64 << 10  # what _gzip_member deflates first to judge whether a chunk compresses at all
_ZERO = bytes(512)


# ---------------------------------------------------------------- the upperdir, entry by entry

class _Entry:
    __slots__ = ("rel", "path", "st", "xattrs", "opaque", "whiteout")

    def __init__(self, rel: str, path: str, st: os.stat_result) -> None:
        self.rel, self.path, self.st = rel, path, st
        self.xattrs: dict[str, bytes] = {}
        self.opaque = False
        self.whiteout = stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _read_xattrs(entry: _Entry) -> None:
    if stat.S_ISLNK(entry.st.st_mode):
        return  # user.* cannot be set on a symlink; overlayfs marks none we need
    try:
        names = os.listxattr(entry.path, follow_symlinks=False)
    except OSError:
        return  # a filesystem without xattrs: nothing to keep
    for name in names:
        if name.startswith(_OVERLAY_XATTRS):
            kind = name.split(".", 2)[2]
            if kind in _NOT_SELF_CONTAINED:
                raise ImageError(f"{entry.path} carries the overlayfs {kind} attribute (redirect_dir or metacopy "
                                 "was on): its content is not all in the upperdir, so it cannot become a layer")
            if name in _OPAQUE and stat.S_ISDIR(entry.st.st_mode):
                entry.opaque = os.getxattr(entry.path, name, follow_symlinks=False) == b"y"
        elif name == "security.capability" or name.startswith("user."):
            try:
                entry.xattrs[name] = os.getxattr(entry.path, name, follow_symlinks=False)
            except OSError:
                continue


def _scan(upper: str, exclude: Collection[str], rel_dir: str = "") -> Iterator[_Entry]:
    """Every entry under upper, depth first, each directory's names in byte order (parents before their
    children, as Docker's layers are written); paths in exclude (relative) are left out with all below."""
    base = f"{upper}/{rel_dir}" if rel_dir else upper
    for name in sorted(os.listdir(base), key=os.fsencode):
        rel = f"{rel_dir}/{name}" if rel_dir else name
        if rel in exclude:
            continue
        path = f"{base}/{name}"
        entry = _Entry(rel, path, os.lstat(path))
        _read_xattrs(entry)
        yield entry
        if stat.S_ISDIR(entry.st.st_mode):
            yield from _scan(upper, exclude, rel)


# ---------------------------------------------------------------- the tar stream: hashed, gzip'd, written

class _LayerStream:
    """Takes the uncompressed tar, hashes it (the diff id), gzips it, hashes that (the blob digest) and
    writes it to the temp blob: one pass, no second read of anything.

    The gzip is a series of members, one per CHUNK of tar (a gzip file may be several members, RFC 1952
    2.2; Go's and Python's readers take them as one stream), so that chunks compress on two threads
    beside the tree walk (zlib and hashlib release the GIL) and a chunk that does not compress (a sample
    of it shrinks by less than 3%: random or already compressed data) is stored, not deflated. The
    members depend only on the tar's bytes: the same tree gives the same blob. A commit of a 50 MB
    upperdir of random bytes spent 0.7 of its 0.95 s in zlib at level 1 before this."""

    def __init__(self, fd: int, budget: Budget) -> None:
        import hashlib  # OpenSSL's sha256: several times the builtin _sha256's speed, and it releases the GIL

        self.fd, self.budget = fd, budget
        self.tar_hash, self.blob_hash = hashlib.sha256(), hashlib.sha256()
        self.pending = bytearray()
        self.tar_size = 0
        self.pool: Any = None
        self.inflight: list[Any] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.tar_hash.update(data)
        self.tar_size += len(data)
        self.pending += data
        while len(self.pending) >= CHUNK:
            chunk = bytes(self.pending[:CHUNK])
            del self.pending[:CHUNK]
            self._submit(chunk)

    def _submit(self, chunk: bytes) -> None:
        if self.pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gzip")
        self.inflight.append(self.pool.submit(_gzip_member, chunk))
        while len(self.inflight) > QUEUED:
            self._out(self.inflight.pop(0).result())

    def _out(self, data: bytes) -> None:
        if not data:
            return
        self.blob_hash.update(data)
        self.budget.stored(len(data))
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def finish(self) -> None:
        # The end of the archive: two zero blocks, as Go's archive/tar (Docker's) writes it; no padding to
        # a 10 kB record, so an empty layer is Docker's empty layer (1024 zero bytes) to the byte.
        self.write(_ZERO + _ZERO)
        for future in self.inflight:
            self._out(future.result())
        self.inflight = []
        if self.pending:
            self._out(_gzip_member(bytes(self.pending)))
            self.pending = bytearray()
        self.stop()

    def stop(self) -> None:
        """End the compressing threads (also on an error path: they must not outlive the blob's fd)."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


def _gzip_member(chunk: bytes) -> bytes:
    """One gzip member of a chunk of tar (mtime 0 in its header: the same bytes give the same member)."""
    import zlib

    level = GZIP_LEVEL
    if len(chunk) >= SAMPLE:
        sample = chunk[:SAMPLE]
        if len(zlib.compress(sample, GZIP_LEVEL)) > len(sample) * 0.97:
            level = 0  # deflate's stored blocks: the data as it is, framed
    return zlib.compress(chunk, level, wbits=31)


def _header(rel: str, st: os.stat_result, kind: bytes, xattrs: dict[str, bytes] | None = None, size: int = 0,
            linkname: str = "", mode: int | None = None) -> bytes:
    import tarfile

    info = tarfile.TarInfo(rel)
    info.type = kind
    info.mode = stat.S_IMODE(st.st_mode) if mode is None else mode  # set-uid/set-gid/sticky included
    info.uid, info.gid = st.st_uid, st.st_gid
    info.mtime = int(st.st_mtime)  # whole seconds, as Docker writes them: no PAX mtime record
    info.size = size
    info.linkname = linkname
    info.uname = info.gname = ""
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    if xattrs:
        info.pax_headers = {f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape")
                            for k, v in sorted(xattrs.items())}
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


# ---------------------------------------------------------------- the copy (move=False)

class _Copy:
    """A copy of the upperdir for the store's unpacked layer: whiteouts, opaque marks, owners, modes,
    hard links, xattrs and times kept. Directory attributes go on last (a 0555 one would refuse its
    children otherwise, and every child written would change its mtime)."""

    def __init__(self, dest: str) -> None:
        self.dest = dest
        self.dirs: list[tuple[str, _Entry]] = []

    def attrs(self, path: str, e: _Entry, fd: int | None = None) -> None:
        st = e.st
        if fd is not None:
            os.fchown(fd, st.st_uid, st.st_gid)
            os.fchmod(fd, stat.S_IMODE(st.st_mode))  # after chown, which clears set-uid/set-gid
            for name, value in e.xattrs.items():
                os.setxattr(fd, name, value)
            os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
            return
        os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(path, stat.S_IMODE(st.st_mode))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    def node(self, e: _Entry, link_to: str | None) -> None:
        """Everything but a regular file's data (written by the caller through open_file)."""
        path = f"{self.dest}/{e.rel}"
        mode = e.st.st_mode
        if link_to is not None:
            os.link(f"{self.dest}/{link_to}", path, follow_symlinks=False)
        elif stat.S_ISDIR(mode):
            os.mkdir(path, 0o700)
            if e.opaque:
                os.setxattr(path, "trusted.overlay.opaque", b"y")
            self.dirs.append((path, e))
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(e.path), path)
            self.attrs(path, e)
        elif stat.S_ISFIFO(mode):
            os.mkfifo(path, 0o600)
            self.attrs(path, e)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            os.mknod(path, stat.S_IFMT(mode) | 0o600, e.st.st_rdev)
            self.attrs(path, e)
        # sockets: a listening socket's file means nothing without its process; Docker leaves it out too

    def open_file(self, e: _Entry) -> int:
        return os.open(f"{self.dest}/{e.rel}", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                       0o600)

    def finish(self) -> None:
        for path, e in reversed(self.dirs):
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                self.attrs(path, e, fd)
            finally:
                os.close(fd)


# ---------------------------------------------------------------- layer_from_dir

def layer_from_dir(store: Store, upper: str, move: bool, budget: Budget | None = None,
                   exclude: Collection[str] = ()) -> tuple[str, str, int]:
    """Make an image layer of an overlayfs upperdir. Returns (blob digest, diff id, size).

    The OCI layer tar is written in one pass over the tree: whiteouts become `.wh.NAME` entries, an
    opaque directory its entry plus `DIR/.wh..wh..opq`, a second name of an inode a hard link entry;
    files, directories, symlinks, fifos and device nodes keep their modes (set-uid/set-gid too),
    owners and mtimes, and security.capability and user.* xattrs go in as PAX SCHILY.xattr records
    (overlayfs's trusted.*/user.overlay.* never do). Names are relative, each directory's entries in
    byte order after the directory itself. The tar is hashed (the diff id), gzip'd (GZIP_LEVEL, mtime 0:
    the same tree gives the same blob) and hashed again (the digest) as it is written to a temp blob.

    The store's unpacked copy of the layer (images/layers/<diff-id hex>, the overlay format the store
    keeps) is the upperdir itself: move=True renames `upper` into place (it must be on the store's
    filesystem; the caller gives it up: if the store already has that layer, `upper` is deleted);
    move=False copies it (whiteouts, opaque marks, owners, modes, hard links, xattrs, times) in the
    same pass, for a container that keeps its upperdir. An existing layer with the same diff id is
    never replaced. exclude: relative paths left out of the layer, each with everything under it.

    The caller holds store.lock("gc", shared=True) until an image names the layer (else `image prune`
    may collect it). Temp files are `.tmp-<pid>-...` in the blobs and layers dirs (Store.gc_temp removes
    them after a SIGKILL) and are deleted on every failure here. budget (images/budget.py) is charged
    with the blob's bytes and, for a copy, the copied bytes; new layer and blob are recorded in it.
    """
    import tarfile

    from pycontain.images.budget import Budget
    from pycontain.safefile import create_new
    from pycontain.state import atomic_write_json

    store.ensure()
    if budget is None:
        budget = Budget(store.root, "layer")
    budget.before_layer(0, "layer")
    exclude = frozenset(exclude)
    stamp = f"{os.getpid()}-{time.monotonic_ns()}"
    tmp_blob, tmp_dir = f"{store.blobs}/.tmp-{stamp}", f"{store.layers}/.tmp-{stamp}"
    copy = None
    stream = None
    blob_fd = create_new(tmp_blob)
    try:
        if not move:
            os.mkdir(tmp_dir, 0o755)
            copy = _Copy(tmp_dir)
        stream = _LayerStream(blob_fd, budget)
        size = _write_tar(stream, upper, exclude, copy, budget, tarfile)
        stream.finish()
        if copy is not None:
            copy.finish()
        os.fsync(blob_fd)
        os.close(blob_fd)
        blob_fd = -1
        faults.phase("commit.layer")
        blob_digest, diff_id = f"sha256:{stream.blob_hash.hexdigest()}", f"sha256:{stream.tar_hash.hexdigest()}"
        if not store.has_blob(blob_digest):
            budget.added_blobs.append(blob_digest)
        os.rename(tmp_blob, store.blob_path(blob_digest))
        final = f"{store.layers}/{diff_id[7:]}"
        src = tmp_dir if copy is not None else upper
        if os.path.exists(final):
            rmtree(src)  # the store has this layer already: it stays as it is, ours goes
        else:
            if move:
                for rel in sorted(exclude, key=len, reverse=True):
                    rmtree(f"{upper}/{rel}")  # the unpacked layer must be what the tar says
            atomic_write_json(f"{final}.json", {"size": size, "blob": blob_digest, "compression": "gzip",
                                                "diff_size": stream.tar_size})
            try:
                os.rename(src, final)
                budget.added_layers.append(diff_id)
            except OSError:  # lost a race with another writer of the same layer: theirs is as good
                if not os.path.isdir(final):
                    raise
                rmtree(src)
        return blob_digest, diff_id, size
    except BaseException:
        if stream is not None:
            stream.stop()
        if blob_fd >= 0:
            os.close(blob_fd)
        if os.path.lexists(tmp_blob):
            os.unlink(tmp_blob)
        rmtree(tmp_dir)
        raise


def _write_tar(stream: _LayerStream, upper: str, exclude: frozenset[str], copy: _Copy | None,
               budget: Budget, tarfile: Any) -> int:
    """The tar entries of upper into stream (and copy); returns the layer's size as the store counts it
    (every non-directory's st_size, as state.tree_size counts it)."""
    links: dict[tuple[int, int], str] = {}
    size = 0
    for e in _scan(upper, exclude):
        st, rel = e.st, e.rel
        mode = st.st_mode
        if not stat.S_ISDIR(mode):
            size += st.st_size
        if e.whiteout:
            # Each whiteout is its own entry, never a hard link: the kernel makes them by linking one
            # shared whiteout inode (since 5.8), which says nothing about the paths.
            head, _, name = rel.rpartition("/")
            stream.write(_header(f"{head}/.wh.{name}" if head else f".wh.{name}", st, tarfile.REGTYPE, mode=0o600))
            if copy is not None:
                os.mknod(f"{copy.dest}/{rel}", stat.S_IFCHR | 0o600, 0)
                copy.attrs(f"{copy.dest}/{rel}", e)
            continue
        if stat.S_ISSOCK(mode):
            continue
        first = None
        if st.st_nlink > 1 and not stat.S_ISDIR(mode):
            first = links.get((st.st_dev, st.st_ino))
            if first is None:
                links[(st.st_dev, st.st_ino)] = rel
        if first is not None:
            stream.write(_header(rel, st, tarfile.LNKTYPE, linkname=first))
            if copy is not None:
                copy.node(e, first)
            continue
        if stat.S_ISDIR(mode):
            stream.write(_header(rel, st, tarfile.DIRTYPE, e.xattrs))
            if copy is not None:
                copy.node(e, None)
            if e.opaque:
                stream.write(_header(f"{rel}/.wh..wh..opq", st, tarfile.REGTYPE))
        elif stat.S_ISREG(mode):
            stream.write(_header(rel, st, tarfile.REGTYPE, e.xattrs, size=st.st_size))
            _file_data(stream, e, copy, budget)
        elif stat.S_ISLNK(mode):
            stream.write(_header(rel, st, tarfile.SYMTYPE, linkname=os.readlink(e.path)))
            if copy is not None:
                copy.node(e, None)
        else:
            kind = tarfile.FIFOTYPE if stat.S_ISFIFO(mode) else \
                tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            stream.write(_header(rel, st, kind, e.xattrs))
            if copy is not None:
                copy.node(e, None)
    return size


def _file_data(stream: _LayerStream, e: _Entry, copy: _Copy | None, budget: Budget) -> None:
    """A regular file's data, exactly st_size bytes (a file that a running, unpaused container changes
    meanwhile is cut or zero-padded to the size its header says), then the block padding."""
    want = e.st.st_size
    src = os.open(e.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    dst = copy.open_file(e) if copy is not None else -1
    try:
        left = want
        while left > 0:
            chunk = os.read(src, min(CHUNK, left))
            if not chunk:
                chunk = bytes(min(CHUNK, left))
            left -= len(chunk)
            stream.write(chunk)
            if dst >= 0:
                budget.unpacked_bytes(len(chunk))
                view = memoryview(chunk)
                while view:
                    view = view[os.write(dst, view):]
        if want % 512:
            stream.write(_ZERO[: 512 - want % 512])
        if dst >= 0:
            assert copy is not None
            copy.attrs("", e, dst)
    finally:
        os.close(src)
        if dst >= 0:
            os.close(dst)


# ---------------------------------------------------------------- diff

def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


class _Lower:
    """The image's layers as the container's overlay stacks them, for looking paths up without following
    any symlink (a layer's absolute symlink must never lead to the host's files)."""

    def __init__(self, layers: list[str]) -> None:
        self.top_first = list(reversed(layers))
        self._dirs: dict[tuple[str, str], tuple[bool, bool]] = {}

    def _dir(self, layer: str, rel: str) -> tuple[bool, bool]:
        """(is a real directory in this layer, hides what lower layers have under it)."""
        if not rel:
            return True, False
        key = (layer, rel)
        if key in self._dirs:
            return self._dirs[key]
        present, stop = self._dir(layer, os.path.dirname(rel))
        result = (False, stop)
        if present:
            st = _lstat(f"{layer}/{rel}")
            if st is not None:
                if not stat.S_ISDIR(st.st_mode):
                    result = (False, True)  # a whiteout or a file here hides any lower directory
                else:
                    result = (True, stop or _opaque(f"{layer}/{rel}"))
        self._dirs[key] = result
        return result

    def lookup(self, rel: str) -> os.stat_result | None:
        """The lstat of what the image shows at rel, or None if nothing is there."""
        parent = os.path.dirname(rel)
        for layer in self.top_first:
            present, stop = self._dir(layer, parent)
            if present:
                st = _lstat(f"{layer}/{rel}")
                if st is not None:
                    return None if _is_whiteout(st) else st
            if stop:
                return None
        return None


def _opaque(path: str) -> bool:
    for name in _OPAQUE:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def _same_time(a: os.stat_result, b: os.stat_result) -> bool:
    """Docker's sameFsTime: equal, or the same second when one side has no sub-second part (a layer
    unpacked from a tar has whole seconds)."""
    if a.st_mtime_ns == b.st_mtime_ns:
        return True
    return a.st_mtime_ns // 10**9 == b.st_mtime_ns // 10**9 and (a.st_mtime_ns % 10**9 == 0 or
                                                                   b.st_mtime_ns % 10**9 == 0)


class Changes:
    """A container's changes, computed as Docker's overlay2 driver does (moby pkg/archive OverlayChanges):

      - each upperdir entry, depth first in name order; a whiteout is `D path`;
      - an opaque directory that the image had is `D dir` (deleted and made again), its entries are then
        compared one by one like any other;
      - an entry the image has is `C`, one it lacks is `A`; a directory that both have with the same
        size, mode and mtime is not listed by itself;
      - every directory above an `A` or `D` that is not listed yet is listed as `C` before it.

    Two differences, both about pycontain's own files: the mount points pycontain creates for
    /etc/hosts, /etc/hostname and /etc/resolv.conf when the image lacks them (Docker keeps those in
    its init layer) are left out, and so is a directory listed only because of them. And lookups in
    the image never follow symlinks (Docker's stat() does), and honour whiteouts and opaque directories
    of the image's own layers.
    """

    def __init__(self, upper: str, layers: list[str], mountpoints: Collection[str] = ()) -> None:
        self.upper = upper
        self.lower = _Lower(layers)
        self.hidden = {m.strip("/") for m in mountpoints}
        self.exclude: set[str] = set()  # what commit leaves out of the layer: hidden entries, hidden-only dirs
        self.lines: list[tuple[str, str]] = []
        self._walk("")

    def _walk(self, rel_dir: str) -> tuple[list[tuple[str, str]], bool, bool]:
        """(changes under rel_dir, any A/D among them, anything there but hidden mount points)."""
        out: list[tuple[str, str]] = []
        added_or_deleted = False
        real = False
        base = f"{self.upper}/{rel_dir}" if rel_dir else self.upper
        for name in sorted(os.listdir(base), key=os.fsencode):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            path = f"{base}/{name}"
            if rel in self.hidden:
                self.exclude.add(rel)
                continue
            st = os.lstat(path)
            if _is_whiteout(st):
                out.append(("D", "/" + rel))
                added_or_deleted = real = True
                continue
            lower = self.lower.lookup(rel)
            own: str | None
            if stat.S_ISDIR(st.st_mode) and lower is not None and _opaque(path):
                own = "D"
            elif lower is None:
                own = "A"
            elif stat.S_ISDIR(st.st_mode) and stat.S_ISDIR(lower.st_mode) and st.st_size == lower.st_size \
                    and st.st_mode == lower.st_mode and _same_time(st, lower):
                own = None
            else:
                own = "C"
            if not stat.S_ISDIR(st.st_mode):
                out.append((own or "C", "/" + rel))
                added_or_deleted |= own in ("A", "D")
                real = True
                continue
            below, below_ad, below_real = self._walk(rel)
            if not below_real and own == "C" and lower is not None and st.st_mode == lower.st_mode \
                    and st.st_uid == lower.st_uid and st.st_gid == lower.st_gid:
                own = None  # only pycontain's mount points changed it (its mtime): not the container's doing
            if own is None and below_ad:
                own = "C"
            if own is None and not below_real:
                self.exclude.add(rel)
                continue
            real = True
            if own is not None:
                out.append((own, "/" + rel))
            added_or_deleted |= own in ("A", "D") or below_ad
            out.extend(below)
        if not rel_dir:
            self.lines = out
        return out, added_or_deleted, real


def _container(paths: Paths, ref: str) -> Record:
    from pycontain import state

    rec = state.find(paths, ref)
    rec.meta()
    return rec


def _changes(rec: Record) -> Changes:
    upper = f"{rec.storage}/upper"
    if not os.path.isdir(upper):
        raise PycontainError(f"container {rec.name} has no filesystem of its own (its storage is gone)")
    return Changes(upper, rec.layers, rec.etc_files.keys())


def cmd_diff(paths: Paths, opts: dict[str, Any], pos: list[str]) -> int:
    need(pos, "a container", exactly=1)
    rec = _container(paths, pos[0])
    out = sys.stdout
    for kind, path in _changes(rec).lines:
        out.write(f"{kind} {path}\n")
    return 0


# ---------------------------------------------------------------- commit

def _container_config(rec: Record, image: dict[str, Any]) -> dict[str, Any]:
    """The container's own settings as Docker's commit takes them (its container config merged with the
    image's): its command, entrypoint, env (the image's and its own -e, not what the runtime adds:
    HOSTNAME, TERM, a default PATH), working dir and user; labels, ports, volumes, stop signal and
    healthcheck from the image, -p ports added to ExposedPorts. ONBUILD triggers are dropped, as
    Docker drops them (a container's config never carries them)."""
    from pycontain.config import merge_env

    cfg = rec.config
    img = dict(image.get("config") or {})
    out: dict[str, Any] = {k: img[k] for k in ("User", "ExposedPorts", "Env", "Cmd", "Entrypoint", "WorkingDir",
                                              "Labels", "Volumes", "StopSignal", "Healthcheck", "Shell")
                           if img.get(k) is not None}
    if cfg.env:
        out["Env"] = merge_env(list(img.get("Env") or []), list(cfg.env))
    if cfg.entrypoint is not None:
        # --entrypoint replaces the image's and drops its Cmd (Docker's rule; config.with_image_defaults)
        out["Entrypoint"] = list(cfg.entrypoint) or None
        out["Cmd"] = list(cfg.command) or None
    elif cfg.command:
        out["Cmd"] = list(cfg.command)
    if cfg.workdir:
        out["WorkingDir"] = cfg.workdir
    if cfg.user is not None:
        out["User"] = cfg.user
    for p in cfg.ports:
        out.setdefault("ExposedPorts", {})[f"{p.container_port}/{p.protocol}"] = {}
    return {k: v for k, v in out.items() if v is not None}


class _Frozen:
    """The container's processes frozen (runtime.freeze, as `pause` does) while its layer is written,
    and thawed whatever happens: an error, Ctrl-C, SIGTERM or SIGHUP (those two are turned into an
    exception for the time being, as their default action would leave the container frozen). A container
    the user paused stays paused."""

    def __init__(self, rec: Record) -> None:
        self.rec = rec
        self.old: dict[int, Any] = {}
        self.froze = False

    def __enter__(self) -> _Frozen:
        import signal

        from pycontain import runtime, state

        if self.rec.status() == state.Status.PAUSED:
            return self

        def stop(signum: int, _frame: object) -> None:
            raise KeyboardInterrupt

        for sig in (signal.SIGTERM, signal.SIGHUP):
            self.old[sig] = signal.signal(sig, stop)
        self.froze = True
        try:
            runtime.freeze(self.rec.id, True)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        from pycontain import runtime

        try:
            if self.froze:
                self.froze = False
                runtime.freeze(self.rec.id, False)
        finally:
            for sig, handler in self.old.items():
                signal.signal(sig, handler)


def _pause_wanted(opts: dict[str, Any], pos: list[str]) -> bool:
    """-p/--pause takes true or false (default true). `-p CONTAINER`, Docker's bare flag, hands the
    container name to the option parser as its value: it goes back to the positionals."""
    value = opts.get("pause")
    if value is None:
        return True
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    pos.insert(0, value)
    return True


def _created_by(rec: Record, image: dict[str, Any]) -> str:
    """The history line of a commit: the container's Cmd joined with spaces, as Docker writes it."""
    cfg = rec.config
    if cfg.command:
        cmd = list(cfg.command)
    elif cfg.entrypoint is None:
        cmd = list((image.get("config") or {}).get("Cmd") or [])
    else:
        cmd = []
    return " ".join(cmd)


def cmd_commit(paths: Paths, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain import jsonfast, runtime, state
    from pycontain.images import reference
    from pycontain.images.budget import Budget
    from pycontain.images.store import Store, apply_changes

    pause = _pause_wanted(opts, pos)
    if not pos or len(pos) > 2:
        raise UsageError("expected CONTAINER [REPOSITORY[:TAG]]")
    ref = reference.parse(pos[1]) if len(pos) == 2 else None
    if ref is not None and ref.digest:
        raise UsageError(f"cannot commit to a digest ({pos[1]}): give a tag")
    rec = _container(paths, pos[0])
    store = Store(paths)
    parent = store.config(rec.image_id) if rec.image_id else None
    if parent is None:
        raise ImageError(f"container {rec.name} has no image id in its record: cannot commit it")
    section = apply_changes(_container_config(rec, parent), opts["change"])
    store.refs()  # damaged tags (DamagedStore): say so before anything is written
    what = f"image {ref.familiar}" if ref else f"a commit of {rec.name}"
    budget = Budget(store.root, what)
    gc_fd = store.lock("gc", shared=True)
    image_id = None
    try:
        upper = f"{rec.storage}/upper"
        running = pause and runtime.live_pid(rec) is not None
        frozen = _Frozen(rec) if running else None
        if frozen is not None:
            frozen.__enter__()
        try:
            if not os.path.isdir(upper):
                raise PycontainError(f"container {rec.name} has no filesystem of its own (its storage is gone)")
            found = Changes(upper, rec.layers, rec.etc_files.keys())
            _, diff_id, _ = layer_from_dir(store, upper, move=False, budget=budget, exclude=found.exclude)
        finally:
            if frozen is not None:
                frozen.__exit__(None, None, None)
        created = state.now()
        entry: dict[str, Any] = {"created": created, "created_by": _created_by(rec, parent)}
        if opts["author"]:
            entry["author"] = opts["author"]
        if opts["message"]:
            entry["comment"] = opts["message"]
        config: dict[str, Any] = {k: parent[k] for k in ("architecture", "os", "variant", "os.version")
                                  if k in parent}
        if opts["author"]:
            config["author"] = opts["author"]
        config.update({
            "config": section, "container": rec.id, "created": created,
            "history": list(parent.get("history") or []) + [entry],
            "rootfs": {"type": "layers", "diff_ids": list(parent.get("rootfs", {}).get("diff_ids", [])) + [diff_id]},
        })
        data = jsonfast.dumps(config).encode()
        new_config = not os.path.exists(store.blob_path(_digest(data)))
        image_id = store.put_blob(data)
        if new_config:
            budget.added_blobs.append(image_id)
        if ref is not None:
            store.tag(ref, image_id)
        store.write_meta(image_id)
    except BaseException:
        if image_id is not None and image_id in budget.added_blobs:
            store.delete_image(image_id)
        store.discard_unused(paths, budget, gc_fd)
        raise
    finally:
        os.close(gc_fd)
    from pycontain import events

    events.container(rec, "commit")
    print(image_id)
    return 0


def _digest(data: bytes) -> str:
    from pycontain.images.store import sha256

    return sha256(data)


HANDLERS = {"diff": cmd_diff, "commit": cmd_commit}
