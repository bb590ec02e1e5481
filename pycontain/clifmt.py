"""How commands print things for people: tables, "3 minutes" ago, byte counts.

Shared by cli.py and every command module (images, network, stats) and image pull progress, so the
whole CLI prints one way. Never imported on the `run` path: cli.py imports it inside the commands that
print tables.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# The two unit families of size(): (step, unit names, significant digits), as Docker's CLI prints them.
_SCALES = {
    "si": (1000, ("B", "kB", "MB", "GB", "TB"), 3),  # `docker images`: 7.8MB
    "iec": (1024, ("B", "KiB", "MiB", "GiB", "TiB"), 4),  # `docker stats`: 1.953MiB
}


def table(header: list[str], rows: list[list[str]]) -> None:
    """Columns left-aligned and three spaces apart, no trailing blanks: Docker's layout."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("   ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())


def epoch(stamp: str | None) -> float | None:
    """Seconds since the epoch of a UTC stamp (2024-05-01T12:00:00[.frac]Z, as state.now() and image configs
    write it); None if missing or unreadable. Parsed by hand: time.strptime compiles regexes on first use,
    which `ps` cannot afford for a few hundred rows."""
    if not stamp or len(stamp) < 19 or stamp[4] != "-" or stamp[10] not in "T " or stamp[13] != ":":
        return None
    try:
        y, mo, d = int(stamp[0:4]), int(stamp[5:7]), int(stamp[8:10])
        h, mi, sec = int(stamp[11:13]), int(stamp[14:16]), int(stamp[17:19])
    except ValueError:
        return None
    if not (1 <= mo <= 12 and 1 <= d <= 31):
        return None
    # days from 1970-01-01 of a proleptic Gregorian date (the "days from civil" algorithm)
    y -= mo <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (mo + (-3 if mo > 2 else 9)) + 2) // 5 + d - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return days * 86400 + h * 3600 + mi * 60 + sec


def human_duration(secs: float) -> str:
    """A duration as Docker's CLI words it (go-units HumanDuration): "Less than a second", "About a minute",
    "3 hours", "2 weeks"."""
    seconds = int(secs)
    if seconds < 1:
        return "Less than a second"
    if seconds == 1:
        return "1 second"
    if seconds < 60:
        return f"{seconds} seconds"
    minutes = seconds // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(secs / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{seconds // 3600 // 24 // 365} years"


def ago(stamp: str, now: float | None = None) -> str:
    """How long ago a UTC stamp (2024-05-01T12:00:00..., as state.now() writes) was: "3 minutes".

    "?" for a missing or unreadable stamp; the caller adds " ago" (or "Up ").
    """
    then = epoch(stamp)
    if then is None:
        return "?"
    if now is None:
        import time

        now = time.time()
    return human_duration(max(0.0, now - then))


def created_at(stamp: str | None) -> str:
    """A stamp the way Docker's CLI prints a CreatedAt (Go's time.String, local time):
    "2024-05-01 14:00:00 +0200 CEST"; "" if unreadable."""
    then = epoch(stamp)
    if then is None:
        return ""
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(then))


def parse_filters(values: list[str], keys: tuple[str, ...], command: str) -> dict[str, list[str]]:
    """`--filter k=v` flags as Docker reads them: key -> values (a key given twice: either value matches)."""
    from pycontain.errors import UsageError

    out: dict[str, list[str]] = {}
    for value in values:
        key, eq, arg = value.partition("=")
        key = key.strip().lower()
        if not eq:
            raise UsageError(f"bad format of filter {value!r} (expected name=value)")
        if key not in keys:
            raise UsageError(f"invalid filter {key!r} for `pycontain {command}` (valid: {', '.join(keys)})")
        out.setdefault(key, []).append(arg)
    return out


def listing(fmt: str | None, rows: list[Any], headers: dict[str, str], default: str, quiet: bool = False,
            quiet_format: str = "{{.ID}}") -> None:
    """Print rows as Docker's CLI prints a listing for --format: none or `table`: the default table (`-q`:
    ids only); `json`: one JSON object per line; `table TEMPLATE`: aligned columns under a header; any other
    template: one output per row. A custom template wins over -q, as in Docker."""
    from pycontain import gotemplate

    if fmt is None or fmt == "table":
        fmt = quiet_format if quiet else default
    elif fmt == "json":
        fmt = "{{json .}}"
    lines = gotemplate.table(fmt, rows, headers)
    if lines:
        sys.stdout.write("\n".join(lines) + "\n")


def size(n: float, units: str = "si") -> str:
    """A byte count for people, the one size formatter of the CLI.

        si    (default) powers of 1000, 3 significant digits: images, history, pull progress (7.8MB)
        iec   powers of 1024, 4 significant digits: stats (1.953MiB)
        flag  the shortest --memory / --log-opt spelling that means exactly n (10m, 64k, 5000):
              inspect shows a setting the way it can be given back
    """
    if units == "flag":
        whole = int(n)
        for suffix, factor in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
            if whole and whole % factor == 0:
                return f"{whole // factor}{suffix}"
        return str(whole)
    step, names, digits = _SCALES[units]
    for name in names[:-1]:
        if abs(n) < step:
            return f"{n:.{digits}g}{name}"
        n /= step
    return f"{n:.{digits}g}{names[-1]}"


def confirm(warning: str, refusal: str) -> bool:
    """Docker's prune question: `warning` then "Are you sure you want to continue? [y/N]" on a terminal;
    True only for y/yes. Without a terminal there is nobody to ask: UsageError(refusal + ": add -f")."""
    import os
    import sys

    from pycontain.errors import UsageError

    if not os.isatty(0):
        raise UsageError(f"{refusal} and there is no terminal to ask: add -f")
    sys.stdout.write(f"{warning}\nAre you sure you want to continue? [y/N] ")
    sys.stdout.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def print_formatted(template: str, rows: list[dict[str, Any]], headers: dict[str, str]) -> None:
    """A listing's `--format`: `json` prints each row as one line of JSON, as Docker's listings do;
    anything else is a Go template (gotemplate), `table ...` with a header line and aligned columns."""
    if template == "json":
        import json

        for r in rows:
            print(json.dumps(r))
        return
    from pycontain import gotemplate

    for line in gotemplate.table(template, rows, headers):
        print(line)
