"""The state root (--root DIR, PYCONTAIN_ROOT) must be root's alone, or pycontain refuses to use it.

Root writes records, credentials and layers under it and trusts what it reads back (name links,
records): a user who can write to the root, owns it, or put a symlink in its place, could redirect
those writes anywhere on the host. Every command checks it (one lstat) before touching anything.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from support import COMMAND_TIMEOUT, PYCONTAIN, Pycontain, assert_pycontain_error, describe

NOBODY = 65534

# A cross-section of commands: each must refuse a bad root before doing anything else.
COMMANDS = [
    ("images",),
    ("ps", "-a"),
    ("run", "--rm", "busybox", "true"),
    ("import", "/nonexistent.tar", "x"),
    ("gc",),
    ("logout", "127.0.0.1:5000"),
]


def world_writable(root: Path) -> tuple[Path, str]:
    root.mkdir()
    root.chmod(0o777)
    return root, "writable by group and others (mode 0777)"


def group_writable(root: Path) -> tuple[Path, str]:
    root.mkdir()
    root.chmod(0o770)
    return root, "writable by group (mode 0770)"


def owned_by_nobody(root: Path) -> tuple[Path, str]:
    root.mkdir()
    root.chmod(0o700)
    os.chown(root, NOBODY, NOBODY)
    return root, f"owned by uid {NOBODY}, not root"


def a_symlink(root: Path) -> tuple[Path, str]:
    real = root.parent / "real-root"
    real.mkdir(mode=0o700)
    root.symlink_to(real)
    return root, "is a symlink"


BAD_ROOTS = [world_writable, group_writable, owned_by_nobody, a_symlink]


@pytest.mark.parametrize("make_root", BAD_ROOTS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_root_others_could_change_is_refused_before_anything_is_written(
        tmp_path: Path, make_root: Callable[[Path], tuple[Path, str]], command: tuple[str, ...]) -> None:
    """would have caught: 3009c56 (any --root was used as it was: world-writable, foreign-owned, a link)."""
    root, problem = make_root(tmp_path / "root")
    target = root.resolve()
    before = sorted(os.listdir(target))
    res = Pycontain(root)(*command)
    assert_pycontain_error(res)
    assert problem in res.stderr and str(root) in res.stderr, describe(res)
    assert sorted(os.listdir(target)) == before, "pycontain wrote into a root it refused"


def test_pycontain_root_from_the_environment_is_checked_too(tmp_path: Path) -> None:
    """would have caught: 3009c56 (PYCONTAIN_ROOT is the other way to name the root)."""
    root, problem = world_writable(tmp_path / "root")
    res = subprocess.run([PYCONTAIN, "images"], env={**os.environ, "PYCONTAIN_ROOT": str(root)},
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    assert_pycontain_error(res)
    assert problem in res.stderr, describe(res)
    assert os.listdir(root) == []


def test_a_missing_root_is_created_root_only(tmp_path: Path) -> None:
    """would have caught: 3009c56 (a root made on first use got the umask's mode, or was not made at all
    until something was written, leaving a window for someone else to create it first)."""
    root = tmp_path / "parent" / "root"
    Pycontain(root).ok("images")
    st = os.lstat(root)
    assert stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o700


def test_a_root_only_root_keeps_working(pc: Pycontain) -> None:
    """The fixtures' own roots (made by pycontain under tmp_path) pass the check: the suite runs on them."""
    st = os.lstat(pc.root)
    assert st.st_uid == 0 and not st.st_mode & 0o022
    assert pc.ok("run", "--rm", "busybox", "echo", "ok").stdout == "ok\n"
