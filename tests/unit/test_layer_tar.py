"""layer_from_dir: an overlayfs upperdir becomes an OCI layer (tar + gzip + the store's unpacked copy).

The trees are made here with every kind of entry an upperdir holds (whiteouts are 0:0 character
devices, opaque directories carry trusted.overlay.opaque), so these tests need root (mknod, trusted.*
xattrs, chown); the suite runs as root. The layer's tar is read back with the standard library and
unpacked with pycontain's own unpacker into a fresh directory, which must hold the same tree.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import struct
import tarfile
from pathlib import Path
from typing import Any

import pytest

from pycontain.errors import ImageError
from pycontain.images.changes import layer_from_dir
from pycontain.images.store import Store
from pycontain.images.unpack import unpack
from pycontain.state import Paths

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mknod, trusted.* xattrs and chown need root")

# A file capability (VFS_CAP_REVISION_2, effective): cap_net_bind_service (bit 10) permitted.
CAPABILITY = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)
MTIME = 1_700_000_000


def make_tree(root: Path) -> None:
    """Every kind of upperdir entry: files (set-uid, set-gid, owners, a capability), a hard link pair,
    directories (one opaque, one 0555), symlinks, a fifo, device nodes and whiteouts."""
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "bin").mkdir()
    ping = root / "bin" / "ping"
    ping.write_bytes(b"\x7fELF" + bytes(3000))
    os.chown(ping, 0, 0)
    os.chmod(ping, 0o4755)
    os.setxattr(ping, "security.capability", CAPABILITY)
    os.setxattr(ping, "trusted.overlay.origin", b"\x00\xfb")  # overlay bookkeeping: never in a layer
    grp = root / "bin" / "wall"
    grp.write_text("x")
    os.chown(grp, 0, 5)
    os.chmod(grp, 0o2755)
    data = root / "data"
    data.mkdir()
    big = data / "big"
    big.write_bytes(os.urandom(200_000))
    os.chown(big, 1234, 5678)
    os.link(big, data / "big-link")
    os.symlink("/etc/passwd", data / "abs-link")
    os.symlink("../bin", data / "rel-link")
    os.mkfifo(data / "fifo", 0o640)
    os.mknod(data / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(data / "loop", 0o660 | stat.S_IFBLK, os.makedev(7, 0))
    os.mknod(root / "etc" / "gone", stat.S_IFCHR, os.makedev(0, 0))  # a whiteout
    opq = root / "var" / "cache"
    opq.mkdir(parents=True)
    os.setxattr(opq, "trusted.overlay.opaque", b"y")
    (opq / "new").write_text("fresh")
    os.mknod(opq / "also-gone", stat.S_IFCHR, os.makedev(0, 0))
    ro = root / "ro"
    ro.mkdir()
    (ro / "inside").write_text("in a 0555 dir")
    os.chmod(ro, 0o555)
    (root / "empty").write_bytes(b"")
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), (MTIME, MTIME), follow_symlinks=False)


def snapshot(root: Path, whole_seconds: bool = False, devices: bool = True) -> dict[str, tuple[Any, ...]]:
    """Everything the layer must keep, per path: type, mode, owner, mtime, content or target, device
    number, the kept xattrs and the opaque mark; hard links as groups of paths."""
    out: dict[str, tuple[Any, ...]] = {}
    inodes: dict[int, list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                out[rel] = ("whiteout",)  # its mode, owner and time mean nothing to overlayfs
                continue
            if (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)) and not devices:
                continue
            xattrs: dict[str, bytes] = {}
            if not stat.S_ISLNK(st.st_mode):
                for key in os.listxattr(path, follow_symlinks=False):
                    if key in ("security.capability", "trusted.overlay.opaque") or key.startswith("user."):
                        xattrs[key] = os.getxattr(path, key, follow_symlinks=False)
            content: Any = None
            if stat.S_ISREG(st.st_mode):
                content = hashlib.sha256(Path(path).read_bytes()).hexdigest()
                if st.st_nlink > 1:
                    inodes.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            mtime = st.st_mtime_ns // 10**9 if whole_seconds else st.st_mtime_ns
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                        None if stat.S_ISDIR(st.st_mode) else mtime, content, st.st_rdev, sorted(xattrs.items()))
    out["<hard links>"] = tuple(sorted(tuple(sorted(g)) for g in inodes.values()))
    return out


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(Paths(state=str(tmp_path / "run"), storage=str(tmp_path / "storage")))


@pytest.fixture
def upper(tmp_path: Path) -> Path:
    root = tmp_path / "upper"
    make_tree(root)
    return root


def layer_tar(store: Store, digest: str) -> bytes:
    with open(store.blob_path(digest), "rb") as f:
        return gzip.decompress(f.read())


def test_round_trip_through_the_tar_and_the_stores_copy(store: Store, upper: Path, tmp_path: Path) -> None:
    before = snapshot(upper)
    digest, diff_id, size = layer_from_dir(store, str(upper), move=False)
    assert snapshot(upper) == before, "commit must leave the container's upperdir as it was"
    layer = Path(store.layers) / diff_id[7:]
    assert snapshot(layer) == before
    raw = layer_tar(store, digest)
    assert diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert digest == "sha256:" + hashlib.sha256(Path(store.blob_path(digest)).read_bytes()).hexdigest()
    info = store.layer_info(diff_id)
    assert info == {"size": size, "blob": digest, "compression": "gzip", "diff_size": len(raw)}
    # The tar, unpacked by pycontain's own unpacker, is the same tree (device nodes aside: the unpacker
    # skips them, a container gets its own /dev) with the tar's whole-second mtimes.
    out = tmp_path / "unpacked"
    out.mkdir()
    with open(store.blob_path(digest), "rb") as f:
        skipped = unpack(f, str(out))
    assert sorted(skipped) == ["data/loop", "data/null"]
    assert snapshot(out, whole_seconds=True) == snapshot(upper, whole_seconds=True, devices=False)


def test_tar_entries_are_dockers_layout(store: Store, upper: Path) -> None:
    digest, _, _ = layer_from_dir(store, str(upper), move=False)
    with tarfile.open(store.blob_path(digest), "r:gz") as tf:
        members = tf.getmembers()
    names = [m.name for m in members]
    by_name = {m.name: m for m in members}
    assert all(not n.startswith("/") for n in names)
    for i, name in enumerate(names):  # every parent directory comes before its children
        parent = os.path.dirname(name)
        assert not parent or names.index(parent) < i, name
    # whiteouts and the opaque marker; the opaque directory's xattr is not in the tar
    assert "etc/.wh.gone" in by_name and by_name["etc/.wh.gone"].isreg() and by_name["etc/.wh.gone"].size == 0
    assert "var/cache/.wh.also-gone" in by_name
    assert names.index("var/cache/.wh..wh..opq") == names.index("var/cache") + 1
    assert "etc/gone" not in by_name
    # hard links, special files, modes
    first, second = by_name["data/big"], by_name["data/big-link"]
    assert first.isreg() and second.islnk() and second.linkname == "data/big"
    assert (first.uid, first.gid) == (1234, 5678)
    assert by_name["bin/ping"].mode == 0o4755 and by_name["bin/wall"].mode == 0o2755
    assert by_name["data/fifo"].isfifo() and by_name["data/null"].ischr()
    assert (by_name["data/loop"].devmajor, by_name["data/loop"].devminor) == (7, 0)
    assert by_name["data/abs-link"].issym() and by_name["data/abs-link"].linkname == "/etc/passwd"
    # xattrs: the capability as a PAX record; no trusted.* anywhere
    pax = {k for m in members for k in m.pax_headers}
    assert by_name["bin/ping"].pax_headers["SCHILY.xattr.security.capability"].encode(
        "utf-8", "surrogateescape") == CAPABILITY
    assert not [k for k in pax if "trusted." in k], pax


def test_deterministic_and_an_existing_layer_is_kept(store: Store, upper: Path) -> None:
    first = layer_from_dir(store, str(upper), move=False)
    layer = Path(store.layers) / first[1][7:]
    marker = layer / "etc" / "passwd"
    inode = marker.stat().st_ino
    second = layer_from_dir(store, str(upper), move=False)
    assert second == first
    assert marker.stat().st_ino == inode, "an existing layer must not be replaced"
    assert [n for n in os.listdir(store.layers) + os.listdir(store.blobs) if ".tmp-" in n] == []


def test_move_renames_the_upperdir_into_the_store(store: Store, upper: Path) -> None:
    before = snapshot(upper)
    _, diff_id, _ = layer_from_dir(store, str(upper), move=True)
    assert not upper.exists()
    assert snapshot(Path(store.layers) / diff_id[7:]) == before


def test_empty_upper_is_dockers_empty_layer(store: Store, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    digest, diff_id, size = layer_from_dir(store, str(empty), move=False)
    assert layer_tar(store, digest) == bytes(1024)
    assert diff_id == "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef" and size == 0


def test_exclude_leaves_paths_out(store: Store, upper: Path) -> None:
    digest, diff_id, _ = layer_from_dir(store, str(upper), move=False, exclude={"data", "etc/passwd"})
    with tarfile.open(store.blob_path(digest), "r:gz") as tf:
        names = tf.getnames()
    assert not [n for n in names if n.startswith("data") or n == "etc/passwd"]
    assert not (Path(store.layers) / diff_id[7:] / "data").exists()


def test_redirect_is_refused_and_nothing_is_left(store: Store, upper: Path) -> None:
    os.setxattr(upper / "data", "trusted.overlay.redirect", b"/elsewhere")
    with pytest.raises(ImageError, match="redirect"):
        layer_from_dir(store, str(upper), move=False)
    assert os.listdir(store.layers) == [] and os.listdir(store.blobs) == []
    assert (upper / "data" / "big").exists()


def test_a_big_layer_is_gzip_members_that_any_reader_takes(store: Store, tmp_path: Path) -> None:
    """Past one chunk the blob is several gzip members (compressed on two threads; random data stored):
    it must still be one stream to gzip readers, hash to the tar's diff id, and be the same twice."""
    tree = tmp_path / "big"
    tree.mkdir()
    (tree / "random").write_bytes(os.urandom(3 << 20))
    (tree / "text").write_bytes(b"the same line again\n" * 200_000)
    digest, diff_id, _ = layer_from_dir(store, str(tree), move=False)
    blob = Path(store.blob_path(digest)).read_bytes()
    assert blob.count(b"\x1f\x8b\x08") >= 5  # several members
    data = gzip.decompress(blob)
    assert "sha256:" + hashlib.sha256(data).hexdigest() == diff_id
    with open(store.blob_path(digest), "rb") as f, tarfile.open(fileobj=gzip.GzipFile(fileobj=f)) as tf:
        assert sorted(tf.getnames()) == ["random", "text"]
    assert len(blob) < (3 << 20) + 400_000  # the text compressed; the random part stored, barely framed
    again = layer_from_dir(store, str(tree), move=False)
    assert again[0] == digest
