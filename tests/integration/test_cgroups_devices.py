"""Device access through the container's cgroup: the default rules, --device and --privileged, for `run`,
`exec` and `pycontain-oci`, on whichever cgroup version runs (v1 here: the devices controller; v2 in
scripts/vm-test's guest: a BPF program attached to the cgroup).

The attack the rules stop: a container given CAP_MKNOD makes a node for the host's disk in its own /dev
and reads or writes the disk through it. Making the node is allowed (it alone opens nothing); opening it
must fail with EPERM. Each denial is shown next to the same open succeeding where the rules allow it (an
allow-all bundle, --device), so an EPERM from anything else (a nodev mount, a missing capability) would
fail the test.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from oci_support import BASE_CAPS, Oci
from support import CGROUP_ROOT, COMMAND_TIMEOUT, Pycontain, assert_pycontain_error, describe

pytestmark = pytest.mark.integration

V2 = (CGROUP_ROOT / "cgroup.controllers").exists()
MARKER = b"pycontain-device-test-"
EPERM = "Operation not permitted"


# ---------------------------------------------------------------- a block device with known content

class Loop:
    """A loop device backed by a small file that starts with MARKER: a real block device of the host."""

    def __init__(self, path: str) -> None:
        self.path = path
        st = os.stat(path)
        self.major, self.minor = os.major(st.st_rdev), os.minor(st.st_rdev)


def _load_loop_driver(scratch: Path) -> None:
    """The guest kernel of scripts/vm-test has the loop driver as a module and no udev: opening a block
    node of major 7 makes the kernel load it (request_module "block-major-7-*")."""
    if os.path.exists("/dev/loop-control"):
        return
    node = scratch / "loop-probe"
    os.mknod(node, 0o600 | stat.S_IFBLK, os.makedev(7, 0))
    try:
        os.close(os.open(node, os.O_RDONLY))
    except OSError:
        pass  # ENXIO: the driver is loaded now, the device just has no file yet
    finally:
        node.unlink()


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Loop]:
    backing = tmp_path / "disk.img"
    with open(backing, "wb") as f:
        f.write(MARKER + b"\0" * (1024 * 1024 - len(MARKER)))
    _load_loop_driver(tmp_path)
    res = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True,
                         timeout=COMMAND_TIMEOUT)
    assert res.returncode == 0, describe(res)
    path = res.stdout.strip()
    try:
        yield Loop(path)
    finally:
        subprocess.run(["losetup", "--detach", path], check=True, timeout=COMMAND_TIMEOUT)


def host_disk() -> tuple[int, int] | None:
    """major:minor of a real disk of the host (not a loop, ram or zram device), if it has one."""
    try:
        entries = sorted(os.listdir("/sys/dev/block"))
    except OSError:
        return None
    for entry in entries:
        name = os.path.basename(os.readlink(f"/sys/dev/block/{entry}"))
        if not name.startswith(("loop", "ram", "zram", "nbd", "sr")):
            major, minor = entry.split(":")
            return int(major), int(minor)
    return None


def targets(loop: Loop) -> list[tuple[int, int]]:
    disk = host_disk()
    return [(loop.major, loop.minor)] + ([disk] if disk else [])


# Make a node (mknod), then read it, in one line each: "mknod-ok", "read:<bytes>" or the error.
def probe(major: int, minor: int, name: str = "/dev/disk0") -> str:
    return (f"mknod {name} b {major} {minor} && echo mknod-ok; "
            f"head -c {len(MARKER)} {name} > /tmp/read 2>/tmp/err && echo read:$(cat /tmp/read) || cat /tmp/err")


def opened(out: str) -> bool:
    return f"read:{MARKER.decode()}" in out


# ---------------------------------------------------------------- pycontain run / exec

def test_default_rules_let_a_container_make_a_disk_node_but_not_open_it(pc: Pycontain, loop: Loop,
                                                                         no_leaks: None) -> None:
    for major, minor in targets(loop):
        out = pc.ok("run", "--rm", "--cap-add", "MKNOD", "busybox", "sh", "-c", probe(major, minor)).stdout
        assert "mknod-ok" in out, out
        assert EPERM in out and not out.count("read:"), f"b {major}:{minor} opened under the default rules: {out}"


def test_the_standard_nodes_work_under_the_default_rules(pc: Pycontain, no_leaks: None) -> None:
    script = ("exec 2>&1; for d in null zero full random urandom; do head -c 4 /dev/$d > /dev/null && echo $d-read; "
              "done; echo x > /dev/null && echo null-written; echo x > /dev/zero && echo zero-written; "
              "head -c 0 /dev/tty; ls /dev/pts/ptmx > /dev/null && echo ptmx-there")
    out = pc.ok("run", "--rm", "busybox", "sh", "-c", script).stdout
    for name in ("null", "zero", "full", "random", "urandom"):
        assert f"{name}-read" in out, out
    assert "null-written" in out and "zero-written" in out and "ptmx-there" in out, out
    # /dev/tty opens only for a process with a controlling terminal (ENXIO here); the cgroup allows it.
    assert "/dev/tty" in out and EPERM not in out, out


def test_exec_is_held_to_the_same_rules(pc: Pycontain, loop: Loop, no_leaks: None) -> None:
    """An exec'd process joins the container's cgroup (on v1 its devices cgroup too): the node the
    container made opens no more for it than for the container's init."""
    pc.ok("run", "-d", "--name", "made", "--cap-add", "MKNOD", "busybox", "sh", "-c",
          f"mknod /dev/disk0 b {loop.major} {loop.minor} && sleep 60")
    pc.wait_until_running("made")
    res = pc("exec", "made", "sh", "-c", f"exec 2>&1; ls -l /dev/disk0; head -c {len(MARKER)} /dev/disk0")
    assert "disk0" in res.stdout and EPERM in res.stdout and MARKER.decode() not in res.stdout, describe(res)


