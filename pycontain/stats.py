"""`pycontain stats` and `pycontain update`: resource use read from each container's cgroup, and live limits.

CPU % is the cgroup's CPU time over wall time between two samples (100% = one CPU busy). Memory is the
cgroup's usage without reclaimable page cache, against its limit (or the host's memory when unlimited).
Network I/O comes from the container's own /proc/PID/net/dev (every device but lo), block I/O from the
cgroup's io counters. Loaded by cli.py only for these commands (cli.PLUGINS).
"""

from __future__ import annotations

import sys
import time

from pycontain import state
from pycontain import cgroups
from pycontain.cli import FLAG, LIMIT_OPTIONS, VALUE, need
from pycontain.clifmt import size, table
from pycontain.errors import ContainerStateError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Docker's `update` also changes the restart policy (the monitor of a running container reads it again
# when the container next exits).
UPDATE_OPTIONS = [*LIMIT_OPTIONS,
                  (("--restart",), "restart", VALUE, "POLICY",
                   "restart policy from now on: no, on-failure[:N], always, unless-stopped")]
COMMANDS: dict[str, tuple[list[Any], str, str]] = {
    "stats": ([(("--no-stream",), "no_stream", FLAG, "", "print one sample and exit"),
               (("-a", "--all"), "all", FLAG, "", "include stopped containers"),
               (("--format",), "format", VALUE, "TEMPLATE", "a Go template (as Docker's), `table ...`, or json"),
               (("--no-trunc",), "no_trunc", FLAG, "", "full container ids")],
              "[CONTAINER...]", "show containers' CPU, memory, network, block I/O and process counts"),
    "update": (UPDATE_OPTIONS, "CONTAINER...", "change the resource limits or restart policy of containers"),
}


def sample(rec: state.Record) -> dict[str, Any]:
    st = rec.read_state()
    running = rec.status(st) == state.Status.RUNNING
    out: dict[str, Any] = {"rec": rec, "running": running, "time": time.monotonic_ns()}
    if running:
        out.update(cgroups.for_container(rec.id).stats())
        out["net_rx"], out["net_tx"] = _net_io(st.pid)
    return out


def _net_io(pid: int | None) -> tuple[int, int]:
    rx = tx = 0
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except (OSError, TypeError):
        return 0, 0
    for line in lines:
        name, _, counters = line.partition(":")
        fields = counters.split()
        if name.strip() != "lo" and len(fields) >= 9:
            rx += int(fields[0])
            tx += int(fields[8])
    return rx, tx


def rows(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for old, new in zip(before, after):
        rec = new["rec"]
        if not new["running"]:
            out.append([rec.short_id, rec.name, "--", "-- / --", "--", "--", "--", "0"])
            continue
        wall = max(1, new["time"] - old["time"])
        cpu = 100.0 * max(0, new["cpu_ns"] - old.get("cpu_ns", new["cpu_ns"])) / wall
        mem, limit = new["memory"], new["memory_limit"] or 1
        out.append([
            rec.short_id, rec.name, f"{cpu:.2f}%", _pair(mem, limit), f"{100.0 * mem / limit:.2f}%",
            _pair(new["net_rx"], new["net_tx"]), _pair(new["blk_read"], new["blk_write"]), str(new["pids"]),
        ])
    return out


def _pair(a: float, b: float) -> str:
    """Two byte counts in binary units, as `docker stats` shows them: 1.5MiB / 2GiB."""
    return f"{size(a, 'iec')} / {size(b, 'iec')}"


HEADER = ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"]
# Docker's placeholders for `stats --format`, in HEADER's order after .Container; .Container is the
# container as the user named it (its id when all are listed).
STATS_FIELDS = ("ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs")
STATS_HEADERS = {"Container": "CONTAINER", **dict(zip(STATS_FIELDS, HEADER))}
STATS_TABLE = "table " + "\\t".join("{{." + f + "}}" for f in STATS_FIELDS)


def _print_frame(opts: dict[str, Any], named: list[str], ids: list[str], lines: list[list[str]]) -> None:
    """One sample: the classic table, or through --format as Docker's stats formatter does it."""
    if opts["format"] is None:
        table(HEADER, lines)
        return
    from pycontain.clifmt import listing

    rows = []
    for given, line, full_id in zip(named, lines, ids):
        row = dict(zip(STATS_FIELDS, line))
        row["ID"] = full_id if opts["no_trunc"] else line[0]
        rows.append({"Container": given or row["ID"], **row})
    listing(opts["format"], rows, STATS_HEADERS, STATS_TABLE)


def cmd_stats(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    if pos:
        records = [state.find(paths, ref) for ref in pos]
    else:
        records = [r for r in state.all_records(paths) if opts["all"] or r.status() == state.Status.RUNNING]
    if opts["format"] is not None:
        from pycontain import gotemplate

        if opts["format"] not in ("json", "table"):
            gotemplate.parse(gotemplate.docker_format(opts["format"]))  # a bad template fails before sampling
    named = list(pos) or [""] * len(records)
    ids = [r.id for r in records]
    before = [sample(r) for r in records]
    tty = sys.stdout.isatty()
    try:
        while True:
            time.sleep(0.5 if opts["no_stream"] else 1.0)
            after = [sample(r) for r in records]
            if tty and not opts["no_stream"]:
                sys.stdout.write("\x1b[2J\x1b[H")  # clear the screen and redraw, like `top`
            _print_frame(opts, named, ids, rows(before, after))
            sys.stdout.flush()
            if opts["no_stream"]:
                return 0
            before = after
    except KeyboardInterrupt:
        return 0


def cmd_update(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain import runtime

    need(pos, "a container")
    restart = opts.pop("restart", None)
    changes = {("pids" if k == "pids_limit" else k): v for k, v in opts.items() if v is not None}
    if not changes and restart is None:
        raise ContainerStateError("nothing to update: give at least one of " +
                                  ", ".join(o[0][-1] for o in UPDATE_OPTIONS))
    if restart is not None:
        from pycontain.config import parse_restart

        parse_restart(restart)  # a bad policy is refused before any container is changed
    for ref in pos:
        print(runtime.update(paths, ref, changes, restart=restart).name)
    return 0


HANDLERS = {"stats": cmd_stats, "update": cmd_update}
