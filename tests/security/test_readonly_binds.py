"""`-v SRC:DST:ro` is read-only all the way down, and keeps nosuid/nodev.

The review found `-v /:/host:ro` left /host/proc/sys, /host/dev/shm and every other submount
writable (MS_REMOUNT ignores MS_REC), and the remount dropped nosuid/nodev.
Would have caught: 3009c56 (the last commit before the fix).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import Pycontain

pytestmark = pytest.mark.usefixtures("no_leaks")


@pytest.fixture
def tree_with_submount(tmp_path: Path) -> Iterator[Path]:
    """A host directory with a tmpfs mounted below it (nosuid,nodev), as /dev/shm is below /."""
    top = tmp_path / "top"
    sub = top / "sub"
    sub.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,nosuid,nodev", "pctest", str(sub)], check=True)
    try:
        yield top
    finally:
        subprocess.run(["umount", "-l", str(sub)], check=True)


def test_a_read_only_volume_is_read_only_in_every_submount(pc: Pycontain, tree_with_submount: Path) -> None:
    res = pc("run", "--rm", "-v", f"{tree_with_submount}:/data:ro", "busybox", "sh", "-c",
             "touch /data/top-file; echo top=$?; touch /data/sub/file; echo sub=$?")
    assert "top=1" in res.stdout and "sub=1" in res.stdout, res.stdout + res.stderr
    assert not (tree_with_submount / "sub" / "file").exists()


def test_a_read_only_volume_keeps_nosuid_and_nodev(pc: Pycontain, tree_with_submount: Path) -> None:
    res = pc.ok("run", "--rm", "-v", f"{tree_with_submount}:/data:ro", "busybox", "sh", "-c",
                "grep ' /data/sub ' /proc/self/mountinfo")
    options = res.stdout.split()[5].split(",")
    assert {"ro", "nosuid", "nodev"} <= set(options), res.stdout


def test_a_writable_volume_stays_writable(pc: Pycontain, tree_with_submount: Path) -> None:
    pc.ok("run", "--rm", "-v", f"{tree_with_submount}:/data", "busybox", "touch", "/data/sub/file")
    assert (tree_with_submount / "sub" / "file").exists()


def test_read_only_root_keeps_its_other_flags_and_tmpfs_dirs(pc: Pycontain) -> None:
    res = pc("run", "--rm", "--read-only", "busybox", "sh", "-c",
             "touch /x; echo root=$?; touch /tmp/x; echo tmp=$?; grep ' / / ' /proc/self/mountinfo")
    assert "root=1" in res.stdout and "tmp=0" in res.stdout, res.stdout
    assert "ro" in res.stdout.splitlines()[-1].split()[5].split(",")


def test_proc_sys_is_read_only(pc: Pycontain) -> None:
    res = pc("run", "--rm", "busybox", "sh", "-c", "echo 1 > /proc/sys/kernel/domainname; echo rc=$?")
    assert "rc=1" in res.stdout
