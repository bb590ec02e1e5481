"""`run --emit-shell`: the script it prints, run as root, builds the same container as `run`.

The same probe runs under `pycontain run` and under the script, and what it sees of its isolation must be
the same (PID 1, hostname, identity and capabilities, mounts, /dev, limits, masked and read-only paths,
environment); the overlay writes land in the script's own upper dir and never in the image; a bridge
network with -p answers on 127.0.0.1 (inside a network namespace of the test's); and the script removes
everything it made when the command exits and when it is killed with SIGINT or SIGTERM midway. Its
comments carry --explain's words, which a real --explain run checks.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import support
from netns_support import NetNs, NetPycontain, free_port, http_get, leak_checked
from support import COMMAND_TIMEOUT, SETTLE_TIMEOUT, Pycontain, assert_pycontain_error

# What a container sees of its own isolation, one fact per line (busybox sh and tools only).
PROBE = r"""
echo "pid $$"
echo "hostname $(hostname)"
echo "id $(id)"
echo "cwd $(pwd)"
grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs)' /proc/self/status
env | sort | sed 's/^/env /'
awk '{ i = 7; while ($i != "-") i++; print "mount", $5, $(i + 1), $6 }' /proc/self/mountinfo | sort
ls -l /dev | sed 1d | awk '{print "dev", $1, $NF}'
echo "keys $(wc -c < /proc/keys)"
echo "acpi $(ls -A /proc/acpi 2>/dev/null | wc -l)"
if (echo x > /proc/sys/kernel/domainname) 2>/dev/null; then echo "proc/sys writable"; else echo "proc/sys read-only"; fi
if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
  echo "memory $(cat /sys/fs/cgroup/memory.max) pids $(cat /sys/fs/cgroup/pids.max)"
else
  echo "memory $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes) pids $(cat /sys/fs/cgroup/pids/pids.max)"
fi
sed 's/^/cgroup /' /proc/self/cgroup
[ "$(ls -d /proc/[0-9]* | wc -l)" -lt 8 ] && echo "only a few processes"
ls /proc/self/fd | sed 's/^/fd /' | sort
"""


@pytest.fixture
def work(tmp_path: Path) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    return d


def emit(pc: Pycontain, tmp_path: Path, *args: str) -> Path:
    res = pc.ok("run", "--emit-shell", *args)
    assert res.stderr == "", res.stderr
    script = tmp_path / "container.sh"
    script.write_text(res.stdout)
    return script


def script_env(work: Path) -> dict[str, str]:
    return {**os.environ, "TMPDIR": str(work)}


def run_script(script: Path, work: Path, argv: tuple[str, ...] = (), **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*argv, "bash", str(script)], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT, env=script_env(work), **kw)  # type: ignore[call-overload]


def wait_for(what: str, check: Callable[[], object]) -> object:
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def start(script: Path, work: Path, argv: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    return subprocess.Popen([*argv, "bash", str(script)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=script_env(work))


def stop(proc: subprocess.Popen[str]) -> None:
    """After a failed check: TERM, so that the script still removes what it made; KILL if it hangs."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.communicate(timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def script_cgroups() -> set[Path]:
    """The scripts' cgroups: in the v1 pids hierarchy, or in the v2 tree."""
    root = Path("/sys/fs/cgroup")
    return {*root.glob("pids/pycontain-sh-*"), *root.glob("pycontain-sh-*")}


def mine(work: Path) -> list[Path]:
    return list(work.glob("pycontain-sh.*"))


# ---------------------------------------------------------------- the same isolation as run

def test_the_script_gives_the_command_what_run_gives_it(pc: Pycontain, no_leaks: None, tmp_path: Path,
                                                        work: Path) -> None:
    flags = ("--memory", "64m", "--pids-limit", "50", "--hostname", "demo", "-w", "/tmp")
    expected = pc.ok("run", "--rm", *flags, "busybox", "sh", "-c", PROBE).stdout
    script = emit(pc, tmp_path, *flags, "busybox", "sh", "-c", PROBE)
    res = run_script(script, work)
    assert res.returncode == 0, support.describe(res)
    got = res.stdout
    assert got.splitlines()[0] == "pid 1"
    assert "hostname demo" in got and "keys 0" in got and "proc/sys read-only" in got
    assert f"memory {64 << 20} pids 50" in got
    assert "CapEff:\t00000000800405fb" in got and "NoNewPrivs:\t1" in got
    # Line by line, what differs from `run` is a bug (the overlay's options name other directories).
    assert sorted(got.splitlines()) == sorted(expected.splitlines()), (
        "only under run:\n" + "\n".join(sorted(set(expected.splitlines()) - set(got.splitlines())))
        + "\nonly under the script:\n" + "\n".join(sorted(set(got.splitlines()) - set(expected.splitlines()))))
    assert mine(work) == []


