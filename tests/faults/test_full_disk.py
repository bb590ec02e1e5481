"""A full disk: a small tmpfs is the whole state root (--root), so records, the image store and the
containers' upper dirs all live on it. `import`, `load`, `pull` and `run` must each fail with one line
(exit 125, no traceback), leave no partial image or record behind, and what was stored before still runs.

Two ways to run out: the image budget's free-space reserve (images/budget.py: refused before the disk
is full, the default), and with PYCONTAIN_MIN_FREE_BYTES=0 the disk itself (ENOSPC in the middle of a
write). `build` does not exist yet (issue 11): not covered.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_support import root_leftovers
from images_support import LocalRegistry, store_files
from support import COMMAND_TIMEOUT, Pycontain, describe
from support import assert_pycontain_error as _one_error_line

pytestmark = pytest.mark.integration

MIB = 1 << 20
RESERVES = {"reserve": None, "no-reserve": "0"}  # the budget's default reserve, or none (real ENOSPC)


class SmallRoot(Pycontain):
    """pycontain whose --root is a tmpfs of `size_mib` (mode 0700: pycontain refuses a root others can
    write). Unmounted at the end, once every container on it is gone."""

    def __init__(self, root: Path, size_mib: int) -> None:
        super().__init__(root)
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0700", "tmpfs", str(root)],
                       check=True, timeout=COMMAND_TIMEOUT)
        self.env = dict(os.environ)

    def __call__(self, *args: str | os.PathLike[str], input: str | None = None,
                 timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), stdin=subprocess.DEVNULL if input is None else None, input=input,
                              capture_output=True, text=True, timeout=timeout, env=self.env)

    def reserve(self, value: str | None) -> None:
        """PYCONTAIN_MIN_FREE_BYTES for the commands that follow (None: the default reserve)."""
        self.env.pop("PYCONTAIN_MIN_FREE_BYTES", None)
        if value is not None:
            self.env["PYCONTAIN_MIN_FREE_BYTES"] = value

    def fill(self, leave_kib: int = 0) -> Path:
        """A filler file that takes all but leave_kib of the tmpfs (tmpfs counts whole pages)."""
        filler = self.root / "filler"
        st = os.statvfs(self.root)
        size = max(0, st.f_bavail * st.f_frsize - leave_kib * 1024)
        with open(filler, "wb") as f:
            try:
                f.write(bytes(size))
            except OSError:
                pass  # full a little early: good enough
        return filler

    def unmount(self) -> None:
        self.remove_all()
        subprocess.run(["umount", str(self.root)], check=True, timeout=COMMAND_TIMEOUT)


@pytest.fixture
def small(tmp_path: Path, busybox_tarball: Path, no_leaks: None) -> Iterator[SmallRoot]:
    """A 16 MiB root with busybox stored (2 MiB unpacked, its 1 MiB blob) and an exited container `old`."""
    p = SmallRoot(tmp_path / "small-root", 16)
    try:
        p.ok("import", "--change", 'CMD ["sh"]', busybox_tarball, "busybox")
        p.ok("run", "--name", "old", "busybox", "true")
        yield p
    finally:
        p.unmount()


def assert_pycontain_error(res: subprocess.CompletedProcess[str], after_progress: bool = False) -> None:
    """support's one-line error contract, and a line that says what happened: never the catch-all
    "internal error" of an exception pycontain did not expect."""
    _one_error_line(res, after_progress=after_progress)
    assert "internal error" not in res.stderr, describe(res)
    print(res.stderr.strip().splitlines()[-1])  # shown with -s: the messages, for reading


def stored(p: Pycontain) -> tuple[list[tuple[str, ...]], list[str]]:
    """What the user sees stored: image rows (repository, tag, id) and container names."""
    images = [tuple(line.split()[:3]) for line in p.ok("images").stdout.splitlines()[1:]]
    names = sorted(line.split()[-1] for line in p.ok("ps", "-a").stdout.splitlines()[1:])
    return images, names


def assert_as_before(p: Pycontain, before: tuple[list[tuple[str, ...]], list[str]]) -> None:
    """Nothing half-made is left, nothing stored is lost, and the stored image and container still run."""
    assert stored(p) == before
    assert [f for f in store_files(p.root) if ".tmp-" in f] == []
    assert [e for e in root_leftovers(p.root) if "names/old" not in e and p.inspect("old")["Id"] not in e] == []
    assert p.ok("run", "--rm", "busybox", "echo", "still-runs").stdout == "still-runs\n"
    p.ok("start", "old")
    assert p.ok("wait", "old").stdout.strip() == "0"


def zeros_tarball(path: Path, size: int) -> Path:
    """A gzip'd tar of one file of zeros: a few KiB on disk, `size` bytes unpacked."""
    class Zeros:
        def __init__(self, n: int) -> None:
            self.n = n

        def read(self, k: int = -1) -> bytes:
            k = self.n if k < 0 else min(k, self.n)
            self.n -= k
            return bytes(k)

    with gzip.open(path, "wb") as gz, tarfile.open(fileobj=gz, mode="w") as tf:
        info = tarfile.TarInfo("zeros")
        info.size = size
        tf.addfile(info, Zeros(size))
    return path


def random_tarball(path: Path, size: int) -> Path:
    """An uncompressed tar of one file of random bytes: bigger than `size` on disk too."""
    with tarfile.open(path, "w") as tf:
        info = tarfile.TarInfo("random")
        info.size = size
        tf.addfile(info, io.BytesIO(os.urandom(size)))
    return path


