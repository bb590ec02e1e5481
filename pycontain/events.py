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
command that fails because of it. Reading (window, follow, filters, formats) is below it, for `events`.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from pycontain.state import Paths

# The journal is rotated once it passes this: at most about twice this is kept (the file and its .1).
MAX_BYTES = 4 * 1024 * 1024
# An attribute value longer than this is cut (a huge label must not make a line the kernel splits).
MAX_VALUE = 1024
TYPES = ("container", "image", "volume", "network")
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


# ---------------------------------------------------------------- reading

def _parse(line: bytes) -> dict[str, Any] | None:
    from pycontain import jsonfast

    try:
        event = jsonfast.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None  # a line cut by a crash or a full disk: skipped, as the rest is still good
    if not isinstance(event, dict) or not isinstance(event.get("time"), int):
        return None
    attrs = event.get("attributes")
    return {"time": event["time"], "type": str(event.get("type", "")), "action": str(event.get("action", "")),
            "id": str(event.get("id", "")),
            "attributes": {str(k): str(v) for k, v in attrs.items()} if isinstance(attrs, dict) else {}}


class Reader:
    """Reads the journal from its oldest event, then whatever is appended, across rotations."""

    def __init__(self, paths: Paths) -> None:
        self.path = journal(paths)
        self.fd: int | None = None
        self.ino = -1
        self.pending = b""

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _open_current(self) -> bool:
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return False
        self.ino = os.fstat(self.fd).st_ino
        self.pending = b""
        return True

    def backlog(self) -> list[dict[str, Any]]:
        """Every event in the journal now, oldest first (the reader then stands at its end)."""
        self._open_current()
        data = b""
        try:
            with open(f"{self.path}.1", "rb") as f:
                # The current file may have been rotated between the open above and here: then .1 is
                # the file already open, and reading it twice would repeat every event.
                if os.fstat(f.fileno()).st_ino != self.ino:
                    data = f.read()
        except FileNotFoundError:
            pass
        events = [e for line in data.splitlines() if (e := _parse(line))]
        events += self.poll()
        events.sort(key=lambda e: int(e["time"]))  # a writer that held the old file may have added to .1 late
        return events

    def poll(self) -> list[dict[str, Any]]:
        """The events appended since the last call."""
        out: list[dict[str, Any]] = []
        if self.fd is None and not self._open_current():
            return out
        out += self._read_rest()
        try:
            current: int | None = os.stat(self.path).st_ino
        except FileNotFoundError:
            current = None  # renamed to .1 and not made again yet: the next emit makes it
        if current == self.ino:
            return out
        # Rotated since the last poll, perhaps more than once.
        out += self._read_rest()  # what was appended to our file before it was renamed
        seen = self.ino
        self.close()
        try:
            older = os.open(f"{self.path}.1", os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            older = -1
        if older >= 0 and os.fstat(older).st_ino != seen:
            # A part that came and went between two polls: read it whole.
            self.fd, self.ino, self.pending = older, os.fstat(older).st_ino, b""
            out += self._read_rest()
            if current is None:
                return out  # stay on it until the journal exists again
            self.close()
        elif older >= 0:
            os.close(older)
        if current is not None and self._open_current():
            out += self._read_rest()
        return out

    def _read_rest(self) -> list[dict[str, Any]]:
        assert self.fd is not None
        chunks = [self.pending]
        while chunk := os.read(self.fd, 1 << 16):
            chunks.append(chunk)
        data = b"".join(chunks)
        complete, _, self.pending = data.rpartition(b"\n")  # a line still being written waits
        return [e for line in complete.splitlines() if (e := _parse(line))]


def follow(paths: Paths, since: int | None, until: int | None, interval: float = 0.1) -> Iterator[dict[str, Any]]:
    """The journal's events from `since` to `until` (ns), then new ones as they come until `until`
    (None: until interrupted). As Docker's: with neither bound, only events from now on."""
    reader = Reader(paths)
    low = since or 0

    def wanted(event: dict[str, Any]) -> bool:
        return bool(event["time"] >= low and (until is None or event["time"] <= until))

    try:
        backlog = reader.backlog()
        if since is not None or until is not None:
            yield from filter(wanted, backlog)
        while until is None or time.time_ns() <= until:
            time.sleep(interval)
            yield from filter(wanted, reader.poll())
        yield from filter(wanted, reader.poll())  # written just before `until`, read just after it
    finally:
        reader.close()


# ---------------------------------------------------------------- filters and formats

FILTER_KEYS = ("type", "event", "container", "image", "volume", "network", "label")


def parse_filters(items: list[str]) -> dict[str, list[str]]:
    """--filter KEY=VALUE: the same key given again widens (OR), different keys narrow (AND), as Docker."""
    from pycontain.errors import UsageError

    out: dict[str, list[str]] = {}
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq or not value:
            raise UsageError(f"invalid --filter {item!r}: expected KEY=VALUE")
        if key not in FILTER_KEYS:
            raise UsageError(f"invalid --filter {item!r}: filter by " + ", ".join(FILTER_KEYS))
        if key == "type" and value not in TYPES:
            raise UsageError(f"invalid --filter {item!r}: the types are " + ", ".join(TYPES))
        out.setdefault(key, []).append(value)
    return out


def _names(event: dict[str, Any]) -> set[str]:
    """What an event's actor answers to: its id (and short id) and its name."""
    actor = event["id"]
    names = {actor, actor.removeprefix("sha256:")[:12]}
    if event["attributes"].get("name"):
        names.add(event["attributes"]["name"])
    return names


def matches(event: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    attrs = event["attributes"]
    for key, values in filters.items():
        if key == "type":
            ok = event["type"] in values
        elif key == "event":
            ok = event["action"] in values
        elif key == "label":
            ok = any(attrs.get(k) == v if eq else k in attrs for k, eq, v in (x.partition("=") for x in values))
        elif key == "image":
            # Docker: an image's own events, and the events of containers made from it.
            ok = (event["type"] == "image" and bool(_names(event) & set(values))) or attrs.get("image") in values
        else:  # container, volume, network: that kind of object, by name or id
            ok = event["type"] == key and any(
                n in _names(event) or (len(n) >= 4 and event["id"].startswith(n)) for n in values)
        if not ok:
            return False
    return True


def stamp(ns: int) -> str:
    """2026-11-30T14:00:00.000000000Z: RFC 3339 with nanoseconds, in UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"


def text(event: dict[str, Any]) -> str:
    """Docker's line: `TIME TYPE ACTION ID (k=v, k=v)`, the attributes sorted by key."""
    attrs = event["attributes"]
    tail = f" ({', '.join(f'{k}={attrs[k]}' for k in sorted(attrs))})" if attrs else ""
    return f"{stamp(event['time'])} {event['type']} {event['action']} {event['id']}{tail}"


def docker_shape(event: dict[str, Any]) -> dict[str, Any]:
    """The event as Docker's API gives it to --format templates (.Type, .Action, .Actor.Attributes ...)."""
    shaped: dict[str, Any] = {}
    if event["type"] in ("container", "image"):  # the older fields Docker still fills for these two
        shaped["Status"] = event["action"]
        shaped["ID"] = event["id"]
        shaped["From"] = event["attributes"].get("image", "")
    shaped.update({"Type": event["type"], "Action": event["action"],
                   "Actor": {"ID": event["id"], "Attributes": dict(event["attributes"])},
                   "Scope": "local", "Time": event["time"] // 1_000_000_000, "TimeNano": event["time"]})
    return shaped


def docker_json(event: dict[str, Any]) -> dict[str, Any]:
    """The event as Docker's `--format '{{json .}}'` prints it: its JSON names (status, id, from, scope,
    time, timeNano are lower-case there, unlike the template's field names)."""
    shaped = docker_shape(event)
    names = {"Status": "status", "ID": "id", "From": "from", "Scope": "scope", "Time": "time", "TimeNano": "timeNano"}
    return {names.get(k, k): v for k, v in shaped.items()}


# ---------------------------------------------------------------- --since / --until

_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(text: str) -> float | None:
    """A Go duration (10m, 1h30m, 1.5h, 300ms) in seconds; None if it is not one."""
    if not text or not text[0].isdigit() and text[0] != ".":
        return None
    total, i = 0.0, 0
    while i < len(text):
        j = i
        while j < len(text) and (text[j].isdigit() or text[j] == "."):
            j += 1
        k = j
        while k < len(text) and not (text[k].isdigit() or text[k] == "."):
            k += 1
        number, unit = text[i:j], text[j:k]
        if unit not in _DURATION_UNITS:
            return None
        try:
            total += float(number) * _DURATION_UNITS[unit]
        except ValueError:
            return None
        i = k
    return total


def parse_time(value: str, flag: str, now_ns: int | None = None) -> int:
    """--since / --until as Docker takes them, in ns: a Unix time (1700000000[.5]), a duration before now
    (10m, 1h30m), or an RFC 3339 date or date-time (2026-11-30, 2026-11-30T14:00:00[.5][Z|+01:00]; no zone:
    local time)."""
    import calendar

    from pycontain.errors import UsageError

    now_ns = time.time_ns() if now_ns is None else now_ns
    value = value.strip()
    whole, dot, frac = value.partition(".")
    if whole.isdigit() and (not dot or frac.isdigit()):
        return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9] if dot else 0)
    seconds = _duration(value)
    if seconds is not None:
        return now_ns - int(seconds * 1e9)
    body, offset = value, None
    if body.endswith(("Z", "z")):
        body, offset = body[:-1], 0
    elif len(body) > 6 and body[-6] in "+-" and body[-3] == ":" and "T" in body:
        sign = 1 if body[-6] == "+" else -1
        try:
            offset = sign * (int(body[-5:-3]) * 3600 + int(body[-2:]) * 60)
        except ValueError:
            offset = None
        body = body[:-6]
    body, _, frac = body.partition(".")
    for form in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H", "%Y-%m-%d"):
        try:
            parsed = time.strptime(body, form)
        except ValueError:
            continue
        if frac and not frac.isdigit():
            break
        secs = calendar.timegm(parsed) - offset if offset is not None else int(time.mktime(parsed))
        return secs * 1_000_000_000 + int((frac + "000000000")[:9] if frac else 0)
    raise UsageError(f"invalid {flag} {value!r}: use a date-time (2026-11-30T14:00:00Z), a Unix time or a "
                     "duration before now (10m, 1h30m)")
