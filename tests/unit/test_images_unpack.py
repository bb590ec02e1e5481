"""Untrusted layers: a corpus of hostile tarballs, each refused or neutralised with the host untouched.

In the spirit of containerd's breakout tests and Docker's invalid-untar tests. Every tarball is made
here. Each test unpacks into `layer/` beside a `host/` directory standing for the rest of the machine,
and checks that `host/` is exactly as it was (and nothing else appeared beside the two).
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycontain.errors import ImageError
from pycontain.images import unpack as unpack_module
from pycontain.images.unpack import unpack

UID, GID = os.getuid(), os.getgid()  # entries owned by us: runs without root too
ROOT = os.geteuid() == 0


def entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", mode: int = 0o644,
          linkname: str = "", pax: dict[str, str] | None = None) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, UID, GID, 1_700_000_000
    info.linkname = linkname
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    if pax:
        info.pax_headers = pax
    return info, data


def layer(*entries: tuple[tarfile.TarInfo, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
    buf.seek(0)
    return buf


def snapshot(path: Path) -> dict[str, tuple[int, int, bytes | str | None]]:
    out = {}
    for p in [path, *sorted(path.rglob("*"))]:
        st = p.lstat()
        content: bytes | str | None = None
        if p.is_symlink():
            content = os.readlink(p)
        elif p.is_file():
            content = p.read_bytes()
        out[str(p.relative_to(path))] = (st.st_mode, st.st_mtime_ns, content)
    return out


class Sandbox:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.layer = tmp / "layer"
        self.host = tmp / "host"
        self.layer.mkdir()
        self.host.mkdir(mode=0o755)
        (self.host / "victim").write_text("original\n")
        (self.host / "dir").mkdir(mode=0o755)
        self.before = snapshot(self.host)

    def unpack(self, stream: io.BytesIO, **kw: int) -> list[str]:
        return unpack(stream, str(self.layer), **kw)

    def assert_host_untouched(self) -> None:
        assert snapshot(self.host) == self.before
        assert sorted(p.name for p in self.tmp.iterdir()) == ["host", "layer"]


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    sandbox = Sandbox(tmp_path)
    yield sandbox
    sandbox.assert_host_untouched()


@pytest.mark.parametrize("name", ["../escape", "a/../../escape", "./../escape", "a/b/../../../escape"])
def test_dot_dot_paths_refuse_the_layer(box: Sandbox, name: str) -> None:
    with pytest.raises(ImageError, match="climbs out"):
        box.unpack(layer(entry(name, data=b"x")))


def test_absolute_paths_land_inside_the_layer(box: Sandbox) -> None:
    box.unpack(layer(entry(str(box.host / "victim"), data=b"pwned")))
    inside = box.layer / str(box.host / "victim").lstrip("/")
    assert inside.read_bytes() == b"pwned"


def test_file_written_through_a_symlinked_directory_is_refused(box: Sandbox) -> None:
    with pytest.raises(ImageError, match="non-directory"):
        box.unpack(layer(entry("link", tarfile.SYMTYPE, linkname=str(box.host)),
                         entry("link/pwned", data=b"x")))


def test_file_written_through_a_relative_symlink_is_refused(box: Sandbox) -> None:
    with pytest.raises(ImageError, match="non-directory"):
        box.unpack(layer(entry("link", tarfile.SYMTYPE, linkname="../host"), entry("link/victim", data=b"x")))


def test_directory_made_through_a_symlink_is_refused(box: Sandbox) -> None:
    with pytest.raises(ImageError, match="non-directory"):
        box.unpack(layer(entry("link", tarfile.SYMTYPE, linkname=str(box.host)),
                         entry("link/sub", tarfile.DIRTYPE, mode=0o777)))


def test_a_file_replaces_a_symlink_instead_of_writing_through_it(box: Sandbox) -> None:
    box.unpack(layer(entry("f", tarfile.SYMTYPE, linkname=str(box.host / "victim")),
                     entry("f", data=b"pwned", mode=0o666)))
    assert not (box.layer / "f").is_symlink()
    assert (box.layer / "f").read_bytes() == b"pwned"


def test_symlinks_are_stored_verbatim_and_never_followed(box: Sandbox) -> None:
    box.unpack(layer(entry("etc", tarfile.SYMTYPE, linkname=str(box.host))))
    assert os.readlink(box.layer / "etc") == str(box.host)


@pytest.mark.parametrize("target", ["../host/victim", "a/../../host/victim"])
def test_hard_link_climbing_out_is_refused(box: Sandbox, target: str) -> None:
    with pytest.raises(ImageError):
        box.unpack(layer(entry("h", tarfile.LNKTYPE, linkname=target)))


def test_hard_link_to_an_absolute_host_path_is_refused(box: Sandbox) -> None:
    with pytest.raises(ImageError, match="does not name a file in the layer"):
        box.unpack(layer(entry("h", tarfile.LNKTYPE, linkname=str(box.host / "victim"))))


def test_hard_link_through_a_symlink_is_refused(box: Sandbox) -> None:
    with pytest.raises(ImageError, match="non-directory"):
        box.unpack(layer(entry("l", tarfile.SYMTYPE, linkname=str(box.host)),
                         entry("h", tarfile.LNKTYPE, linkname="l/victim")))


def test_hard_link_inside_the_layer_works(box: Sandbox) -> None:
    box.unpack(layer(entry("a", data=b"same"), entry("b", tarfile.LNKTYPE, linkname="a")))
    assert os.stat(box.layer / "a").st_ino == os.stat(box.layer / "b").st_ino


@pytest.mark.parametrize("name", [".wh..", "a/.wh..", ".wh.", "a/.wh.", "../.wh.host"])
def test_whiteouts_naming_parents_or_nothing_are_refused(box: Sandbox, name: str) -> None:
    with pytest.raises(ImageError):
        box.unpack(layer(entry(name)))


def test_whiteout_through_a_symlink_is_refused(box: Sandbox) -> None:
    with pytest.raises(ImageError, match="non-directory"):
        box.unpack(layer(entry("l", tarfile.SYMTYPE, linkname=str(box.host)), entry("l/.wh.victim")))


def test_opaque_marker_through_a_symlink_is_refused(box: Sandbox) -> None:
    with pytest.raises(ImageError, match="non-directory"):
        box.unpack(layer(entry("l", tarfile.SYMTYPE, linkname=str(box.host)), entry("l/.wh..wh..opq")))


def test_device_nodes_are_skipped(box: Sandbox) -> None:
    skipped = box.unpack(layer(entry("dev/sda", tarfile.BLKTYPE), entry("dev/mem", tarfile.CHRTYPE),
                               entry("ok", data=b"x")))
    assert skipped == ["dev/sda", "dev/mem"]
    assert not (box.layer / "dev" / "sda").exists() and not (box.layer / "dev" / "mem").exists()


def test_setuid_and_setgid_bits_are_kept_as_the_image_says(box: Sandbox) -> None:
    box.unpack(layer(entry("su", data=b"#!", mode=0o4755), entry("sg", data=b"#!", mode=0o2755),
                     entry("plain", data=b"#!", mode=0o755)))
    assert stat.S_IMODE(os.lstat(box.layer / "su").st_mode) == 0o4755
    assert stat.S_IMODE(os.lstat(box.layer / "sg").st_mode) == 0o2755
    assert stat.S_IMODE(os.lstat(box.layer / "plain").st_mode) == 0o755


def test_directory_replaced_by_a_symlink_does_not_get_its_mode_applied_to_the_host(box: Sandbox) -> None:
    # The directory's mode is applied at the end; by then "d" is a symlink to the host's directory.
    box.unpack(layer(entry("d", tarfile.DIRTYPE, mode=0o777),
                     entry("d", tarfile.SYMTYPE, linkname=str(box.host / "dir"))))
    assert os.readlink(box.layer / "d") == str(box.host / "dir")


def test_trusted_xattrs_from_the_image_are_dropped(box: Sandbox) -> None:
    box.unpack(layer(entry("f", data=b"x", pax={"SCHILY.xattr.trusted.overlay.opaque": "y",
                                                  "SCHILY.xattr.user.note": "kept"})))
    names = os.listxattr(box.layer / "f")
    assert "trusted.overlay.opaque" not in names
    if "user.note" in names:  # user xattrs may be unsupported on the test's filesystem
        assert os.getxattr(box.layer / "f", "user.note") == b"kept"


def test_decompression_bomb_is_refused_by_size(box: Sandbox) -> None:
    bomb = io.BytesIO(gzip.compress(layer(entry("zeros", data=b"\0" * (3 << 20))).getvalue()))
    assert len(bomb.getvalue()) < 64 << 10  # small on the wire ...
    with pytest.raises(ImageError, match="bomb"):  # ... too big unpacked
        box.unpack(bomb, max_bytes=2 << 20)


def test_decompression_bomb_is_refused_by_entry_count(box: Sandbox) -> None:
    with pytest.raises(ImageError, match="entries"):
        box.unpack(layer(*[entry(f"f{i}") for i in range(50)]), max_entries=20)


def test_huge_tar_header_is_refused_before_it_is_read_into_memory(box: Sandbox,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(unpack_module, "HEADER_CAP", 256 << 10)
    with pytest.raises(ImageError, match="header"):
        box.unpack(layer(entry("f", data=b"x", pax={"comment": "A" * (1 << 20)})))


def test_truncated_and_garbage_layers_fail_with_a_clear_message(box: Sandbox) -> None:
    good = layer(entry("f", data=b"x" * 5000)).getvalue()
    with pytest.raises(ImageError, match="truncated|not a valid tar"):
        box.unpack(io.BytesIO(good[:1024]))
    with pytest.raises(ImageError, match="not a valid tar"):
        box.unpack(io.BytesIO(b"this is not a tarball" * 100))


def test_overlong_names_fail_with_the_entry_named(box: Sandbox) -> None:
    with pytest.raises(ImageError, match="cannot unpack layer entry"):
        box.unpack(layer(entry("x" * 300, data=b"x")))


@pytest.mark.skipif(not ROOT, reason="overlayfs whiteouts are device nodes and trusted.* xattrs: root only")
def test_whiteouts_become_overlayfs_whiteouts(box: Sandbox) -> None:
    box.unpack(layer(entry("etc", tarfile.DIRTYPE, mode=0o755), entry("etc/.wh.passwd"),
                     entry("var", tarfile.DIRTYPE, mode=0o755), entry("var/.wh..wh..opq")))
    st = os.lstat(box.layer / "etc" / "passwd")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert os.getxattr(box.layer / "var", "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    assert not (box.layer / "etc" / ".wh.passwd").exists()
