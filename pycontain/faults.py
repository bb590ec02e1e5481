"""Fault injection for the tests: SIGKILL this very process at a named phase of its work.

    PYCONTAIN_FAULT=run.cgroup      pycontain kills itself the first time it reaches run.cgroup
    PYCONTAIN_FAULT=pull.layer@3    ... the third time it reaches pull.layer

The fault suite (tests/faults/) kills the CLI, a detached container's monitor and pycontain-oci at
every phase named in the code with `faults.phase("...")`, then checks that `pycontain gc` (or, for
pycontain-oci, `delete --force`) leaves nothing behind. SIGKILL, not an exception: nothing unwinds,
no `finally` runs, exactly as when the OOM killer or a reboot-less `kill -9` strikes.

The variable is read once, when this module is imported; unset (every real start), a phase costs one
global lookup and a comparison with None. No imports beyond os: this module is on the `run` path.
"""

from __future__ import annotations

import os

_name, _, _nth = (os.environ.get("PYCONTAIN_FAULT") or "").partition("@")
WANTED: str | None = _name or None
# Which arrival at the phase kills (1: the first); a malformed count means the first.
NTH = int(_nth) if _nth.isdigit() and int(_nth) > 0 else 1
_seen = 0


def phase(name: str) -> None:
    """Die here, by SIGKILL, if PYCONTAIN_FAULT names this phase (and this is its Nth arrival)."""
    if WANTED is None or name != WANTED:
        return
    global _seen
    _seen += 1
    if _seen >= NTH:
        os.kill(os.getpid(), 9)  # SIGKILL; _signal is not imported just for its name
