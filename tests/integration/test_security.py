"""Privileges: users from the image's /etc/passwd, capabilities, no_new_privs."""

from __future__ import annotations

import pytest
from support import Pycontain, assert_pycontain_error, proc_status

pytestmark = pytest.mark.usefixtures("no_leaks")

# podman's default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE
# SYS_CHROOT SETFCAP (11 capabilities)
DEFAULT_CAPS = "00000000800405fb"
NO_CAPS = "0000000000000000"


def status_as(pc: Pycontain, *user: str) -> dict[str, str]:
    # cat itself reads /proc/self/status: no shell in between whose state could differ
    res = pc.ok("run", "--rm", *user, "busybox", "cat", "/proc/self/status")
    return proc_status(res.stdout)


def test_root_in_the_container_has_only_the_default_capabilities(pc: Pycontain) -> None:
    st = status_as(pc)
    assert st["Uid"].split()[0] == "0"
    assert st["CapEff"] == DEFAULT_CAPS
    assert st["CapPrm"] == DEFAULT_CAPS
    assert st["CapBnd"] == DEFAULT_CAPS
    assert st["CapInh"] == NO_CAPS
    assert st["CapAmb"] == NO_CAPS


def test_container_processes_have_no_new_privs(pc: Pycontain) -> None:
    assert status_as(pc)["NoNewPrivs"] == "1"
    assert status_as(pc, "-u", "nobody")["NoNewPrivs"] == "1"


def test_nobody_runs_as_65534_without_capabilities(pc: Pycontain) -> None:
    st = status_as(pc, "-u", "nobody")
    assert st["Uid"].split() == ["65534"] * 4
    assert st["Gid"].split() == ["65534"] * 4
    assert st["CapEff"] == NO_CAPS
    assert st["CapPrm"] == NO_CAPS
    assert st["CapInh"] == NO_CAPS
    assert st["CapAmb"] == NO_CAPS


def test_non_root_user_cannot_write_root_owned_files(pc: Pycontain) -> None:
    res = pc("run", "--rm", "-u", "nobody", "busybox", "sh", "-c", "echo x >> /etc/passwd")
    assert res.returncode != 0
    assert "Permission denied" in res.stderr


def test_user_by_name_gets_uid_and_gid_from_the_image(pc: Pycontain) -> None:
    res = pc.ok("run", "--rm", "-u", "app", "busybox", "sh", "-c", "id -u; id -g; echo $HOME")
    assert res.stdout.split() == ["1000", "1000", "/home/app"]


def test_user_by_name_gets_supplementary_groups_from_etc_group(pc: Pycontain) -> None:
    res = pc.ok("run", "--rm", "-u", "app", "busybox", "id", "-G")
    assert sorted(res.stdout.split()) == ["1000", "50"]


def test_root_has_no_supplementary_groups_of_the_host(pc: Pycontain) -> None:
    res = pc.ok("run", "--rm", "busybox", "id", "-G")
    assert res.stdout.split() == ["0"]


def test_numeric_user_and_group(pc: Pycontain) -> None:
    res = pc.ok("run", "--rm", "-u", "1000:50", "busybox", "sh", "-c", "id -u; id -g")
    assert res.stdout.split() == ["1000", "50"]


def test_numeric_user_not_in_passwd_is_allowed(pc: Pycontain) -> None:
    res = pc.ok("run", "--rm", "-u", "4242", "busybox", "sh", "-c", "id -u; id -g")
    assert res.stdout.split() == ["4242", "0"]


def test_unknown_user_exits_125(pc: Pycontain) -> None:
    assert_pycontain_error(pc("run", "--rm", "-u", "nosuchuser", "busybox", "true"), 125)
    assert_pycontain_error(pc("run", "--rm", "-u", "app:nosuchgroup", "busybox", "true"), 125)
