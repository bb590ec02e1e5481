"""What a killed `pycontain build` leaves, for `pycontain gc` (kept apart from builder.py so that gc does
not load the Dockerfile parser).

A build works in storage/build/<id>/, flock'ed for its life; the id of each RUN step's container (whose
storage is storage/containers/<id>, with no record) is appended to its `cids` file before the step's
storage or cgroup exists.
"""

from __future__ import annotations

import fcntl
import os

from pycontain.state import Paths, rmtree


def gc(paths: Paths) -> tuple[list[str], set[str]]:
    """What killed builds left: their working dirs and the cgroups of their RUN steps. Returns the lines
    to report and the container ids of RUN steps that are still running (live builds)."""
    from pycontain import cgroups

    done: list[str] = []
    live: set[str] = set()
    base = f"{paths.storage}/build"
    try:
        entries = os.listdir(base)
    except FileNotFoundError:
        return done, live
    for entry in entries:
        d = f"{base}/{entry}"
        try:
            fd = os.open(f"{d}/lock", os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            fd = -1
        try:
            if fd >= 0:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    live.update(_cids(d))
                    continue
            for cid in _cids(d):
                cg = cgroups.for_container(cid)
                if cg.exists():
                    cg.kill()
                    cg.remove()
                    done.append(f"removed cgroup {cg.name} of a killed build")
            rmtree(d)
            done.append(f"removed the working files of a killed build ({entry})")
        finally:
            if fd >= 0:
                os.close(fd)
    return done, live


def _cids(d: str) -> list[str]:
    try:
        with open(f"{d}/cids") as f:
            return [line.strip() for line in f if len(line.strip()) == 64]
    except OSError:
        return []
