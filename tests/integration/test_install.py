"""scripts/install: a regular install outlives its checkout, and --uninstall removes exactly what it added.

Each test installs a copy of the checkout into a prefix and a launcher directory of its own (--prefix,
--bindir) with the built-in image in a state root of its own (PYCONTAIN_ROOT): /opt/pycontain and
/usr/local/bin, which the rest of the suite runs, are never touched. No package index is used: pip runs
with PIP_NO_INDEX=1 and a wheel house made from the distributions installed in the venv running the tests
(their installed files packed again as wheels), so the test is offline and an install takes seconds.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from support import COMMAND_TIMEOUT, PYCONTAIN, describe

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# What a build and an install read from a checkout (setup.py, pyproject, the C sources, the image script).
CHECKOUT = ("pyproject.toml", "setup.py", "README.md", "MANIFEST.in", "csrc", "pycontain", "scripts", "rootfs")
# The build requirements scripts/install puts in the venv, and pycontain's dependencies; theirs follow.
SEED = ("setuptools", "wheel", "cffi", "psutil", "dockerfile", "PyYAML", "dnslib")
INSTALL_TIMEOUT = 300  # a hang guard: an install takes ~5 s here


def _wheel_from_installed(name: str, house: Path) -> None:
    """Pack an installed distribution's files (its RECORD, minus scripts outside site-packages) as a wheel."""
    dist = importlib.metadata.distribution(name)
    files = [f for f in dist.files or () if not str(f).startswith("..") and "__pycache__" not in str(f)]
    info = next((f for f in files if str(f).endswith(".dist-info/WHEEL")), None)
    assert info is not None, f"{name} is installed without a .dist-info/WHEEL: reinstall it with pip"
    wheel_meta = Path(str(dist.locate_file(info))).read_text()
    tag = re.search(r"^Tag: (\S+)$", wheel_meta, re.M)
    assert tag, f"{name}: no Tag in its WHEEL file"
    dist_info = str(info).rsplit("/", 1)[0]
    skip = {f"{dist_info}/{n}" for n in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")}
    normal = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    record = []
    with zipfile.ZipFile(house / f"{normal}-{dist.version}-{tag.group(1)}.whl", "w") as whl:
        for f in files:
            if str(f) in skip:
                continue
            data = Path(str(dist.locate_file(f))).read_bytes()
            whl.writestr(str(f), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{f},sha256={digest},{len(data)}")
        record.append(f"{dist_info}/RECORD,,")
        whl.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")


@pytest.fixture(scope="session")
def wheel_house(tmp_path_factory: pytest.TempPathFactory) -> Path:
    house = tmp_path_factory.mktemp("wheel-house")
    todo, done = list(SEED), set()
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in done:
            continue
        done.add(key)
        try:
            _wheel_from_installed(name, house)
        except importlib.metadata.PackageNotFoundError:
            if name in SEED:
                pytest.fail(f"{name} is not in the test venv: run `sudo scripts/install --test-deps --editable`")
            continue  # a requirement for another platform or Python (its marker is not evaluated here)
        for req in importlib.metadata.requires(name) or ():
            if "extra ==" not in req:
                todo.append(re.match(r"[A-Za-z0-9._-]+", req).group())  # type: ignore[union-attr]
    return house


def _copy_checkout(dest: Path) -> Path:
    dest.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.o", "exec_helper", "_native.c", "*.egg-info", "build")
    for name in CHECKOUT:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        elif src.exists():
            shutil.copy2(src, dest / name)
    return dest


def _tree(top: Path, *apart: str) -> set[str]:
    """Every path under top, relative, but for the named top-level entries and what is under them."""
    return {r for r in (str(p.relative_to(top)) for p in top.rglob("*")) if r.split("/", 1)[0] not in apart}


def _run(argv: list[str | Path], env: dict[str, str], timeout: float = COMMAND_TIMEOUT,
         ok: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([str(a) for a in argv], env=env, cwd="/", stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, timeout=timeout)
    if ok:
        assert res.returncode == 0, describe(res)
    return res


def _env(root: Path, house: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYCONTAIN_"))}
    # PIP_CONFIG_FILE=/dev/null: no pip.conf of the host adds an index or another wheel directory.
    return {**env, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(house), "PIP_CONFIG_FILE": os.devnull,
            "PYCONTAIN_ROOT": str(root), "PYCONTAIN_NETWORK": "none", "PYCONTAIN_PULL": "never"}


def _host_files() -> dict[str, bytes | None]:
    """Files a test install could touch by mistake: the machine's own install and the id ranges."""
    out: dict[str, bytes | None] = {}
    for f in ("/etc/subuid", "/etc/subgid"):
        out[f] = Path(f).read_bytes() if os.path.exists(f) else None
    return out


def test_regular_install_outlives_its_checkout_and_uninstall_removes_it(
        tmp_path: Path, wheel_house: Path, assert_leak_free: object) -> None:
    area = tmp_path / "area"
    area.mkdir()
    clone = _copy_checkout(area / "clone")
    prefix, bindir, root = area / "prefix", area / "bin", area / "root"
    env = _env(root, wheel_house)
    before, host = _tree(area, "clone"), _host_files()

    _run([clone / "scripts/install", "--prefix", prefix, "--bindir", bindir], env, timeout=INSTALL_TIMEOUT)
    # The clone goes away: everything the commands need is in the prefix now.
    shutil.rmtree(clone)
    for launcher in (bindir / "pycontain", prefix / "libexec/pycontain-oci"):
        assert str(clone) not in launcher.read_text(), f"{launcher} still names the checkout"
    where = _run([prefix / "venv/bin/python3", "-I", "-c", "import pycontain._native, pycontain; "
                  "print(pycontain.__file__)"], env)
    assert where.stdout.startswith(f"{prefix}/venv/"), where.stdout
    assert (Path(where.stdout.strip()).parent / "exec_helper").is_file()

    assert _run([bindir / "pycontain", "--version"], env).stdout.startswith("pycontain version ")
    res = _run([bindir / "pycontain", "run", "--rm", "busybox", "sh", "-c", "echo hello from $$"], env)
    assert res.stdout == "hello from 1\n"
    assert _run([bindir / "pycontain-oci", "--version"], env).stdout.startswith("pycontain-oci version ")
    # The machine's own launcher is not this install's.
    assert str(prefix) not in Path(PYCONTAIN).read_text(errors="replace")

    res = _run([prefix / "libexec/pycontain-install", "--uninstall"], env)
    assert f"removed the image busybox:latest from {root}" in res.stdout
    assert f"kept {root} (containers' state" in res.stdout
    # Exactly what install added is gone: the tree is as before, but for the state root that was kept.
    assert _tree(area, "root") == before
    assert _host_files() == host
    images = subprocess.run([PYCONTAIN, "--root", str(root), "images", "-q"], capture_output=True, text=True,
                            timeout=COMMAND_TIMEOUT)
    assert images.returncode == 0 and images.stdout == "", describe(images)
    assert_leak_free()  # type: ignore[operator]


def test_editable_install_runs_the_checkout_and_purge_removes_the_state(
        tmp_path: Path, wheel_house: Path, assert_leak_free: object) -> None:
    area = tmp_path / "area"
    area.mkdir()
    clone = _copy_checkout(area / "clone")
    prefix, bindir, root = area / "prefix", area / "bin", area / "root"
    env = _env(root, wheel_house)
    host = _host_files()
    before = _tree(area, "clone")  # the clone gains build artefacts: left out

    _run([clone / "scripts/install", "--editable", f"--prefix={prefix}", f"--bindir={bindir}"], env,
         timeout=INSTALL_TIMEOUT)
    pc = bindir / "pycontain"
    assert _run([pc, "--version"], env).stdout.startswith("pycontain version ")
    # It runs the checkout itself: without it, nothing.
    (clone / "pycontain").rename(clone / "moved")
    assert _run([pc, "--version"], env, ok=False).returncode != 0
    (clone / "moved").rename(clone / "pycontain")

    # --purge refuses while a container exists (its records would be lost), and removes nothing.
    _run([pc, "create", "--name", "kept", "busybox", "true"], env)
    installed = _tree(area, "clone")
    res = _run([prefix / "libexec/pycontain-install", "--uninstall", "--purge"], env, ok=False)
    assert res.returncode == 1 and "containers exist" in res.stderr and "nothing was removed" in res.stderr, \
        describe(res)
    assert _tree(area, "clone") == installed
    _run([pc, "rm", "kept"], env)

    res = _run([prefix / "libexec/pycontain-install", "--uninstall", "--purge"], env)
    assert f"removed {root}" in res.stdout, res.stdout
    assert _tree(area, "clone") == before
    assert _host_files() == host
    assert_leak_free()  # type: ignore[operator]


def test_uninstall_with_nothing_installed_removes_nothing(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "pycontain").write_text("#!/bin/sh\necho not ours\n")
    env = {**os.environ, "PYCONTAIN_PREFIX": str(tmp_path / "prefix"), "PYCONTAIN_BINDIR": str(tmp_path / "bin")}
    res = _run([REPO / "scripts/install", "--uninstall", "--purge"], env)
    assert "nothing to uninstall" in res.stdout
    assert _tree(tmp_path) == {"bin", "bin/pycontain"}


@pytest.mark.parametrize("argv, message", [
    (["--purge"], "--purge goes with --uninstall"),
    (["--bogus"], "unknown option '--bogus'"),
    (["--prefix", "relative/dir"], "must be an absolute path"),
    (["--uninstall", "--editable"], "--uninstall takes no --editable"),
])
def test_bad_options_say_what_is_wrong(argv: list[str], message: str) -> None:
    res = _run([REPO / "scripts/install", *argv], dict(os.environ), ok=False)
    assert res.returncode == 2 and message in res.stderr and res.stderr.count("\n") == 1, describe(res)
