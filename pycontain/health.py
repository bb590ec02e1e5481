"""Health checks (--health-cmd and the image's HEALTHCHECK), run beside a detached container's monitor.

    monitor ──fork──> checker: sleep interval ─> fork a probe ─> read its output (timeout) ─> state.json
                                                  └─ the probe: runtime.exec_ of the check in the container

The checker is a child of the monitor, forked right after the container started: the monitor itself
stays a single-threaded process that only relays output and waits (its memory, and the setns(2) an exec
needs, are never shared with a thread). Each probe is one more fork that enters the container exactly
as `pycontain exec` does (same capabilities, seccomp filter and cgroup), with its output in a pipe. The
checker leaves when the monitor kills it (the container exited) or dies (its parent changes).

state.json "health": {"status": "starting|healthy|unhealthy", "failing_streak": N, "log": [the last 5
{"start", "end", "exit_code", "output"}]}, as Docker's State.Health. Durations are nanoseconds, as in
the image config.
"""

from __future__ import annotations

import os
import time

from pycontain import state

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from pycontain.state import Record

# Docker's defaults, and what it keeps: the last 5 results, 4 KiB of output each.
DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3
KEEP = 5
MAX_OUTPUT = 4096


def argv_of(check: dict[str, Any] | None) -> list[str] | None:
    """The command a check runs, or None: no check, or it is disabled (Test ["NONE"])."""
    test = list((check or {}).get("Test") or ())
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])]
    if test[0] == "CMD":
        return test[1:] or None
    return None  # an unknown form: Docker refuses it at create; an old record may still hold it


def start(rec: Record, exec_: Callable[..., int]) -> int | None:
    """Fork the checker of a container that has a health check; its pid (None: no check). exec_ is
    runtime.exec_, handed in: this module is runtime's helper and does not import it back."""
    check = rec.config.healthcheck
    argv = argv_of(check)
    if argv is None:
        return None
    assert check is not None
    rec.set_state(health={"status": "starting", "failing_streak": 0, "log": []})
    monitor = os.getpid()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            _checker(rec, argv, check, monitor, exec_)
        except BaseException:  # noqa: BLE001 - the checker ends here, never in the monitor's code
            code = 1
        finally:
            os._exit(code)
    try:
        os.setpgid(pid, pid)  # here too: stop() may come before the child's own setpgid
    except OSError:
        pass
    return pid


def stop(pid: int | None) -> None:
    """End the checker (and its probe: the checker is its own process group's leader) before the monitor
    writes the container's final state, which the checker must not overwrite with an older one."""
    if pid is None:
        return
    try:
        os.killpg(pid, 9)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _seconds(check: dict[str, Any], key: str, default: float) -> float:
    value = check.get(key) or 0
    return value / 1e9 if isinstance(value, int) and value > 0 else default


def _checker(rec: Record, argv: list[str], check: dict[str, Any], monitor: int, exec_: Callable[..., int]) -> None:
    os.setpgid(0, 0)  # a group of its own: stop() kills it together with a probe under way
    interval = _seconds(check, "Interval", DEFAULT_INTERVAL)
    timeout = _seconds(check, "Timeout", DEFAULT_TIMEOUT)
    retries = int(check.get("Retries") or DEFAULT_RETRIES)
    start_period = _seconds(check, "StartPeriod", 0.0)
    began = time.monotonic()
    health: dict[str, Any] = {"status": "starting", "failing_streak": 0, "log": []}
    while True:
        deadline = time.monotonic() + interval
        while time.monotonic() < deadline:
            if os.getppid() != monitor:
                return  # the monitor is gone (killed): so is the reason to check
            time.sleep(min(0.5, max(deadline - time.monotonic(), 0.001)))
        started_at = state.now()
        code, output = _probe(rec, argv, timeout, exec_)
        entry = {"start": started_at, "end": state.now(), "exit_code": code, "output": output}
        health["log"] = (health["log"] + [entry])[-KEEP:]
        if code == 0:
            health["status"], health["failing_streak"] = "healthy", 0
        elif time.monotonic() - began >= start_period or health["status"] != "starting":
            health["failing_streak"] += 1
            if health["failing_streak"] >= retries:
                health["status"] = "unhealthy"
        if os.getppid() != monitor:
            return
        rec.set_state(health=health)


def _probe(rec: Record, argv: list[str], timeout: float, exec_: Callable[..., int]) -> tuple[int, str]:
    """Run the check once in the container: (exit code, its output); -1 and a note when it timed out."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 125
        try:
            os.close(read_end)
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(write_end, 1)
            os.dup2(write_end, 2)
            code = exec_(rec.paths, rec.id, argv, [], None, None, False, False)
        except BaseException as e:  # noqa: BLE001 - reported as the check's output
            try:
                os.write(2, f"{e}\n".encode())
            except OSError:
                pass
        finally:
            os._exit(code)
    os.close(write_end)
    output = b""
    deadline = time.monotonic() + timeout
    import select

    timed_out = False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        ready, _, _ = select.select([read_end], [], [], left)
        if not ready:
            continue
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        if len(output) < MAX_OUTPUT:
            output += chunk[:MAX_OUTPUT - len(output)]
    os.close(read_end)
    if timed_out:
        # SIGTERM first: the probe forwards it to the command in the container, which must not outlive it.
        _signal_and_reap(pid)
        return -1, f"Health check exceeded timeout ({timeout:g}s)"
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return (code if code >= 0 else 128 - code), output.decode(errors="replace")


def _signal_and_reap(pid: int) -> None:
    for signum, wait in ((15, 1.0), (9, None)):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
        end = time.monotonic() + (wait or 0)
        while True:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
            if wait is None:
                os.waitpid(pid, 0)
                return
            if time.monotonic() >= end:
                break
            time.sleep(0.02)
