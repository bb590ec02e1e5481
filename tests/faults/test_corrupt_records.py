"""Damaged records: a container's config.json or state.json, the image tags (refs.json), a network's
network.json and leases.json, the host port table. `ps -a`, `images` and `network ls` still work and name
what is damaged (one line each on stderr), every command that needs it fails in one line instead of an
internal error, `gc` repairs it (or removes what cannot be repaired), and nothing valid is lost.

Volume metadata: pycontain has no named volumes (-v is a bind mount of a host path, nothing is recorded
about it), so there is none to damage.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from fault_support import root_leftovers
from netns_support import NetPycontain, http_get, network_leftovers
from support import Pycontain, describe

pytestmark = pytest.mark.integration

# name -> what is written over the file
DAMAGE = {
    "truncated": None,  # all but the last 20 bytes of what was there
    "garbage": "\x00\x17not json at all",
    "empty": "",
    "array": "[]",
    "number": "5",
}
CONFIG_SHAPES = {
    "config-not-object": lambda m: {**m, "config": 5},
    "no-resolved": lambda m: {k: v for k, v in m.items() if k != "resolved"},
    "bad-limits": lambda m: {**m, "config": {**m["config"], "limits": "lots"}},
}
STATE_SHAPES = {
    "unknown-status": {"status": "flying"},
    "bad-limits": {"status": "exited", "limits": "lots"},
}


def damage(path: Path, how: str) -> None:
    text = path.read_text()
    path.write_text(text[: max(1, len(text) - 20)] if DAMAGE[how] is None else str(DAMAGE[how]))


def record_dir(pc: Pycontain, name: str) -> Path:
    return pc.root / "run" / "containers" / os.readlink(pc.root / "run" / "names" / name)


def one_line_error(res: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit 125, one line, no traceback and not the catch-all internal error; it says what it is about."""
    assert res.returncode == 125, describe(res)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pycontain: "), describe(res)
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, describe(res)
    for word in words:
        assert word in lines[0], describe(res)


def ps_names(pc: Pycontain) -> tuple[list[str], str]:
    """`ps -a` must succeed: (the names it lists, what it said on stderr)."""
    res = pc.ok("ps", "-a")
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, describe(res)
    return sorted(line.split()[-1] for line in res.stdout.splitlines()[1:]), res.stderr


# ---------------------------------------------------------------- container records

@pytest.mark.parametrize("how", [*DAMAGE, *CONFIG_SHAPES])
def test_damaged_config_json(pc: Pycontain, assert_leak_free: Callable[[], None], how: str) -> None:
    pc.ok("run", "--name", "good", "busybox", "true")
    bad_id = pc.ok("run", "-d", "--name", "bad", "busybox", "true").stdout.strip()
    pc.ok("wait", "bad")
    config = record_dir(pc, "bad") / "config.json"
    if how in CONFIG_SHAPES:
        config.write_text(json.dumps(CONFIG_SHAPES[how](json.loads(config.read_text()))))
    else:
        damage(config, how)
    names, errors = ps_names(pc)
    assert names == ["good"]
    assert f"container {bad_id[:12]} has a damaged record (config.json" in errors, errors
    one_line_error(pc("start", "bad"), bad_id[:12], "config.json")
    one_line_error(pc("inspect", "bad"), bad_id[:12])
    res = pc.ok("gc")
    assert f"removed container {bad_id[:12]}: its config.json was damaged" in res.stdout, res.stdout
    assert ps_names(pc) == (["good"], "")
    assert [e for e in root_leftovers(pc.root) if bad_id in e or e.endswith("/bad")] == []
    # nothing valid lost: the good container starts, the name is free again, the image runs
    pc.ok("start", "good")
    assert pc.ok("wait", "good").stdout.strip() == "0"
    assert pc.ok("run", "--rm", "--name", "bad", "busybox", "echo", "fresh").stdout == "fresh\n"
    assert_leak_free()


