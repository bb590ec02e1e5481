"""A container's output, kept in Docker's json-file format by the process that relays it.

Every container that is not `--rm` in the foreground gets a log (Docker keeps none of a removed
container, and the foreground `--rm` run keeps its start path and its splice(2) throughput). Each line
of output is one JSON object on one line of the file, as Docker's json-file driver writes it:

    {"log":"hello\\n","stream":"stdout","time":"2026-11-30T14:30:30.123456789Z"}

A line longer than a piece (16 KiB, less for a small max-size) is cut into several records, only the
last one ending in "\\n", as Docker cuts its 16 KiB messages. `--log-driver none` keeps nothing.

Without a cap, a container that prints forever fills the host's disk through its log (the review saw
191 MB from one container). Like Docker's `--log-opt max-size/max-file`, the log is `ctr.log` plus at
most max_files-1 older pieces `ctr.log.1` (newest) ... `.N`; the default keeps at most 3 x 10 MiB.
Rotation happens between records, so a record is never split across two files. The container never
holds the log file itself: whoever relays its output writes it (stdio.py), so the container cannot
reach, truncate or fchmod the file through /proc/self/fd.

Logs written by older pycontain versions are plain bytes: reading takes any line that is not a JSON
record as a stdout line without a time, so both formats (even mixed in one file) still read.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

DEFAULT_MAX_SIZE = 10 * 1024 * 1024
DEFAULT_MAX_FILES = 3
PIECE = 16 * 1024  # Docker's longest message: a longer line becomes several records
# The bytes a JSON string holds as they are (printable ASCII but `"` and `\`) and the newline between lines.
_PLAIN = bytes(c for c in range(32, 127) if c not in b'"\\') + b"\n"


def pieces(path: str, max_files: int) -> list[str]:
    """The log's files, oldest first."""
    return [f"{path}.{n}" for n in range(max_files - 1, 0, -1)] + [path]


class LogFile:
    """Appends records to `path`; when the next record would pass max_size, the file is rotated first."""

    def __init__(self, path: str, max_size: int = DEFAULT_MAX_SIZE, max_files: int = DEFAULT_MAX_FILES) -> None:
        self.path, self.max_size, self.max_files = path, max_size, max(1, max_files)
        self.fd = self._open()
        self.size = os.fstat(self.fd).st_size

    def _open(self) -> int:
        # O_NOFOLLOW: the log lives in the record directory, but nothing there is ever followed.
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)

    def write_records(self, records: list[bytes]) -> None:
        """Append whole records, as few write(2)s as rotation allows."""
        batch: list[bytes] = []
        size = self.size
        for rec in records:
            if size and size + len(rec) > self.max_size:
                self._write(b"".join(batch))
                batch = []
                self._rotate()
                size = 0
            batch.append(rec)
            size += len(rec)
        if batch:
            self._write(b"".join(batch))

    def write_blob(self, data: bytes) -> None:
        """Records already joined, known to fit before the cap."""
        self._write(data)

    def _write(self, data: bytes) -> None:
        while data:
            written = os.write(self.fd, data)
            self.size += written
            data = data[written:]

    def _rotate(self) -> None:
        os.close(self.fd)
        self.fd = -1
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


def now_rfc3339() -> str:
    """The current time as Go's RFC3339Nano writes it (trailing zeros of the fraction dropped)."""
    ns = time.time_ns()
    sec, frac = divmod(ns, 1_000_000_000)
    t = time.gmtime(sec)
    base = f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    if frac:
        base += "." + f"{frac:09d}".rstrip("0")
    return base + "Z"


