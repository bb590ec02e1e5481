"""CVE-2025-31133: a masked path "masked" with whatever the container put at /dev/null.

runc masked /proc/kcore and friends by bind-mounting the container's /dev/null over them, looked up by
name. A container whose /dev/null was a symlink (planted in the image, or swapped in by another
container sharing /dev) made runc bind /proc/sys/kernel/core_pattern there instead, read-write: a
masked path became a writable host sysctl. pycontain takes /dev/null as a descriptor opened without
following links, checks it is the 1:3 character device, and binds from that descriptor.

(test_masked_paths.py covers the image whose /dev is itself a link into /proc.) Here: a bundle whose
/dev (no tmpfs over it) has null -> a sysctl, or null as a plain file, must be refused; a real null
node in the same bundle masks as it should (the control: the refusal is about that node); and a /dev
shared with the host, where its null is exchanged for a link to a sysctl as fast as the host can,
must never leave a sysctl bound in the container.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cvesupport import no_leaks  # noqa: F401 - the fixture, less other test sessions' objects
from oci_support import Bundle, Oci
from support import Pycontain, describe

pytestmark = pytest.mark.usefixtures("no_leaks")

STAT_INTERVAL = Path("/proc/sys/vm/stat_interval")
CORE_PATTERN = Path("/proc/sys/kernel/core_pattern")
MASKED = ["/proc/keys", "/proc/timer_list"]
RENAME_EXCHANGE = 2
RACE_RUNS = 25


def dev_bundle(oci: Oci, null: str) -> Bundle:  # noqa: F811
    """A bundle with no tmpfs on /dev: its rootfs/dev/null is `null` ("link" to a sysctl, "file" or
    "device"). The links are never written through: refused, or (the control) not links."""
    b = oci.bundle(["sh", "-c", "stat -c '%n %t:%T %F' /proc/keys /proc/timer_list; "
                                "echo 9 > /proc/keys; grep -E ' /proc/(keys|timer_list) ' /proc/self/mountinfo"])
    b.config["mounts"] = [m for m in b.config["mounts"] if m["destination"] != "/dev"]
    b.linux["maskedPaths"] = list(MASKED)
    node = b.rootfs / "dev" / "null"
    node.parent.mkdir(exist_ok=True)
    node.unlink(missing_ok=True)
    if null.startswith("link"):
        node.symlink_to(CORE_PATTERN if null == "link-core_pattern" else STAT_INTERVAL)
    elif null == "file":
        node.write_text("not a device\n")
    else:
        os.mknod(node, 0o20666, os.makedev(1, 3))
    return b.write()


@pytest.mark.parametrize("null", ["link", "link-core_pattern", "file"])
def test_a_bundle_whose_dev_null_is_not_the_null_device_is_refused(oci: Oci, null: str) -> None:  # noqa: F811
    before = STAT_INTERVAL.read_text(), CORE_PATTERN.read_text()
    line = oci.create_fails(dev_bundle(oci, null).path)
    assert "/dev/null in the container is not the null device" in line, line
    assert (STAT_INTERVAL.read_text(), CORE_PATTERN.read_text()) == before


def test_control_a_real_null_node_in_the_same_bundle_masks(oci: Oci) -> None:  # noqa: F811
    code, out = oci.run_bundle(dev_bundle(oci, "device"))
    assert code == 0, out
    assert "/proc/keys 1:3 character special file" in out and "/proc/timer_list 1:3" in out, out


class Exchanger:
    """A host thread exchanging two names in a directory with renameat2(RENAME_EXCHANGE) until stopped:
    what a second container sharing that directory as its /dev could do."""

    def __init__(self, directory: Path, a: str, b: str) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        self.a, self.b = a.encode(), b.encode()
        self.count = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            if self.libc.renameat2(self.dir_fd, self.a, self.dir_fd, self.b, RENAME_EXCHANGE) == 0:
                self.count += 1

    def __enter__(self) -> Exchanger:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        os.close(self.dir_fd)


@pytest.fixture
def stat_interval_guard() -> Iterator[str]:
    """The host's vm.stat_interval, put back if a failing run changed it."""
    before = STAT_INTERVAL.read_text()
    yield before
    if STAT_INTERVAL.read_text() != before:
        STAT_INTERVAL.write_text(before)


def test_a_shared_dev_whose_null_is_swapped_for_a_link_never_masks_with_a_sysctl(
        pc: Pycontain, tmp_path: Path, stat_interval_guard: str) -> None:
    shared_dev = tmp_path / "dev"
    shared_dev.mkdir()
    os.mknod(shared_dev / "null", 0o20666, os.makedev(1, 3))
    (shared_dev / "evil").symlink_to(STAT_INTERVAL)
    outcomes = []
    with Exchanger(shared_dev, "null", "evil") as swapper:
        for _ in range(RACE_RUNS):
            res = pc("run", "--rm", "-v", f"{shared_dev}:/dev", "busybox", "sh", "-c",
                     "echo 9 > /proc/keys; stat -c '%t:%T' /proc/keys")
            assert STAT_INTERVAL.read_text() == stat_interval_guard, "a masked path was a host sysctl: " + describe(res)
            assert "Traceback" not in res.stderr, describe(res)
            if res.returncode == 0:
                assert res.stdout == "1:3\n", describe(res)
            else:
                assert "/dev/null in the container is not the null device" in res.stderr, describe(res)
            outcomes.append(res.returncode)
    assert swapper.count > 0, "the race never ran"
    assert 0 in outcomes, f"no container started while /dev/null was being swapped: {outcomes}"


def test_control_privileged_unmasks(pc: Pycontain) -> None:
    """--privileged turns masking off (as Docker documents): the masked files are then procfs's own, so
    the default's 1:3 is the masking at work."""
    res = pc("run", "--rm", "--privileged", "busybox", "stat", "-c", "%t:%T", *MASKED)
    assert res.returncode == 0, describe(res)
    assert "1:3" not in res.stdout.split(), res.stdout
    res = pc.ok("run", "--rm", "busybox", "stat", "-c", "%t:%T", *MASKED)
    assert res.stdout.split() == ["1:3"] * len(MASKED), res.stdout

