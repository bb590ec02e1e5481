"""Shared pieces of the CVE regression suite (tests/security/test_cve_*.py).

The probes (probes/*.c, compiled static by attacks.probes) are bound into each container read-only at
/probe. sysprobe prints one line per call it makes, "ACTION ok" or "ACTION errno N NAME", so a test
asserts the exact errno: EPERM from a filter or a missing capability is the protection working; ENOENT
or ENOSYS would mean the probe never reached what it attacks, and the test could not have failed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import PYCONTAIN, Pycontain, describe, wait_for

# The helpers' asserts get pytest's rewriting only if registered before the first import.
pytest.register_assert_rewrite("oci_support")

import leaks  # noqa: E402
from oci_support import PYTEST_BASETEMP  # noqa: E402 - after the registration above

PROBE_DIR = "/probe"
REPO = Path(__file__).resolve().parents[2]


def probe_volume(probes: Path) -> list[str]:
    """`-v` flags binding the compiled probes in, read-only."""
    return ["-v", f"{probes}:{PROBE_DIR}:ro"]


def probe_results(stdout: str) -> dict[str, str]:
    """sysprobe's lines as {action: "ok" | errno name}."""
    out = {}
    for line in stdout.splitlines():
        action, _, rest = line.partition(" ")
        if rest == "ok" or rest.startswith("ok "):
            out[action] = "ok"
        elif rest.startswith("errno "):
            out[action] = rest.split()[2]
    return out


def sysprobe(pc: Pycontain, probes: Path, *actions: str, flags: tuple[str, ...] = (),
             image: str = "busybox") -> dict[str, str]:
    """Run sysprobe with `actions` in a fresh container (`flags` before the image); its results."""
    res = pc("run", "--rm", *flags, *probe_volume(probes), image, f"{PROBE_DIR}/sysprobe", *actions)
    assert res.returncode == 0, describe(res)
    found = probe_results(res.stdout)
    missing = [a for a in actions if a not in found and a != "status"]
    assert not missing, f"sysprobe did not report {missing}:\n{describe(res)}"
    return found


def status_fields(stdout: str, prefix: str = "status ") -> dict[str, str]:
    """sysprobe's `status` lines (or plain /proc/self/status with prefix="") as {field: value}."""
    out = {}
    for line in stdout.splitlines():
        if not line.startswith(prefix):
            continue
        key, _, value = line[len(prefix):].partition(":")
        out[key.strip()] = value.strip()
    return out


def file_id(path: str | os.PathLike[str]) -> str:
    st = os.stat(path)
    return f"{st.st_dev}:{st.st_ino}"


def runtime_binaries() -> dict[str, str]:
    """dev:ino -> path of every host file that could be what enters a container: the interpreter
    pycontain runs on, its exec helper on disk, and the pycontain-oci command. A container process
    that reaches one of these inodes through /proc/PID/exe has the CVE-2019-5736 foothold."""
    found = {}
    candidates = [sys.executable, "/opt/pycontain/venv/bin/python3", "/usr/bin/python3", PYCONTAIN,
                  REPO / "pycontain" / "exec_helper", "/usr/local/bin/pycontain-oci",
                  "/opt/pycontain/libexec/pycontain-oci"]
    for path in candidates:
        try:
            found[file_id(path)] = str(path)
        except FileNotFoundError:
            continue
    return found


def watch_lines(logs: str) -> list[dict[str, str]]:
    """proc_watch's observation lines as dicts (pid, exe, ino, write, mem, fds, after)."""
    out = []
    for line in logs.splitlines():
        fields = line.split("\t")
        if len(fields) == 7 and fields[0].isdigit():
            out.append({"pid": fields[0], **dict(f.split("=", 1) for f in fields[1:])})
    return out


def watch_execs(pc: Pycontain, probes: Path, execs: list[list[str]], extra: tuple[str, ...] = ()) -> str:
    """Run proc_watch as a container's init, `exec` each argv in turn, stop the watcher; its output."""
    pc.ok("run", "-d", "--name", "watched", *probe_volume(probes), *extra, "busybox",
          f"{PROBE_DIR}/proc_watch", "/tmp/stop", "120")
    pc.wait_for_log("watched", "watching")
    for argv in execs:
        res = pc("exec", "watched", *argv)
        assert res.returncode == 0, describe(res)
    stop = pc("exec", "watched", "touch", "/tmp/stop")
    assert stop.returncode in (0, 137), describe(stop)  # 137: the init (the watcher) exited first
    wait_for("the watcher to finish", lambda: "done" in pc.ok("logs", "watched").stdout)
    return pc.ok("logs", "watched").stdout


# ---------------------------------------------------------------- leaks


def other_sessions(line: str, basetemp: Path) -> bool:
    """A leak-check line about another test session's object: one under another pytest basetemp, or
    the cgroup of a pycontain-oci bundle test (ids "ocib-..."; this suite's own are checked by name)."""
    base = str(basetemp.resolve()) + "/"
    if "pycontain-ocib-" in line:
        return True
    return base not in line and any(m.group(0) != base for m in PYTEST_BASETEMP.finditer(line))


@pytest.fixture
def no_leaks(pc: Pycontain, leak_snapshot: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The integration suite's no_leaks, less what other test sessions running at the same time own."""
    yield
    pc.remove_all()
    basetemp = tmp_path_factory.getbasetemp()
    found = [line for line in leaks.leaks_since(leak_snapshot, basetemp) if not other_sessions(line, basetemp)]
    assert not found, "pycontain left host objects behind:\n" + "\n".join(found)


# ---------------------------------------------------------------- pycontain-oci
