"""-t: relay between the user's terminal and the pty master of the container.

The user's terminal goes into raw mode, so every key (Ctrl-C included) travels to the container's pty,
whose line discipline turns it into a signal for the container's foreground process. The window size is
copied at start and again on every SIGWINCH.
"""

from __future__ import annotations

import _signal
import contextlib
import errno
import fcntl
import os
import select
import termios

from pycontain.stdio import FdSink

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from pycontain.stdio import Sink

TIOCGWINSZ = 0x5413
TIOCSWINSZ = 0x5414


def copy_winsize(src: int, dst: int) -> None:
    try:
        size = fcntl.ioctl(src, TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, TIOCSWINSZ, size)
    except OSError:
        pass


def relay(master: int, stdin: int | None, stdout: Sink) -> None:
    """Copy stdin -> master and master -> stdout until the container side of the pty is closed."""
    with terminal(master, stdin):
        _pump(master, stdin, stdout)


@contextlib.contextmanager
def terminal(master: int, stdin: int | None) -> Iterator[None]:
    """While inside: the caller's terminal (stdin, when it is one) raw, its size copied to the pty now and
    on every SIGWINCH; restored after. A foreground run serving attach (attach.Server) relays inside it too."""
    saved = None
    if stdin is not None and os.isatty(stdin):
        saved = termios.tcgetattr(stdin)
        raw(stdin)
        copy_winsize(stdin, master)
        previous = _signal.signal(_signal.SIGWINCH, lambda *_: copy_winsize(stdin, master))
    try:
        yield
    finally:
        if saved is not None and stdin is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
            _signal.signal(_signal.SIGWINCH, previous)


def _pump(master: int, stdin: int | None, stdout: Sink) -> None:
    # Once the container side is gone, writes to the master fail (EIO): dropped, and its read ends the loop.
    to_container = FdSink(master)
    watch = [master] + ([stdin] if stdin is not None else [])
    while True:
        try:
            ready, _, _ = select.select(watch, [], [])
        except InterruptedError:
            continue
        if master in ready:
            try:
                data = os.read(master, 65536)
            except OSError as e:
                if e.errno == errno.EIO:  # every slave fd is closed: the container has exited
                    return
                raise
            if not data:
                return
            stdout.write(data)
        if stdin is not None and stdin in ready:
            data = os.read(stdin, 65536)
            if not data:
                # Our stdin ended: pass an end-of-file to the container's terminal, stop watching stdin.
                to_container.write(b"\x04")
                watch.remove(stdin)
                stdin = None
                continue
            to_container.write(data)


def raw(fd: int) -> None:
    """cfmakeraw(3): no echo, no line editing, no signal keys, 8-bit clean."""
    mode = termios.tcgetattr(fd)
    iflag, oflag, cflag, lflag = 0, 1, 2, 3
    mode[iflag] &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP | termios.INLCR
                     | termios.IGNCR | termios.ICRNL | termios.IXON)
    mode[oflag] &= ~termios.OPOST
    mode[lflag] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    mode[cflag] = (mode[cflag] & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
    mode[6][termios.VMIN] = 1
    mode[6][termios.VTIME] = 0
    # TCSANOW, not TCSAFLUSH: keys typed before the container's shell started must reach it.
    termios.tcsetattr(fd, termios.TCSANOW, mode)
