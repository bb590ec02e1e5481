"""Progress of pulls and pushes, on stderr: one live line per layer on a terminal, plain lines otherwise.

On a terminal the block of layer lines is redrawn in place (cursor up, clear line: plain ANSI, no
curses) at most ten times a second; elsewhere (a log, a pipe, CI) each layer prints a line when it
starts and when it ends, so logs stay short and grep-able. `-q` prints nothing.
"""

from __future__ import annotations

import _thread
import os
import sys
import time

from pycontain.clifmt import size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

REDRAW_EVERY = 0.1


class Progress:
    def __init__(self, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        try:
            self.tty = not quiet and os.isatty(self.stream.fileno())
        except (AttributeError, ValueError, OSError):
            self.tty = False
        self.layers: dict[str, Layer] = {}
        self._drawn = 0  # how many layer lines are on screen below the cursor's start
        self._last = 0.0
        self._lock = _thread.allocate_lock()  # layers download in threads

    def line(self, text: str) -> None:
        if self.quiet:
            return
        with self._lock:
            self._write(text + "\n")
            if self.tty:
                self._drawn = 0  # the text went below the block: start a new block

    def layer(self, digest: str, total: int | None, status: str) -> Layer:
        layer = Layer(self, digest.split(":", 1)[-1][:12], total)
        self.layers[layer.short] = layer
        layer.update(status, force=True)
        return layer

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def _redraw(self, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last < REDRAW_EVERY:
            return
        self._last = now
        out = [f"\x1b[{self._drawn}A"] if self._drawn else []
        for layer in self.layers.values():
            out.append(f"\x1b[2K{layer.text()}\n")
        self._drawn = len(self.layers)
        self._write("".join(out))


class Layer:
    def __init__(self, progress: Progress, short: str, total: int | None) -> None:
        self.progress, self.short, self.total = progress, short, total
        self.done = 0
        self.status = ""
        self.started = time.monotonic()

    def text(self) -> str:
        if self.status != "Downloading":
            return f"{self.short}: {self.status}"
        rate = self.done / max(time.monotonic() - self.started, 1e-3)
        total = f"/{size(self.total)}" if self.total else ""
        return f"{self.short}: Downloading {size(self.done)}{total} {size(rate)}/s"

    def update(self, status: str, force: bool = True) -> None:
        p = self.progress
        if p.quiet:
            return
        changed = status != self.status
        self.status = status
        with p._lock:
            if p.tty:
                p._redraw(force or changed)
            elif changed and status != "Downloading":
                p._write(f"{self.short}: {status}\n")

    def advance(self, n: int) -> None:
        self.done += n
        if self.progress.tty:
            self.update("Downloading", force=False)
        elif self.status != "Downloading":
            self.status = "Downloading"
