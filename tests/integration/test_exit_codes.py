"""Exit codes follow Docker's, and bad input is one `pycontain:` line on stderr, never a traceback.

    0 / N   the container's own exit status
    125     pycontain's own error (bad flag or value, unknown image, name in use, wrong state)
    126     the command exists but cannot be executed
    127     the command does not exist
    128+N   the container was killed by signal N (SIGKILL: 137)
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from support import Pycontain, assert_pycontain_error, closed_loopback_port, describe, read_until

pytestmark = pytest.mark.usefixtures("no_leaks")


def test_successful_command_exits_0(pc: Pycontain) -> None:
    res = pc("run", "--rm", "busybox", "true")
    assert res.returncode == 0, describe(res)
    assert res.stderr == ""


def test_failing_command_exit_status_is_passed_through(pc: Pycontain) -> None:
    assert pc("run", "--rm", "busybox", "false").returncode == 1
    assert pc("run", "--rm", "busybox", "sh", "-c", "exit 3").returncode == 3
    assert pc("run", "--rm", "busybox", "sh", "-c", "exit 255").returncode == 255


def test_unknown_image_exits_125(pc: Pycontain) -> None:
    # The image is not in the store, and its registry (on loopback, refusing connections) can't supply it.
    sock, port = closed_loopback_port()
    with sock:
        res = pc("run", "--rm", f"127.0.0.1:{port}/no-such-image:1.0", "true")
    assert_pycontain_error(res, 125, after_progress=True)


def test_unknown_flag_exits_125(pc: Pycontain) -> None:
    assert_pycontain_error(pc("run", "--rm", "--no-such-flag", "busybox", "true"), 125)


@pytest.mark.parametrize("value", ["abc", "0", "-5", "1.5"])
def test_invalid_pids_limit_exits_125(pc: Pycontain, value: str) -> None:
    assert_pycontain_error(pc("run", "--rm", "--pids-limit", value, "busybox", "true"), 125)


def test_non_executable_command_exits_126(pc: Pycontain) -> None:
    res = pc("run", "--rm", "busybox", "/etc/passwd")
    assert_pycontain_error(res, 126)


def test_directory_as_command_exits_126(pc: Pycontain) -> None:
    assert_pycontain_error(pc("run", "--rm", "busybox", "/etc"), 126)


def test_missing_command_exits_127(pc: Pycontain) -> None:
    res = pc("run", "--rm", "busybox", "no-such-command")
    assert_pycontain_error(res, 127)
    assert "no-such-command" in res.stderr


def test_missing_command_by_path_exits_127(pc: Pycontain) -> None:
    assert_pycontain_error(pc("run", "--rm", "busybox", "/no/such/file"), 127)


def test_failed_start_leaves_no_running_container(pc: Pycontain) -> None:
    pc("run", "--name", "broken", "busybox", "no-such-command")
    assert pc.ok("ps", "-q").stdout == ""
    assert pc.status("broken") == "exited"


def test_foreground_container_killed_with_kill_exits_137(pc: Pycontain) -> None:
    proc = pc.popen("run", "--name", "victim", "busybox", "sleep", "60")
    pc.wait_until_running("victim")
    pc.ok("kill", "victim")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 137, err
    assert pc.inspect("victim")["State"]["ExitCode"] == 137


def test_detached_container_killed_with_kill_waits_137(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "victim", "busybox", "sleep", "60")
    pc.wait_until_running("victim")
    pc.ok("kill", "-s", "KILL", "victim")
    assert pc.ok("wait", "victim").stdout.strip() == "137"


def test_kill_with_a_signal_the_container_handles(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "h", "busybox", "sh", "-c",
          "trap 'exit 12' USR1; echo ready; sleep 60 & wait")
    pc.wait_for_log("h", "ready")
    pc.ok("kill", "-s", "USR1", "h")
    assert pc.ok("wait", "h").stdout.strip() == "12"


def test_foreground_run_forwards_sigterm_to_the_container(pc: Pycontain) -> None:
    proc = pc.popen("run", "--name", "fwd", "busybox", "sh", "-c",
                    "trap 'exit 21' TERM; echo ready; sleep 60 & wait")
    assert proc.stdout is not None
    # the trap is set before "ready" is printed to our pipe
    read_until(proc.stdout.fileno(), b"ready\n")
    proc.terminate()
    proc.communicate(timeout=60)
    assert proc.returncode == 21


# ---------------------------------------------------------------- bad input

def _stopped(pc: Pycontain) -> str:
    pc.ok("run", "--name", "stopped", "busybox", "true")
    return "stopped"


def _running(pc: Pycontain) -> str:
    pc.ok("run", "-d", "--name", "running", "busybox", "sleep", "60")
    pc.wait_until_running("running")
    return "running"


BAD_INVOCATIONS: dict[str, tuple[Callable[[Pycontain], str] | None, list[str]]] = {
    "unknown command": (None, ["frobnicate"]),
    "unknown global flag": (None, ["--frobnicate", "ps"]),
    "unknown run flag": (None, ["run", "--frobnicate", "busybox", "true"]),
    "unknown short flag": (None, ["run", "-Z", "busybox", "true"]),
    "flag missing its value": (None, ["run", "--name"]),
    "run without image": (None, ["run"]),
    "relative volume source": (None, ["run", "--rm", "-v", "./relative:/x", "busybox", "true"]),
    "relative volume target": (None, ["run", "--rm", "-v", "/tmp:relative", "busybox", "true"]),
    "missing volume source": (None, ["run", "--rm", "-v", "/no/such/dir:/x", "busybox", "true"]),
    "bad volume mode": (None, ["run", "--rm", "-v", "/tmp:/x:rx", "busybox", "true"]),
    "name with a space": (None, ["run", "--rm", "--name", "bad name", "busybox", "true"]),
    "name with a slash": (None, ["run", "--rm", "--name", "a/b", "busybox", "true"]),
    "relative workdir": (None, ["run", "--rm", "-w", "relative", "busybox", "true"]),
    "bad hostname": (None, ["run", "--rm", "-h", "bad_host!", "busybox", "true"]),
    "bad network": (None, ["run", "--rm", "--network", "bridge0", "busybox", "true"]),
    "bad env": (None, ["run", "--rm", "-e", "=value", "busybox", "true"]),
    "missing env file": (None, ["run", "--rm", "--env-file", "/no/such/env-file", "busybox", "true"]),
    "invalid image reference": (None, ["run", "--rm", "UPPER/Case::x", "true"]),
    "unknown user": (None, ["run", "--rm", "-u", "nosuchuser", "busybox", "true"]),
    "exec on a stopped container": (_stopped, ["exec", "{}", "true"]),
    "exec on a missing container": (None, ["exec", "nosuch", "true"]),
    "rm of a running container without -f": (_running, ["rm", "{}"]),
    "rm of a missing container": (None, ["rm", "nosuch"]),
    "kill of a stopped container": (_stopped, ["kill", "{}"]),
    "kill with a bad signal": (_running, ["kill", "-s", "NOPE", "{}"]),
    "stop with a negative timeout": (_running, ["stop", "-t", "-1", "{}"]),
    "logs with a bad tail": (_stopped, ["logs", "--tail", "x", "{}"]),
    "top of a stopped container": (_stopped, ["top", "{}"]),
    "start of a missing container": (None, ["start", "nosuch"]),
    "wait of a missing container": (None, ["wait", "nosuch"]),
    "import of a missing tarball": (None, ["import", "/no/such.tar.gz", "x"]),
    "import of a non-tarball": (None, ["import", "/etc/hostname", "x"]),
}


@pytest.mark.parametrize("case", list(BAD_INVOCATIONS))
def test_bad_invocation_is_one_error_line_and_exit_125(pc: Pycontain, case: str) -> None:
    setup, args = BAD_INVOCATIONS[case]
    ref = setup(pc) if setup else ""
    res = pc(*[a.replace("{}", ref) for a in args])
    assert_pycontain_error(res, 125)


def test_name_in_use_exits_125(pc: Pycontain) -> None:
    pc.ok("run", "--name", "taken", "busybox", "true")
    res = pc("run", "--rm", "--name", "taken", "busybox", "true")
    assert_pycontain_error(res, 125)
    assert "already in use" in res.stderr


def test_inspect_of_a_missing_container_exits_125_with_an_empty_list(pc: Pycontain) -> None:
    res = pc("inspect", "nosuch")
    assert_pycontain_error(res, 125)
    assert res.stdout.strip() == "[]"


def test_help_is_not_an_error(pc: Pycontain) -> None:
    for args in (["--help"], ["run", "--help"], ["help", "exec"]):
        res = pc(*args)
        assert res.returncode == 0, describe(res)
        assert res.stdout.startswith("Usage: pycontain"), describe(res)