class JsonLog:
    """Docker's json-file writer: output bytes of each stream become one record per line. A line
    without its newline yet waits for the rest (at most a piece), until close() writes what is left."""

    def __init__(self, path: str, max_size: int = DEFAULT_MAX_SIZE, max_files: int = DEFAULT_MAX_FILES) -> None:
        from _json import encode_basestring_ascii  # the json package's C encoder, without `import json`

        self._quote = encode_basestring_ascii
        self.file = LogFile(path, max_size, max_files)
        # Small caps get small pieces, so that one record (escaped, at most 6 bytes per byte of text)
        # always fits in one file and the cap holds.
        self.piece = max(64, min(PIECE, (max_size - 128) // 6))
        self.partial = {"stdout": b"", "stderr": b""}

    def sink(self, stream: str) -> StreamSink:
        return StreamSink(self, stream)

    def write(self, stream: str, data: bytes) -> None:
        buf = self.partial[stream] + data if self.partial[stream] else data
        cut = buf.rfind(b"\n") + 1
        rest = buf[cut:]
        piece = self.piece
        if cut:
            lines = buf[:cut].split(b"\n")
            lines.pop()  # the empty string after the last newline
            if not self._emit_plain(stream, buf[:cut], lines):
                texts = [line + b"\n" for line in lines]
                if any(len(t) > piece for t in texts):
                    texts = [t[i:i + piece] for t in texts for i in range(0, len(t), piece)]
                self._emit(stream, texts)
        if len(rest) >= piece:
            texts = []
            while len(rest) >= piece:
                texts.append(rest[:piece])
                rest = rest[piece:]
            self._emit(stream, texts)
        self.partial[stream] = rest

    def _emit_plain(self, stream: str, whole: bytes, lines: list[bytes]) -> bool:
        """The common case, without escaping line by line: printable ASCII lines with nothing JSON
        escapes, each shorter than a piece, become records by joining (2M short lines: ~5x faster).
        False if the lines are not all like that."""
        if not whole.isascii() or whole.translate(None, _PLAIN) or max(map(len, lines)) >= self.piece:
            return False
        tail = f'\\n","stream":"{stream}","time":"{now_rfc3339()}"}}\n'.encode()
        head = b'{"log":"'
        blob = head + (tail + head).join(lines) + tail
        if self.file.size + len(blob) <= self.file.max_size:
            self.file.write_blob(blob)
        else:
            self.file.write_records([head + line + tail for line in lines])
        return True

    def _emit(self, stream: str, texts: list[bytes]) -> None:
        tail = f',"stream":"{stream}","time":"{now_rfc3339()}"}}\n'.encode()
        quote = self._quote
        self.file.write_records([b'{"log":' + quote(t.decode("utf-8", "replace")).encode() + tail for t in texts])

    def flush(self) -> None:
        for stream, rest in self.partial.items():
            if rest:
                self.partial[stream] = b""
                self._emit(stream, [rest])

    def close(self) -> None:
        if self.file.fd >= 0:
            try:
                self.flush()
            finally:
                self.file.close()


class StreamSink:
    """One stream of a JsonLog, as a stdio Sink (write(bytes))."""

    def __init__(self, log: JsonLog, stream: str) -> None:
        self.log, self.stream = log, stream

    def write(self, data: bytes) -> None:
        self.log.write(self.stream, data)


class NullSink:
    """--log-driver none: the output of a detached container goes nowhere."""

    def write(self, data: bytes) -> None:
        pass


# ---------------------------------------------------------------- reading

class Record:
    __slots__ = ("time", "stream", "text", "attrs")

    def __init__(self, when: int | None, stream: str, text: bytes, attrs: dict[str, str] | None) -> None:
        self.time, self.stream, self.text, self.attrs = when, stream, text, attrs


def parse_line(line: bytes) -> Record:
    """One line of a log file: a json-file record, or a line of an older plain log (stdout, no time)."""
    if line.startswith(b'{"log":'):
        from pycontain import jsonfast

        try:
            obj = jsonfast.loads(line)
            text = obj["log"].encode("utf-8", "surrogateescape")
            stream = obj.get("stream") or "stdout"
            return Record(parse_rfc3339(obj["time"]) if obj.get("time") else None,
                          stream if stream in ("stdout", "stderr") else "stdout", text, obj.get("attrs"))
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
    return Record(None, "stdout", line, None)


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


def records(data: bytes) -> list[Record]:
    """The records of whole log contents (an unfinished last line of a plain log counts too)."""
    lines = data.split(b"\n")
    last = lines.pop()
    out = [parse_line(line + b"\n") for line in lines]
    if last:
        out.append(parse_line(last))
    return out


def _open_current(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None


def follow(path: str, running: Callable[[], bool], fd: int | None, poll_seconds: float = 0.1) -> Iterator[bytes]:
    """What is appended to the log after `fd` (from read_all), across rotations, while running() is true.
    Takes over `fd` and closes it."""
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


def follow_records(path: str, running: Callable[[], bool], fd: int | None) -> Iterator[Record]:
    """follow(), cut into records at line ends."""
    rest = b""
    for chunk in follow(path, running, fd):
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            yield parse_line(line + b"\n")
    if rest:
        yield parse_line(rest)


# ---------------------------------------------------------------- times

def parse_rfc3339(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time ("2026-11-30T14:30:30.5Z", "...+01:00")."""
    import calendar

    date, sep, rest = text.partition("T")
    if not sep:
        raise ValueError(text)
    y, mo, d = (int(x) for x in date.split("-"))
    offset = 0
    if rest.endswith(("Z", "z")):
        clock = rest[:-1]
    else:
        cut = max(rest.rfind("+"), rest.rfind("-"))
        if cut < 0:
            raise ValueError(text)
        clock, tz = rest[:cut], rest[cut:]
        hh, _, mm = tz[1:].partition(":")
        offset = (int(hh) * 3600 + int(mm or 0) * 60) * (1 if tz[0] == "+" else -1)
    hms, _, frac = clock.partition(".")
    h, mi, s = (int(x) for x in hms.split(":"))
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 61) or (frac and not frac.isdigit()):
        raise ValueError(text)
    secs = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) - offset
    return secs * 1_000_000_000 + int((frac or "0")[:9].ljust(9, "0"))


def format_fixed(ns: int) -> str:
    """Docker's RFC3339NanoFixed, as `logs -t` prints it: always nine digits of fraction."""
    sec, frac = divmod(ns, 1_000_000_000)
    t = time.gmtime(sec)
    return (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
            f".{frac:09d}Z")


_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
          "h": 3_600_000_000_000}


def parse_duration(text: str) -> int | None:
    """A Go duration ("10m", "1h30m", "1.5h", "300ms") in nanoseconds, or None if it is not one."""
    s = text
    sign = 1
    if s[:1] in "+-" and s:
        sign, s = (-1 if s[0] == "-" else 1), s[1:]
    if not s:
        return None
    total = 0.0
    while s:
        i = 0
        while i < len(s) and (s[i].isdigit() or s[i] == "."):
            i += 1
        number, s = s[:i], s[i:]
        j = 0
        while j < len(s) and not (s[j].isdigit() or s[j] == "."):
            j += 1
        unit, s = s[:j], s[j:]
        if not number or number.count(".") > 1 or number == "." or unit not in _UNITS:
            return None
        total += float(number) * _UNITS[unit]
    return sign * int(total)


def parse_time(text: str, flag: str, now_ns: int | None = None) -> int:
    """A --since/--until value as Docker takes it, in nanoseconds since the epoch: a duration back from
    now ("10m", "2h"), an RFC 3339 time or a prefix of one (date, date and time; without a zone it is
    local time), or a Unix timestamp ("1700000000", "1700000000.5")."""
    from pycontain.errors import UsageError

    now_ns = time.time_ns() if now_ns is None else now_ns
    value = text.strip()
    if not value:
        raise UsageError(f"invalid {flag} '': expected a time (2013-01-02T13:23:37Z, 1700000000 or 10m)")
    ago = parse_duration(value)
    if ago is not None and not value.replace(".", "").isdigit():
        return now_ns - ago
    try:
        if "-" in value[1:] or ":" in value or "T" in value:
            return _parse_calendar(value)
        whole, _, frac = value.partition(".")
        if whole.lstrip("-").isdigit() and (not frac or frac.isdigit()):
            return int(whole) * 1_000_000_000 + int(frac[:9].ljust(9, "0") or 0)
    except (ValueError, OverflowError):
        pass
    raise UsageError(f"invalid {flag} {text!r}: expected a time (2013-01-02T13:23:37Z, 1700000000 or 10m)")


def _parse_calendar(value: str) -> int:
    has_zone = value.endswith(("Z", "z")) or "+" in value or value.count("-") > 2
    date, _, clock = value.partition("T")
    if not has_zone:
        parts = [int(x) for x in date.split("-")] + [int(x) for x in clock.split(":") if clock]
        if len(parts) < 3 or len(parts) > 6:
            raise ValueError(value)
        y, mo, d, *hms = parts + [0] * (6 - len(parts))
        h, mi, s = hms
        if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 61):
            raise ValueError(value)
        return int(time.mktime((y, mo, d, h, mi, s, 0, 0, -1))) * 1_000_000_000  # local time, as Docker's
    if "T" not in value:  # "2013-01-02Z": midnight there
        date = value[:10]
        return parse_rfc3339(f"{date}T00:00:00{value[10:]}")
    zone_at = len(clock)
    if clock.endswith(("Z", "z")):
        zone_at -= 1
    else:
        zone_at = max(clock.rfind("+"), clock.rfind("-"))
    hhmmss, zone = clock[:zone_at], clock[zone_at:]
    main, dot, frac = hhmmss.partition(".")
    fields = main.split(":")
    while len(fields) < 3:
        fields.append("00")
    return parse_rfc3339(f"{date}T{':'.join(fields)}{dot}{frac}{zone}")
