"""Fuzzing the layer unpacker (pycontain/images/unpack.py) with hostile tar streams: member names with `..`,
absolute names, symlinks and hard links to anywhere, entries through links, devices, fifos, whiteouts,
xattrs, huge declared sizes, truncated and gzip'd streams. Each example unpacks into `dest` inside a
sandbox directory that also holds a `victim` file and an `etc/passwd`; afterwards nothing outside `dest`
may have changed, and the unpacker may only have succeeded or refused the layer with one ImageError.

As root (the suite's usual case) each example runs in a forked child in a private mount namespace,
chroot'ed into the sandbox with /proc bind-mounted in: a bug that wrote through an absolute path would
hit the sandbox's files, never the host's. Without root the child runs unprivileged, which cannot harm
the host either.
"""

from __future__ import annotations

import ctypes
import gzip
import io
import os
import shutil
import tarfile
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzz_support import count, fuzz
from hypothesis import given
from hypothesis import strategies as st

from pycontain.errors import ImageError
from pycontain.images import unpack as unpack_mod

COMPONENTS = ["a", "b", "..", ".", "", "etc", "passwd", "victim", "dest", ".wh.a", ".wh..wh..opq", ".wh.", "proc",
              "d" * 120]
LINK_TARGETS = ["/victim", "/etc/passwd", "/etc", "/", "..", "../victim", "../../victim", "../../../etc/passwd",
                "a", "a/b", "b/../../victim", "/proc/self/root/victim", ""]
KINDS = ["file", "file", "dir", "symlink", "hardlink", "fifo", "chardev", "blockdev", "huge"]
XATTRS = ["SCHILY.xattr.user.note", "SCHILY.xattr.trusted.overlay.opaque", "SCHILY.xattr.trusted.overlay.redirect",
          "SCHILY.xattr.security.capability", "SCHILY.xattr.security.selinux"]


@st.composite
def names(draw: st.DrawFn) -> str:
    path = "/".join(draw(st.lists(st.sampled_from(COMPONENTS), min_size=1, max_size=4)))
    return draw(st.sampled_from(["", "/", "./", "../"])) + path


@st.composite
def members(draw: st.DrawFn) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(draw(names()))
    kind = draw(st.sampled_from(KINDS))
    info.mode = draw(st.integers(0, 0o7777))
    info.uid, info.gid = draw(st.sampled_from([0, 1, 1000, 65534])), draw(st.sampled_from([0, 1, 1000, 65534]))
    info.mtime = draw(st.integers(0, 2**33))
    data = b""
    if kind in ("file", "huge"):
        data = draw(st.binary(max_size=64))
        info.size = len(data) if kind == "file" else 2**40  # huge: far more than the stream holds
    elif kind == "dir":
        info.type = tarfile.DIRTYPE
    elif kind in ("symlink", "hardlink"):
        info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
        info.linkname = draw(st.one_of(st.sampled_from(LINK_TARGETS), names()))
    else:
        info.type = {"fifo": tarfile.FIFOTYPE, "chardev": tarfile.CHRTYPE, "blockdev": tarfile.BLKTYPE}[kind]
        info.devmajor, info.devminor = draw(st.sampled_from([(0, 0), (1, 3), (8, 0)]))
    if draw(st.booleans()):
        info.pax_headers = {k: draw(st.text(max_size=8)) for k in draw(st.lists(st.sampled_from(XATTRS), max_size=2))}
    return info, data


@st.composite
def layers(draw: st.DrawFn) -> bytes:
    out = io.BytesIO()
    for info, data in draw(st.lists(members(), max_size=8)):
        out.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        out.write(data)
        if info.size == len(data):
            out.write(b"\0" * (-len(data) % 512))
        else:
            break  # a huge member: the stream ends inside it
    else:
        out.write(b"\0" * 1024)
    raw = out.getvalue()
    if draw(st.booleans()):
        raw = raw[: draw(st.integers(0, len(raw)))]  # truncated anywhere
    if draw(st.integers(0, 3)) == 0:
        raw = gzip.compress(raw, mtime=0)
    return raw


# ---------------------------------------------------------------- the sandbox

