"""Docker parity of a container's life: the bugs of issue 13 (rm -f of a --rm container, wait on a
-d --rm one, -t without -i, --network host's name), pause/unpause, rename, restart, container prune,
--init, --stop-signal and --stop-timeout."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
from support import Pycontain, SETTLE_TIMEOUT, alive, assert_pycontain_error, container_cgroup_dirs

pytestmark = pytest.mark.usefixtures("no_leaks")


def state_json(pc: Pycontain, ref: str) -> dict[str, object]:
    cid = pc.inspect(ref)["Id"]
    return dict(json.loads((pc.root / "run" / "containers" / cid / "state.json").read_text()))


def until(check: object, what: str) -> None:
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


# ---------------------------------------------------------------- bugs

def test_rm_force_of_a_running_rm_container_succeeds(pc: Pycontain) -> None:
    for _ in range(3):  # the monitor's own removal races the rm: every outcome must be a clean success
        pc.ok("run", "-d", "--rm", "--name", "gone", "busybox", "sleep", "60")
        res = pc.ok("rm", "-f", "gone")
        assert res.stdout == "gone\n" and res.stderr == ""
        assert pc.ok("ps", "-a", "-q").stdout == ""


@pytest.mark.parametrize("code", [3, 5])
def test_wait_on_a_detached_rm_container_prints_its_exit_code(pc: Pycontain, code: int) -> None:
    pc.ok("run", "-d", "--rm", "--name", "short", "busybox", "sh", "-c", f"sleep 0.5; exit {code}")
    assert pc.ok("wait", "short").stdout == f"{code}\n"
    assert pc.ok("ps", "-a", "-q").stdout == ""


def test_tty_without_interactive_needs_no_terminal(pc: Pycontain) -> None:
    res = pc.ok("run", "--rm", "-t", "busybox", "sh", "-c", "test -t 1 && echo tty")
    assert res.stdout.strip() == "tty"
    assert_pycontain_error(pc("run", "--rm", "-it", "busybox", "true"))  # -i reads a terminal: still refused


def test_host_network_keeps_the_hosts_name(pc: Pycontain) -> None:
    assert pc.ok("run", "--rm", "--network", "host", "busybox", "hostname").stdout == socket.gethostname() + "\n"
    assert pc.ok("run", "--rm", "--network", "host", "-h", "other", "busybox", "hostname").stdout == "other\n"
    # its own UTS namespace still: renaming itself does not rename the host
    pc("run", "--rm", "--network", "host", "--cap-add", "SYS_ADMIN", "busybox", "hostname", "renamed")
    assert socket.gethostname() != "renamed"


# ---------------------------------------------------------------- pause / unpause

COUNTER = "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.05; done"


def counter(pc: Pycontain, ref: str) -> int:
    return int(pc.ok("exec", ref, "cat", "/tmp/n").stdout)


def test_pause_freezes_and_unpause_thaws(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "busy", "busybox", "sh", "-c", COUNTER)
    until(lambda: pc("exec", "busy", "cat", "/tmp/n").returncode == 0, "the counter started")
    assert pc.ok("pause", "busy").stdout == "busy\n"
    assert state_json(pc, "busy")["paused"] is True
    assert pc.status("busy") == "paused"
    res = pc("exec", "busy", "true")
    assert_pycontain_error(res)
    assert "paused" in res.stderr
    assert_pycontain_error(pc("pause", "busy"))  # already paused
    pc.ok("unpause", "busy")
    assert state_json(pc, "busy")["paused"] is False
    assert pc.status("busy") == "running"
    first = counter(pc, "busy")
    until(lambda: counter(pc, "busy") > first, "the counter moves again after unpause")
    assert_pycontain_error(pc("unpause", "busy"))  # not paused


def test_nothing_counts_while_paused(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "busy", "busybox", "sh", "-c", COUNTER)
    until(lambda: pc("exec", "busy", "cat", "/tmp/n").returncode == 0, "the counter started")
    pc.ok("pause", "busy")
    cid = pc.inspect("busy")["Id"]
    upper = pc.root / "storage" / "containers" / cid / "upper" / "tmp" / "n"
    before = upper.read_text()
    time.sleep(0.5)
    assert upper.read_text() == before
    pc.ok("unpause", "busy")
    until(lambda: upper.read_text() != before, "the counter moves again")


@pytest.mark.parametrize("verb", [["stop", "-t", "5"], ["kill"], ["rm", "-f"]])
def test_a_paused_container_can_be_stopped_killed_and_removed(pc: Pycontain, verb: list[str]) -> None:
    pc.ok("run", "-d", "--name", "frozen", "busybox", "sh", "-c", "trap 'exit 7' TERM; sleep 60 & wait")
    cid = pc.inspect("frozen")["Id"]
    pc.ok("pause", "frozen")
    started = time.monotonic()
    pc.ok(*verb, "frozen")
    if verb[0] != "rm":
        assert pc.ok("wait", "frozen").stdout == ("7\n" if verb[0] == "stop" else "137\n")
        assert time.monotonic() - started < 4  # stop: the thawed shell acted on SIGTERM
        assert state_json(pc, "frozen")["paused"] is False
    assert container_cgroup_dirs(f"pycontain-{cid}") == []


def test_gc_after_sigkill_of_a_paused_containers_monitor(pc: Pycontain) -> None:
    cid = pc.ok("run", "-d", "--name", "orphan", "busybox", "sleep", "60").stdout.strip()
    pc.ok("pause", "orphan")
    pid = int(str(state_json(pc, "orphan")["pid"]))
    monitor = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    os.kill(monitor, 9)
    until(lambda: pc.status("orphan") == "dead", "the container reads as dead")
    pc.ok("gc")
    assert container_cgroup_dirs(f"pycontain-{cid}") == []
    # Dead, not frozen: a zombie waits for the host's init to reap it (this machine's reaps late).
    until(lambda: not alive(pid), "the frozen process is gone")


# ---------------------------------------------------------------- rename / restart / prune

def test_rename_a_running_container(pc: Pycontain) -> None:
    cid = pc.ok("run", "-d", "--name", "old", "busybox", "sleep", "60").stdout.strip()
    pc.ok("rename", "old", "new")
    assert pc.inspect("new")["Id"] == cid
    assert pc.inspect("new")["Name"].lstrip("/") == "new"
    assert_pycontain_error(pc("inspect", "old"))
    pc.ok("run", "-d", "--name", "old", "busybox", "sleep", "60")  # the old name is free again
    assert_pycontain_error(pc("rename", "new", "old"))  # taken
    assert_pycontain_error(pc("rename", "new", "no/slash"))
    assert_pycontain_error(pc("rename", "missing", "other"))
    pc.ok("stop", "-t", "0", "new")
    assert pc.status("new") == "exited"


def test_restart_runs_the_command_again(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "again", "busybox", "sh", "-c", "echo start; sleep 60")
    pc.wait_for_log("again", "start")
    first = pc.inspect("again")["State"]["StartedAt"]
    assert pc.ok("restart", "-t", "0", "again").stdout == "again\n"
    assert pc.status("again") == "running"
    assert pc.inspect("again")["State"]["StartedAt"] != first
    until(lambda: pc.ok("logs", "again").stdout == "start\nstart\n", "the second start logged")
    pc.ok("stop", "-t", "0", "again")
    pc.ok("restart", "again")  # a stopped one just starts
    assert pc.status("again") == "running"


def test_container_prune_removes_only_stopped_containers(pc: Pycontain) -> None:
    up = pc.ok("run", "-d", "busybox", "sleep", "60").stdout.strip()
    done = pc.ok("run", "-d", "busybox", "true").stdout.strip()
    made = pc.ok("create", "busybox", "true").stdout.strip()
    pc.ok("wait", done)
    res = pc("container", "prune")
    assert_pycontain_error(res)
    assert "add -f" in res.stderr
    res = pc.ok("container", "prune", "-f")
    assert res.stdout.startswith("Deleted Containers:\n")
    assert done in res.stdout and made in res.stdout and up not in res.stdout
    assert "Total reclaimed space:" in res.stdout
    assert pc.ok("ps", "-a", "-q").stdout.split() == [up[:12]]


# ---------------------------------------------------------------- --init, --stop-signal, --stop-timeout

ORPHAN = "(sleep 0.1 &); exec sleep 60"  # the orphan's parent is PID 1: sleep never reaps it, an init does


def zombies(pc: Pycontain, ref: str) -> list[str]:
    lines = pc.ok("exec", ref, "ps", "-o", "pid,stat,comm").stdout.splitlines()[1:]
    return [line for line in lines if line.split()[1].startswith("Z")]


def test_init_reaps_orphans_and_is_pid_1(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "plain", "busybox", "sh", "-c", ORPHAN)
    pc.ok("run", "-d", "--init", "--name", "tini", "busybox", "sh", "-c", ORPHAN)
    until(lambda: zombies(pc, "plain"), "the orphan becomes a zombie without an init")
    time.sleep(0.3)
    assert zombies(pc, "tini") == []
    first = pc.ok("exec", "tini", "cat", "/proc/1/cmdline").stdout.split("\0")
    assert first[:2] == ["/dev/init", "--"] and first[2:4] == ["sh", "-c"]
    assert pc.inspect("tini")["HostConfig"]["Init"] is True
    assert pc.inspect("plain")["HostConfig"]["Init"] in (None, False)


def test_init_forwards_signals_and_passes_the_exit_code(pc: Pycontain) -> None:
    assert pc("run", "--rm", "--init", "busybox", "sh", "-c", "exit 4").returncode == 4
    # sleep as PID 1 would ignore SIGTERM (no handler, and the kernel shields PID 1): under tini it dies of it
    pc.ok("run", "-d", "--init", "--name", "sleeper", "busybox", "sleep", "60")
    started = time.monotonic()
    pc.ok("stop", "-t", "30", "sleeper")
    assert time.monotonic() - started < 10
    assert pc.ok("wait", "sleeper").stdout == "143\n"
    # the binary is bound read-only on the container's own /dev: the image is untouched
    res = pc("run", "--rm", "--init", "busybox", "sh", "-c", "echo x > /dev/init")
    assert res.returncode != 0
    assert pc("run", "--rm", "busybox", "test", "-e", "/dev/init").returncode == 1


def test_stop_signal_and_stop_timeout(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "usr1", "--stop-signal", "SIGUSR1", "busybox", "sh", "-c",
          "trap 'exit 11' USR1; trap '' TERM; echo ready; sleep 60 & wait")
    pc.wait_for_log("usr1", "ready")
    pc.ok("stop", "usr1")
    assert pc.ok("wait", "usr1").stdout == "11\n"
    assert pc.inspect("usr1")["Config"]["StopSignal"] in ("SIGUSR1", "USR1")
    # --stop-timeout 1: a container that ignores its stop signal is killed after 1 s, not 10
    pc.ok("run", "-d", "--name", "deaf", "--stop-timeout", "1", "busybox", "sh", "-c",
          "trap '' TERM; echo ready; sleep 60 & wait")
    pc.wait_for_log("deaf", "ready")
    started = time.monotonic()
    pc.ok("stop", "deaf")
    assert 0.8 < time.monotonic() - started < 6
    assert pc.ok("wait", "deaf").stdout == "137\n"
    # stop -s overrides it
    pc.ok("start", "usr1")
    pc.wait_for_log("usr1", "ready\nready")
    pc.ok("stop", "-s", "KILL", "usr1")
    assert pc.ok("wait", "usr1").stdout == "137\n"


def test_the_images_stop_signal(pc: Pycontain, busybox_tarball: Path) -> None:
    pc.ok("import", "--change", "STOPSIGNAL SIGUSR2", busybox_tarball, "usr2")
    pc.ok("run", "-d", "--name", "img", "usr2", "sh", "-c", "trap 'exit 12' USR2; echo ready; sleep 60 & wait")
    pc.wait_for_log("img", "ready")
    pc.ok("stop", "img")
    assert pc.ok("wait", "img").stdout == "12\n"


@pytest.mark.parametrize("flags", [["--stop-signal", "NOPE"], ["--stop-timeout", "x"], ["--stop-timeout", "-2"],
                                   ["--restart", "sometimes"], ["--restart", "always:3"],
                                   ["--restart", "always", "--rm"],
                                   ["--health-interval", "5"], ["--no-healthcheck", "--health-cmd", "true"],
                                   ["--health-retries", "-1"]])
def test_bad_lifecycle_flags_are_one_line(pc: Pycontain, flags: list[str]) -> None:
    assert_pycontain_error(pc("run", *flags, "busybox", "true"))
    assert pc.ok("ps", "-a", "-q").stdout == ""