def test_device_gives_the_container_a_readable_and_writable_node(pc: Pycontain, loop: Loop, no_leaks: None) -> None:
    script = (f"stat -c '%t:%T' {loop.path}; head -c {len(MARKER)} {loop.path}; echo; "
              f"printf Z | dd of={loop.path} bs=1 seek=100 conv=notrunc 2>/dev/null && echo written")
    out = pc.ok("run", "--rm", "--device", loop.path, "busybox", "sh", "-c", script).stdout
    assert out.splitlines()[0] == f"{loop.major:x}:{loop.minor:x}", out
    assert MARKER.decode() in out and "written" in out, out
    with open(loop.path, "rb") as f:
        f.seek(100)
        assert f.read(1) == b"Z", "the write reached the host's device"


def test_device_read_only_and_at_another_path(pc: Pycontain, loop: Loop, no_leaks: None) -> None:
    script = ("stat -c '%t:%T %a' /dev/xvda; head -c " + str(len(MARKER)) + " /dev/xvda; echo; "
              "printf Z | dd of=/dev/xvda bs=1 seek=100 conv=notrunc 2>&1 && echo written")
    out = pc("run", "--rm", "--device", f"{loop.path}:/dev/xvda:r", "busybox", "sh", "-c", script).stdout
    lines = out.splitlines()
    assert lines[0].split()[0] == f"{loop.major:x}:{loop.minor:x}", out
    assert MARKER.decode() in out, f"a device given :r is readable: {out}"
    assert EPERM in out and "written" not in out, f"a device given :r is not writable: {out}"


def test_device_nodes_keep_the_hosts_mode(pc: Pycontain, loop: Loop, no_leaks: None) -> None:
    mode = stat.S_IMODE(os.stat(loop.path).st_mode)
    out = pc.ok("run", "--rm", "--device", loop.path, "busybox", "stat", "-c", "%a %u %g", loop.path).stdout
    assert out.split() == [f"{mode:o}", "0", "0"], out


