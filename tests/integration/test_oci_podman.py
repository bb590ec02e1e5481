"""podman (4.3, through conmon) drives the runc-compatible runtime $PYCONTAIN_OCI_RUNTIME.

Each test is one thing a podman user does, with `--runtime` pointing at the runtime under test
(pycontain-oci by default; PYCONTAIN_OCI_RUNTIME=/usr/sbin/runc checks the harness). Podman keeps all
its state under the test's tmp_path (see engines.Podman) and the image comes from `pycontain save`.
The network test runs podman inside a network namespace the test makes, so its bridge and firewall
rules never reach the host. Every test ends with the repo's leak check (the fixtures depend on
engines.engine_no_leaks) after the engine's own objects are removed.
"""

from __future__ import annotations

import signal

import pytest
from netns_support import HTTP_GET
from support import COMMAND_TIMEOUT, describe

# engines.py holds this module's fixtures (loaded as a plugin below) and helpers imported here; its
# asserts get pytest's rewriting only if registered before the first import.
pytest.register_assert_rewrite("engines")

from engines import (  # noqa: E402 - after the registration above
    PODMAN_IMAGE,
    PTY_SCRIPT,
    RUNTIME_DEFAULT_ROOT,
    EngineNs,
    Podman,
    assert_runs_in_a_pty,
    memory_limit_of,
    mounts_under,
    run,
    runtime_state_entries,
    wait_for,
)

pytest_plugins = ["engines"]

pytestmark = pytest.mark.integration


def test_podman_run_prints_output(podman: Podman) -> None:
    res = podman.ok(*podman.run_args("--rm", PODMAN_IMAGE, "echo", "hi"))
    assert res.stdout == "hi\n", describe(res)
    assert podman.ok("ps", "-a", "-q").stdout == "", "run --rm left a container"


def test_podman_run_passes_the_exit_code(podman: Podman) -> None:
    res = podman(*podman.run_args("--rm", PODMAN_IMAGE, "sh", "-c", "echo out; echo err >&2; exit 7"))
    assert (res.returncode, res.stdout, res.stderr) == (7, "out\n", "err\n"), describe(res)


def test_podman_run_it_gives_the_container_a_terminal(podman: Podman) -> None:
    """`run -it` from a real terminal: the runtime gets --console-socket and hands conmon the pty."""
    assert_runs_in_a_pty(lambda slave: podman.popen(
        *podman.run_args("--rm", "-it", PODMAN_IMAGE, "sh", "-c", PTY_SCRIPT),
        stdin=slave, stdout=slave, stderr=slave, start_new_session=True))


def test_podman_detached_container_logs_exec_stop_rm(podman: Podman) -> None:
    script = "echo started; trap 'echo stopping; exit 0' TERM; while :; do sleep 0.2; done"
    cid = podman.ok(*podman.run_args("-d", "--name", "svc", PODMAN_IMAGE, "sh", "-c", script)).stdout.strip()
    assert len(cid) == 64, cid
    wait_for("the container's first log line", lambda: "started" in podman.ok("logs", "svc").stdout)
    assert podman.inspect("svc", "{{.State.Status}}") == "running"

    # exec joins the container: same PID namespace (its PID 1 is the script) and a process of its own.
    res = podman.ok("exec", "svc", "sh", "-c", "echo from-exec; cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $$")
    lines = res.stdout.splitlines()
    assert lines[0] == "from-exec" and lines[1].startswith("sh -c echo started"), describe(res)
    assert int(lines[2]) != 1, describe(res)
    res = podman("exec", "svc", "sh", "-c", "exit 5")
    assert res.returncode == 5, describe(res)

    podman.ok("stop", "-t", "10", "svc")
    assert podman.inspect("svc", "{{.State.Status}}") == "exited"
    assert podman.inspect("svc", "{{.State.ExitCode}}") == "0"
    assert podman.ok("logs", "svc").stdout == "started\nstopping\n"
    podman.ok("rm", "svc")
    assert podman.ok("ps", "-a", "-q").stdout == ""


