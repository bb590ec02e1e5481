"""Writes the archives ADD unpacks (run once; the output is kept in the corpus): archive.tar.gz, and
more.tar.xz and uncompressed.tar for the other formats."""

import gzip
import io
import struct
import tarfile

# A file capability as the kernel stores it (struct vfs_cap_data, revision 2): cap_net_bind_service
# permitted and effective. Docker's layers keep security.capability; other xattrs (user.note here) are
# not compared (see tests/integration/tree_support.py).
CAPABILITY = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)


def member(name: str, kind: bytes, mode: int, data: bytes = b"", link: str = "",
           xattrs: dict[str, bytes] | None = None) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.pax_headers = {f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape") for k, v in (xattrs or {}).items()}
    info.type, info.mode, info.mtime = kind, mode, 1700000000
    info.uid, info.gid, info.uname, info.gname = 1000, 1000, "", ""
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


with open("archive.tar.gz", "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz, \
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
    for info, data in (
        member("top", tarfile.DIRTYPE, 0o755),
        member("top/file", tarfile.REGTYPE, 0o640, b"in the archive\n"),
        member("top/exec", tarfile.REGTYPE, 0o755, b"#!/bin/sh\necho archived\n"),
        member("top/link", tarfile.SYMTYPE, 0o777, link="file"),
        member("top/hard", tarfile.LNKTYPE, 0o640, link="top/file"),
        member("top/sub", tarfile.DIRTYPE, 0o750),
        member("top/sub/deep", tarfile.REGTYPE, 0o600, b"deep\n"),
        member("top/capped", tarfile.REGTYPE, 0o755, b"#!/bin/sh\n",
               xattrs={"security.capability": CAPABILITY, "user.note": b"not compared"}),
    ):
        tar.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)

# The same ADD for xz and for no compression; an empty directory with its own mode.
for name, mode in (("more.tar.xz", "w:xz"), ("uncompressed.tar", "w")):
    with tarfile.open(name, mode, format=tarfile.PAX_FORMAT) as tar:
        for info, data in (
            member(f"{name.split('.')[0]}", tarfile.DIRTYPE, 0o755),
            member(f"{name.split('.')[0]}/file", tarfile.REGTYPE, 0o644, f"from {name}\n".encode()),
            member(f"{name.split('.')[0]}/empty", tarfile.DIRTYPE, 0o700),
        ):
            tar.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
