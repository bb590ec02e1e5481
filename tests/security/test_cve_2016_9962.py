"""CVE-2016-9962: a container process attaches to the process `exec` sends in, before it has dropped
its privileges and closed its host descriptors.

runc's exec'd init joined the container's PID namespace while still holding host descriptors, and
was dumpable: container root could ptrace it (or open /proc/PID/fd/N) and take those descriptors.
pycontain's child is non-dumpable from clone until it execs the sealed helper, and closes every
descriptor but the status pipe before that. proc_watch (a container process spinning over /proc)
tries what the attacker would on every process that appears: /proc/PID/mem (ptrace access) and
/proc/PID/fd/N. Its control is the program `exec` runs: same user, dumpable, and the watcher does
open its memory, so a refusal during the window is the protection, not a probe that cannot attach.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from attacks import probes  # noqa: F401 - the probes fixture
from cvesupport import no_leaks  # noqa: F401 - the fixture, less other test sessions' objects
from cvesupport import PROBE_DIR, probe_volume, watch_execs, watch_lines
from support import Pycontain, describe

pytestmark = pytest.mark.usefixtures("no_leaks")

# What a descriptor of a process in the container may be: its pipes, sockets and anonymous inodes, the
# container's own /dev/null and ptys, the sealed helper. Anything else (a host path) is a leak.
HARMLESS_FD = re.compile(r"(pipe|socket):\[\d+\]|anon_inode:.*|/dev/null|/dev/pts/\d+|/memfd:pycontain-exec.*")
# A link that could not be read: EACCES (the ptrace check) or ENOENT (closed between listing and reading).
UNREAD = ("!13", "!2")
EXEC_TIMEOUT = 20
EXECS = 10


def fd_links(observation: dict[str, str]) -> list[str]:
    fds = observation["fds"]
    return [] if fds.startswith("!") or not fds else [item.partition(":")[2] for item in fds.split(",")]


def test_the_exec_d_process_cannot_be_attached_to_before_execve(pc: Pycontain, probes: Path) -> None:  # noqa: F811
    logs = watch_execs(pc, probes, [["/bin/sleep", "0.05"]] * 10)
    seen = watch_lines(logs)
    before_exec = [o for o in seen if o["exe"] == o["after"] == "!13"]  # wholly before the execve
    assert before_exec, f"the watcher never caught pycontain's process before its execve:\n{logs}"
    for o in before_exec:
        # EACCES from the ptrace access check: not dumpable, and container root has no CAP_SYS_PTRACE
        assert o["mem"] in ("!13", "!1"), f"pycontain's process could be attached to before execve: {o}"
        assert all(link in UNREAD for link in fd_links(o)), f"its descriptors were readable: {o}"
    program = [o for o in seen if o["exe"] == o["after"] == "/bin/busybox"]
    assert program and all(o["mem"] == "ok" for o in program), \
        f"control: the watcher could not attach to the exec'd program itself:\n{logs}"


def test_no_host_descriptor_is_reachable_through_proc_pid_fd(pc: Pycontain, probes: Path) -> None:  # noqa: F811
    logs = watch_execs(pc, probes, [["/bin/sleep", "0.05"]] * 10 + [["sh", "-c", "sleep 0.05 </dev/null"]])
    seen = watch_lines(logs)
    readable = [o for o in seen if fd_links(o) and not o["fds"].startswith("!")]
    assert readable, f"the watcher read no process's descriptors:\n{logs}"
    for o in seen:
        leaked = [link for link in fd_links(o) if link not in UNREAD and not HARMLESS_FD.fullmatch(link)]
        assert not leaked, f"a process exec entered with held {leaked}: {o}"
        assert str(pc.root) not in o["fds"]


def test_a_container_holding_the_helpers_status_pipe_cannot_hang_exec(pc: Pycontain, probes: Path) -> None:  # noqa: F811
    """The helper (dumpable once it runs) holds the status pipe `exec` waits on for EOF until it execs
    the program. A container process that opens /proc/HELPER/fd/N for writing and keeps it open must
    not keep `pycontain exec` from returning (nor be able to write it a forged error line)."""
    pc.ok("run", "-d", "--name", "watched", *probe_volume(probes), "busybox",
          f"{PROBE_DIR}/proc_watch", "/tmp/stop", "120", "hold")
    pc.wait_for_log("watched", "watching")
    hung = 0
    for n in range(1, EXECS + 1):
        try:
            res = pc("exec", "watched", "true", timeout=EXEC_TIMEOUT)
        except subprocess.TimeoutExpired:
            hung = n
            break
        assert res.returncode == 0, describe(res)
    stop = pc("exec", "watched", "touch", "/tmp/stop")
    assert stop.returncode in (0, 137), describe(stop)  # 137: the init (the watcher) exited first
    logs = pc.ok("logs", "watched").stdout
    held = [line for line in logs.splitlines() if line.startswith("held\t")]
    assert not hung, (f"`pycontain exec` number {hung} never returned (killed after {EXEC_TIMEOUT}s): a container "
                      "process held the helper's status pipe open:\n" + "\n".join(held))
    # Nothing to hold at all would be the other way to pass; the watcher did catch helpers with the pipe:
    helpers = [o for o in watch_lines(logs) if o["exe"].startswith("/memfd:pycontain-exec")]
    assert all(not any(link.startswith("pipe:") for n, link in
                       (item.split(":", 1) for item in o["fds"].split(",")) if int(n) > 2)
               for o in helpers if not o["fds"].startswith("!")), "the helper holds a pipe the container can open"
