"""`pycontain verify`: on this host every isolation claim holds, and verify leaves nothing behind, even
when it is interrupted. That it can fail is shown here with an image it cannot run its probes in, and
claim by claim with failing observations in tests/unit/test_verify_checks.py."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support import COMMAND_TIMEOUT, Pycontain, assert_pycontain_error, describe

CLAIMS = ("PID namespace", "mount namespace", "UTS namespace", "IPC namespace", "network namespace",
          "cgroup namespace", "memory limit", "pids limit", "capabilities", "no_new_privs", "seccomp",
          "masked paths", "read-only paths", "/dev", "user namespace")


def has_subuid_range() -> bool:
    try:
        text = Path("/etc/subuid").read_text()
    except FileNotFoundError:
        return False
    return any(line.split(":")[0] == "pycontain" for line in text.splitlines())


def results(table: str) -> dict[str, str]:
    """The RESULT column of verify's table, by claim (its cells unwrapped: see verify())."""
    out = {}
    for line in table.splitlines():
        for claim in CLAIMS:
            if line.startswith(claim + "  "):
                out[claim] = line.rsplit("  ", 1)[1].strip()
    return out


def host_shm_keys(creator: int | None = None) -> set[str]:
    """The keys of the host's SysV shm segments (those a process made, with creator)."""
    rows = [line.split() for line in Path("/proc/sysvipc/shm").read_text().splitlines()[1:] if line.split()]
    return {r[0] for r in rows if creator is None or r[4] == str(creator)}


def verify_leftovers(pc: Pycontain) -> list[str]:
    """verify's own objects on the host: containers in the test's root, its tmpfs, its temp dir."""
    found = [f"container {c}" for c in pc("ps", "-a", "-q").stdout.split()]
    found += [f"mount {line.strip()}" for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if "pycontain-verify-" in line]
    found += [f"/tmp/{d}" for d in os.listdir("/tmp") if d.startswith("pycontain-verify-")]
    return found


def verify(pc: Pycontain, *args: str) -> subprocess.CompletedProcess[str]:
    """`pycontain verify` with a table wide enough that no cell wraps (COLUMNS sets its width)."""
    return subprocess.run(pc.argv("verify", *args), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT, env={**os.environ, "COLUMNS": "1000"})


def test_verify_proves_every_claim_on_this_host(pc: Pycontain, assert_leak_free: Callable[[], None]) -> None:
    res = verify(pc)
    assert res.returncode == 0, describe(res)
    seen = results(res.stdout)
    assert list(seen) == list(CLAIMS), describe(res)
    for claim in CLAIMS[:-1]:
        assert seen[claim] == "ok", describe(res)
    assert seen["user namespace"] == "ok" if has_subuid_range() else seen["user namespace"].startswith("skipped:")
    assert re.search(r"^15 claims on busybox: 1[45] ok", res.stdout, re.M), describe(res)
    # The controls were real: the host mount and segment existed during the run, and are gone now.
    key = re.search(r"SysV shm segment key (\d+)", res.stdout)
    assert key and key[1] not in host_shm_keys()
    assert verify_leftovers(pc) == []
    assert_leak_free()


def test_verify_fails_on_an_image_it_cannot_probe(pc: Pycontain, tmp_path: Path,
                                                  assert_leak_free: Callable[[], None]) -> None:
    # An image without a shell: no container of verify's can run its script, so no claim is proven.
    rootfs = tmp_path / "nosh"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/false\n")
    with tarfile.open(tmp_path / "nosh.tar.gz", "w:gz") as tar:
        tar.add(rootfs, arcname=".")
    pc.ok("import", tmp_path / "nosh.tar.gz", "nosh")
    res = verify(pc, "nosh")
    assert res.returncode == 1, describe(res)
    assert "Traceback" not in res.stdout + res.stderr, describe(res)
    seen = results(res.stdout)
    assert list(seen) == list(CLAIMS), describe(res)
    assert all(r.startswith("FAILED") for claim, r in seen.items() if claim != "user namespace" or has_subuid_range())
    assert "the ns container did not start" in res.stdout, describe(res)
    assert "15 FAILED" in res.stdout or "14 FAILED" in res.stdout, describe(res)
    assert verify_leftovers(pc) == []
    assert_leak_free()


def test_verify_without_the_builtin_image_says_how_to_get_one(tmp_path: Path) -> None:
    res = Pycontain(tmp_path / "empty-root")("verify")
    assert_pycontain_error(res, 125)
    assert "scripts/install" in res.stderr and "pycontain verify IMAGE" in res.stderr, describe(res)


def test_verify_of_an_unknown_image_is_one_line(pc: Pycontain) -> None:
    res = pc("verify", "no-such-image")
    assert_pycontain_error(res, 125)
    assert "no-such-image" in res.stderr, describe(res)
    assert pc("ps", "-a", "-q").stdout == ""


def test_verify_takes_one_image(pc: Pycontain) -> None:
    assert_pycontain_error(pc("verify", "busybox", "busybox"), 125)


def mount_is_up() -> bool:
    return "pycontain-verify-" in Path("/proc/self/mountinfo").read_text()


@pytest.mark.parametrize("signum, moment", [
    (signal.SIGINT, "containers"),  # Ctrl-C: the terminal signals the whole foreground process group
    (signal.SIGINT, "host mount"),
    (signal.SIGTERM, "containers"),
    (signal.SIGHUP, "host mount"),
])
def test_an_interrupted_verify_leaves_nothing(pc: Pycontain, assert_leak_free: Callable[[], None],
                                              signum: int, moment: str) -> None:
    records = pc.root / "run" / "containers"
    def reached() -> bool:
        if moment == "containers":
            return records.is_dir() and any(records.iterdir())
        return mount_is_up()

    p = subprocess.Popen(pc.argv("verify"), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while not reached():  # a tight poll: the whole run takes a fraction of a second
            assert p.poll() is None, f"verify finished before its {moment} were there: {p.communicate()}"
            assert time.monotonic() < deadline, f"verify never got to its {moment}"
        os.killpg(p.pid, signum)
        out, err = p.communicate(timeout=COMMAND_TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 130, f"exit {p.returncode}\n--- stdout\n{out}--- stderr\n{err}"
    assert err == "pycontain: interrupted\n", err
    assert verify_leftovers(pc) == []
    assert host_shm_keys(creator=p.pid) == set()
    assert_leak_free()
