"""--pycontain-leakcheck fails a test that leaves a host object behind (a mount, a container's processes
and cgroups), and only that test."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from plugin_support import Inner

LEAKS_A_MOUNT = '''
import subprocess


def test_clean_before(tmp_path):
    pass


def test_leaks_a_mount(tmp_path):
    (tmp_path / "m").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "plugin-leak", str(tmp_path / "m")], check=True)


def test_clean_after(tmp_path):
    pass
'''


def unmount_leftovers(source: str) -> None:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f if line.split(" - ", 1)[1].split()[:2] == ["tmpfs", source]]
    for point in reversed(points):
        subprocess.run(["umount", point], check=True)


def test_a_leaked_mount_fails_that_test(inner: Callable[..., Inner]) -> None:
    try:
        run = inner(LEAKS_A_MOUNT, "--pycontain-leakcheck")
    finally:
        unmount_leftovers("plugin-leak")
    assert run.outcomes == {"passed": 3, "error": 1}, run.output
    assert "ERROR at teardown of test_leaks_a_mount" in run.output, run.output
    assert "leaked mount: " in run.output and " tmpfs plugin-leak" in run.output, run.output


def test_without_the_option_nothing_is_checked(inner: Callable[..., Inner]) -> None:
    try:
        run = inner(LEAKS_A_MOUNT)
    finally:
        unmount_leftovers("plugin-leak")
    assert run.outcomes == {"passed": 3}, run.output


def test_the_ini_setting_turns_it_on(inner: Callable[..., Inner]) -> None:
    try:
        run = inner(LEAKS_A_MOUNT, "-o", "pycontain_leakcheck=true")
    finally:
        unmount_leftovers("plugin-leak")
    assert run.outcomes == {"passed": 3, "error": 1}, run.output


LEAKS_A_CONTAINER = '''
import shutil
import subprocess


def test_leaks_a_container(tmp_path):
    # Not through the fixture (which would remove it): a detached container in a root of the test's own.
    res = subprocess.run([shutil.which("pycontain"), "--root", str(tmp_path / "own-root"), "run", "-d",
                          "--name", "forgotten", {image!r}, "sleep", "120"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
'''


def test_a_leaked_container_fails_that_test(inner: Callable[..., Inner], tmp_path: Path, rootfs: Path) -> None:
    import shutil

    source = LEAKS_A_CONTAINER.format(image="plugin-leak-bb")
    # The inner test's root gets the image first, where the inner test will look for it.
    conftest = f'''
import shutil
import subprocess

import pytest


@pytest.fixture(autouse=True)
def _image(tmp_path):
    subprocess.run([shutil.which("pycontain"), "--root", str(tmp_path / "own-root"), "import", {str(rootfs)!r},
                    "plugin-leak-bb"], check=True, capture_output=True)
'''
    try:
        run = inner(source, "--pycontain-leakcheck", conftest=conftest)
    finally:
        for root in (tmp_path / "basetemp0").glob("test_leaks_a_container*/own-root"):
            subprocess.run([shutil.which("pycontain") or "pycontain", "--root", str(root), "rm", "-f", "forgotten"],
                           capture_output=True, timeout=60)
    assert run.outcomes == {"passed": 1, "error": 1}, run.output
    assert "leaked process: " in run.output and "leaked cgroup: " in run.output, run.output
