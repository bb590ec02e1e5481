"""The event journal behind `pycontain events`: what happened to containers, images, volumes, networks.

    {state}/events.jsonl     one JSON object a line, appended:
                             {"time": NS, "type": "container", "action": "start", "id": ID,
                              "attributes": {"name": "web", "image": "alpine", ...}}
    {state}/events.jsonl.1   the previous part, once the journal passed MAX_BYTES

There is no daemon to hold events in memory as Docker's does, so every command that changes something
appends a line here (emit), and `events` reads the file and then polls it for more. Each line is one
write(2) on a descriptor opened O_APPEND: the kernel appends it whole, at the end, even when several
pycontain processes write at once, so there is no lock on the write path. The journal lives beside the
container records on tmpfs (/run): like Docker's, the event history does not survive a reboot.

emit() is called on `run`'s path: it imports nothing that is not loaded already, costs one open, one
write, one fstat and one close, and never raises: an event that cannot be written is lost, never a
command that fails because of it. This module is only the writing side, kept small for that reason
(its import is about 0.08 ms); reading (window, follow, filters, formats) is in system.py, for `events`.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pycontain.state import Paths, Record

# The journal is rotated once it passes this: at most about twice this is kept (the file and its .1).
MAX_BYTES = 4 * 1024 * 1024
# An attribute value longer than this is cut (a huge label must not make a line the kernel splits).
MAX_VALUE = 1024
_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW


def journal(paths: Paths) -> str:
    return f"{paths.state}/events.jsonl"


def emit(paths: Paths, type: str, action: str, actor_id: str, attributes: dict[str, str] | None = None) -> None:
    """Append one event. Never raises; an event that cannot be written (a full /run) is dropped."""
    try:
        from pycontain import jsonfast  # loaded already by every command that changes anything

        attrs = {str(k): str(v)[:MAX_VALUE] for k, v in (attributes or {}).items()}
        line = jsonfast.dumps({"time": time.time_ns(), "type": type, "action": action, "id": actor_id,
                               "attributes": attrs}) + "\n"
        path = journal(paths)
        try:
            fd = os.open(path, _FLAGS, 0o600)
        except FileNotFoundError:  # a fresh state root: nothing has made it yet
            os.makedirs(paths.state, 0o700, exist_ok=True)
            fd = os.open(path, _FLAGS, 0o600)
        try:
            os.write(fd, line.encode())
            if os.fstat(fd).st_size > MAX_BYTES:
                _rotate(fd, path)
        finally:
            os.close(fd)
    except Exception:  # noqa: BLE001 - the promise: an event is never a reason for a command to fail
        pass


def container(rec: Record, action: str, **extra: str) -> None:
    """emit() for a container, with Docker's attributes: its labels, image and name, then `extra`
    (exitCode for die, signal for kill, oldName for rename). Never raises, like emit (a damaged record
    gives an event with `extra` alone)."""
    try:
        meta = rec.meta()
        labels = (meta.get("config") or {}).get("labels") or {}
        attrs = {**labels, "image": str(meta.get("image", "")), "name": str(meta.get("name", "")), **extra}
    except Exception:  # noqa: BLE001 - see emit
        attrs = dict(extra)
    emit(rec.paths, "container", action, rec.id, attrs)


def _rotate(fd: int, path: str) -> None:
    """Move the full journal to .1 (replacing the older part). Writers that passed the cap at the same
    moment all come here: the lock on the full file's inode lets one of them rename it, and the others
    then see that the name points at a new file and leave it. A writer that still holds the old file
    appends to .1, where readers find it too."""
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        if os.stat(path).st_ino == os.fstat(fd).st_ino:
            os.rename(path, f"{path}.1")
    except FileNotFoundError:
        pass
