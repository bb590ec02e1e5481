#!/usr/bin/env python3
"""Build the root filesystem of pycontain's offline built-in image.

    python3 rootfs/build.py OUT.tar.gz [--busybox /bin/busybox]
    python3 rootfs/build.py --docker-archive OUT.tar [--tag busybox:latest] [--busybox /bin/busybox]

The first form writes a gzip-compressed tar of a tiny busybox system (for `pycontain import`). It is
reproducible: two builds with the same busybox binary (and the same SOURCE_DATE_EPOCH) produce
byte-identical files. `import` still gives a new image id each time (its config records the time of
the import), so reinstalling would leave the previous image dangling as `<none>`.

The second form writes the whole image as a docker-archive (for `pycontain load -i`): the layer, a
config whose every field is fixed (created = SOURCE_DATE_EPOCH, CMD ["sh"]), and manifest.json. Its
image id is the config's digest, so the same busybox gives the same id on every install and loading
it again only moves the tag. Standard library only, so the script runs before pycontain is installed.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import io
import json
import os
import re
import struct
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterable
from pathlib import PurePosixPath

# ELF program header type of the dynamic loader path (elf(5)). A binary without one is started
# directly by the kernel, which is what we need: the image ships no libc and no ld.so.
PT_INTERP = 3

BUSYBOX_PATH = "bin/busybox"

# Directories every container expects to exist; the runtime mounts /proc, /sys, /dev over the first
# three, and programs assume /tmp is world-writable with the sticky bit (mode 1777).
DIRECTORIES: dict[str, int] = {
    "bin": 0o755,
    "dev": 0o755,
    "etc": 0o755,
    "home": 0o755,
    "proc": 0o555,
    "root": 0o700,
    "run": 0o755,
    "sbin": 0o755,
    "sys": 0o555,
    "tmp": 0o1777,
    "usr": 0o755,
    "usr/bin": 0o755,
    "usr/sbin": 0o755,
    "var": 0o755,
}

APP_UID = 1000
APP_GID = 1000

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
bin:x:2:2:bin:/bin:/usr/sbin/nologin
sys:x:3:3:sys:/dev:/usr/sbin/nologin
app:x:1000:1000:test user:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
"""

# `staff` lists app so tests can check that supplementary groups from /etc/group reach the process.
GROUP = """\
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
staff:x:50:app
app:x:1000:
nogroup:x:65534:
"""


class BuildError(Exception):
    """A reason the image cannot be built; printed as one line."""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One archive member, described only by what we choose, never by the build host's filesystem."""

    path: str
    kind: bytes  # tarfile.DIRTYPE, REGTYPE or SYMTYPE
    mode: int
    data: bytes = b""
    target: str = ""
    uid: int = 0
    gid: int = 0


def check_static(path: str, image: bytes) -> None:
    """Refuse a busybox that needs a dynamic loader: it would fail inside the image with ENOENT."""
    if image[:4] != b"\x7fELF":
        raise BuildError(f"{path} is not an ELF executable")
    try:
        interpreted = _has_program_header(image, PT_INTERP)
    except (struct.error, IndexError) as exc:
        raise BuildError(f"{path} has a truncated or unsupported ELF header") from exc
    if interpreted:
        raise BuildError(
            f"{path} is dynamically linked; install busybox-static "
            "(apt-get install busybox-static) and pass its binary with --busybox"
        )


def _has_program_header(image: bytes, wanted: int) -> bool:
    """Walk the program header table (elf(5)); raises struct.error on a malformed file."""
    elf_class, data_encoding = image[4], image[5]
    if elf_class not in (1, 2) or data_encoding not in (1, 2):
        raise struct.error("unknown ELF class or data encoding")
    endian = "<" if data_encoding == 1 else ">"
    if elf_class == 2:  # 64-bit: e_phoff at 32, e_phentsize/e_phnum at 54/56
        (phoff,) = struct.unpack_from(endian + "Q", image, 32)
    else:  # 32-bit: e_phoff at 28, e_phentsize/e_phnum at 42/44
        (phoff,) = struct.unpack_from(endian + "I", image, 28)
    phentsize, phnum = struct.unpack_from(endian + "HH", image, 54 if elf_class == 2 else 42)
    for index in range(phnum):
        (p_type,) = struct.unpack_from(endian + "I", image, phoff + index * phentsize)
        if p_type == wanted:
            return True
    return False


