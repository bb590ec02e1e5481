"""Nothing is ever left behind: under load, in parallel, and when pycontain itself is SIGKILLed (then `gc`)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support import COMMAND_TIMEOUT, Pycontain, alive, container_cgroup_dirs, describe

pytestmark = pytest.mark.usefixtures("no_leaks")


def test_parallel_runs_all_succeed_and_leave_nothing(pc: Pycontain, assert_leak_free: Callable[[], None]) -> None:
    procs = [pc.popen("run", "--rm", "busybox", "true") for _ in range(16)]
    results = [(p.wait(timeout=COMMAND_TIMEOUT), *p.communicate(timeout=COMMAND_TIMEOUT)) for p in procs]
    assert [code for code, _, _ in results] == [0] * 16, results
    assert pc.ok("ps", "-a", "-q").stdout == ""
    assert_leak_free()


def test_many_sequential_runs_all_succeed_and_leave_nothing(
        pc: Pycontain, assert_leak_free: Callable[[], None]) -> None:
    for i in range(200):
        res = pc("run", "--rm", "busybox", "true")
        assert res.returncode == 0, f"run {i}: {describe(res)}"
    assert pc.ok("ps", "-a", "-q").stdout == ""
    assert_leak_free()


def test_gc_cleans_up_after_a_sigkilled_foreground_run(
        pc: Pycontain, assert_leak_free: Callable[[], None]) -> None:
    cli = pc.popen("run", "--name", "k", "busybox", "sleep", "60")
    info = pc.wait_until_running("k")
    container_pid, container_id = info["State"]["Pid"], info["Id"]
    assert pc.ok("ps", "-q").stdout.split() == [container_id[:12]]
    assert container_cgroup_dirs(f"pycontain-{container_id}"), "precondition: the container has a cgroup"

    cli.send_signal(signal.SIGKILL)
    cli.communicate(timeout=COMMAND_TIMEOUT)
    assert pc.status("k") in ("dead", "exited")  # never "running" with nobody supervising it

    pc.ok("gc")
    assert container_cgroup_dirs(f"pycontain-{container_id}") == []
    assert not alive(container_pid), f"container process {container_pid} survived its supervisor and gc"
    info = pc.inspect("k")
    assert info["State"]["Status"] == "exited"
    assert pc.ok("ps", "-q").stdout == ""
    assert_leak_free()
    # the name can be reused once the dead container is removed
    pc.ok("rm", "k")
    pc.ok("run", "--rm", "--name", "k", "busybox", "true")


def test_gc_cleans_up_after_a_sigkilled_detached_monitor(
        pc: Pycontain, assert_leak_free: Callable[[], None]) -> None:
    pc.ok("run", "-d", "--name", "m", "busybox", "sleep", "60")
    info = pc.wait_until_running("m")
    container_pid, container_id = info["State"]["Pid"], info["Id"]
    with open(f"/proc/{container_pid}/status") as f:
        monitor = int(next(line.split()[1] for line in f if line.startswith("PPid:")))
    assert "pycontain" in open(f"/proc/{monitor}/cmdline").read()
    os.kill(monitor, signal.SIGKILL)

    pc.ok("gc")
    assert container_cgroup_dirs(f"pycontain-{container_id}") == []
    assert not alive(container_pid)
    assert pc.status("m") == "exited"
    assert_leak_free()


@pytest.mark.parametrize("delay_ms", [0, 5, 10, 20, 40, 80])
def test_gc_cleans_up_after_pycontain_is_killed_early_in_startup(
        pc: Pycontain, assert_leak_free: Callable[[], None], delay_ms: int) -> None:
    for attempt in range(3):
        cli = pc.popen("run", "--name", f"early{attempt}", "busybox", "sleep", "60")
        time.sleep(delay_ms / 1000)  # where in start-up the kill lands; nothing asserts on time
        cli.send_signal(signal.SIGKILL)
        cli.communicate(timeout=COMMAND_TIMEOUT)
        res = pc("gc")
        assert res.returncode == 0, describe(res)
        assert pc.ok("ps", "-q").stdout == "", "a container still counts as running after gc"
        assert_leak_free()


def test_gc_cleans_up_after_pycontain_run_rm_is_killed(
        pc: Pycontain, assert_leak_free: Callable[[], None]) -> None:
    cli = pc.popen("run", "--rm", "--name", "r", "busybox", "sleep", "60")
    pc.wait_until_running("r")
    cli.send_signal(signal.SIGKILL)
    cli.communicate(timeout=COMMAND_TIMEOUT)
    pc.ok("gc")
    assert pc.ok("ps", "-a", "-q").stdout == "", "gc keeps a --rm container's record"
    assert_leak_free()


def test_rm_force_after_supervisor_was_killed(pc: Pycontain, assert_leak_free: Callable[[], None]) -> None:
    cli = pc.popen("run", "--name", "z", "busybox", "sleep", "60")
    pc.wait_until_running("z")
    cli.send_signal(signal.SIGKILL)
    cli.communicate(timeout=COMMAND_TIMEOUT)
    pc.ok("rm", "-f", "z")
    assert pc.ok("ps", "-a", "-q").stdout == ""
    assert_leak_free()


def test_gc_never_touches_containers_of_another_state_root(
        pc: Pycontain, tmp_path: Path, busybox_tarball: Path) -> None:
    # Each --root is a separate store: gc in one must leave the live containers of another alone
    # (they have a live supervisor holding their lock; only their records live elsewhere).
    other = Pycontain(tmp_path / "other-root")
    other.ok("import", "--change", 'CMD ["sh"]', busybox_tarball, "busybox")
    try:
        other.ok("run", "-d", "--name", "bystander", "busybox", "sleep", "60")
        info = other.wait_until_running("bystander")
        pc.ok("gc")
        assert other.status("bystander") == "running", "gc in one root killed another root's container"
        assert alive(info["State"]["Pid"])
        assert container_cgroup_dirs(f"pycontain-{info['Id']}")
    finally:
        other.remove_all()
