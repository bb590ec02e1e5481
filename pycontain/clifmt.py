"""How commands print things for people: tables, "3 minutes" ago, byte counts.

Shared by cli.py and every command module (images, network, stats) and image pull progress, so the
whole CLI prints one way. Never imported on the `run` path: cli.py imports it inside the commands that
print tables.
"""

from __future__ import annotations

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


def ago(stamp: str) -> str:
    """How long ago a UTC stamp (2024-05-01T12:00:00..., as state.now() writes) was: "3 minutes".

    "?" for a missing or unreadable stamp; the caller adds " ago" (or "Up ").
    """
    import calendar
    import time

    try:
        then = calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
    except (ValueError, TypeError):
        return "?"
    secs = max(0, int(time.time() - then))
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if secs >= length:
            n = secs // length
            return f"{n} {unit}{'s' if n > 1 else ''}"
    return f"{secs} second{'s' if secs != 1 else ''}"


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