def test_privileged_gives_the_hosts_devices(pc: Pycontain, loop: Loop, no_leaks: None) -> None:
    out = pc.ok("run", "--rm", "--privileged", "busybox", "sh", "-c",
                f"head -c {len(MARKER)} {loop.path}; echo; " + probe(loop.major, loop.minor, "/dev/another")).stdout
    assert out.startswith(MARKER.decode()), f"the host's device is there and opens: {out}"
    assert opened(out), f"with --privileged every device opens: {out}"


@pytest.mark.parametrize(("flag", "says"), [
    ("/dev/no-such-device", "No such file or directory"),
    ("/etc/hostname", "not a character or block device"),
    ("/dev/null:/dev/x:rwx", "permissions"),
    ("/dev/null:dev/x", "must be absolute"),
])
def test_a_bad_device_is_one_clear_error(pc: Pycontain, flag: str, says: str, no_leaks: None) -> None:
    res = pc("run", "--rm", "--device", flag, "busybox", "true")
    assert_pycontain_error(res)
    assert says in res.stderr, describe(res)


@pytest.mark.skipif(V2, reason="cgroup v1: the rules are the devices controller's list")
def test_v1_the_rules_are_the_containers_devices_list(pc: Pycontain, loop: Loop, no_leaks: None) -> None:
    pc.ok("run", "-d", "--name", "listed", "--device", f"{loop.path}:r", "busybox", "sleep", "60")
    cid = pc.inspect("listed")["Id"]
    rules = (CGROUP_ROOT / "devices" / f"pycontain-{cid}" / "devices.list").read_text().splitlines()
    assert "a *:* rwm" not in rules and f"b {loop.major}:{loop.minor} r" in rules and "c 1:3 rwm" in rules, rules
    assert not any(r.startswith(("b 254:", "b 8:", "c 10:200")) for r in rules), rules


# ---------------------------------------------------------------- pycontain-oci

def _bundle_with_mknod(oci: Oci, script: str, rules: list[dict[str, object]]) -> tuple[int, str]:
    b = oci.bundle(["sh", "-c", script])
    for kind in ("bounding", "effective", "permitted"):
        b.process["capabilities"][kind] = [*BASE_CAPS, "CAP_MKNOD"]
    b.linux["resources"] = {"devices": rules}
    return oci.run_bundle(b)


DEFAULT_LIKE = [{"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "access": "m"}, {"allow": True, "type": "b", "access": "m"}]


@pytest.mark.parametrize(("rules", "opens"), [
    (DEFAULT_LIKE, False),
    ([{"allow": True, "access": "rwm"}], True),  # the control: the same open succeeds when allowed
    (DEFAULT_LIKE[:1], False),  # mknod is one of the runtime's defaults, as runc's
])
def test_oci_bundle_rules_decide_whether_a_made_disk_node_opens(oci: Oci, loop: Loop,
                                                                rules: list[dict[str, object]], opens: bool) -> None:
    # The host's own disk only where it must not open: the control reads nothing but the test's device.
    for major, minor in [(loop.major, loop.minor)] if opens else targets(loop):
        code, out = _bundle_with_mknod(oci, probe(major, minor), rules)
        assert code == 0 and "mknod-ok" in out, out
        if opens:
            assert opened(out) and EPERM not in out, out
        else:
            assert EPERM in out and "read:" not in out, f"b {major}:{minor} opened: {out}"


def test_oci_linux_devices_with_a_read_rule(oci: Oci, loop: Loop) -> None:
    b = oci.bundle(["sh", "-c", f"exec 2>&1; head -c {len(MARKER)} /dev/xvdb; echo; "
                                "printf Z | dd of=/dev/xvdb bs=1 seek=100 conv=notrunc && echo written"])
    b.linux["devices"] = [{"path": "/dev/xvdb", "type": "b", "major": loop.major, "minor": loop.minor,
                           "fileMode": 0o600}]
    b.linux["resources"] = {"devices": [{"allow": False, "access": "rwm"},
                                        {"allow": True, "type": "b", "major": loop.major, "minor": loop.minor,
                                         "access": "r"}]}
    code, out = oci.run_bundle(b)
    assert MARKER.decode() in out and EPERM in out and "written" not in out, out

