"""Building blocks of the attack images: static C probes and images derived from a real rootfs.

Each attack test builds the image the review used (from the shared Alpine minirootfs or the busybox
rootfs), imports it with `pycontain import`, and runs it with default flags.
"""

from __future__ import annotations

import gzip
import io
import subprocess
import tarfile
from pathlib import Path

import pytest

PROBES = Path(__file__).resolve().parent / "probes"


@pytest.fixture(scope="session")
def probes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/security/probes/*.c, compiled static (they run inside images with no libc of their own).
    A source whose first line is `/* gcc-flags: ...` gets those flags too (fake_ld.c has no libc)."""
    out = tmp_path_factory.mktemp("probes")
    for source in sorted(PROBES.glob("*.c")):
        first = source.read_text().partition("\n")[0]
        extra = first.partition("gcc-flags:")[2].replace("*/", "").split() if "gcc-flags:" in first else []
        res = subprocess.run(["gcc", "-static", "-O2", "-Wall", *extra, "-o", str(out / source.stem), str(source)],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, f"gcc {source.name} failed:\n{res.stderr}"
    return out


def entry(name: str, *, data: bytes | None = None, link: str | None = None, mode: int = 0o755,
          directory: bool = False) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.mode = mode
    if link is not None:
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, link, 0o777
    elif directory:
        info.type = tarfile.DIRTYPE
    else:
        info.size = len(data or b"")
    return info, data


def derived_image(src: Path, out: Path, add: list[tuple[tarfile.TarInfo, bytes | None]],
                  drop: tuple[str, ...] = ()) -> Path:
    """`src` (a rootfs tarball) without the members under `drop`, plus `add`: written to out (.tar.gz)."""
    def dropped(name: str) -> bool:
        name = name.lstrip("./")
        return any(name == d or name.startswith(d + "/") for d in drop)

    replaced = {info.name for info, _ in add}
    with tarfile.open(src, "r:*") as tin, gzip.open(out, "wb") as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tout:
        for member in tin.getmembers():
            if dropped(member.name) or member.name.lstrip("./") in replaced:
                continue
            tout.addfile(member, tin.extractfile(member) if member.isreg() else None)
        for info, data in add:
            tout.addfile(info, io.BytesIO(data) if data is not None else None)
    return out
