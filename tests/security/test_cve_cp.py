"""CVE-2018-15664 and CVE-2019-14271: `cp` between the host and a container.

CVE-2018-15664: `docker cp` resolved the container path, then opened it: between the two, the
container swapped a directory on the way for a symlink to a host path, and cp read or wrote the host.
CVE-2019-14271: `docker cp` ran a helper chrooted into the container that looked up user names through
glibc's NSS, which loaded the container's own libnss_*.so into a process with the host's privileges.

pycontain's cp resolves every container path with openat2(RESOLVE_IN_ROOT) from a descriptor of the
container's root and then works through descriptors only (pycontain/copy.py), and never looks up a
user or group name.
"""

from __future__ import annotations

import shlex
import subprocess
import tarfile
from pathlib import Path

import pytest
from attacks import probes  # noqa: F401 - the probes fixture
from cvesupport import no_leaks  # noqa: F401 - the fixture, less other test sessions' objects
from cvesupport import PROBE_DIR, probe_volume
from support import Pycontain, describe, wait_for

pytestmark = pytest.mark.usefixtures("no_leaks")

HOST_SECRET = "the host's secret, which cp may never read\n"
CONTAINER_TEXT = "the container's own file\n"
RACE_RUNS = 30


@pytest.fixture
def host_dir(tmp_path: Path) -> Path:
    d = tmp_path / "host"
    d.mkdir()
    (d / "secret").write_text(HOST_SECRET)
    return d


def test_cp_follows_a_containers_link_inside_the_container_only(pc: Pycontain, host_dir: Path, tmp_path: Path) -> None:
    """The static case: /w/link -> a host path the container does not have."""
    pc.ok("run", "-d", "--name", "c", "busybox", "sleep", "1000")
    pc.ok("exec", "c", "sh", "-c", f"mkdir -p /w && ln -s {host_dir} /w/link")
    out = tmp_path / "out"
    res = pc("cp", "c:/w/link/secret", out)
    assert not out.exists() or HOST_SECRET not in out.read_text(), "cp read the host through the link"
    assert res.returncode != 0 and "Traceback" not in res.stderr, describe(res)
    (tmp_path / "in").write_text("from the host\n")
    pc("cp", tmp_path / "in", "c:/w/link/dropped")
    assert not (host_dir / "dropped").exists(), "cp wrote the host through the link"


def test_cp_racing_a_swapped_link_never_reads_or_writes_the_host(pc: Pycontain, probes: Path,  # noqa: F811
                                                                host_dir: Path, tmp_path: Path) -> None:
    """The race: the container exchanges /w/dir (a directory with `secret`) and /w/link (-> the host
    directory) as fast as it can while cp copies /w/dir/secret out and a file in."""
    pc.ok("run", "-d", "--name", "c", *probe_volume(probes), "busybox", "sh", "-c",
          f"mkdir -p /w/dir && printf %s {shlex.quote(CONTAINER_TEXT)} > /w/dir/secret && ln -s {host_dir} /w/link && "
          f"exec {PROBE_DIR}/swap /w/dir /w/link /w/stop 120")
    pc.wait_for_log("c", "swapping")
    (tmp_path / "in").write_text("from the host\n")
    copied = 0
    for i in range(RACE_RUNS):
        out = tmp_path / f"out{i}"
        res = pc("cp", "c:/w/dir/secret", out)
        assert "Traceback" not in res.stderr, describe(res)
        if res.returncode == 0:
            copied += 1
            assert out.read_text() == CONTAINER_TEXT, f"cp read {out.read_text()!r}"
        pc("cp", tmp_path / "in", f"c:/w/dir/dropped{i}")
        assert not list(host_dir.glob("dropped*")), "cp wrote into the host directory"
    pc.ok("exec", "c", "touch", "/w/stop")
    wait_for("the swapper to stop", lambda: "swapped" in pc.ok("logs", "c").stdout)
    assert copied, "no copy succeeded while the link was swapped: the race was never run"


NSS_LIB = r"""
#include <fcntl.h>
#include <unistd.h>
__attribute__((constructor)) static void loaded(void) {
    int fd = open("MARKER", O_WRONLY | O_CREAT, 0644);
    if (fd >= 0) close(fd);
    fd = open("/nss-loaded", O_WRONLY | O_CREAT, 0644);
    if (fd >= 0) close(fd);
}
"""


def test_cp_never_loads_the_containers_nss_modules(pc: Pycontain, busybox_tarball: Path, tmp_path: Path) -> None:
    """An image whose nsswitch.conf names its own module for passwd and group: no pycontain process may
    load it (it would run with the host's privileges). The module leaves a marker wherever it runs."""
    from attacks import derived_image, entry

    marker = tmp_path / "nss-ran-on-the-host"
    src = tmp_path / "nss.c"
    src.write_text(NSS_LIB.replace("MARKER", str(marker)))
    lib = tmp_path / "libnss_evil.so.2"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True, timeout=120)
    data = lib.read_bytes()
    add = [entry("etc/nsswitch.conf", data=b"passwd: evil files\ngroup: evil files\n", mode=0o644)]
    with tarfile.open(busybox_tarball) as tar:
        have = {m.name.lstrip("./") for m in tar.getmembers()}
    # Wherever a glibc of any layout would look for it.
    for d in ("lib", "lib/x86_64-linux-gnu", "usr", "usr/lib", "usr/lib/x86_64-linux-gnu", "lib64"):
        add += [] if d in have else [entry(d, directory=True)]
        add.append(entry(f"{d}/libnss_evil.so.2", data=data))
    image = derived_image(busybox_tarball, tmp_path / "nss.tar.gz", add=add, drop=("etc/nsswitch.conf",))
    pc.ok("import", "--change", 'CMD ["sh"]', image, "nss")
    pc.ok("run", "-d", "--name", "c", "nss", "sh", "-c", "echo data > /tmp/file; chown 1000:50 /tmp/file; sleep 1000")
    pc.ok("cp", "c:/tmp/file", tmp_path / "out")
    (tmp_path / "in").write_text("x\n")
    pc.ok("cp", tmp_path / "in", "c:/tmp/in")
    assert not marker.exists(), "the container's NSS module ran in a pycontain process on the host"
    res = pc("exec", "c", "ls", "/nss-loaded")
    assert res.returncode != 0, "the container's NSS module ran in a pycontain process inside the container"