def test_a_non_root_user_gets_no_capabilities_and_its_groups(pc: Pycontain, no_leaks: None, tmp_path: Path,
                                                             work: Path) -> None:
    cmd = ("busybox", "sh", "-c", "id; grep -E '^Cap(Prm|Eff|Bnd)' /proc/self/status; echo HOME=$HOME; exit 7")
    expected = pc("run", "--rm", "-u", "1000", *cmd)
    res = run_script(emit(pc, tmp_path, "-u", "1000", *cmd), work)
    assert (res.returncode, res.stdout) == (expected.returncode, expected.stdout) == (7, expected.stdout)
    assert "CapEff:\t0000000000000000" in res.stdout


def test_writes_land_in_the_upper_dir_and_the_script_cleans_up_when_killed(
        pc: Pycontain, assert_leak_free: Callable[[], None], tmp_path: Path, work: Path) -> None:
    for signum, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        script = emit(pc, tmp_path, "busybox", "sh", "-c", "echo data > /newfile; exec sleep 600")
        proc = start(script, work)
        try:
            upper = wait_for("the file in the upper dir", lambda: list(work.glob("pycontain-sh.*/upper/newfile")))
            assert isinstance(upper, list) and upper[0].read_text() == "data\n"
            # The image is untouched: no layer of the store has the file.
            assert not any(Path(d, "newfile").exists() for d in Path(pc.root, "storage", "images", "layers").iterdir())
            proc.send_signal(signum)
            out, err = proc.communicate(timeout=COMMAND_TIMEOUT)
        finally:
            stop(proc)
        assert proc.returncode == code, err
        assert mine(work) == []
        assert_leak_free()


def test_limits_are_in_the_cgroup_and_enforced(pc: Pycontain, no_leaks: None, tmp_path: Path, work: Path) -> None:
    # A fork bomb stops at --pids-limit; the limits are the cgroup's files, read from the host side too.
    cmd = "sleep 1; for i in $(seq 30); do sleep 5 & done; echo all-started"
    script = emit(pc, tmp_path, "--pids-limit", "10", "--cpus", "0.5", "--memory", "32m", "busybox", "sh", "-c", cmd)
    before = script_cgroups()
    proc = start(script, work)
    try:
        dirs = wait_for("the script's cgroup", lambda: sorted(script_cgroups() - before))
        assert isinstance(dirs, list)
        name = dirs[0].name
        # The limits are written before PID 1 joins: once a process is in, they are all there.
        wait_for("PID 1 in the cgroup", lambda: (dirs[0] / "cgroup.procs").read_text().strip())
        if Path("/sys/fs/cgroup/cgroup.controllers").exists():
            base = Path("/sys/fs/cgroup", name)
            assert (base / "pids.max").read_text().strip() == "10"
            assert (base / "memory.max").read_text().strip() == str(32 << 20)
            assert (base / "cpu.max").read_text().split() == ["50000", "100000"]
        else:
            assert Path("/sys/fs/cgroup/pids", name, "pids.max").read_text().strip() == "10"
            assert Path("/sys/fs/cgroup/memory", name, "memory.limit_in_bytes").read_text().strip() == str(32 << 20)
            assert Path("/sys/fs/cgroup/cpu", name, "cpu.cfs_quota_us").read_text().strip() == "50000"
        out, err = proc.communicate(timeout=COMMAND_TIMEOUT)
    finally:
        stop(proc)
    # busybox sh gives up at the first fork the pids controller refuses, under `run` as here.
    assert proc.returncode == 2 and "can't fork" in err and "all-started" not in out, err
    assert mine(work) == []


def test_exit_codes_pass_through(pc: Pycontain, no_leaks: None, tmp_path: Path, work: Path) -> None:
    assert run_script(emit(pc, tmp_path, "busybox", "sh", "-c", "exit 42"), work).returncode == 42
    res = run_script(emit(pc, tmp_path, "busybox", "no-such-command"), work)
    assert res.returncode == 127 and "no-such-command" in res.stderr
    assert mine(work) == []


# ---------------------------------------------------------------- bad input

def test_an_unknown_image_is_one_line(pc: Pycontain) -> None:
    assert_pycontain_error(pc("run", "--emit-shell", "no-such-image", "sh"))


@pytest.mark.parametrize("flags", [("--userns=auto",), ("--runtime", "runc"), ("-d", "--restart", "always"),
                                   ("--health-cmd", "true"), ("--privileged",)])
