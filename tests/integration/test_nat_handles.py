"""DNAT rules of published ports are deleted by the handles kept at add time, exactly, without
touching anyone else's rules; gc still finds a killed container's rules by listing the table.

Each test runs pycontain inside a network namespace it makes (the bridge and the nft table live and
die there); no traffic is sent.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import leaks as leaks_module
import support
from netns_support import NetNs, NetPycontain, leakcheck_wrapper, monitor_pid, network_leftovers
from support import SETTLE_TIMEOUT

HANDLE = re.compile(r"# handle (\d+)$")


@pytest.fixture
def npc(tmp_path: Path, ns: NetNs, busybox_tarball: Path, monkeypatch: pytest.MonkeyPatch,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetPycontain]:
    """pycontain in the test's namespace with busybox; afterwards no container's rule, marker, veth,
    lease or port may be left, nor anything leakcheck sees (run inside the namespace)."""
    monkeypatch.setattr(leaks_module, "LEAKCHECK", leakcheck_wrapper(tmp_path, ns))
    snapshot = support.leakcheck_snapshot(tmp_path / "leakcheck-before.json")
    p = NetPycontain(tmp_path / "root", ns)
    p.ok("import", "--change", 'CMD ["sh"]', busybox_tarball, "busybox")
    yield p
    p.remove_all()
    assert network_leftovers(p) == []
    kept_bridges = {json.loads(f.read_text())["bridge"] for f in (p.root / "run" / "networks").glob("*/network.json")}
    leaks = [line for line in support.leaks_since(snapshot, tmp_path_factory.getbasetemp())
             if not (line.startswith("leaked link: ") and line.split(": ", 1)[1] in kept_bridges)
             and not (line.startswith("leaked nft: ") and not re.search(r"[0-9a-f]{64}", line))]
    assert not leaks, "left behind:\n" + "\n".join(leaks)


def table(ns: NetNs) -> dict[int, str]:
    """Handle -> line of every object in table ip pycontain that has one (rules, chains, counters)."""
    out = ns.run("nft", "-a", "list", "table", "ip", "pycontain").stdout
    return {int(m.group(1)): line.strip() for line in out.splitlines() if (m := HANDLE.search(line.strip()))}


def of(ns: NetNs, cid: str) -> dict[int, str]:
    return {h: line for h, line in table(ns).items() if cid in line}


def kept(pc: NetPycontain, cid: str) -> list[list[object]]:
    return list(json.loads((pc.root / "run" / "containers" / cid / "nat.json").read_text())["rules"])


def run_d(pc: NetPycontain, *args: str) -> str:
    return pc.ok("run", "-d", "--network", "bridge", *args, "busybox", "sleep", "60").stdout.strip()


def test_stop_deletes_exactly_the_kept_handles_and_the_marker(npc: NetPycontain, ns: NetNs) -> None:
    a = run_d(npc, "-p", "18080:80", "-p", "18081:81/udp")
    b = run_d(npc, "-p", "18090:80")
    handles = kept(npc, a)
    # Two ports, each in prerouting and output; the kept handles are exactly a's rules.
    assert len(handles) == 4
    mine = of(ns, a)
    rules = {h for h, line in mine.items() if "dnat to" in line}
    assert {h for _, h in handles} == rules
    assert [line for line in mine.values() if line.startswith(f"counter ports-{a}")], mine
    before = table(ns)
    npc.ok("stop", "-t", "0", a)
    after = table(ns)
    # Gone: a's rules and its marker; everything else (b's rules, the network's) is untouched.
    assert set(before) - set(after) == set(mine)
    assert {h: before[h] for h in after} == after
    assert not (npc.root / "run" / "containers" / a / "nat.json").exists()
    assert len(of(ns, b)) == 3  # its two rules and its marker
    # A restart adds new rules with new handles, kept again.
    npc.ok("start", a)
    assert {h for _, h in kept(npc, a)} == {h for h, line in of(ns, a).items() if "dnat to" in line}
    npc.ok("rm", "-f", a, b)
    assert of(ns, a) == {} and of(ns, b) == {}


def test_run_rm_leaves_no_rule_marker_or_kept_file(npc: NetPycontain, ns: NetNs) -> None:
    before = table(ns) if ns.run("nft", "list", "tables", check=False).stdout.strip() else {}
    npc.ok("run", "--rm", "--network", "bridge", "-p", "18080:80", "busybox", "true")
    assert [line for line in table(ns).values() if re.search(r"[0-9a-f]{64}", line)] == []
    assert set(before) <= set(table(ns))
    assert list((npc.root / "run" / "containers").glob("*/nat.json")) == []


def test_handles_of_a_table_made_again_do_not_delete_another_containers_rules(npc: NetPycontain, ns: NetNs) -> None:
    """The table deleted and made again (`nft flush ruleset`): handles start over, so a's kept handles
    may name b's rules; a's marker is missing from the new table, so nothing of b's is deleted."""
    a = run_d(npc, "-p", "18080:80", "-p", "18081:81")
    top = max(h for _, h in kept(npc, a))
    ns.run("nft", "delete", "table", "ip", "pycontain")
    # Enough ports for b's new handles to cover every handle a kept.
    ports = [arg for n in range(top // 2 + 2) for arg in ("-p", f"{19000 + n}:80")]
    b = run_d(npc, *ports)
    b_rules = {h for h, line in of(ns, b).items() if "dnat to" in line}
    assert {h for _, h in kept(npc, a)} <= b_rules, "the test needs a's handles reused by b"
    npc.ok("stop", "-t", "0", a)
    assert {h for h, line in of(ns, b).items() if "dnat to" in line} == b_rules
    assert of(ns, a) == {}
    npc.ok("rm", "-f", a, b)
    assert of(ns, b) == {}


def test_gc_after_sigkill_removes_the_rules_and_the_marker(npc: NetPycontain, ns: NetNs) -> None:
    """Both with the handles kept and without (killed between adding the rules and keeping them)."""
    a = run_d(npc, "--name", "killed", "-p", "18080:80")
    c = run_d(npc, "--rm", "--name", "unkept", "-p", "18085:80")
    b = run_d(npc, "--name", "alive", "-p", "18090:80")
    (npc.root / "run" / "containers" / c / "nat.json").unlink()
    for cid in (a, c):
        os.kill(monitor_pid(npc, cid), signal.SIGKILL)
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while npc.ok("ps", "-a").stdout.count("Dead") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert of(ns, a) and of(ns, c), "the killed monitors cannot have removed their rules"
    alive = of(ns, b)
    npc.ok("gc")
    assert of(ns, a) == {} and of(ns, c) == {}
    assert of(ns, b) == alive  # a running container's rules stay
    npc.ok("rm", "-f", "killed", "alive")