@pytest.mark.parametrize("how", [*DAMAGE, *STATE_SHAPES])
def test_damaged_state_json(pc: Pycontain, assert_leak_free: Callable[[], None], how: str) -> None:
    pc.ok("run", "--name", "good", "busybox", "true")
    bad_id = pc.ok("create", "--name", "bad", "busybox", "sh", "-c", "exit 4").stdout.strip()
    pc.ok("start", "bad")
    pc.ok("wait", "bad")
    state = record_dir(pc, "bad") / "state.json"
    if how in STATE_SHAPES:
        state.write_text(json.dumps(STATE_SHAPES[how]))
    else:
        damage(state, how)
    names, errors = ps_names(pc)
    assert names == ["good"]
    assert f"container {bad_id[:12]} has a damaged record (state.json" in errors, errors
    one_line_error(pc("start", "bad"), bad_id[:12], "state.json")
    res = pc.ok("gc")
    assert f"reset the damaged state record of container {bad_id[:12]}" in res.stdout, res.stdout
    assert ps_names(pc) == (["bad", "good"], "")
    assert pc.inspect("bad")["State"]["Status"] == "exited"
    # The container itself was not damaged: it starts and runs its command again.
    pc.ok("start", "bad")
    assert pc.ok("wait", "bad").stdout.strip() == "4"
    pc.ok("start", "good")
    assert pc.ok("wait", "good").stdout.strip() == "0"
    assert_leak_free()


def test_damaged_state_json_of_a_running_container(pc: Pycontain, assert_leak_free: Callable[[], None]) -> None:
    """Its supervisor holds it: gc leaves it alone; once it stops, gc resets the state."""
    cid = pc.ok("run", "-d", "--name", "busy", "busybox", "sleep", "60").stdout.strip()
    damage(record_dir(pc, "busy") / "state.json", "garbage")
    assert f"container {cid[:12]} has a damaged record (state.json" in ps_names(pc)[1]
    pc.ok("gc")
    assert cid[:12] in ps_names(pc)[1]  # still damaged, still running: not gc's to touch
    one_line_error(pc("stop", "busy"), cid[:12], "state.json")  # it cannot tell it runs
    pc.ok("rm", "-f", "busy")  # but -f stops whatever is in its cgroup, and removes it
    assert ps_names(pc) == ([], "")
    assert_leak_free()


# ---------------------------------------------------------------- image tags

def tags(pc: Pycontain) -> tuple[list[tuple[str, str]], str]:
    res = pc.ok("images")
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, describe(res)
    return sorted(tuple(line.split()[:2]) for line in res.stdout.splitlines()[1:]), res.stderr  # type: ignore[misc]


@pytest.mark.parametrize("how", [*DAMAGE, "bad-entries"])
def test_damaged_refs_json(pc: Pycontain, busybox_tarball: Path, assert_leak_free: Callable[[], None],
                           how: str) -> None:
    pc.ok("import", busybox_tarball, "second:1")
    pc.ok("run", "--name", "user", "busybox", "true")
    refs = pc.root / "storage" / "images" / "refs.json"
    good = json.loads(refs.read_text())
    if how == "bad-entries":
        refs.write_text(json.dumps({**good, "Not A Ref": good["docker.io/library/busybox:latest"],
                                    "docker.io/library/gone:1": "sha256:" + "a" * 64,
                                    "docker.io/library/wrong:1": 5}))
    else:
        damage(refs, how)
    listed, errors = tags(pc)
    assert "refs.json" in errors, errors
    if how != "bad-entries":
        one_line_error(pc("run", "--rm", "busybox", "true"), "refs.json")
        one_line_error(pc("import", busybox_tarball, "third:1"), "refs.json")
        one_line_error(pc("image", "prune", "-a", "-f"), "refs.json")  # never an empty tag table to prune by
        assert listed == [("<none>", "<none>"), ("<none>", "<none>")]  # every image still listed
    res = pc.ok("gc")
    assert "refs.json" in res.stdout, res.stdout
    listed, errors = tags(pc)
    assert errors == ""
    recovered = set(listed) - {("<none>", "<none>")}
    if how == "bad-entries":
        assert recovered == {("busybox", "latest"), ("second", "1")}
    elif how == "truncated":
        assert recovered == {("busybox", "latest")}  # the first entry survives the cut, the last does not
    # An image that lost its tag is still there: it can be tagged again, and nothing valid was deleted.
    ids = pc.ok("images", "-q").stdout.split()
    assert len(ids) == 2
    for image_id in ids:
        pc.ok("run", "--rm", image_id, "true")
    pc.ok("start", "user")
    assert pc.ok("wait", "user").stdout.strip() == "0"
    assert_leak_free()


# ---------------------------------------------------------------- networks, inside the test's netns

