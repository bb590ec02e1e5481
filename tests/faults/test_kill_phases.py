"""SIGKILL at every named phase of run, run -d (its monitor), exec, rm, import, load, pull, bridge attach and
pycontain-oci create/start/delete; then `pycontain gc` (an engine's `delete --force` for pycontain-oci)
must leave nothing: no host object (leakcheck), no record, name, container storage or temp file in the
state root, and what was stored before still runs.

The fault is armed with PYCONTAIN_FAULT=PHASE (pycontain/faults.py); fault_support.PHASES says where each
phase is. Build and commit die with their layer half made; a run with volumes dies once they exist.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from fault_support import (OCI_ID_PREFIX, PHASES, assert_killed, assert_monitor_died, backdate_incomplete_records,
                           code_phases, own_leaks, root_leftovers, wait_lock_free, with_fault)
from images_support import LocalRegistry, store_files
from netns_support import NetPycontain, network_leftovers
from support import COMMAND_TIMEOUT, SETTLE_TIMEOUT, Pycontain, container_cgroup_dirs, describe, wait_for

pytestmark = pytest.mark.integration

# Where in `run` the CLI itself (not yet a -d monitor) does the work.
CREATE_PHASES = ["run.record", "run.storage", "run.created"]
# Where the supervisor (the foreground CLI, or the monitor of -d) does it, before the command runs ...
START_PHASES = ["run.cgroup", "run.clone", "run.exec"]
# ... and after.
LATE_PHASES = ["run.running", "run.cleanup"]
RUN_PHASES = CREATE_PHASES + START_PHASES + LATE_PHASES
NET_PHASES = ["net.rules", "net.veth", "net.addr", "net.ports", "run.network"]
OCI_PY = "/opt/pycontain/libexec/pycontain-oci"  # the Python command line (see test_oci_phase)

TESTED = set(RUN_PHASES) | set(NET_PHASES) | {"exec.join", "exec.exec", "rm.kernel", "rm.files", "pull.layer",
                                              "layer.unpacked", "pull.blobs", "pull.ref", "import.stored",
                                              "load.stored", "load.tagged", "oci.create.cgroup",
                                              "oci.create.clone", "oci.create.saved", "oci.start", "oci.delete",
                                              "run.volumes", "build.layer", "commit.layer"}


def command_for(phase: str) -> list[str]:
    """A command that still runs when the supervisor dies (so gc has a live orphan to stop), except at
    run.cleanup, which is reached only once the command has exited."""
    return ["sh", "-c", "exit 3"] if phase == "run.cleanup" else ["sleep", "60"]


def gc_and_check(pc: Pycontain, assert_leak_free: Callable[[], None], name: str = "victim") -> None:
    """gc, then: nothing of the killed command is left, and the store and the name work as before."""
    backdate_incomplete_records(pc.root)
    pc.ok("gc")
    assert pc.ok("ps", "-a", "-q").stdout == "", pc.ok("ps", "-a").stdout
    assert root_leftovers(pc.root) == []
    assert_leak_free()
    assert pc.ok("run", "--rm", "--name", name, "busybox", "echo", "alive").stdout == "alive\n"
    assert pc.ok("ps").stdout.splitlines()[0].startswith("CONTAINER ID")


def image_rows(pc: Pycontain) -> list[tuple[str, ...]]:
    """`images` as (repository, tag, id) rows: what is stored, without the ages that tick on."""
    return [tuple(line.split()[:3]) for line in pc.ok("images").stdout.splitlines()[1:]]


# ---------------------------------------------------------------- the list of phases itself

def test_every_phase_in_the_code_has_a_test() -> None:
    in_code = code_phases()
    assert in_code == set(PHASES), f"fault_support.PHASES is out of date: {sorted(in_code ^ set(PHASES))}"
    assert in_code == TESTED, f"phases without a test, or tests of no phase: {sorted(in_code ^ TESTED)}"


def test_an_unset_or_other_fault_changes_nothing(pc: Pycontain) -> None:
    res = with_fault(pc, "no.such.phase", "run", "--rm", "busybox", "echo", "fine")
    assert res.returncode == 0 and res.stdout == "fine\n", describe(res)


def test_the_nth_arrival_is_the_one_killed(pc: Pycontain, alpine_tarball: Path) -> None:
    """pull.layer@N style: import's only layer is unpacked once, so @2 never fires and @1 does."""
    res = with_fault(pc, "layer.unpacked@2", "import", alpine_tarball, "alpine")
    assert res.returncode == 0, describe(res)
    assert_killed(with_fault(pc, "layer.unpacked@1", "import", alpine_tarball, "alpine2"))
    pc.ok("gc")


# ---------------------------------------------------------------- run, run -d

