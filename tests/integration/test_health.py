"""Health checks: --health-* and the image's HEALTHCHECK, run by a detached container's monitor; state
starting -> healthy / unhealthy, the last 5 results, timeouts, --no-healthcheck; nothing left behind."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from support import SETTLE_TIMEOUT, Pycontain

pytestmark = pytest.mark.usefixtures("no_leaks")

FAST = ["--health-interval", "200ms", "--health-retries", "2"]


def health(pc: Pycontain, ref: str) -> dict[str, Any]:
    cid = pc.inspect(ref)["Id"]
    data = json.loads((pc.root / "run" / "containers" / cid / "state.json").read_text())
    return dict(data.get("health") or {})


def until_status(pc: Pycontain, ref: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + SETTLE_TIMEOUT
    h: dict[str, Any] = {}
    while time.monotonic() < deadline:
        h = health(pc, ref)
        if h.get("status") == status:
            return h
        time.sleep(0.05)
    raise AssertionError(f"health of {ref} never became {status}: {h}")


def test_unhealthy_then_healthy(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "web", "--health-cmd", "cat /tmp/ok", *FAST, "busybox", "sleep", "60")
    assert health(pc, "web")["status"] == "starting"
    h = until_status(pc, "web", "unhealthy")
    assert h["failing_streak"] >= 2 and h["log"][-1]["exit_code"] == 1
    pc.ok("exec", "web", "sh", "-c", "echo fine > /tmp/ok")
    h = until_status(pc, "web", "healthy")
    assert h["failing_streak"] == 0 and h["log"][-1]["output"] == "fine\n"
    time.sleep(1.5)
    assert len(health(pc, "web")["log"]) == 5  # the last 5 only
    state = pc.inspect("web")["State"]
    if "Health" in state:  # inspect's shape (details.py) shows the same record
        assert state["Health"]["Status"] == "healthy"


def test_a_check_that_times_out_fails(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "slow", "--health-cmd", "sleep 5", "--health-timeout", "300ms", *FAST,
          "busybox", "sleep", "60")
    h = until_status(pc, "slow", "unhealthy")
    assert h["log"][-1]["exit_code"] == -1 and "timeout" in h["log"][-1]["output"]
    # the timed-out probes' commands do not pile up in the container
    time.sleep(1.5)
    ps = pc.ok("exec", "slow", "ps", "-o", "comm").stdout.split()
    assert ps.count("sleep") <= 2, ps


def test_start_period_failures_do_not_count(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "warm", "--health-cmd", "false", "--health-start-period", "1s", *FAST,
          "busybox", "sleep", "60")
    time.sleep(0.7)
    h = health(pc, "warm")
    assert h["status"] == "starting" and h["failing_streak"] == 0 and h["log"]
    until_status(pc, "warm", "unhealthy")


def test_the_images_healthcheck_and_no_healthcheck(pc: Pycontain, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text('FROM busybox\nHEALTHCHECK --interval=200ms --retries=1 CMD ["test", "-e", "/x"]\n')
    pc.ok("build", "-t", "checked", ctx)
    pc.ok("run", "-d", "--name", "img", "checked", "sleep", "60")
    until_status(pc, "img", "unhealthy")
    pc.ok("exec", "img", "touch", "/x")
    until_status(pc, "img", "healthy")
    pc.ok("run", "-d", "--name", "off", "--no-healthcheck", "checked", "sleep", "60")
    time.sleep(0.6)
    assert health(pc, "off") == {}
    # the flags override the image's fields
    pc.ok("run", "-d", "--name", "mixed", "--health-cmd", "true", "checked", "sleep", "60")
    until_status(pc, "mixed", "healthy")


def test_stop_ends_the_checker_and_keeps_the_final_state(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "svc", "--health-cmd", "true", "--health-interval", "100ms", "--restart", "always",
          "busybox", "sleep", "60")
    until_status(pc, "svc", "healthy")
    pc.ok("stop", "-t", "0", "svc")
    assert pc.status("svc") == "exited"
    assert pc.inspect("svc")["State"]["ExitCode"] == 137