# ---------------------------------------------------------------- import, load

@pytest.mark.parametrize("reserve", RESERVES.values(), ids=RESERVES.keys())
@pytest.mark.parametrize("kind", ["bigger-tarball", "unpacks-bigger"])
def test_import_that_does_not_fit(small: SmallRoot, tmp_path: Path, kind: str, reserve: str | None) -> None:
    tarball = (random_tarball(tmp_path / "big.tar", 24 * MIB) if kind == "bigger-tarball"
               else zeros_tarball(tmp_path / "zeros.tar.gz", 40 * MIB))
    before = stored(small)
    small.reserve(reserve)
    assert_pycontain_error(small("import", tarball, "big"))
    assert_as_before(small, before)


@pytest.mark.parametrize("reserve", RESERVES.values(), ids=RESERVES.keys())
def test_load_that_does_not_fit(small: SmallRoot, tmp_path: Path, reserve: str | None) -> None:
    """A docker-archive whose image unpacks past the disk."""
    other = Pycontain(tmp_path / "other-root")
    other.ok("import", zeros_tarball(tmp_path / "zeros.tar.gz", 40 * MIB), "zeros")
    archive = tmp_path / "zeros.tar"
    other.ok("save", "-o", archive, "zeros")
    before = stored(small)
    small.reserve(reserve)
    assert_pycontain_error(small("load", "-i", archive))
    assert_as_before(small, before)


# ---------------------------------------------------------------- pull

@pytest.mark.parametrize("reserve", RESERVES.values(), ids=RESERVES.keys())
def test_pull_that_does_not_fit(small: SmallRoot, registry: LocalRegistry, reserve: str | None) -> None:
    """alpine: a 3.4 MiB blob that unpacks to 7.6 MiB, onto what is left of the disk less a 6 MiB filler."""
    with open(small.root / "filler", "wb") as f:
        f.write(bytes(6 * MIB))
    before = stored(small)
    small.reserve(reserve)
    res = small("pull", f"{registry.host}/library/alpine:3.20")
    assert_pycontain_error(res, after_progress=True)
    assert_as_before(small, before)
    os.unlink(small.root / "filler")


# ---------------------------------------------------------------- run

@pytest.mark.parametrize("leave_kib", [0, 4, 8, 12, 16, 20, 24, 32, 64, 256])
@pytest.mark.parametrize("how", ["run --rm", "run", "run -d", "create"])
def test_run_on_a_full_disk(small: SmallRoot, how: str, leave_kib: int) -> None:
    """With the disk full to within leave_kib, a new container either is made completely (and works) or
    fails in one line leaving no part of it; what was there stays."""
    before = stored(small)
    filler = small.fill(leave_kib)
    res = small(*how.split(), "--name", "new", "busybox", "true")
    if res.returncode == 0:
        os.unlink(filler)
        assert "new" in small.ok("ps", "-a").stdout or how == "run --rm"
        small("rm", "-f", "new")
    else:
        assert_pycontain_error(res)
        # ... and names the file it could not write.
        assert re.search(r"No space left on device: /\S+$", res.stderr.strip()), describe(res)
        os.unlink(filler)
    small.ok("gc")
    if "new" in stored(small)[1]:
        # Made completely and run, only its exit could not be written: a whole container, not a part of
        # one (`run` without --rm keeps it). gc has finished it; it is removed like any other.
        assert how in ("run", "run -d") and small.status("new") == "exited", describe(res)
        small.ok("rm", "new")
    assert_as_before(small, before)


def test_container_filling_its_upper_dir_with_rm(small: SmallRoot) -> None:
    """--rm: the container's own exit code, and its upper dir goes with it (the disk is free again)."""
    before = stored(small)
    free = os.statvfs(small.root).f_bavail
    res = small("run", "--rm", "busybox", "sh", "-c", "dd if=/dev/zero of=/fill bs=1M; exit 7")
    assert res.returncode == 7, describe(res)
    assert "No space left on device" in res.stderr  # dd's own complaint, from inside
    assert os.statvfs(small.root).f_bavail == free
    assert_as_before(small, before)


@pytest.mark.parametrize("detached", [False, True], ids=["foreground", "detached"])
def test_container_filling_its_upper_dir_kept(small: SmallRoot, detached: bool) -> None:
    """Without --rm the filled upper dir is the user's: the exit cannot be recorded on the full disk. The
    foreground run says so in one line; the record reads as dead (never running), gc says what it could
    not write in one line, and `rm -f` works on the full disk and frees it."""
    before = stored(small)
    fill = ["busybox", "sh", "-c", "dd if=/dev/zero of=/fill bs=1M 2>/dev/null; exit 7"]
    if detached:
        small.ok("run", "-d", "--name", "filler", *fill)
        small.ok("wait", "filler")
    else:
        res = small("run", "--name", "filler", *fill)
        assert_pycontain_error(res)
        assert "No space left on device: " in res.stderr and "state.json" in res.stderr, describe(res)
    assert small.status("filler") in ("dead", "exited")
    res = small("gc")
    assert res.returncode == 0 or (res.returncode == 125 and "Traceback" not in res.stderr
                                   and len(res.stderr.strip().splitlines()) == 1), describe(res)
    small.ok("rm", "-f", "filler")
    small.ok("gc")
    assert_as_before(small, before)
