"""Masked paths must not become host sysctls (the CVE-2025-31133 shape of the review's critical finding).

The attack: an image whose /dev is a link to /proc/self/cwd and which has `null -> /proc/sys/vm/...` at
its root. The runtime resolved mount targets by reading /proc links as strings before pivot_root; the
kernel followed them afterwards, so masking /proc/keys bound the host's vm.stat_interval over it,
writable (with kernel/core_pattern instead: the host ran a program of the container's as root).
Would have caught: 3009c56 (the last commit before the fix).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from attacks import derived_image, entry
from support import Pycontain, assert_pycontain_error

pytestmark = pytest.mark.usefixtures("no_leaks")

STAT_INTERVAL = Path("/proc/sys/vm/stat_interval")


@pytest.fixture
def dev_linked_to_proc(pc: Pycontain, alpine_tarball: Path, tmp_path: Path) -> str:
    image = derived_image(alpine_tarball, tmp_path / "devlink.tar.gz", drop=("dev",), add=[
        entry("dev", link="/proc/self/cwd"),
        entry("null", link="/proc/sys/vm/stat_interval"),
    ])
    pc.ok("import", "--change", 'CMD ["sh"]', image, "devlink")
    return "devlink"


def test_an_image_whose_dev_links_into_proc_cannot_unmask_a_host_sysctl(pc: Pycontain,
                                                                       dev_linked_to_proc: str) -> None:
    before = STAT_INTERVAL.read_text()
    res = pc("run", "--rm", dev_linked_to_proc, "sh", "-c",
             "cat /proc/keys; grep ' /proc/keys ' /proc/self/mountinfo; test -w /proc/keys && echo WRITABLE;"
             "echo 7 > /proc/keys")
    assert "WRITABLE" not in res.stdout
    assert "stat_interval" not in res.stdout
    assert STAT_INTERVAL.read_text() == before
    # Refused outright: a container's /dev must be a plain directory.
    assert_pycontain_error(res, 125)
    assert "/dev is a symbolic link" in res.stderr


@pytest.mark.parametrize("name", ["proc", "sys"])
def test_an_image_whose_proc_or_sys_is_a_link_is_refused(pc: Pycontain, alpine_tarball: Path, tmp_path: Path,
                                                        name: str) -> None:
    image = derived_image(alpine_tarball, tmp_path / "link.tar.gz", drop=(name,),
                          add=[entry(name, link="/proc/self/cwd")])
    pc.ok("import", image, "linked")
    res = pc("run", "--rm", "linked", "true")
    assert_pycontain_error(res, 125)
    assert f"/{name} is a symbolic link" in res.stderr


def test_an_image_whose_dev_is_a_file_is_refused(pc: Pycontain, alpine_tarball: Path, tmp_path: Path) -> None:
    image = derived_image(alpine_tarball, tmp_path / "devfile.tar.gz", drop=("dev",),
                          add=[entry("dev", data=b"not a directory\n", mode=0o644)])
    pc.ok("import", image, "devfile")
    res = pc("run", "--rm", "devfile", "true")
    assert_pycontain_error(res, 125)
    assert "/dev is not a directory" in res.stderr


def test_masked_files_are_the_containers_own_null_device(pc: Pycontain) -> None:
    res = pc.ok("run", "--rm", "busybox", "sh", "-c",
                "stat -c '%t:%T %F' /proc/keys /proc/timer_list; cat /proc/keys | wc -c;"
                "grep -E ' /proc/(keys|timer_list) ' /proc/self/mountinfo")
    lines = res.stdout.splitlines()
    assert lines[:2] == ["1:3 character special file"] * 2, res.stdout
    assert lines[2].strip() == "0"
    for line in lines[3:]:
        # bound from the container's own /dev tmpfs, the node pycontain made: root "/null" of a tmpfs
        assert line.split()[3] == "/null" and " - tmpfs " in line, line


def test_a_link_planted_where_a_mount_goes_cannot_lead_into_proc(pc: Pycontain, alpine_tarball: Path,
                                                                tmp_path: Path) -> None:
    """/etc/hosts is bound by the runtime; an image making it a /proc magic link is refused, not followed."""
    image = derived_image(alpine_tarball, tmp_path / "hosts.tar.gz", drop=("etc/hosts",),
                          add=[entry("etc/hosts", link="/proc/self/root/etc/shadow")])
    pc.ok("import", image, "hostslink")
    res = pc("run", "--rm", "hostslink", "cat", "/etc/hosts")
    assert_pycontain_error(res, 125)
    assert "may not follow" in res.stderr


def test_exec_refuses_a_working_directory_that_leads_through_a_proc_link(pc: Pycontain) -> None:
    """In exec the container owns the path: a link to /proc/PID/{cwd,root} could name a directory of a
    process not yet inside. Refused, not followed (the getcwd check of CVE-2024-21626 stays behind it)."""
    pc.ok("run", "-d", "--name", "c", "-w", "/work", "busybox", "sleep", "1000")
    pc.ok("exec", "c", "sh", "-c", "cd /; rmdir /work; ln -s /proc/1/root/tmp /work")
    res = pc("exec", "c", "pwd")
    assert_pycontain_error(res, 125)
    assert "cannot use working directory /work: it leads through a /proc link" in res.stderr
    pc.ok("exec", "-w", "/", "c", "sh", "-c", "rm /work; mkdir /work")
    assert pc.ok("exec", "c", "pwd").stdout == "/work\n"