@pytest.mark.parametrize("phase", RUN_PHASES)
def test_run_rm_killed_then_gc(pc: Pycontain, assert_leak_free: Callable[[], None], phase: str) -> None:
    assert_killed(with_fault(pc, phase, "run", "--rm", "--name", "victim", "busybox", *command_for(phase)))
    gc_and_check(pc, assert_leak_free)


@pytest.mark.parametrize("phase", RUN_PHASES)
def test_run_killed_then_gc_keeps_a_startable_container(
        pc: Pycontain, assert_leak_free: Callable[[], None], phase: str) -> None:
    """Without --rm the container is the user's: gc stops it (or drops a record that never got its
    config), and what remains starts again and runs its command."""
    assert_killed(with_fault(pc, phase, "run", "--name", "kept", "busybox", "sh", "-c", "exit 3"))
    backdate_incomplete_records(pc.root)
    pc.ok("gc")
    if phase in ("run.record", "run.storage"):
        assert pc.ok("ps", "-a", "-q").stdout == ""  # it never existed as far as the user can tell
        assert root_leftovers(pc.root) == []
    else:
        assert pc.status("kept") == "exited"
        assert_leak_free()
        pc.ok("start", "kept")
        assert pc.ok("wait", "kept").stdout.strip() == "3"
        pc.ok("rm", "kept")
    gc_and_check(pc, assert_leak_free, name="kept")


@pytest.mark.parametrize("phase", RUN_PHASES)
def test_run_detached_killed_then_gc(pc: Pycontain, assert_leak_free: Callable[[], None], phase: str) -> None:
    """-d: the CLI dies in create; after that its monitor dies, before or after the command runs."""
    res = with_fault(pc, phase, "run", "-d", "--rm", "--name", "victim", "busybox", *command_for(phase))
    if phase in CREATE_PHASES:
        assert_killed(res)
    elif phase in START_PHASES:
        assert_monitor_died(res)
        # The CLI removed the --rm container itself, kernel objects first: nothing waits for gc.
        assert root_leftovers(pc.root) == []
        assert_leak_free()
    else:
        assert res.returncode == 0, describe(res)
        wait_lock_free(pc, "victim")  # the monitor is gone: no one else frees that lock
    gc_and_check(pc, assert_leak_free)


# ---------------------------------------------------------------- exec, rm

@pytest.mark.parametrize("phase", ["exec.join", "exec.exec"])
def test_exec_killed_then_gc(pc: Pycontain, assert_leak_free: Callable[[], None], phase: str) -> None:
    cid = pc.ok("run", "-d", "--name", "host", "busybox", "sleep", "60").stdout.strip()
    assert_killed(with_fault(pc, phase, "exec", "host", "sh", "-c", "echo never"))
    pc.ok("gc")
    assert pc.status("host") == "running"  # the container is not the exec's to lose
    procs = container_cgroup_dirs(f"pycontain-{cid}")[0] / "cgroup.procs"
    # The half-made process waits for its parent's go-ahead; with the parent dead it ends by itself.
    wait_for("only the container's own process in its cgroup", lambda: len(procs.read_text().split()) == 1)
    assert pc.ok("exec", "host", "echo", "again").stdout == "again\n"
    pc.ok("rm", "-f", "host")
    gc_and_check(pc, assert_leak_free)


@pytest.mark.parametrize("running", [True, False], ids=["running", "stopped"])
@pytest.mark.parametrize("phase", ["rm.kernel", "rm.files"])
def test_rm_killed_then_gc_and_rm_again(pc: Pycontain, assert_leak_free: Callable[[], None], phase: str,
                                        running: bool) -> None:
    pc.ok("run", "-d", "--name", "victim", "busybox", *(["sleep", "60"] if running else ["true"]))
    if not running:
        pc.ok("wait", "victim")
    assert_killed(with_fault(pc, phase, "rm", "-f", "victim"))
    pc.ok("gc")
    assert pc.status("victim") == "exited"  # half removed: still listed, never running or dead
    assert_leak_free()
    pc.ok("rm", "victim")  # and the removal can be finished
    gc_and_check(pc, assert_leak_free)


# ---------------------------------------------------------------- build, commit, volumes

