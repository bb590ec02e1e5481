"""containerd (1.6, io.containerd.runc.v2 shim) drives the runc-compatible runtime $PYCONTAIN_OCI_RUNTIME.

This is the path a Kubernetes node takes below the CRI (the shim calls the runtime binary the same way);
here `ctr --runc-binary` selects it. Each test gets a containerd of its own (engines.Containerd: own
config, root, state, socket, runtime root; nothing in /var/lib/containerd or /run/containerd), the
image comes from `pycontain save` through `ctr images import`, and at teardown every task is removed
and containerd and its shims are stopped, before the repo's leak check (engines.engine_no_leaks).
"""

from __future__ import annotations

import base64
import json
import os
import signal

import pytest
from support import COMMAND_TIMEOUT, alive, describe

# engines.py holds this module's fixtures (loaded as a plugin below) and helpers imported here; its
# asserts get pytest's rewriting only if registered before the first import.
pytest.register_assert_rewrite("engines")

from engines import CTR_IMAGE, PTY_SCRIPT, Containerd, assert_runs_in_a_pty, run, wait_for  # noqa: E402 - after the registration above

pytest_plugins = ["engines"]

pytestmark = pytest.mark.integration


def test_ctr_run_prints_output(containerd: Containerd) -> None:
    res = containerd.ok(*containerd.run_args("c1", "--rm"), CTR_IMAGE, "c1", "echo", "hi")
    assert res.stdout == "hi\n", describe(res)
    assert containerd.ok("containers", "ls", "-q").stdout == ""


def test_ctr_run_passes_the_exit_code(containerd: Containerd) -> None:
    res = containerd(*containerd.run_args("c1", "--rm"), CTR_IMAGE, "c1", "sh", "-c", "echo out; exit 7")
    assert (res.returncode, res.stdout) == (7, "out\n"), describe(res)


def test_ctr_run_tty_gives_the_container_a_terminal(containerd: Containerd) -> None:
    """`ctr run -t`: the shim passes --console-socket and relays the pty the runtime hands back."""
    assert_runs_in_a_pty(lambda slave: containerd.popen(
        *containerd.run_args("c1", "--rm", "-t"), CTR_IMAGE, "c1", "sh", "-c", PTY_SCRIPT,
        stdin=slave, stdout=slave, stderr=slave, start_new_session=True))


def test_ctr_task_exec_runs_in_the_container(containerd: Containerd) -> None:
    containerd.ok(*containerd.run_args("c1", "-d"), CTR_IMAGE, "c1", "sleep", "1000")
    containerd.wait_status("c1", "RUNNING")
    res = containerd.ok("task", "exec", "--fifo-dir", containerd.fifo, "--exec-id", "e1", "c1",
                        "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $$")
    first, second = res.stdout.splitlines()
    assert first.strip() == "sleep 1000", describe(res)  # the container's PID namespace
    assert int(second) != 1, describe(res)
    res = containerd("task", "exec", "--fifo-dir", containerd.fifo, "--exec-id", "e2", "c1", "sh", "-c", "exit 5")
    assert res.returncode == 5, describe(res)


def test_ctr_task_ps_lists_the_container_processes(containerd: Containerd) -> None:
    containerd.ok(*containerd.run_args("c1", "-d"), CTR_IMAGE, "c1", "sh", "-c", "sleep 1000 & exec sleep 999")
    init = containerd.wait_status("c1", "RUNNING")

    pids = containerd.wait_pids("c1", 2)
    assert init in pids, pids
    # Host PIDs, and every one of them the container's.
    for pid in pids:
        assert os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{init}/ns/pid")


def test_ctr_task_kill_signals_the_container(containerd: Containerd) -> None:
    script = "trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.2; done"
    proc = containerd.popen(*containerd.run_args("c1", "--rm"), CTR_IMAGE, "c1", "sh", "-c", script, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    containerd.ok("task", "kill", "c1")  # SIGTERM by default
    out, err = proc.communicate(timeout=COMMAND_TIMEOUT)
    assert (proc.returncode, out) == (3, "got-term\n"), err


@pytest.mark.parametrize("how", ["ctr-task-kill", "host-sigkill"])
def test_ctr_killed_task_leaves_nothing_behind(containerd: Containerd, how: str) -> None:
    """SIGKILL a task (through ctr and the runtime's `kill --all`, or straight at its init from the host,
    which the shim only learns of as an exit), delete it: no process, cgroup, state or shim remains."""
    containerd.ok(*containerd.run_args("c1", "-d"), CTR_IMAGE, "c1", "sh", "-c", "sleep 1000 & exec sleep 999")
    init = containerd.wait_status("c1", "RUNNING")
    pids = containerd.wait_pids("c1", 2)
    if how == "ctr-task-kill":
        containerd.ok("task", "kill", "-a", "-s", "SIGKILL", "c1")
    else:
        os.kill(init, signal.SIGKILL)
    containerd.wait_status("c1", "STOPPED")
    containerd.ok("task", "delete", "c1")
    containerd.ok("containers", "rm", "c1")
    # The init's death takes the PID namespace, and so the background sleep, with it.
    wait_for("the container's processes to be gone", lambda: not any(alive(p) for p in pids))
    assert containerd.leftovers() == []


def test_ctr_uses_the_runtime_under_test(containerd: Containerd) -> None:
    """Guard against a silent fallback to the shim's default runc: the container records our binary,
    and the runtime's own `state` (in the root the shim gave it) knows the task's init."""
    containerd.ok(*containerd.run_args("c1", "-d"), CTR_IMAGE, "c1", "sleep", "1000")
    init = containerd.wait_status("c1", "RUNNING")
    info = json.loads(containerd.ok("containers", "info", "c1").stdout)
    # The shim's options (runc.v1.Options, BinaryName among them) as the protobuf bytes ctr shows in base64.
    options = base64.b64decode(info["Runtime"]["Options"]["value"])
    assert containerd.runtime.encode() in options, info["Runtime"]
    res = run([containerd.runtime, "--root", str(containerd.runc_root / containerd.NAMESPACE), "state", "c1"])
    assert res.returncode == 0, describe(res)
    state = json.loads(res.stdout)
    assert (state["id"], state["status"], state["pid"]) == ("c1", "running", init), state
