"""Helpers shared by the integration tests: running pycontain, checking its errors, reading host facts.

Fixtures live in conftest.py; this module holds the plain functions and classes they and the tests use.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

# Leak checking lives in leaks.py (on pycontain.leakcheck); these names are kept for the modules that
# import them from here.
from leaks import LEAKCHECK, leaks_since  # noqa: F401
from leaks import snapshot as leakcheck_snapshot  # noqa: F401
from pycontain.pytest_plugin import Command, describe  # noqa: F401 - describe is support's public name too

PYCONTAIN = shutil.which("pycontain") or "/usr/local/bin/pycontain"
# shared/ lies beside the repository, here and in CI's fresh clone: test data that is not committed (the
# Alpine minirootfs). A test that needs it and cannot find it fails in one line (conftest.py).
SHARED = Path(__file__).resolve().parents[3] / "shared"
ALPINE_TARBALL = SHARED / "images" / "alpine-minirootfs-3.20.3-x86_64.tar.gz"
ALPINE_WHAT = "the Alpine minirootfs tarball (from alpinelinux.org, kept beside the repository)"
CGROUP_ROOT = Path("/sys/fs/cgroup")

# A hang guard, not a timing assertion: a command that has not finished in this long is stuck.
COMMAND_TIMEOUT = 60
# The same for "wait until X happens" polls.
SETTLE_TIMEOUT = 20


# ---------------------------------------------------------------- running pycontain

class Pycontain(Command):
    """`pycontain --root ROOT ...` for one test. Calls return subprocess.CompletedProcess (text).

    The plugin's Command (pycontain.pytest_plugin) with the installed launcher: argv, __call__, ok (its
    failure, CommandFailed, is an AssertionError carrying describe()), popen, inspect, status,
    wait_until_running, wait_for_log, remove_all."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, PYCONTAIN)


def assert_pycontain_error(res: subprocess.CompletedProcess[str], code: int = 125,
                           after_progress: bool = False) -> None:
    """pycontain's own error contract: the exit code, and exactly one `pycontain: ...` line on stderr.

    after_progress: Docker-style pull progress ("Unable to find image ... locally") may come first;
    the error is still exactly one line, and the last.
    """
    assert res.returncode == code, describe(res)
    assert "Traceback" not in res.stderr, describe(res)
    lines = res.stderr.strip().splitlines()
    if after_progress:
        assert [line for line in lines if line.startswith("pycontain")] == lines[-1:], describe(res)
    else:
        assert len(lines) == 1, f"expected one line on stderr:\n{describe(res)}"
    assert lines and lines[-1].startswith("pycontain: "), describe(res)


def closed_loopback_port() -> tuple[socket.socket, int]:
    """A 127.0.0.1 port held by a socket that never listens: connecting to it is refused at once.
    Image references on it (127.0.0.1:PORT/name) fail to pull without any traffic leaving loopback."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


# ---------------------------------------------------------------- host facts

def container_cgroup_dirs(prefix: str = "pycontain-") -> list[Path]:
    """Every cgroup directory named for a container, in every hierarchy (v1 controllers or v2)."""
    found: list[Path] = []
    for hierarchy in [CGROUP_ROOT, *CGROUP_ROOT.iterdir()]:
        try:
            found += [d for d in hierarchy.iterdir() if d.is_dir() and d.name.startswith(prefix)]
        except (NotADirectoryError, PermissionError, FileNotFoundError):
            continue
    return found


def host_mounts() -> set[tuple[str, str, str]]:
    """(mount point, fs type, source) of every mount in the host's (this process's) mount namespace."""
    out = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            fstype, source = right.split()[:2]
            out.add((left.split()[4], fstype, source))
    return out


def proc_status(text: str) -> dict[str, str]:
    """/proc/PID/status text as a dict."""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        out[key.strip()] = value.strip()
    return out


def alive(pid: int) -> bool:
    """True if pid is a live (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def image_file(tarball: Path, name: str) -> bytes:
    """The content of one regular file inside an image tarball."""
    with tarfile.open(tarball, "r:gz") as tar:
        f = tar.extractfile(name)
        assert f is not None, f"{name} is not a regular file in {tarball}"
        return f.read()


# ---------------------------------------------------------------- terminals

def read_until(fd: int, pattern: bytes, timeout: float = SETTLE_TIMEOUT) -> bytes:
    """Read from fd until pattern shows up; a hang fails with what was read so far."""
    buf = b""
    deadline = time.monotonic() + timeout
    while pattern not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{pattern!r} never arrived; read so far: {buf!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the other side of the pty is closed
            chunk = b""
        if not chunk:
            raise AssertionError(f"output ended before {pattern!r}; read so far: {buf!r}")
        buf += chunk
    return buf


def wait_exit(pid: int, timeout: float = SETTLE_TIMEOUT) -> int:
    """waitpid with a hang guard; returns the exit code (128+N for a signal, as a shell reports it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError(f"process {pid} did not exit")


class Terminal:
    """A command on a pty of its own, as a user at a terminal runs it: type, expect, wait, close."""

    def __init__(self, argv: list[str]) -> None:
        import pty

        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            try:
                os.execv(argv[0], argv)
            finally:
                os._exit(127)
        self.seen = b""

    def type(self, text: str | bytes) -> None:
        os.write(self.fd, text.encode() if isinstance(text, str) else text)

    def expect(self, text: str | bytes) -> bytes:
        self.seen = read_until(self.fd, text.encode() if isinstance(text, str) else text)
        return self.seen

    def wait(self) -> int:
        code = wait_exit(self.pid)
        self.pid = 0
        return code

    def close(self) -> None:
        if self.pid:
            try:
                os.kill(self.pid, 9)
            except ProcessLookupError:
                pass
            os.waitpid(self.pid, 0)
        os.close(self.fd)


def in_terminal(argv: list[str], expect: str) -> tuple[bytes, int]:
    """Run argv on a terminal of its own (a pty, as for -t): what it printed up to `expect`, and its
    exit code. Descriptors this process holds without close-on-exec are inherited."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    try:
        seen = read_until(fd, expect.encode())
        return seen, wait_exit(pid)
    finally:
        os.close(fd)


def wait_for(what: str, check: Any, timeout: float = SETTLE_TIMEOUT) -> Any:
    """Poll check() until it returns something truthy (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