@pytest.mark.parametrize("phase", ["build.layer", "commit.layer"])
def test_build_killed_then_gc(pc: Pycontain, assert_leak_free: Callable[[], None], tmp_path: Path,
                              phase: str) -> None:
    """A build dies after its RUN's command, with the step's container storage and cgroup still there
    (build.layer), or with the layer's blob half made (commit.layer, which builds share)."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo made > /made\n")
    before = image_rows(pc)
    assert_killed(with_fault(pc, phase, "build", "--network", "none", "-t", "built:1", ctx))
    pc.ok("gc")
    assert image_rows(pc) == before
    assert [f for f in store_files(pc.root) if ".tmp-" in f] == []
    pc.ok("build", "--network", "none", "-t", "built:1", ctx)
    assert pc.ok("run", "--rm", "built:1", "cat", "/made").stdout == "made\n"
    gc_and_check(pc, assert_leak_free)


def test_commit_killed_then_gc(pc: Pycontain, assert_leak_free: Callable[[], None]) -> None:
    pc.ok("run", "--name", "changed", "busybox", "sh", "-c", "echo new > /new")
    before = image_rows(pc)
    assert_killed(with_fault(pc, "commit.layer", "commit", "changed", "committed:1"))
    pc.ok("gc")
    assert image_rows(pc) == before
    assert [f for f in store_files(pc.root) if ".tmp-" in f] == []
    pc.ok("commit", "changed", "committed:1")
    assert pc.ok("run", "--rm", "committed:1", "cat", "/new").stdout == "new\n"
    pc.ok("rm", "changed")
    gc_and_check(pc, assert_leak_free)


def test_run_with_volumes_killed_then_gc(pc: Pycontain, assert_leak_free: Callable[[], None]) -> None:
    """Killed with its volumes made but no record: the anonymous one goes with gc, the named one stays
    (a named volume outlives its containers, as in Docker) and works."""
    assert_killed(with_fault(pc, "run.volumes", "run", "--name", "victim", "-v", "keep:/keep", "-v", "/anon",
                             "busybox", "true"))
    gc_and_check(pc, assert_leak_free)
    assert pc.ok("volume", "ls", "-q").stdout.split() == ["keep"]
    assert pc.ok("run", "--rm", "-v", "keep:/keep", "busybox", "sh", "-c", "echo x > /keep/x").returncode == 0
    pc.ok("volume", "rm", "keep")


# ---------------------------------------------------------------- import, load, pull

@pytest.mark.parametrize("phase", ["layer.unpacked", "import.stored"])
def test_import_killed_then_gc(pc: Pycontain, assert_leak_free: Callable[[], None], alpine_tarball: Path,
                               phase: str) -> None:
    before = image_rows(pc)
    assert_killed(with_fault(pc, phase, "import", alpine_tarball, "alpine"))
    pc.ok("gc")
    assert image_rows(pc) == before  # no half image, and busybox still listed
    assert [f for f in store_files(pc.root) if ".tmp-" in f] == []
    pc.ok("import", alpine_tarball, "alpine")
    assert pc.ok("run", "--rm", "alpine", "cat", "/etc/alpine-release").stdout == "3.20.3\n"
    gc_and_check(pc, assert_leak_free)


@pytest.mark.parametrize("phase", ["layer.unpacked", "load.stored", "load.tagged"])
def test_load_killed_then_gc(pc: Pycontain, assert_leak_free: Callable[[], None], tmp_path: Path,
                             phase: str) -> None:
    archive = tmp_path / "busybox.tar"
    pc.ok("save", "-o", archive, "busybox")
    fresh = Pycontain(tmp_path / "root2")
    assert_killed(with_fault(fresh, phase, "load", "-i", archive))
    fresh.ok("gc")
    assert [f for f in store_files(fresh.root) if ".tmp-" in f] == []
    # Tagged (load.tagged) means complete; before that nothing may be listed.
    assert [r[:2] for r in image_rows(fresh)] == ([("busybox", "latest")] if phase == "load.tagged" else [])
    fresh.ok("load", "-i", archive)
    assert fresh.ok("run", "--rm", "busybox", "echo", "loaded").stdout == "loaded\n"
    assert root_leftovers(fresh.root) == []
    gc_and_check(pc, assert_leak_free)


@pytest.mark.parametrize("phase", ["pull.layer@3", "layer.unpacked", "pull.blobs", "pull.ref"])
def test_pull_killed_then_gc(pcr: Pycontain, registry: LocalRegistry, assert_leak_free: Callable[[], None],
                             phase: str) -> None:
    image = f"{registry.host}/library/alpine:3.20"
    assert_killed(with_fault(pcr, phase, "pull", image))
    pcr.ok("gc")
    assert [f for f in store_files(pcr.root) if ".tmp-" in f] == []
    listed = image_rows(pcr)
    assert len(listed) == (1 if phase == "pull.ref" else 0), listed  # the ref is the last write of a pull
    res = pcr.ok("pull", image)
    assert res.stdout.strip() == image
    assert pcr.ok("run", "--rm", image, "cat", "/etc/alpine-release").stdout == "3.20.3\n"
    assert root_leftovers(pcr.root) == []
    assert_leak_free()


# ---------------------------------------------------------------- bridge attach, inside the test's netns

def netns_leaks(npc: NetPycontain, basetemp: Path) -> list[str]:
    """leakcheck inside the namespace, less what outlives a container by design: the network's bridge and
    its nft chains (no container id in them)."""
    kept = {json.loads(f.read_text())["bridge"] for f in (npc.root / "run" / "networks").glob("*/network.json")}
    return [line for line in own_leaks(npc.snapshot, basetemp)  # type: ignore[attr-defined]
            if not (line.startswith("leaked link: ") and line.split(": ", 1)[1] in kept)
            and not (line.startswith("leaked nft: ") and not re.search(r"[0-9a-f]{64}", line))]


@pytest.mark.parametrize("detached", [False, True], ids=["foreground", "detached"])
@pytest.mark.parametrize("phase", NET_PHASES)
def test_network_attach_killed_then_gc(npc: NetPycontain, tmp_path_factory: pytest.TempPathFactory,
                                       phase: str, detached: bool) -> None:
    publish = ["--network", "pycontain", "-p", "127.0.0.1:18080:80"]
    res = with_fault(npc, phase, "run", *(["-d"] if detached else []), "--rm", "--name", "victim", *publish,
                     "busybox", "sleep", "60")
    if detached:
        assert_monitor_died(res)
    else:
        assert_killed(res)
    npc.ok("gc")
    assert npc.ok("ps", "-a", "-q").stdout == ""
    assert root_leftovers(npc.root) == []
    assert network_leftovers(npc) == []
    assert netns_leaks(npc, tmp_path_factory.getbasetemp()) == []
    # The address, the name and the host port are free again; the container is reachable on its port.
    out = npc.ok("run", "--rm", "--name", "victim", *publish, "busybox", "sh", "-c",
                 "ip -4 -o addr show eth0 | grep -c inet").stdout
    assert out == "1\n"
    assert network_leftovers(npc) == []


# ---------------------------------------------------------------- pycontain-oci

def oci_cmd(root: Path, *args: str | os.PathLike[str], fault: str | None = None, binary: str = OCI_PY,
            output: Path | None = None) -> subprocess.CompletedProcess[str]:
    """pycontain-oci with the fault armed; output: a file for stdout and stderr instead of pipes (a
    container's init inherits them, and a pipe would keep this call waiting for the container)."""
    env = {**os.environ, **({"PYCONTAIN_FAULT": fault} if fault else {})}
    argv = [binary, "--root", str(root), *map(str, args)]
    if output is None:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT, env=env)
    with open(output, "w") as out:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, text=True,
                              timeout=COMMAND_TIMEOUT, env=env)


