"""`update --restart`: the new policy is kept in the record (inspect's HostConfig.RestartPolicy shows it)
and the monitor of a running container honours it at the container's next exit."""

from __future__ import annotations

import time

import pytest

from support import Pycontain, assert_pycontain_error, wait_for

pytestmark = pytest.mark.usefixtures("no_leaks")


def policy(pc: Pycontain, ref: str) -> object:
    return pc.inspect(ref)["HostConfig"]["RestartPolicy"]


def test_a_policy_given_to_a_running_container_applies_at_its_exit(pc: Pycontain) -> None:
    # It waits for the update before it exits: a file the test creates inside it once `update` returned.
    pc.ok("run", "-d", "--name", "late", "busybox", "sh", "-c",
          "echo run; while [ ! -e /go ]; do sleep 0.05; done; exit 3")
    pc.wait_until_running("late")
    assert policy(pc, "late") == {"Name": "no", "MaximumRetryCount": 0}
    assert pc.ok("update", "--restart", "on-failure:2", "late").stdout == "late\n"
    assert policy(pc, "late") == {"Name": "on-failure", "MaximumRetryCount": 2}
    pc.ok("exec", "late", "touch", "/go")  # the file is in its upper layer: every run after sees it too
    wait_for("two restarts", lambda: int(pc.inspect("late")["RestartCount"]) == 2)
    wait_for("it stays exited", lambda: pc.status("late") == "exited")
    assert pc.ok("logs", "late").stdout == "run\n" * 3
    assert pc.inspect("late")["State"]["ExitCode"] == 3


def test_policy_taken_away_from_a_running_container(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "loop", "--restart", "always", "busybox", "sh", "-c", "sleep 0.5; echo run")
    wait_for("a first restart", lambda: int(pc.inspect("loop")["RestartCount"]) >= 1)
    pc.ok("update", "--restart", "no", "loop")
    assert policy(pc, "loop") == {"Name": "no", "MaximumRetryCount": 0}
    wait_for("it stays exited", lambda: pc.status("loop") == "exited")
    count = int(pc.inspect("loop")["RestartCount"])
    time.sleep(1.5)  # the back-off before another run would be at most 0.8 s by now
    assert int(pc.inspect("loop")["RestartCount"]) == count and pc.status("loop") == "exited"


def test_update_restart_of_a_stopped_container_and_bad_input(pc: Pycontain) -> None:
    pc.ok("create", "--name", "idle", "busybox", "true")
    pc.ok("update", "--restart", "unless-stopped", "idle")
    assert policy(pc, "idle") == {"Name": "unless-stopped", "MaximumRetryCount": 0}
    pc.ok("update", "--restart", "always", "--pids-limit", "50", "idle")
    info = pc.inspect("idle")["HostConfig"]
    assert info["RestartPolicy"]["Name"] == "always" and info["PidsLimit"] == 50
    res = pc("update", "--restart", "sometimes", "idle")
    assert_pycontain_error(res)
    assert "invalid --restart" in res.stderr
    assert_pycontain_error(pc("update", "--restart", "on-failure:x", "idle"))
    pc.ok("create", "--rm", "--name", "gone", "busybox", "true")
    res = pc("update", "--restart", "always", "gone")
    assert_pycontain_error(res)
    assert "--rm" in res.stderr
    assert policy(pc, "gone") == {"Name": "no", "MaximumRetryCount": 0}
