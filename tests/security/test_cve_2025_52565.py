"""CVE-2025-52565: the container's terminal mounted where a symlink in the image points.

runc bind-mounted the pty slave over /dev/console (and opened /dev/pts entries) by path, after the
image's files were in place: /dev/console -> /proc/sys/kernel/core_pattern made runc bind a pty over
the host sysctl's procfs file, read-write and unmasked. pycontain mounts nothing at /dev/console: with a
terminal, the master is opened as /dev/pts/ptmx inside the container without following links out,
checked to be the ptmx device (5:2), and the slave is opened from the master (TIOCGPTPEER), never by name.

Checked here: run -t and exec -t get a pty of the container's own devpts instance and no /dev/console
mount; a bundle whose /dev (no tmpfs over it) has console -> a sysctl is run with a terminal and the
sysctl stays untouched, unmounted; a bundle whose /dev/pts/ptmx leads to a sysctl is refused.
(test_pty.py covers a container that replaces /dev/ptmx before `exec -t`.)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cvesupport import no_leaks  # noqa: F401 - the fixture, less other test sessions' objects
from oci_support import Bundle, ConsoleSocket, Oci, error_line, new_id, read_all
from support import Pycontain, in_terminal

pytestmark = pytest.mark.usefixtures("no_leaks")

STAT_INTERVAL = Path("/proc/sys/vm/stat_interval")
# The terminal's own device, the container's devpts, and whether anything is mounted at /dev/console.
LOOK = ("stat -L -c '%d' /proc/self/fd/0 /dev/pts/ptmx | uniq | wc -l; tty; "
        "grep -c ' /dev/console ' /proc/self/mountinfo; echo END")


def on_terminal(argv: list[str]) -> str:
    seen, code = in_terminal(argv, "END")
    out = seen.decode(errors="replace").replace("\r", "")
    assert code in (0, 1), out  # grep -c exits 1 when it counts 0
    return out


def assert_own_pty(out: str) -> None:
    lines = out.split("END")[0].strip().splitlines()[-3:]
    assert lines[0] == "1", f"the terminal is not on the container's own devpts: {out!r}"
    assert lines[1].startswith("/dev/pts/"), out
    assert lines[2] == "0", f"something is mounted at /dev/console: {out!r}"


@pytest.mark.parametrize("how", ["run", "exec"])
def test_the_terminal_is_the_containers_own_and_nothing_is_mounted_at_dev_console(pc: Pycontain, how: str) -> None:
    if how == "run":
        out = on_terminal(pc.argv("run", "--rm", "-t", "busybox", "sh", "-c", LOOK))
    else:
        pc.ok("run", "-d", "--name", "c", "busybox", "sleep", "1000")
        out = on_terminal(pc.argv("exec", "-t", "c", "sh", "-c", LOOK))
    assert_own_pty(out)


def terminal_bundle(oci: Oci, args: list[str]) -> Bundle:  # noqa: F811
    """A bundle with a terminal and no tmpfs on /dev: the image's own /dev entries are what is there."""
    b = oci.bundle(args)
    b.process["terminal"] = True
    b.config["mounts"] = [m for m in b.config["mounts"] if m["destination"] != "/dev"]
    (b.rootfs / "dev").mkdir(exist_ok=True)
    if not (b.rootfs / "dev" / "null").exists():  # the masked paths are bound from it
        os.mknod(b.rootfs / "dev" / "null", 0o20666, os.makedev(1, 3))
    return b


def test_a_bundle_whose_dev_console_links_to_a_sysctl_keeps_it_untouched(oci: Oci, tmp_path: Path) -> None:  # noqa: F811
    before = STAT_INTERVAL.read_text()
    b = terminal_bundle(oci, ["sh", "-c", LOOK + "; readlink /dev/console; echo 9 > /dev/console"])
    console_link = b.rootfs / "dev" / "console"
    console_link.unlink(missing_ok=True)
    console_link.symlink_to(STAT_INTERVAL)
    sock = ConsoleSocket(tmp_path / "c.sock")
    try:
        c = oci.create(b, None, "--console-socket", str(sock.path))
        master = sock.receive_master()
    finally:
        sock.close()
    try:
        c.start()
        out = read_all(master).decode(errors="replace").replace("\r", "")
    finally:
        os.close(master)
    c.wait()
    c.delete()
    # The image's link is left as the image made it, nothing is mounted on it, and the write the
    # container then makes through it lands in its own procfs: read-only there (/proc/sys).
    assert_own_pty(out)
    assert f"END\n{STAT_INTERVAL}\n" in out, out
    assert STAT_INTERVAL.read_text() == before


@pytest.mark.parametrize("ptmx", ["link", "dir-link", "file"])
def test_a_bundle_whose_dev_pts_ptmx_is_not_the_multiplexer_is_refused(oci: Oci, tmp_path: Path,  # noqa: F811
                                                                      ptmx: str) -> None:
    """No devpts mount in the spec: /dev/pts/ptmx is the image's. A link to a sysctl (or /dev/pts a link
    to a sysctl directory) is not followed, a plain file is not the 5:2 device: refused either way."""
    before = STAT_INTERVAL.read_text()
    b = terminal_bundle(oci, ["true"])
    b.config["mounts"] = [m for m in b.config["mounts"] if m["destination"] != "/dev/pts"]
    pts = b.rootfs / "dev" / "pts"
    if ptmx == "dir-link":
        pts.symlink_to(STAT_INTERVAL.parent)
    else:
        pts.mkdir(parents=True, exist_ok=True)
        if ptmx == "link":
            (pts / "ptmx").symlink_to(STAT_INTERVAL)
        else:
            (pts / "ptmx").write_text("not a device\n")
    b.write()
    cid = new_id()
    oci.cgroup_names.append(f"pycontain-{cid}")
    sock = ConsoleSocket(tmp_path / "c.sock")
    try:
        line = error_line(oci("create", "--bundle", b.path, "--console-socket", sock.path, "--pid-file",
                              oci.tmp / f"{cid}.pid", cid))
    finally:
        sock.close()
    assert "/dev/pts/ptmx" in line, line
    assert not (oci.root / cid).exists(), line
    assert STAT_INTERVAL.read_text() == before
