"""The `pycontain` fixture for real: every method, in an inner pytest run of its own (see conftest.py).

The inner runs use --pycontain-netns (the user network, its bridge and the published port live in a
network namespace of the inner run's own; traffic goes only to 127.0.0.1 and the container's address in
there) and --pycontain-leakcheck (which must find nothing: the fixture removes all it made).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from plugin_support import Inner, root_is_empty

EVERY_METHOD = '''
import re
import subprocess
import sys

import pytest

ROOTFS = {rootfs!r}
ARCHIVE = {archive!r}
PAYLOAD = "served-by-a-plugin-test"
HTTPD = ["sh", "-c", f"mkdir -p /www && echo {{PAYLOAD}} > /www/index.html && exec httpd -f -p 80 -h /www"]
CLIENT = """
import socket, sys, time
deadline = time.monotonic() + 10
while True:
    try:
        s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.1)
s.sendall(b"GET / HTTP/1.0\\\\r\\\\n\\\\r\\\\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
print(data.decode(errors="replace"))
"""


def http_get(pycontain, host, port):
    # The client runs in the run's network namespace, where the bridge and the published port are.
    return subprocess.run(["nsenter", f"--net={{pycontain.netns}}", "--", sys.executable, "-c", CLIENT, host,
                           str(port)], capture_output=True, text=True, timeout=60).stdout


def test_image_from_a_rootfs_tarball_and_run(pycontain):
    name = pycontain.image(ROOTFS)
    assert name == "plugin-busybox"
    r = pycontain.run(name, ["sh", "-c", "echo out-$A; echo err >&2; "
                             "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max "
                             "2>/dev/null; exit 3"], memory="64m", env={{"A": "1"}}, hostname="h1")
    assert r.exit_code == 3, r
    assert r.stdout.splitlines()[0] == "out-1"
    assert "67108864" in r.stdout
    assert r.stderr == "err\\n"
    assert pycontain.run(name, "hostname", hostname="h1") == (0, "h1\\n", "")
    assert pycontain.run(name, ["cat"], input="typed\\n").stdout == "typed\\n"


def test_image_from_a_docker_archive(pycontain):
    assert pycontain.image(ARCHIVE) == "plugin-bb:1"
    assert pycontain.run("plugin-bb:1", ["echo", "archived"]).stdout == "archived\\n"
    # Named on request, and cached for the run: the second call runs nothing.
    assert pycontain.image(ARCHIVE, name="plugin-bb:renamed") == "plugin-bb:renamed"
    assert pycontain.run("plugin-bb:renamed", "true").exit_code == 0


def test_a_failing_command_is_a_result(pycontain):
    name = pycontain.image(ROOTFS)
    r = pycontain.run(name, ["/no/such/command"])
    assert r.exit_code == 127 and r.stderr.startswith("pycontain: "), r
    assert pycontain.run("no-such-image-here", "true", pull="never").exit_code == 125


def test_container_network_port_exec_logs_stop(pycontain):
    name = pycontain.image(ROOTFS)
    net = pycontain.network()
    with pycontain.container(name, HTTPD, network=net, publish=["80"], label={{"t": "plugin"}}) as c:
        assert re.fullmatch(r"[0-9a-f]{{64}}", c.id), c.id
        assert c.name.startswith("pytest-test_container")
        assert c.status == "running"
        assert re.fullmatch(r"\\d+\\.\\d+\\.\\d+\\.\\d+", c.ip), c.ip
        port = c.port(80)
        assert 0 < port < 65536
        assert PAYLOAD in http_get(pycontain, "127.0.0.1", port)
        assert PAYLOAD in http_get(pycontain, c.ip, 80)
        assert c.exec(["cat", "/www/index.html"]) == (0, PAYLOAD + "\\n", "")
        assert c.exec("sh -c 'echo $X'", env={{"X": "exec-env"}}).stdout == "exec-env\\n"
        assert c.exec(["false"]).exit_code == 1
        assert pycontain.cli.ok("ps", "-q", "--filter", "label=t=plugin").stdout.strip() == c.id[:12]
        c.stop(timeout=1)
        assert c.status == "exited"
    assert pycontain.cli.ok("ps", "-a", "-q").stdout == ""  # gone with the with-block
    with pycontain.container(name, ["sh", "-c", "echo to-logs; echo to-err >&2; sleep 60"]) as c:
        pycontain.cli.wait_for_log(c.name, "to-logs")
        assert c.logs() == "to-logs\\n"
        assert c.logs(stderr=True) == "to-err\\n"
        assert c.ip == ""  # PYCONTAIN_NETWORK=none: no network of its own
    # The default bridge network (made on first use, in the run's namespace) stays for the run.
    assert pycontain.run(name, ["cat", "/sys/class/net/eth0/address"], network="bridge").exit_code == 0
    # What the test keeps on purpose stays until the test ends.
    pycontain.run(name, "true", rm=False, name="kept-until-the-end")
    pycontain.volume("vol-of-a-test")


def test_the_previous_test_left_nothing(pycontain):
    assert pycontain.cli.ok("ps", "-a", "-q").stdout == ""
    assert "vol-of-a-test" not in pycontain.cli.ok("volume", "ls", "-q").stdout
    assert [line.split()[0] for line in pycontain.cli.ok("network", "ls").stdout.splitlines()[1:]
            if "pytest-net" in line] == []
'''


def test_every_method_for_real(inner: Callable[..., Inner], rootfs: Path, archive: Path) -> None:
    run = inner(EVERY_METHOD.format(rootfs=str(rootfs), archive=str(archive)), "--pycontain-netns",
                "--pycontain-leakcheck")
    assert run.outcomes == {"passed": 5}, run.output
    root_is_empty(run.root)


FAILS = '''
import pytest

ROOTFS = {rootfs!r}


def test_fails_with_things_running(pycontain):
    name = pycontain.image(ROOTFS)
    pycontain.network("net-of-a-failing-test")
    pycontain.cli.ok("run", "-d", "--name", "started-by-hand", name, "sleep", "60")
    with pycontain.container(name, ["sleep", "60"], name="in-a-with-block"):
        pycontain.run(name, "true", rm=False, name="stopped-one")
        assert False, "this test fails on purpose"


def test_raises_inside_the_with_block(pycontain):
    with pycontain.container(pycontain.image(ROOTFS), ["sleep", "60"]):
        raise RuntimeError("on purpose")


def test_nothing_of_the_failed_tests_remains(pycontain):
    assert pycontain.cli.ok("ps", "-a", "-q").stdout == ""
    assert "net-of-a-failing-test" not in pycontain.cli.ok("network", "ls").stdout
'''


def test_a_failing_test_still_cleans_up(inner: Callable[..., Inner], rootfs: Path) -> None:
    run = inner(FAILS.format(rootfs=str(rootfs)), "--pycontain-netns", "--pycontain-leakcheck")
    assert run.outcomes == {"failed": 2, "passed": 1}, run.output
    assert "this test fails on purpose" in run.output
    assert "left behind" not in run.output, run.output  # the leak check found nothing either
    root_is_empty(run.root)


def test_default_store_image_and_no_netns(inner: Callable[..., Inner]) -> None:
    """Without --pycontain-netns and with --network none: the built-in `busybox` comes from the default
    store (copied into the run's root once), as a user's `pycontain run busybox` finds it."""
    source = '''
import pytest

def test_busybox_from_the_default_store(pycontain):
    if pycontain.cli.binary and __import__("subprocess").run(
            [*pycontain.cli.binary, "image", "inspect", "busybox"], capture_output=True).returncode != 0:
        pytest.skip("no built-in busybox in the default store (scripts/install loads it)")
    assert pycontain.netns is None
    assert pycontain.run("busybox", ["echo", "ok"], network="none") == (0, "ok\\n", "")
    assert "busybox" in pycontain.cli.ok("images").stdout
'''
    run = inner(source, "--pycontain-leakcheck")
    assert run.count("failed") == 0 and run.count("error") == 0, run.output
    root_is_empty(run.root)


README_EXAMPLE = '''
import pytest


@pytest.mark.pycontain_requires("overlay", "cgroup")
def test_a_container_in_a_test(pycontain):
    # One command to the end: its exit code and output.
    r = pycontain.run("busybox", ["sh", "-c", "echo hello $WHO; exit 3"], env={"WHO": "pytest"}, memory="64m")
    assert r.exit_code == 3
    assert r.stdout == "hello pytest\\n"

    # A container running in the background, on a user network, with a published port.
    net = pycontain.network()
    web = ["sh", "-c", "echo it-works > /index.html && exec httpd -f -p 80 -h /"]
    with pycontain.container("busybox", web, network=net, publish=["80"]) as c:
        assert c.exec(["cat", "/index.html"]).stdout == "it-works\\n"
        assert c.port(80) > 0          # the host port; c.ip is its address on `net`
        c.stop(timeout=1)      # its PID 1 (httpd) ignores SIGTERM: SIGKILL after 1 s
        assert c.status == "exited"
    # Nothing to clean up: containers, networks and volumes go when the test ends, pass or fail.
'''


def test_the_readme_example(inner: Callable[..., Inner], archive: Path) -> None:
    """The README's example as it is written (busybox: here the built-in image's archive, tagged so)."""
    conftest = f'''
import pytest


@pytest.fixture(autouse=True)
def _busybox(pycontain):
    pycontain.image({str(archive)!r}, name="busybox")
'''
    run = inner(README_EXAMPLE, "--pycontain-netns", "--pycontain-leakcheck", conftest=conftest)
    assert run.outcomes == {"passed": 1}, run.output
    root_is_empty(run.root)
