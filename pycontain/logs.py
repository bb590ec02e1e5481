"""A detached container's output: written by its monitor into a log that rotates at a size cap.

Without a cap, a container that prints forever fills the host's disk through its log (the review saw
191 MB from one container). Like Docker's `--log-opt max-size/max-file`, the log is `container.log`
plus at most max_files-1 older pieces `container.log.1` (newest) ... `.N`; the default keeps at most
3 x 10 MiB. The container never holds the log file itself: its monitor writes what the output pipes
carry (stdio.py), so the container cannot reach, truncate or fchmod the file through /proc/self/fd.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

DEFAULT_MAX_SIZE = 10 * 1024 * 1024
DEFAULT_MAX_FILES = 3


def pieces(path: str, max_files: int) -> list[str]:
    """The log's files, oldest first."""
    return [f"{path}.{n}" for n in range(max_files - 1, 0, -1)] + [path]


class LogFile:
    """Appends to `path`; when the next write would pass max_size, the file is rotated first."""

    def __init__(self, path: str, max_size: int = DEFAULT_MAX_SIZE, max_files: int = DEFAULT_MAX_FILES) -> None:
        self.path, self.max_size, self.max_files = path, max_size, max(1, max_files)
        self.fd = self._open()
        self.size = os.fstat(self.fd).st_size

    def _open(self) -> int:
        # O_NOFOLLOW: the log lives in the record directory, but nothing there is ever followed.
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)

    def write(self, data: bytes) -> None:
        while data:
            room = self.max_size - self.size
            if room <= 0:
                self._rotate()
                room = self.max_size
            chunk = data[:room]
            written = os.write(self.fd, chunk)
            self.size += written
            data = data[written:]

    def _rotate(self) -> None:
        os.close(self.fd)
        if self.max_files == 1:
            os.truncate(self.path, 0)
        else:
            names = pieces(self.path, self.max_files)  # oldest first: each moves one step older
            for older, newer in zip(names, names[1:]):
                try:
                    os.rename(newer, older)
                except FileNotFoundError:
                    pass
        self.fd = self._open()
        self.size = 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def read_all(path: str, max_files: int) -> tuple[bytes, int | None]:
    """Every piece of the log, oldest first, and the current piece still open at the point read up to
    (or None if there is none yet): `follow` continues from exactly there, so nothing written in
    between is lost. The caller closes it."""
    out = []
    for name in pieces(path, max_files)[:-1]:
        try:
            with open(name, "rb") as f:
                out.append(f.read())
        except FileNotFoundError:
            continue
    fd = _open_current(path)
    if fd is not None:
        while chunk := os.read(fd, 1 << 20):
            out.append(chunk)
    return b"".join(out), fd


def _open_current(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None


def follow(path: str, running: Callable[[], bool], fd: int | None, poll_seconds: float = 0.1) -> Iterator[bytes]:
    """What is appended to the log after `fd` (from read_all), across rotations, while running() is true.
    Takes over `fd` and closes it."""
    import time

    try:
        while True:
            alive = running()
            if fd is not None:
                chunk = os.read(fd, 65536)
                if chunk:
                    yield chunk
                    continue
            new = _open_current(path)  # rotated (or created) since: the new piece, from its start
            if new is not None and (fd is None or os.fstat(new).st_ino != os.fstat(fd).st_ino):
                if fd is not None:
                    os.close(fd)  # what was left in the old piece has just been read
                fd = new
                continue
            if new is not None:
                os.close(new)
            if not alive:
                return
            time.sleep(poll_seconds)
    finally:
        if fd is not None:
            os.close(fd)
