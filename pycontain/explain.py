"""--explain: one plain line per kernel step, written as the step happens.

The runtime calls `say()` from inside its step list (the same code path as a normal run), so the
narration can never drift from what the code does. Lines go to stderr with os.write, which is safe in
the cloned child before it execs.
"""

from __future__ import annotations

import os

enabled = False
_fd = 2


def enable(fd: int = 2) -> None:
    global enabled, _fd
    enabled, _fd = True, fd


def disable() -> None:
    """Stop narrating and let go of the narration's descriptor (a dup of the caller's stderr): a detached
    monitor that kept it would hold `pycontain --explain run -d … 2>&1 | grep …` open until the container ends."""
    global enabled, _fd
    if _fd > 2:
        try:
            os.close(_fd)
        except OSError:
            pass
    enabled, _fd = False, 2


def say(text: str) -> None:
    if enabled:
        try:
            os.write(_fd, f"[explain] {text}\n".encode())
        except OSError:
            pass
