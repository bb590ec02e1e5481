"""Leak checking for the suite with the package's own checker (pycontain.leakcheck), on a shared machine.

pycontain.leakcheck reports every host object (mount, cgroup, process, link, netns, nft/iptables rule,
/tmp entry) that appeared since a snapshot; its Attribution drops what is positively someone else's (the
machine runs the project's benchmark, scripts/vm-test, a `pip install` or another session's tests at
the same time) and what is gone again by the time we look (cgroups, processes, mounts and /tmp names: or
within two seconds after that). Whatever cannot be placed counts as a leak of this test. See
pycontain/leakcheck.py for the rules.

LEAKCHECK is the checker's command line. Tests whose objects live in a network namespace of their own
set it to a wrapper that runs the same command inside it (netns_support.leakcheck_wrapper); while it is
the default, the checks run in this process (no interpreter start per check).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from pycontain import leakcheck

DEFAULT_LEAKCHECK = shlex.join([sys.executable, "-m", "pycontain.leakcheck"])
LEAKCHECK = DEFAULT_LEAKCHECK
TIMEOUT = 60

# Names that the project's tools (not the runtime) give their temp dirs and cgroups, and the VM's own
# process supervisor's per-session memory cgroups.
TOOL_MARKERS = (*leakcheck.TOOL_MARKERS, "/sys/fs/cgroup/memory/process_api/")
# Other pytest sessions on this machine keep their state roots in the same layout as this one.
OTHER_SESSIONS_RECORDS = ("/tmp/pytest-of-*/pytest-*/*/*/run/containers/{cid}",)
DEFAULT_ROOTS = leakcheck.DEFAULT_ROOTS
SETTLING_KINDS = ("cgroup", "process", "mount", "tmp")
SETTLE_SECONDS = 2.0
CGROUP_PREFIX = leakcheck.CGROUP_PREFIX


def snapshot(path: Path) -> Path:
    if LEAKCHECK == DEFAULT_LEAKCHECK:
        leakcheck.save(path, leakcheck.take())
    else:
        subprocess.run([*shlex.split(LEAKCHECK), "snapshot", str(path)], check=True, timeout=TIMEOUT)
    return path


def leaks_since(snapshot_file: Path, own_base: Path) -> list[str]:
    """`leaked KIND: OBJ` lines for what appeared since the snapshot and is not positively someone else's."""
    if LEAKCHECK == DEFAULT_LEAKCHECK:
        found = leakcheck.new_since(leakcheck.load(snapshot_file))
    else:
        res = subprocess.run([*shlex.split(LEAKCHECK), "diff", str(snapshot_file)], capture_output=True,
                             text=True, timeout=TIMEOUT)
        assert res.returncode in (0, 1), f"leakcheck itself failed: {res.stderr}"
        found = [leakcheck.parse_line(line) for line in res.stdout.splitlines() if line.startswith("leaked ")]
    if not found:
        return []
    # Built after the diff, so that it knows every root that may have made those objects.
    judge = leakcheck.Attribution([own_base], TOOL_MARKERS, OTHER_SESSIONS_RECORDS)
    found = judge.filter(found)
    if any(kind in SETTLING_KINDS for kind, _ in found):
        # Look again for a moment: a cgroup, process, mount or temp dir that is still being torn down
        # (another session's emitted shell script removes its pycontain-sh-ID cgroups last) is gone then.
        # Links and rules are left out: the network tests filter their kept bridges after this call, and
        # would wait every time.
        found = leakcheck.settled(found, judge, SETTLE_SECONDS)
    return [leakcheck.line(kind, obj) for kind, obj in found]


# The helpers fault_support and others use under their old names.
_overlay_upperdir = leakcheck.overlay_upperdir
_descends_from = leakcheck.descends_from
_cmdline = leakcheck.cmdline
_alive = leakcheck.alive