def test_podman_memory_limit_reaches_the_cgroup(podman: Podman) -> None:
    podman.ok(*podman.run_args("-d", "--name", "mem", "--memory", "64m", PODMAN_IMAGE, "sleep", "1000"))
    assert podman.inspect("mem", "{{.HostConfig.Memory}}") == str(64 << 20)
    pid = int(podman.inspect("mem", "{{.State.Pid}}"))
    # The kernel's own view: the cgroup the container's process is in, read on the host.
    assert memory_limit_of(pid) == 64 << 20
    podman.ok("rm", "-f", "-t", "0", "mem")


def test_podman_bridge_publishes_a_port_on_loopback(podman_in_netns: tuple[Podman, EngineNs]) -> None:
    podman, ns = podman_in_netns
    port = 18080
    server = "mkdir -p /www && echo hello-from-podman > /www/index.html && exec httpd -f -p 80 -h /www"
    podman.ok(*podman.run_args("-d", "--name", "web", "--network", "bridge", "-p", f"127.0.0.1:{port}:80",
                               PODMAN_IMAGE, "sh", "-c", server))
    res = run(ns.argv("python3", "-c", HTTP_GET, "127.0.0.1", str(port)))
    assert res.returncode == 0 and "hello-from-podman" in res.stdout, describe(res)
    # The bridge is the test namespace's, not the host's.
    links = run(ns.argv("ip", "-o", "link")).stdout
    assert "cni-podman0" in links, links
    assert "cni-podman0" not in run(["ip", "-o", "link"]).stdout
    podman.ok("rm", "-f", "-t", "0", "web")


@pytest.mark.parametrize("moment", ["conmon-started", "container-running"])
def test_podman_run_killed_mid_start_leaves_nothing_after_cleanup(podman: Podman, moment: str) -> None:
    """SIGKILL `podman run` while it starts a container; `podman rm -f` and the runtime's own
    `delete --force` must then leave no process, mount, cgroup or runtime state behind."""
    proc = podman.popen(*podman.run_args("--name", "victim", PODMAN_IMAGE, "sleep", "1000"))
    if moment == "conmon-started":
        wait_for("conmon", lambda: [p for p in podman.helpers() if "conmon" in p]
                 or proc.poll() is not None)
    else:
        wait_for("the container to run", lambda: proc.poll() is not None or
                 podman("inspect", "--format", "{{.State.Status}}", "victim").stdout.strip() == "running")
    assert proc.poll() is None, f"podman run ended early: {proc.communicate()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=COMMAND_TIMEOUT)

    ids = podman.known_ids()
    res = podman("rm", "-f", "-t", "0", "victim")
    assert res.returncode == 0 or "no such container" in res.stderr, describe(res)
    for cid in ids:
        # podman passes no --root, so neither does this: the runtime's default state root.
        gone = run([podman.runtime, "delete", "--force", cid])
        assert "Traceback" not in gone.stderr, describe(gone)

    # conmon and `podman container cleanup` may still be finishing.
    wait_for("podman's helpers to exit", lambda: not podman.helpers())
    assert podman.ok("ps", "-a", "-q").stdout == ""
    assert podman.cgroup.leftovers() == []
    assert mounts_under(podman.base) == []
    assert not runtime_state_entries(RUNTIME_DEFAULT_ROOT) & ids
    # The next container starts normally: nothing half-made is in the way.
    assert podman.ok(*podman.run_args("--rm", "--name", "victim", PODMAN_IMAGE, "echo", "again")).stdout == "again\n"


def test_podman_uses_the_runtime_under_test(podman: Podman) -> None:
    """Guard against a silent fallback to podman's default runtime."""
    podman.ok(*podman.run_args("-d", "--name", "which", PODMAN_IMAGE, "sleep", "1000"))
    assert podman.inspect("which", "{{.OCIRuntime}}") == podman.runtime
    conmon = [p for p in podman.helpers() if "conmon" in p]
    assert conmon and f" -r {podman.runtime} " in conmon[0], conmon
    podman.ok("rm", "-f", "-t", "0", "which")
