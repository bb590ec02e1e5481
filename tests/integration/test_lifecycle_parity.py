"""Docker parity of a container's life: the bugs of issue 13 (rm -f of a --rm container, wait on a
-d --rm one, -t without -i, --network host's name), pause/unpause, rename, restart, container prune,
--init, --stop-signal and --stop-timeout."""

from __future__ import annotations

import json
import socket
import time

import pytest
from support import SETTLE_TIMEOUT, Pycontain, assert_pycontain_error

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
