"""Helpers of the fault suite: run pycontain with a fault armed, and look for what a killed one left.

A fault is armed with PYCONTAIN_FAULT=PHASE (pycontain/faults.py): the process that reaches
`faults.phase(PHASE)` SIGKILLs itself there. PHASES lists every phase the code names, with where it is,
and test_every_phase_in_the_code_has_a_test holds the two in step.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import leaks
from support import COMMAND_TIMEOUT, SETTLE_TIMEOUT, Pycontain, describe

REPO = Path(__file__).resolve().parents[2]
OCI_ID_PREFIX = "fault-"  # pycontain-oci container ids of this suite (test_oci_bundles.py's: "ocib-")
PHASE_CALL = re.compile(r"""faults\.phase\(["']([a-z.]+)["']\)""")

# phase -> (the process that dies there, where it is)
PHASES = {
    "run.record": ("the CLI", "create: record dir made and locked, name reserved; nothing else yet"),
    "run.storage": ("the CLI", "create: the container's upper/work/rootfs/etc dirs made, no config.json"),
    "run.created": ("the CLI", "create: the record complete (config.json, state `starting`)"),
    "run.cgroup": ("the CLI or -d monitor", "supervise: the cgroup made and its limits written"),
    "run.clone": ("the CLI or -d monitor", "supervise: the child cloned, waiting to be let go"),
    "run.network": ("the CLI or -d monitor", "supervise: the bridge network attached"),
    "run.exec": ("the CLI or -d monitor", "supervise: just before the child may execve"),
    "run.running": ("the CLI or -d monitor", "supervise: the command runs, state `running`"),
    "run.cleanup": ("the CLI or -d monitor", "supervise: the command has exited, nothing released yet"),
    "exec.join": ("the CLI", "exec: joined the container's PID namespace, nothing spawned"),
    "exec.exec": ("the CLI", "exec: the process made in the container's namespaces and cgroup, before execve"),
    "rm.kernel": ("the CLI", "rm: processes, cgroup and port rules released; lease, name and files not yet"),
    "rm.files": ("the CLI", "rm: the container's storage deleted; its name and record not yet"),
    "pull.layer": ("the CLI", "pull: in the middle of a layer's download (temp blob and dir half written)"),
    "layer.unpacked": ("the CLI", "import/load/pull: a layer unpacked and verified, not yet renamed in"),
    "pull.blobs": ("the CLI", "pull: every layer stored; manifest, meta and ref not yet"),
    "pull.ref": ("the CLI", "pull: the ref written (the pull is complete)"),
    "import.stored": ("the CLI", "import: the layer stored; config and tag not yet"),
    "load.stored": ("the CLI", "load: an image's layers stored; config and tag not yet"),
    "load.tagged": ("the CLI", "load: an image tagged"),
    "net.rules": ("the CLI", "attach: the network's bridge and nft chains made (first use)"),
    "net.veth": ("the CLI", "attach: the veth pair made, no address yet"),
    "net.addr": ("the CLI", "attach: eth0's address and route set"),
    "net.ports": ("the CLI", "attach: the DNAT rules of -p added"),
    "oci.create.cgroup": ("pycontain-oci create", "the cgroup made"),
    "oci.create.clone": ("pycontain-oci create", "the init cloned, not yet let go"),
    "oci.create.saved": ("pycontain-oci create", "the init waits on the exec FIFO; pid saved, `fast` not written"),
    "oci.start": ("pycontain-oci start", "the init let through the exec FIFO; the FIFO not yet unlinked"),
    "oci.delete": ("pycontain-oci delete", "the init killed; cgroup and state dir not yet removed"),
    "run.volumes": ("the CLI", "create: the container's volumes made (and filled); config.json not yet"),
    "build.layer": ("the CLI", "build: a RUN step's command has exited; its upperdir not yet a layer"),
    "commit.layer": ("the CLI", "commit/build: the layer's blob written, not yet renamed into the store"),
}


def code_phases() -> set[str]:
    """Every phase named by a faults.phase("...") call in the package."""
    found: set[str] = set()
    for path in (REPO / "pycontain").rglob("*.py"):
        if path.name != "faults.py":  # its docstring shows the call with a placeholder
            found |= set(PHASE_CALL.findall(path.read_text()))
    return found


def with_fault(pc: Pycontain, phase: str, *args: str | os.PathLike[str],
               timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """`pycontain ARGS` with the fault armed (the environment reaches nsenter's child unchanged)."""
    return subprocess.run(pc.argv(*args), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYCONTAIN_FAULT": phase})


def assert_killed(res: subprocess.CompletedProcess[str]) -> None:
    """The process really died at the phase: by SIGKILL, having printed no error of its own."""
    assert res.returncode == -9, "expected death by SIGKILL at the phase\n" + describe(res)
    assert "Traceback" not in res.stderr, describe(res)


def assert_monitor_died(res: subprocess.CompletedProcess[str]) -> None:
    """`run -d` whose monitor was SIGKILLed before the command ran: the CLI says so, in one line."""
    assert res.returncode == 125, describe(res)
    assert res.stderr.strip() == "pycontain: the container monitor died before the container started", \
        describe(res)


def backdate_incomplete_records(root: Path) -> None:
    """gc removes a record without config.json only once it is 5 s old (its creator may be between mkdir
    and taking its lock): age such records instead of sleeping, so that this gc is the one that must act."""
    containers = root / "run" / "containers"
    old = time.time() - 60
    for d in containers.iterdir() if containers.is_dir() else []:
        if not (d / "config.json").exists():
            os.utime(d, (old, old))


def root_leftovers(root: Path) -> list[str]:
    """What is left of containers in a state root: records, names, container storage, temp files."""
    out = []
    for sub in ("run/containers", "run/names", "storage/containers", "storage/build"):
        d = root / sub
        out += [f"{sub}/{e.name}" for e in d.iterdir()] if d.is_dir() else []
    images = root / "storage" / "images"
    if images.is_dir():
        out += [str(p.relative_to(root)) for p in images.rglob("*") if ".tmp-" in p.name]
    return out


def wait_lock_free(pc: Pycontain, ref: str) -> dict[str, Any]:
    """Poll `inspect` until nobody supervises the container any more (its monitor is dead): status `dead`."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    info: dict[str, Any] = {}
    while time.monotonic() < deadline:
        info = pc.inspect(ref)
        if info["State"]["Status"] == "dead":
            return info
        time.sleep(0.05)
    raise AssertionError(f"container {ref} never lost its supervisor: {info.get('State')}")


# test_oci_bundles.py's pycontain-oci containers (another session's, perhaps running right now) name their
# cgroups, network namespaces and their mounts after their "ocib-" ids; this suite never uses that prefix.
OTHER_OCI_TESTS = "ocib-"


def own_leaks(snapshot: Path, basetemp: Path) -> list[str]:
    """leaks.leaks_since, less what this suite can show is another session's on this shared machine.

    leaks.py counts whatever it cannot place as ours: another session's podman container (its process in
    another PID namespace, its root not on a pycontain overlay) or test_oci_bundles.py's objects. Here a
    process is ours only if it names this session's basetemp (a pycontain's --root), runs on an overlay
    whose upper dir is there, has its root directory there (a pycontain-oci bundle), or descends from
    this pytest (whose orphans it adopts as a subreaper).
    """
    base = str(basetemp.resolve()) + "/"
    found = []
    for line in leaks.leaks_since(snapshot, basetemp):
        kind, _, obj = line[len("leaked "):].partition(": ")
        if OTHER_OCI_TESTS in obj:
            continue
        if kind == "process" and not _own_process(int(obj.split()[0]), base):
            continue
        found.append(line)
    return found


def _own_process(pid: int, base: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        root = os.readlink(f"/proc/{pid}/root")
    except OSError:
        return False  # gone meanwhile
    upper = leaks._overlay_upperdir(pid)
    return (base in cmdline or (root + "/").startswith(base) or (upper or "").startswith(base)
            or leaks._descends_from(pid, os.getpid()))
