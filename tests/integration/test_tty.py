"""`run -it` through a real pseudo-terminal: typing, the container's own tty, Ctrl-C, exit status.

pty.fork() gives pycontain a controlling terminal, as a user's shell would; the test plays the user.
Every read has a deadline (a hang guard) so a stuck terminal fails the test instead of blocking it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from support import Pycontain, SETTLE_TIMEOUT, Terminal

pytestmark = pytest.mark.usefixtures("no_leaks")


PROMPT = "/ # "  # busybox ash's prompt for root in /


@pytest.fixture
def shell(pc: Pycontain) -> Iterator[Terminal]:
    """An interactive shell in a new container: `pycontain run --rm -it busybox sh`."""
    term = Terminal(pc.argv("run", "--rm", "-it", "--name", "tty", "busybox", "sh"))
    yield term
    term.close()


def test_typed_commands_run_and_their_output_comes_back(shell: Terminal) -> None:
    shell.expect(PROMPT)
    # the echoed input contains $((40+2)), never 42: only the shell's answer does
    shell.type("echo hi-$((40+2))\n")
    shell.expect("hi-42")
    shell.type("exit\n")
    assert shell.wait() == 0


def test_the_container_has_its_own_terminal(shell: Terminal) -> None:
    shell.expect(PROMPT)
    shell.type("tty; echo tty-done-$((1+1))\n")
    out = shell.expect("tty-done-2")
    assert b"/dev/pts/" in out, out
    shell.type("test -t 0 && test -t 1 && echo both-are-terminals-$((2+2))\n")
    shell.expect("both-are-terminals-4")
    shell.type("exit\n")
    assert shell.wait() == 0


def test_terminal_size_is_copied_into_the_container(pc: Pycontain) -> None:
    import fcntl
    import struct
    import termios

    term = Terminal(pc.argv("run", "--rm", "-it", "busybox", "sh"))
    try:
        fcntl.ioctl(term.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
        term.expect(PROMPT)
        term.type("stty size; echo size-done-$((3+3))\n")
        out = term.expect("size-done-6")
        assert b"33 111" in out, out
        term.type("exit\n")
        assert term.wait() == 0
    finally:
        term.close()


def test_ctrl_c_interrupts_the_foreground_command_not_the_shell(pc: Pycontain, shell: Terminal) -> None:
    shell.expect(PROMPT)
    shell.type("sleep 300\n")
    wait_for_process(pc, "tty", "sleep 300")
    shell.type("\x03")
    shell.expect("^C")
    # if Ctrl-C had not ended sleep, the shell would not answer before the read's deadline
    shell.type("echo back-$((6+6))\n")
    shell.expect("back-12")
    shell.type("exit 3\n")
    assert shell.wait() == 3
    assert pc.ok("ps", "-a", "-q").stdout == ""  # --rm: gone


def test_keys_typed_before_the_shell_starts_are_not_lost(shell: Terminal) -> None:
    # A user (or a script driving the terminal) may type ahead; like Docker, pycontain must not
    # discard input that is already waiting when it switches the terminal to raw mode.
    shell.type("echo typed-ahead-$((50+5))\n")
    shell.expect("typed-ahead-55")
    shell.type("exit\n")
    assert shell.wait() == 0


def wait_for_process(pc: Pycontain, container: str, command: str) -> None:
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        res = pc("top", container)
        if res.returncode == 0 and any(line.endswith(command) for line in res.stdout.splitlines()):
            return
        time.sleep(0.05)
    raise AssertionError(f"{command!r} never showed in `pycontain top {container}`")
