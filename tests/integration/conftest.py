"""Fixtures for the integration suite: real kernel, the real `pycontain` command, one state root per test.

Every test drives the installed `pycontain` command (never the package's functions), as a user would,
with `--root` inside the test's own tmp_path, so tests never share state or touch a real store. The
generic parts are the package's: the command wrapper is pycontain.pytest_plugin.Command (support.Pycontain)
and the leak checker pycontain.leakcheck (leaks.py); what remains here are this suite's thin wrappers.

    pc               pycontain with this test's root, the busybox image already imported as `busybox`
    no_leaks         leakcheck snapshot before the test, diff after it (once its containers are removed)
    assert_leak_free a function asserting no leaks since the test began, for checks at several points
    busybox_tarball  rootfs/build.py's image, built once per session
    evil_tarball     busybox plus a symlink /evil -> / (built once per session)
    alpine_tarball   the shared Alpine minirootfs, read where it is

A test that needs the Alpine tarball (this fixture, the registries filled from it, or ALPINE_TARBALL in
its code) and cannot find it fails in one line saying what is missing and where it is expected.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from typing import Any
from pathlib import Path

import pytest

# The helper modules' asserts get pytest's messages too: registered here, before anything imports them
# (the security and fault suites load this file first).
pytest.register_assert_rewrite("leaks", "support", "oci_support", "engines", "images_support", "netns_support")

import leaks  # noqa: E402
from support import ALPINE_TARBALL, ALPINE_WHAT, COMMAND_TIMEOUT, PYCONTAIN, Pycontain  # noqa: E402

from pycontain.pytest_plugin import require_testdata  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

# A user network's DNS resolver forwards unknown names to the host's name servers: tests send traffic
# only to 127.0.0.0/8 and their own namespaces, so none unless a test starts a fake one on 127.0.0.1.
os.environ.setdefault("PYCONTAIN_DNS_UPSTREAM", "none")


def pytest_configure(config: pytest.Config) -> None:
    # Never skip: a suite that quietly skips everything when it is not root proves nothing.
    if os.geteuid() != 0:
        raise pytest.UsageError("the integration tests need root (real namespaces, mounts and cgroups): "
                                "run them with sudo")
    if not os.access(PYCONTAIN, os.X_OK):
        raise pytest.UsageError(f"{PYCONTAIN} is missing: install pycontain with scripts/install first")


# ---------------------------------------------------------------- images

@pytest.fixture(scope="session")
def busybox_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in busybox rootfs, built once per session by rootfs/build.py."""
    out = tmp_path_factory.mktemp("images") / "busybox.tar.gz"
    res = subprocess.run([sys.executable, str(REPO / "rootfs" / "build.py"), str(out)],
                         capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    assert res.returncode == 0, f"rootfs/build.py failed: {res.stderr}"
    return out


@pytest.fixture(scope="session")
def evil_tarball(busybox_tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The busybox rootfs plus `/evil -> /`: a symlink in the image that points at "the" root."""
    out = tmp_path_factory.mktemp("evil") / "evil.tar.gz"
    with tarfile.open(busybox_tarball, "r:gz") as src, gzip.open(out, "wb") as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as dst:
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member) if member.isreg() else None)
        link = tarfile.TarInfo("evil")
        link.type = tarfile.SYMTYPE
        link.linkname = "/"
        link.mode = 0o777
        dst.addfile(link)
    return out


@pytest.fixture(scope="session")
def alpine_tarball() -> Path:
    return require_testdata(ALPINE_TARBALL, ALPINE_WHAT)


# What marks a test as needing the Alpine tarball: these fixtures (the registries are filled from it), or
# these names in the code of the test or of one of its fixtures.
ALPINE_FIXTURES = {"alpine_tarball", "registry", "htpasswd_registry", "token_registry"}
ALPINE_NAMES = {"ALPINE_TARBALL", "push_tarball"}


def pytest_runtest_setup(item: pytest.Item) -> None:
    if ALPINE_TARBALL.is_file():
        return  # the usual case costs one stat per test
    if _needs_alpine(item):
        require_testdata(ALPINE_TARBALL, ALPINE_WHAT)


def _needs_alpine(item: pytest.Item) -> bool:
    if ALPINE_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    functions = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    for defs in (info.name2fixturedefs.values() if info is not None else ()):
        functions += [d.func for d in defs]
    return any(ALPINE_NAMES & _code_names(getattr(f, "__code__", None)) for f in functions)


def _code_names(code: Any) -> set[str]:
    """The global and attribute names a function's code (nested functions included) refers to."""
    if code is None:
        return set()
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _code_names(const)
    return names


# ---------------------------------------------------------------- pycontain and leak checks

@pytest.fixture
def pc(tmp_path: Path, busybox_tarball: Path) -> Iterator[Pycontain]:
    """pycontain with this test's own state root; the busybox image is imported as `busybox`."""
    p = Pycontain(tmp_path / "root")
    p.ok("import", "--change", 'CMD ["sh"]', busybox_tarball, "busybox")
    yield p
    p.remove_all()


@pytest.fixture
def leak_snapshot(tmp_path: Path) -> Path:
    """A leakcheck snapshot of the host, taken before the test (see leaks.py)."""
    return leaks.snapshot(tmp_path / "leakcheck-before.json")


@pytest.fixture
def assert_leak_free(leak_snapshot: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[], None]:
    """Call it to assert that nothing of this suite's appeared on the host since the test began."""
    def check() -> None:
        found = leaks.leaks_since(leak_snapshot, tmp_path_factory.getbasetemp())
        assert not found, "pycontain left host objects behind:\n" + "\n".join(found)

    return check


# ---------------------------------------------------------------- pycontain-oci bundles

@pytest.fixture(scope="session")
def rootfs_source(busybox_tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The busybox rootfs, extracted once; each bundle gets its own copy of it. This process becomes a
    subreaper: a container's init outlives `create` and is then adopted here, as by conmon."""
    from oci_support import become_subreaper

    become_subreaper()
    root = tmp_path_factory.mktemp("oci-rootfs") / "rootfs"
    root.mkdir()
    subprocess.run(["tar", "-xzf", str(busybox_tarball), "-C", str(root)], check=True, timeout=COMMAND_TIMEOUT)
    return root


@pytest.fixture
def oci(tmp_path: Path, rootfs_source: Path, leak_snapshot: Path,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """pycontain-oci with this test's own --root; afterwards nothing of the test's may remain."""
    from oci_support import Oci, own_leaks

    o = Oci(tmp_path, rootfs_source)
    yield o
    problems = o.cleanup()
    assert not problems, "the test left container state behind:\n" + "\n".join(problems)
    # Only this test's cgroups count (cleanup() above checked those by name): a pycontain-oci test run
    # elsewhere on the host names its cgroups with the same prefix.
    mine = tuple("/" + n.strip("/") for n in o.cgroup_names)
    found = [line for line in own_leaks(leak_snapshot, tmp_path_factory.getbasetemp())
             if not line.startswith("leaked cgroup: ") or line.endswith(mine)]
    assert not found, "the test left host objects behind:\n" + "\n".join(found)


@pytest.fixture
def no_leaks(pc: Pycontain, assert_leak_free: Callable[[], None]) -> Iterator[None]:
    """The test, and then removing its containers, leave no mount, cgroup, process, link or rule behind."""
    yield
    pc.remove_all()
    assert_leak_free()


@pytest.fixture
def ns() -> Iterator[Any]:
    """A network namespace of the test's own: the "host" of every bridge, veth and nft rule it causes."""
    from netns_support import NetNs

    n = NetNs()
    yield n
    n.close()
