"""`exec -t` opens its pty without trusting the container's /dev (the CVE-2025-52565 class).

In `exec`, /dev belongs to the container, which can replace /dev/ptmx with anything. The pty master
is opened as /dev/pts/ptmx inside the container's own devpts (no link followed out, checked to be the
ptmx device), and the slave is opened from the master (TIOCGPTPEER), never looked up by name.
Would have caught: 3009c56 (the last commit before the fix: `exec -t` failed once /dev/ptmx was replaced).
"""

from __future__ import annotations


import pytest
from support import Pycontain, in_terminal

pytestmark = pytest.mark.usefixtures("no_leaks")


@pytest.mark.parametrize("replacement", ["mkfifo /dev/ptmx", "ln -s /proc/1/root/etc/passwd /dev/ptmx",
                                         "echo fake > /dev/ptmx"])
def test_exec_t_works_whatever_the_container_put_at_dev_ptmx(pc: Pycontain, replacement: str) -> None:
    pc.ok("run", "-d", "--name", "c", "busybox", "sleep", "1000")
    pc.ok("exec", "c", "sh", "-c", f"rm -f /dev/ptmx; {replacement}")
    seen, code = in_terminal(pc.argv("exec", "-t", "c", "sh", "-c", "tty; echo EXEC-OK"), "EXEC-OK")
    assert code == 0, seen
    assert b"/dev/pts/" in seen
