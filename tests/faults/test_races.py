"""Races between pycontain commands on one container or network: every command ends with exit 0 or one
clear line (125, no traceback), the record ends in one consistent state, and nothing leaks.

    rm -f of one container from 8 processes at once
    stop racing start
    network rm racing run (inside the test's network namespace)
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable

import pytest
from fault_support import root_leftovers
from netns_support import NetPycontain, network_leftovers
from support import COMMAND_TIMEOUT, Pycontain, container_cgroup_dirs, describe

pytestmark = pytest.mark.integration

ROUNDS = 5


def together(argvs: list[list[str]]) -> list[subprocess.CompletedProcess[str]]:
    """Start every command before waiting for any; their results in order."""
    procs = [subprocess.Popen(a, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for a in argvs]
    out = []
    for a, p in zip(argvs, procs):
        stdout, stderr = p.communicate(timeout=COMMAND_TIMEOUT)
        out.append(subprocess.CompletedProcess(a, p.returncode, stdout, stderr))
    return out


def clean_outcome(res: subprocess.CompletedProcess[str]) -> None:
    """Success, or pycontain's own one-line refusal: never a traceback, an internal error or a signal."""
    assert res.returncode in (0, 125), describe(res)
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, describe(res)
    if res.returncode:
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("pycontain: "), describe(res)


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_rm_f_from_8_processes_at_once(pc: Pycontain, assert_leak_free: Callable[[], None], round_: int) -> None:
    cid = pc.ok("run", "-d", "--name", "target", "busybox", "sleep", "60").stdout.strip()
    results = together([pc.argv("rm", "-f", "target") for _ in range(8)])
    for res in results:
        clean_outcome(res)
        if res.returncode:
            assert "no such container" in res.stderr, describe(res)  # the loser is told it is gone
    assert sum(res.returncode == 0 for res in results) >= 1
    assert pc.ok("ps", "-a", "-q").stdout == ""
    assert root_leftovers(pc.root) == []
    assert container_cgroup_dirs(f"pycontain-{cid}") == []
    assert_leak_free()
    pc.ok("run", "--rm", "--name", "target", "busybox", "true")  # the name is free


def test_stop_racing_start(pc: Pycontain, assert_leak_free: Callable[[], None]) -> None:
    """`start` and `stop` of one container at the same moment, again and again: whatever wins, the record
    says running exactly when its process runs, and after a last stop nothing is left running."""
    cid = pc.ok("create", "--name", "sr", "busybox", "sleep", "60").stdout.strip()
    for _ in range(3 * ROUNDS):
        for res in together([pc.argv("start", "sr"), pc.argv("stop", "-t", "1", "sr")]):
            clean_outcome(res)
        info = pc.inspect("sr")
        procs = [d / "cgroup.procs" for d in container_cgroup_dirs(f"pycontain-{cid}")]
        pids = {p for f in procs if f.exists() for p in f.read_text().split()}
        if info["State"]["Status"] == "running":
            assert str(info["State"]["Pid"]) in pids, info["State"]
        else:
            assert info["State"]["Status"] == "exited", info["State"]
            deadline = time.monotonic() + 10
            while pids and time.monotonic() < deadline:  # its cgroup empties as its monitor finishes
                time.sleep(0.05)
                pids = {p for f in procs if f.exists() for p in f.read_text().split()}
            assert not pids, f"exited, yet processes run in its cgroup: {pids}"
    pc.ok("stop", "-t", "1", "sr")
    assert pc.status("sr") == "exited"
    pc.ok("rm", "sr")
    assert root_leftovers(pc.root) == []
    assert_leak_free()


@pytest.mark.parametrize("delay_ms", [0, 5, 20, 50, 100])
def test_network_rm_racing_run(npc: NetPycontain, delay_ms: int) -> None:
    """Either the run gets its address first (rm refuses: the network is in use, or waits until the
    container is gone) or the network goes first (the run fails in one line); never a container on a
    network that no longer exists, nor a bridge, rule or lease of a removed network."""
    for _ in range(3):
        npc.ok("network", "create", "n")
        run = subprocess.Popen(npc.argv("run", "--rm", "--network", "n", "busybox", "true"), text=True,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(delay_ms / 1000)
        rm = npc("network", "rm", "n")
        out, err = run.communicate(timeout=COMMAND_TIMEOUT)
        ran = subprocess.CompletedProcess(run.args, run.returncode, out, err)
        clean_outcome(ran)
        clean_outcome(rm)
        if rm.returncode:
            assert "in use" in rm.stderr, describe(rm)
            npc.ok("network", "rm", "n")  # the run is over: now it goes
        if ran.returncode:
            assert "network" in ran.stderr and "n" in ran.stderr, describe(ran)
        assert npc.ok("ps", "-a", "-q").stdout == ""
        assert not (npc.root / "run" / "networks" / "n").exists()
        assert npc.ok("network", "ls").stdout.splitlines()[1:] == []
        assert network_leftovers(npc) == []
        bridges = [n for n in npc.ns.links() if n.startswith("pcbr")]
        assert bridges == [], bridges
        assert '"n-' not in json.dumps(npc.ns.nft_ruleset())
    assert root_leftovers(npc.root) == []