CLONE_NEWNS, MS_REC, MS_PRIVATE, MS_BIND = 0x00020000, 0x4000, 1 << 18, 0x1000
ORIGINAL = b"untouched\n"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Under pytest's basetemp, never a new entry in /tmp (other sessions' leak checks watch /tmp)."""
    d = tmp_path_factory.mktemp("fuzz-unpack")
    yield d
    _force_rmtree(d)


def _force_rmtree(path: Path) -> None:
    """rmtree that first makes every directory writable (a layer may set 0555 or 0000 on its own)."""
    for dirpath, dirnames, _ in os.walk(path):
        for d in dirnames:
            p = os.path.join(dirpath, d)
            if not os.path.islink(p):
                os.chmod(p, 0o700)
    shutil.rmtree(path)


def _in_child(sandbox: Path, layer: bytes) -> bytes:
    """Unpack in a forked child (chroot'ed as root); its verdict: b"ok", b"refused ..." or b"BUG ...\""""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: whatever happens, it leaves through os._exit
        try:
            os.close(r)
            dest = str(sandbox / "dest")
            if os.geteuid() == 0:
                libc = ctypes.CDLL(None, use_errno=True)
                if libc.unshare(CLONE_NEWNS) != 0 or libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
                    raise OSError(ctypes.get_errno(), "unshare/mount")
                (sandbox / "proc").mkdir()
                if libc.mount(b"/proc", str(sandbox / "proc").encode(), None, MS_BIND | MS_REC, None) != 0:
                    raise OSError(ctypes.get_errno(), "bind /proc")
                os.chroot(sandbox)
                os.chdir("/")
                dest = "/dest"
            try:
                unpack_mod.unpack(io.BytesIO(layer), dest, max_bytes=1 << 20, max_entries=64)
                verdict = b"ok"
            except ImageError as e:
                verdict = b"refused " + str(e).encode(errors="replace")
            except BaseException:  # noqa: BLE001 - the finding this test reports
                verdict = b"BUG " + traceback.format_exc().encode(errors="replace")
            os.write(w, verdict)
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        verdict = f.read()
    os.waitpid(pid, 0)
    return verdict


def _outside(sandbox: Path) -> dict[str, bytes | str]:
    """Everything in the sandbox but dest (and the /proc mount point): paths -> content or link target."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(sandbox):
        rel = os.path.relpath(dirpath, sandbox)
        if rel == ".":
            dirnames[:] = [d for d in dirnames if d not in ("dest", "proc")]
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            key = os.path.relpath(p, sandbox)
            out[key] = os.readlink(p) if os.path.islink(p) else (b"<dir>" if os.path.isdir(p) else Path(p).read_bytes())
    return out


@fuzz(600)
@given(layers())
def test_unpack_never_writes_outside_and_fails_in_one_error(base: Path, layer: bytes) -> None:
    count("tar unpacker")
    sandbox = Path(tempfile.mkdtemp(dir=base))
    (sandbox / "dest").mkdir()
    (sandbox / "etc").mkdir()
    (sandbox / "victim").write_bytes(ORIGINAL)
    (sandbox / "etc" / "passwd").write_bytes(ORIGINAL)
    before = _outside(sandbox)
    try:
        verdict = _in_child(sandbox, layer)
        assert not verdict.startswith(b"BUG"), verdict.decode(errors="replace")
        assert verdict == b"ok" or (verdict.startswith(b"refused ") and b"\n" not in verdict), verdict
        assert _outside(sandbox) == before, "the unpacker changed something outside its destination"
    finally:
        _force_rmtree(sandbox)


def test_a_whiteout_declaring_2_to_the_40_bytes_is_refused_before_any_is_read(tmp_path: Path) -> None:
    """What the fuzzing found: a 200-byte layer whose whiteout (whose data is never written) declared a
    terabyte, then ended, kept tarfile reading past that terabyte of nothing for ~26 s. Declared data now
    counts against the layer's cap before it is read, whatever the entry."""
    info = tarfile.TarInfo(".wh..wh..opq")
    info.size = 2**40
    raw = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    with pytest.raises(ImageError, match="bomb"):
        unpack_mod.unpack(io.BytesIO(gzip.compress(raw)), str(tmp_path))