def test_flags_it_cannot_reproduce_are_refused_by_name(pc: Pycontain, flags: tuple[str, ...]) -> None:
    res = pc("run", "--emit-shell", *flags, "busybox", "sh")
    assert_pycontain_error(res)
    assert "--emit-shell cannot reproduce" in res.stderr and res.stdout == ""


# ---------------------------------------------------------------- --explain's words

def test_the_comments_carry_explain_s_words(pc: Pycontain, no_leaks: None, tmp_path: Path) -> None:
    flags = ("--memory", "64m", "--hostname", "demo", "--read-only")
    narration = pc.ok("--explain", "run", "--rm", *flags, "busybox", "true").stderr
    script = re.sub(r"\n *#   ", " ", emit(pc, tmp_path, *flags, "busybox", "true").read_text())
    # Each step's words, less what differs by run (ids, pids, paths, counts of the host's hierarchies).
    volatile = re.compile(r"/[^ ,)]*|[0-9a-f]{12,}|\b\d+\b|\$[A-Za-z_]+|\(name [^)]*\)|image [^ ]+")
    explained = " ".join(line for line in script.splitlines() if "[explain]" in line)
    comments = " ".join(volatile.sub("X", explained).split())
    missing = []
    for line in narration.splitlines():
        if not line.startswith("[explain] ") or "open_tree(" in line:
            continue  # a bind's source is a path of the record: compared below by its destination
        text = " ".join(volatile.sub("X", line.removeprefix("[explain] ")).split())
        # The step's reason (after "): ", else after the last ": "), or the whole line if it gives none.
        words = text.split("): ", 1)[1] if "): " in text else text.rsplit(": ", 1)[-1]
        if words not in comments:
            missing.append(line)
    assert not missing, "--explain lines whose words the script lacks:\n" + "\n".join(missing)
    for target in ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf"):
        assert f"move_mount(-> {target}): a host path shared into the container" in script


# ---------------------------------------------------------------- a bridge network and -p

@pytest.fixture
def npc(tmp_path: Path, ns: NetNs, busybox_tarball: Path, monkeypatch: pytest.MonkeyPatch,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetPycontain]:
    """pycontain in the test's network namespace; afterwards nothing of the script's may be left there or
    on the host (the network's own bridge and chains are pycontain's, and stay, as after `run`)."""
    def excuse(p: NetPycontain, line: str) -> bool:
        kept = {json.loads(f.read_text())["bridge"] for f in (p.root / "run" / "networks").glob("*/network.json")}
        return (line.startswith("leaked link: ") and line.split(": ", 1)[1] in kept) or \
            (line.startswith("leaked nft: ") and "pycontain-sh" not in line and not re.search(r"[0-9a-f]{64}", line))

    with leak_checked(tmp_path, ns, busybox_tarball, monkeypatch, tmp_path_factory.getbasetemp(), excuse) as p:
        yield p
        assert "pycontain-sh" not in ns.nft_ruleset()


def test_eth0_on_the_bridge_and_a_published_port(npc: NetPycontain, tmp_path: Path, work: Path) -> None:
    port = free_port()
    serve = "mkdir /www && echo hello from $(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"
    script = emit(npc, tmp_path, "--network", "bridge", "-p", f"127.0.0.1:{port}:80", "--hostname", "web",
                  "busybox", "sh", "-c", serve)
    proc = start(script, work, tuple(npc.ns.argv()))
    try:
        assert "hello from web" in http_get(npc.ns, "127.0.0.1", port)
        leases = json.loads((npc.root / "run" / "networks" / "pycontain" / "leases.json").read_text())["leases"]
        (address, lease), = leases.items()
        veth = "pc" + lease["id"][:12]
        on_bridge = npc.ns.run("ip", "-o", "link", "show", "master", "pycontain0").stdout
        assert veth in on_bridge
        # pycontain's IPAM holds the address for the script: `gc` leaves it, a container gets another.
        npc.ok("gc")
        leases = json.loads((npc.root / "run" / "networks" / "pycontain" / "leases.json").read_text())["leases"]
        assert address in leases
        other = npc.ok("run", "--rm", "--network", "bridge", "busybox", "sh", "-c",
                       "ip -4 -o addr show eth0").stdout
        assert f" {address}/" not in other
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=COMMAND_TIMEOUT)
    finally:
        stop(proc)
    assert proc.returncode == 143, err
    assert mine(work) == []
    assert json.loads((npc.root / "run" / "networks" / "pycontain" / "leases.json").read_text())["leases"] == {}
    wait_for("the veth to go", lambda: veth not in npc.ns.links())