# A member that answers on port 80: the test's "host" namespace reaches it over the bridge.
HTTPD = ["sh", "-c", "mkdir -p /w && echo reached > /w/index.html && exec httpd -f -p 80 -h /w"]


def lease_of(npc: NetPycontain, name: str) -> str:
    return str(npc.net_of(name)["address"])


@pytest.mark.parametrize("how", ["truncated", "garbage", "array"])
def test_damaged_leases_json(npc: NetPycontain, how: str) -> None:
    npc.ok("network", "create", "n1")
    for name in ("a", "b"):
        npc.ok("run", "-d", "--name", name, "--network", "n1", "busybox", *HTTPD)
    held = {lease_of(npc, "a"), lease_of(npc, "b")}
    leases = npc.root / "run" / "networks" / "n1" / "leases.json"
    damage(leases, how)
    res = npc.ok("network", "ls")
    assert "leases.json is damaged" in res.stderr and "n1" in res.stderr, describe(res)
    one_line_error(npc("run", "--rm", "--network", "n1", "busybox", "true"), "leases.json")
    assert "rebuilt the damaged address leases of network n1" in npc.ok("gc").stdout
    assert set(json.loads(leases.read_text())["leases"]) == held
    # No address is handed out twice: a new member gets a third one, and reaches the others.
    npc.ok("run", "-d", "--name", "c", "--network", "n1", "busybox", *HTTPD)
    assert lease_of(npc, "c") not in held
    for name in ("a", "b", "c"):
        assert "reached" in http_get(npc.ns, lease_of(npc, name), 80)
    npc.remove_all()
    assert network_leftovers(npc) == []


def test_damaged_network_json(npc: NetPycontain) -> None:
    """With a member, network.json is rebuilt from its record (same subnet, bridge and id); without one,
    the network is removed."""
    npc.ok("network", "create", "used")
    npc.ok("network", "create", "idle")
    npc.ok("run", "-d", "--name", "m", "--network", "used", "busybox", *HTTPD)
    nets = npc.root / "run" / "networks"
    before = json.loads((nets / "used" / "network.json").read_text())
    damage(nets / "used" / "network.json", "garbage")
    damage(nets / "idle" / "network.json", "truncated")
    res = npc.ok("network", "ls")
    assert "used" in res.stderr and "idle" in res.stderr and "network.json is damaged" in res.stderr, describe(res)
    one_line_error(npc("network", "inspect", "used"), "network.json")
    out = npc.ok("gc").stdout
    assert "rebuilt the damaged network.json of network used" in out, out
    assert "removed network idle" in out, out
    after = json.loads((nets / "used" / "network.json").read_text())
    assert {k: after[k] for k in ("id", "subnet", "gateway", "bridge")} == \
        {k: before[k] for k in ("id", "subnet", "gateway", "bridge")}
    res = npc.ok("network", "ls")
    assert res.stderr == "" and [line.split()[1] for line in res.stdout.splitlines()[1:]] == ["used"]
    assert "reached" in http_get(npc.ns, lease_of(npc, "m"), 80)  # its bridge and address work as before
    npc.remove_all()  # its containers, then `network prune`: the rebuilt network is an ordinary one
    assert "used" not in npc.ok("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert network_leftovers(npc) == []


def test_damaged_port_table(npc: NetPycontain) -> None:
    npc.ok("run", "-d", "--name", "web", "--network", "pycontain", "-p", "127.0.0.1:18080:80", "busybox",
           "sleep", "60")
    ports = npc.root / "run" / "networks" / "ports.json"
    damage(ports, "garbage")
    one_line_error(npc("run", "--rm", "--network", "pycontain", "-p", "18081:80", "busybox", "true"), "ports.json")
    assert "rebuilt the damaged host port table" in npc.ok("gc").stdout
    assert json.loads(ports.read_text()) == {"tcp/18080": npc.container_id("web")}
    # The port is still known to be taken.
    one_line_error(npc("run", "--rm", "--network", "pycontain", "-p", "18080:80", "busybox", "true"), "18080")
    npc.remove_all()
    assert network_leftovers(npc) == []


def test_volume_metadata() -> None:
    pytest.skip("pycontain has no named volumes: -v is a bind mount of a host path and nothing is recorded "
                "about it, so there is no volume metadata to damage")
