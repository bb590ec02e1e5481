"""--restart: the monitor of a detached container runs its command again as the policy says, with
Docker's back-off, counts RestartCount, and honours the user's stop, kill and rm -f; the boot hook
(`start --all-restartable`) brings `always` and `unless-stopped` containers back after a reboot."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
from support import SETTLE_TIMEOUT, Pycontain, assert_pycontain_error

pytestmark = pytest.mark.usefixtures("no_leaks")


def until(check: object, what: str, timeout: float = SETTLE_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def restarts(pc: Pycontain, ref: str) -> int:
    return int(pc.inspect(ref)["RestartCount"])


def test_on_failure_with_a_maximum(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "fails", "--restart", "on-failure:3", "busybox", "sh", "-c", "echo run; exit 2")
    until(lambda: pc.ok("logs", "fails").stdout.count("run") == 4, "the first run and 3 restarts")
    until(lambda: pc.status("fails") == "exited", "it stays exited after the last retry")
    time.sleep(1)  # ... and is not started again (the back-off before a 4th would be 0.8 s)
    assert pc.ok("logs", "fails").stdout == "run\n" * 4
    assert restarts(pc, "fails") == 3
    assert pc.inspect("fails")["State"]["ExitCode"] == 2
    assert pc.inspect("fails")["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}


def test_on_failure_does_not_restart_a_success(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "fine", "--restart", "on-failure", "busybox", "true")
    assert pc.ok("wait", "fine").stdout == "0\n"
    assert restarts(pc, "fine") == 0


def test_always_backs_off_and_stop_ends_it(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "loop", "--restart", "always", "busybox", "cut", "-d", " ", "-f1", "/proc/uptime")
    until(lambda: restarts(pc, "loop") >= 4, "four restarts")
    stamps = [float(x) for x in pc.ok("logs", "loop").stdout.split()[:5]]
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    # 100 ms, 200, 400, 800 (plus the start itself): each wait at least doubles
    assert gaps[0] >= 0.09 and gaps[2] >= 0.39 and gaps[3] >= 0.79, gaps
    pc.ok("stop", "loop")
    assert pc.status("loop") == "exited"
    count = restarts(pc, "loop")
    time.sleep(2)
    assert restarts(pc, "loop") == count and pc.status("loop") == "exited"


@pytest.mark.parametrize("verb", [["kill"], ["stop", "-t", "1"]])
def test_the_users_kill_and_stop_are_final(pc: Pycontain, verb: list[str]) -> None:
    pc.ok("run", "-d", "--name", "up", "--restart", "unless-stopped", "busybox", "sleep", "60")
    pc.ok(*verb, "up")
    assert pc.ok("wait", "up").stdout == "137\n"
    time.sleep(0.5)
    assert pc.status("up") == "exited" and restarts(pc, "up") == 0
    pc.ok("start", "up")  # started by the user: the policy applies again
    assert pc.status("up") == "running"


def test_rm_force_of_a_restarting_container(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "flap", "--restart", "always", "busybox", "sh", "-c", "sleep 0.3; exit 1")
    until(lambda: restarts(pc, "flap") >= 2, "two restarts")
    assert_pycontain_error(pc("rm", "flap"))
    pc.ok("rm", "-f", "flap")
    assert pc.ok("ps", "-a", "-q").stdout == ""


def test_a_killed_command_is_restarted(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "svc", "--restart", "always", "busybox", "sleep", "60")
    pid = pc.inspect("svc")["State"]["Pid"]
    os.kill(pid, 9)  # not the user's stop: the policy brings it back
    until(lambda: restarts(pc, "svc") == 1 and pc.status("svc") == "running", "restarted after SIGKILL")
    assert pc.inspect("svc")["State"]["Pid"] != pid


def test_boot_hook_restores_and_starts_always_containers(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "always", "--restart", "always", "busybox", "sleep", "60")
    pc.ok("run", "-d", "--name", "unless", "--restart", "unless-stopped", "busybox", "sleep", "60")
    pc.ok("create", "--name", "fresh", "--restart", "unless-stopped", "busybox", "sleep", "60")
    pc.ok("run", "-d", "--name", "plain", "busybox", "sleep", "60")
    pc.ok("stop", "-t", "0", "always", "unless", "plain")
    # a reboot: the records lived on a tmpfs (/run), the layers (/var/lib) stay
    shutil.rmtree(pc.root / "run")
    pc.ok("gc")  # gc before the hook must not take what the hook restores
    res = pc.ok("start", "--all-restartable")
    assert sorted(res.stdout.split()) == ["always", "fresh"]
    assert pc.status("always") == "running" and pc.status("fresh") == "running"
    assert pc.status("unless") == "exited"  # stopped by its user before the reboot
    assert_pycontain_error(pc("inspect", "plain"))  # no restart policy: not kept (as before)
    assert json.loads(pc.ok("inspect", "always").stdout)[0]["Name"].lstrip("/") == "always"
    assert pc.ok("start", "--all-restartable").stdout == ""  # again: all running already