def busybox_applets(busybox: str) -> list[str]:
    """Ask busybox where each applet belongs (paths relative to /, e.g. 'usr/bin/env')."""
    try:
        listing = subprocess.run([busybox, "--list-full"], check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BuildError(f"cannot list applets with '{busybox} --list-full': {exc}") from exc
    return sorted({line.strip().strip("/") for line in listing.splitlines() if line.strip()})


def busybox_version(busybox: str) -> str:
    """The version string for /etc/os-release; derived from the binary so it stays reproducible."""
    banner = subprocess.run([busybox], check=False, capture_output=True, text=True).stdout
    match = re.search(r"BusyBox v(\S+)", banner)
    return match.group(1) if match else "unknown"


def os_release(version: str) -> bytes:
    return (
        'NAME="pycontain busybox"\n'
        "ID=pycontain-busybox\n"
        f'VERSION_ID="{version}"\n'
        f'PRETTY_NAME="pycontain built-in busybox image (BusyBox {version})"\n'
    ).encode()


def rootfs_entries(busybox: str) -> list[Entry]:
    with open(busybox, "rb") as binary:
        image = binary.read()
    check_static(busybox, image)

    entries: dict[str, Entry] = {}
    for path, mode in DIRECTORIES.items():
        entries[path] = Entry(path, tarfile.DIRTYPE, mode)
    # The test user's home belongs to it so that non-root tests can write to $HOME.
    entries["home/app"] = Entry("home/app", tarfile.DIRTYPE, 0o755, uid=APP_UID, gid=APP_GID)

    entries[BUSYBOX_PATH] = Entry(BUSYBOX_PATH, tarfile.REGTYPE, 0o755, data=image)
    for name, text in (
        ("etc/passwd", PASSWD.encode()),
        ("etc/group", GROUP.encode()),
        ("etc/os-release", os_release(busybox_version(busybox))),
    ):
        entries[name] = Entry(name, tarfile.REGTYPE, 0o644, data=text)

    for applet in busybox_applets(busybox):
        if applet in entries:  # e.g. bin/busybox itself: the real file wins
            continue
        parent = PurePosixPath(applet).parent
        # Relative targets keep the link correct wherever the tree is extracted on the host.
        target = os.path.relpath(BUSYBOX_PATH, parent.as_posix() if parent.parts else ".")
        entries[applet] = Entry(applet, tarfile.SYMTYPE, 0o777, target=target)

    add_missing_parents(entries)
    return [entries[path] for path in sorted(entries)]


def add_missing_parents(entries: dict[str, Entry]) -> None:
    """Give every member an explicit parent directory so extraction never invents one with umask modes."""
    for path in list(entries):
        for parent in PurePosixPath(path).parents:
            name = parent.as_posix()
            if name != "." and name not in entries:
                entries[name] = Entry(name, tarfile.DIRTYPE, 0o755)


def tar_member(entry: Entry, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.path)
    info.type = entry.kind
    info.mode = entry.mode
    info.uid, info.gid = entry.uid, entry.gid
    # Names are fixed per id so the archive does not depend on the build host's /etc/passwd.
    info.uname = "root" if entry.uid == 0 else "app"
    info.gname = "root" if entry.gid == 0 else "app"
    info.mtime = mtime
    info.size = len(entry.data)
    info.linkname = entry.target
    return info


def write_archive(entries: Iterable[Entry], out: str, mtime: int) -> None:
    tmp = f"{out}.tmp{os.getpid()}"
    try:
        # filename="" and mtime=0 keep the gzip header free of the output name and the build time.
        # USTAR has no per-file timestamps beyond mtime and no PAX records, so nothing host-specific
        # (atime, ctime, xattrs) can leak into the archive.
        with (
            open(tmp, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar,
        ):
            for entry in entries:
                data = io.BytesIO(entry.data) if entry.kind == tarfile.REGTYPE else None
                tar.addfile(tar_member(entry, mtime), data)
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def source_date_epoch(busybox: str) -> int:
    """Reproducible-builds convention (https://reproducible-builds.org/specs/source-date-epoch/); unset,
    the busybox binary's own mtime: fixed for a given Debian package, and a date `images` can show
    sensibly (1970 reads as "56 years ago")."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    if not value:
        try:
            return int(os.stat(busybox).st_mtime)
        except OSError:
            return 0
    if not value.isdigit():
        raise BuildError(f"SOURCE_DATE_EPOCH must be a non-negative integer, got {value!r}")
    return int(value)


# `uname -m` -> the OCI architecture name an image config uses.
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le",
                 "s390x": "s390x", "riscv64": "riscv64"}


def layer_tar(entries: Iterable[Entry], mtime: int) -> bytes:
    """The uncompressed layer: its sha256 is the image's diff id."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for entry in entries:
            data = io.BytesIO(entry.data) if entry.kind == tarfile.REGTYPE else None
            tar.addfile(tar_member(entry, mtime), data)
    return buf.getvalue()


def image_config(diff_id: str, mtime: int, busybox: str) -> bytes:
    """A config with nothing that varies between builds: same layer and epoch, same bytes, same id."""
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(mtime))
    config = {
        "architecture": ARCHITECTURES.get(os.uname().machine, os.uname().machine),
        "config": {"Cmd": ["sh"]},
        "created": created,
        "history": [{"created": created,
                     "created_by": f"rootfs/build.py (BusyBox {busybox_version(busybox)})"}],
        "os": "linux",
        "rootfs": {"diff_ids": [diff_id], "type": "layers"},
    }
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def write_docker_archive(entries: list[Entry], out: str, mtime: int, tag: str, busybox: str) -> str:
    """OUT as `docker save` lays it out; returns the image id."""
    layer = layer_tar(entries, mtime)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = image_config(diff_id, mtime, busybox)
    image_id = "sha256:" + hashlib.sha256(config).hexdigest()
    manifest = json.dumps([{"Config": f"{image_id[7:]}.json", "RepoTags": [tag],
                            "Layers": [f"{diff_id[7:]}/layer.tar"]}]).encode()
    members = [(f"{image_id[7:]}.json", config), (f"{diff_id[7:]}/layer.tar", layer), ("manifest.json", manifest)]
    tmp = f"{out}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o644, mtime
                info.uname = info.gname = "root"
                tar.addfile(info, io.BytesIO(data))
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return image_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build pycontain's built-in busybox root filesystem.")
    parser.add_argument("out", metavar="OUT", help="where to write the tarball")
    parser.add_argument(
        "--busybox", default="/bin/busybox", help="statically linked busybox (default: %(default)s)"
    )
    parser.add_argument("--docker-archive", action="store_true",
                        help="write the whole image as a docker-archive for `pycontain load -i` (stable id)")
    parser.add_argument("--tag", default="busybox:latest", help="the archive's tag (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        mtime = source_date_epoch(args.busybox)
        entries = rootfs_entries(args.busybox)
        if args.docker_archive:
            image_id = write_docker_archive(entries, args.out, mtime, args.tag, args.busybox)
            print(f"wrote {args.out} ({len(entries)} entries, image {image_id})", file=sys.stderr)
            return 0
        write_archive(entries, args.out, mtime)
    except (BuildError, OSError) as exc:
        print(f"build.py: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({len(entries)} entries)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