@pytest.mark.parametrize("phase", ["oci.create.cgroup", "oci.create.clone", "oci.create.saved", "oci.start",
                                   "oci.delete"])
def test_oci_phase_killed_then_delete_force(rootfs_source: Path, tmp_path: Path,
                                            assert_leak_free: Callable[[], None], phase: str) -> None:
    """As an engine does after a runtime call dies: `delete --force` (the installed command) cleans up.

    start and delete of a plain container are done by the C fast path (csrc/oci_fast.c), which has no
    fault hook: those phases are driven through the Python command line it hands everything else to."""
    from oci_support import OCI, Bundle, cgroup_dirs, reap_children

    root = tmp_path / "oci-root"
    bundle = Bundle(tmp_path / "bundle", rootfs_source, ["sh", "-c", "exit 0"]).write()
    cid = OCI_ID_PREFIX + uuid.uuid4().hex[:12]
    res = oci_cmd(root, "create", "--bundle", bundle.path, cid,
                  fault=phase if phase.startswith("oci.create") else None, output=tmp_path / "out")
    if phase.startswith("oci.create"):
        assert res.returncode == -9, (tmp_path / "out").read_text()
    else:
        assert res.returncode == 0, (tmp_path / "out").read_text()
        if phase == "oci.delete":
            oci_cmd(root, "start", cid, binary=OCI, output=tmp_path / "start.out")
            wait_for("the container to stop",
                     lambda: json.loads(oci_cmd(root, "state", cid).stdout)["status"] == "stopped")
        assert_killed(oci_cmd(root, "start" if phase == "oci.start" else "delete", cid, fault=phase))
    res = oci_cmd(root, "delete", "--force", cid, binary=OCI)
    assert res.returncode == 0, describe(res)
    assert not (root / cid).exists()
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while cgroup_dirs(f"pycontain-{cid}") and time.monotonic() < deadline:
        reap_children()
        time.sleep(0.05)
    reap_children()
    assert cgroup_dirs(f"pycontain-{cid}") == []
    assert_leak_free()
    # And the runtime still runs a container of that id, start to end.
    res = oci_cmd(root, "run", "--bundle", bundle.path, cid, binary=OCI, output=tmp_path / "run.out")
    assert res.returncode == 0, (tmp_path / "run.out").read_text()
