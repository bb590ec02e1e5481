"""Namespaces: what a container can see of the host's processes, hostname, mounts and network."""

from __future__ import annotations

import os
import socket

import pytest
from support import Pycontain, host_mounts

pytestmark = pytest.mark.usefixtures("no_leaks")


def test_container_command_is_pid_1(pc: Pycontain) -> None:
    res = pc.ok("run", "--rm", "busybox", "sh", "-c", "echo $$")
    assert res.stdout.strip() == "1"


def test_container_ps_lists_only_the_containers_own_processes(pc: Pycontain) -> None:
    res = pc.ok("run", "--rm", "busybox", "sh", "-c", "ps -o pid,comm; exit 0")
    rows = [line.split() for line in res.stdout.strip().splitlines()[1:]]
    # PID 1 is the shell, and the only other process is the ps it started: nothing of the host's.
    assert sorted(comm for _, comm in rows) == ["ps", "sh"], res.stdout
    assert ["1", "sh"] in rows, res.stdout


def test_container_cannot_see_host_pids(pc: Pycontain) -> None:
    me = os.getpid()
    res = pc.ok("run", "--rm", "busybox", "sh", "-c",
                f"ls /proc | grep -c '^[0-9]*$'; test -e /proc/{me} && echo visible || echo invisible")
    count, verdict = res.stdout.split()
    assert verdict == "invisible", f"host pid {me} is visible inside the container"
    assert int(count) <= 3, f"the container sees {count} processes: {res.stdout}"


def test_default_hostname_is_the_short_container_id(pc: Pycontain) -> None:
    res = pc.ok("run", "--name", "hn", "busybox", "hostname")
    container_id = pc.inspect("hn")["Id"]
    assert len(container_id) == 64
    assert res.stdout.strip() == container_id[:12]


def test_hostname_flag_sets_the_container_hostname_only(pc: Pycontain) -> None:
    before = socket.gethostname()
    res = pc.ok("run", "--rm", "-h", "myhost", "busybox", "sh", "-c", "hostname; cat /etc/hostname")
    assert res.stdout.split() == ["myhost", "myhost"]
    assert socket.gethostname() == before
    with open("/proc/sys/kernel/hostname") as f:
        assert f.read().strip() == before


def test_container_mounts_are_invisible_on_the_host(pc: Pycontain) -> None:
    before = host_mounts()
    pc.ok("run", "-d", "--name", "m", "busybox", "sleep", "60")
    pid = pc.wait_until_running("m")["State"]["Pid"]
    assert pid > 0
    # The container does have its own overlay root and procfs ...
    with open(f"/proc/{pid}/mountinfo") as f:
        inside = [line.split(" - ", 1) for line in f]
    assert any(left.split()[4] == "/" and right.startswith("overlay ") for left, right in inside), inside
    assert any(left.split()[4] == "/proc" and right.startswith("proc ") for left, right in inside), inside
    # ... and none of it shows in the host's mount table.
    new = host_mounts() - before
    assert not [m for m in new if m[1] in ("overlay", "proc", "sysfs", "devpts", "mqueue", "tmpfs")
                or str(pc.root) in m[0]], new


def test_network_namespace_has_only_loopback(pc: Pycontain) -> None:
    res = pc.ok("run", "--rm", "busybox", "sh", "-c", "ls /sys/class/net; echo --; cat /proc/net/dev")
    sysfs, _, procfs = res.stdout.partition("--")
    assert sysfs.split() == ["lo"]
    devices = [line.split(":")[0].strip() for line in procfs.splitlines() if ":" in line]
    assert devices == ["lo"]


def test_loopback_is_up_and_carries_traffic(pc: Pycontain) -> None:
    script = (
        "cat /sys/class/net/lo/flags; "
        "nc -l -p 5555 > /tmp/got & "
        # retry until the listener is there; nc -l exits after one connection
        "for i in $(seq 100); do echo over-lo | nc 127.0.0.1 5555 && break; usleep 50000; done; "
        "wait; cat /tmp/got"
    )
    res = pc.ok("run", "--rm", "busybox", "sh", "-c", script)
    flags, received = res.stdout.split()
    assert int(flags, 16) & 0x1, f"lo is down (flags {flags})"  # IFF_UP
    assert received == "over-lo"


def test_network_host_shares_the_host_interfaces(pc: Pycontain) -> None:
    res = pc.ok("run", "--rm", "--network", "host", "busybox", "ls", "/sys/class/net")
    assert sorted(res.stdout.split()) == sorted(os.listdir("/sys/class/net"))


def test_masked_proc_files_read_empty(pc: Pycontain) -> None:
    res = pc.ok("run", "--rm", "busybox", "sh", "-c",
                "for f in /proc/kcore /proc/keys /proc/timer_list; do "
                "echo $f $(cat $f 2>/dev/null | wc -c); done")
    sizes = dict(line.split() for line in res.stdout.strip().splitlines())
    assert sizes == {"/proc/kcore": "0", "/proc/keys": "0", "/proc/timer_list": "0"}, res.stdout


def test_sys_firmware_is_masked_empty(pc: Pycontain) -> None:
    assert os.listdir("/sys/firmware"), "precondition: the host's /sys/firmware has entries"
    res = pc.ok("run", "--rm", "busybox", "ls", "-A", "/sys/firmware")
    assert res.stdout.strip() == ""


def test_proc_sys_is_read_only(pc: Pycontain) -> None:
    before = socket.gethostname()
    res = pc("run", "--rm", "busybox", "sh", "-c", "echo hacked > /proc/sys/kernel/hostname")
    assert res.returncode != 0, res.stdout
    assert "Read-only file system" in res.stderr
    assert socket.gethostname() == before
