"""CVE-2024-21626: a host descriptor leaked into the container, reached as a working directory.

runc held a descriptor of the host's /sys/fs/cgroup while it set up the container, without
close-on-exec. `-w /proc/self/fd/7` made it the container's working directory: `cd ../../..` was then
the host's root. The same descriptor, left open, was reachable through /proc/self/fd/7.

Here the attack gets the strongest form this test can give it: the runtime itself is started holding
a descriptor of a host directory with a secret in it (passed by the caller, inheritable), so the
descriptor is really there while pycontain builds the container. Every /proc/self/fd/N working
directory must be refused as a /proc link (not "no such file": that would mean nothing was open there,
and the attack was never tried), and the container's process must hold none of it.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from attacks import probes  # noqa: F401 - the probes fixture
from cvesupport import no_leaks  # noqa: F401 - the fixture, less other test sessions' objects
from cvesupport import PROBE_DIR, probe_results, probe_volume
from oci_support import OCI, Container, Oci, new_id
from support import COMMAND_TIMEOUT, Pycontain, assert_pycontain_error, describe, in_terminal

pytestmark = pytest.mark.usefixtures("no_leaks")

SECRET = "host secret of CVE-2024-21626\n"
HARMLESS_FD = re.compile(r"(pipe|socket):\[\d+\]|anon_inode:.*|/dev/null|/dev/pts/\d+")
ESCAPE = "cat secret ../secret ../../secret ../../../secret ../../../../secret 2>/dev/null; pwd"


@pytest.fixture
def host_fd(tmp_path: Path) -> Iterator[int]:
    """An inheritable descriptor of a host directory holding `secret`, at a number the runtime's own
    descriptors would not reuse (it is open in pycontain from its first instruction)."""
    d = tmp_path / "host-dir"
    d.mkdir()
    (d / "secret").write_text(SECRET)
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    high = os.dup2(fd, 50, inheritable=True)
    os.close(fd)
    yield high
    os.close(high)


def holding(fd: int, argv: list[str], timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run argv (a pycontain command line) with `fd` open in it."""
    return subprocess.run(argv, pass_fds=(fd,), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


def holding_in_terminal(fd: int, argv: list[str], expect: str) -> str:
    """Run argv holding `fd` (inherited), on a terminal of its own (for -t); what it printed up to `expect`."""
    seen, code = in_terminal(argv, expect)
    text = seen.decode(errors="replace")
    assert code == 0, text
    return text.replace("\r", "")  # onlcr of two terminals: the container's and this one


def assert_refused_as_proc_link(res: subprocess.CompletedProcess[str], workdir: str) -> None:
    assert SECRET.strip() not in res.stdout, f"the container read the host directory: {describe(res)}"
    assert_pycontain_error(res, 125)
    assert f"cannot use working directory {workdir}: it leads through a /proc link" in res.stderr, describe(res)


def assert_no_host_descriptor(stdout: str, host_dir: Path, first: int = 0) -> None:
    """sysprobe's `fds` list: only pipes, sockets, ptys and /dev/null (from descriptor `first` on)."""
    entries = [line.split(" ", 2)[1:] for line in stdout.splitlines() if line.startswith("fds ") and line != "fds ok"]
    links = [link for n, link in entries if int(n) >= first]
    assert "fds ok" in stdout, stdout
    assert entries, f"the probe listed no descriptor at all: {stdout!r}"
    leaked = [link for link in links if not HARMLESS_FD.fullmatch(link)]
    assert not leaked, f"the container's process holds {leaked}"
    assert str(host_dir) not in " ".join(links)


def test_run_with_workdir_proc_self_fd_is_refused(pc: Pycontain, host_fd: int) -> None:
    # The caller's descriptor, and the numbers of whatever pycontain itself has open while it works.
    for n in sorted({host_fd, *range(3, 16)}):
        workdir = f"/proc/self/fd/{n}"
        res = holding(host_fd, pc.argv("run", "--rm", "-w", workdir, "busybox", "sh", "-c", ESCAPE))
        if n == host_fd or "leads through a /proc link" in res.stderr:
            assert_refused_as_proc_link(res, workdir)
        else:  # nothing open at that number while the working directory was chosen
            assert_pycontain_error(res, 125)
            assert SECRET.strip() not in res.stdout


def test_exec_with_workdir_proc_self_fd_is_refused(pc: Pycontain, host_fd: int) -> None:
    pc.ok("run", "-d", "--name", "c", "busybox", "sleep", "1000")
    for n in sorted({host_fd, *range(3, 16)}):
        workdir = f"/proc/self/fd/{n}"
        res = holding(host_fd, pc.argv("exec", "-w", workdir, "c", "sh", "-c", ESCAPE))
        if n == host_fd or "leads through a /proc link" in res.stderr:
            assert_refused_as_proc_link(res, workdir)
        else:
            assert_pycontain_error(res, 125)
            assert SECRET.strip() not in res.stdout


def test_a_workdir_link_to_proc_1_cwd_made_by_the_container_is_refused_in_exec(pc: Pycontain) -> None:
    """The container plants the link itself (in exec the path is the container's): /w -> /proc/self/fd/N
    for every N pycontain's child might hold while it enters."""
    pc.ok("run", "-d", "--name", "c", "busybox", "sleep", "1000")
    pc.ok("exec", "c", "sh", "-c", "for n in $(seq 3 20); do ln -s /proc/self/fd/$n /w$n; done")
    for n in range(3, 21):
        res = pc("exec", "-w", f"/w{n}", "c", "sh", "-c", ESCAPE)
        assert res.returncode == 125, describe(res)
        assert "Traceback" not in res.stderr and SECRET.strip() not in res.stdout


@pytest.mark.parametrize("tty", [False, True], ids=["pipes", "tty"])
def test_run_leaves_no_host_descriptor_in_the_container(pc: Pycontain, probes: Path, host_fd: int,  # noqa: F811
                                                        tmp_path: Path, tty: bool) -> None:
    argv = pc.argv("run", "--rm", *(["-t"] if tty else []), *probe_volume(probes), "busybox", f"{PROBE_DIR}/sysprobe",
                   "fds", "cwd", f"open_wr=/proc/self/fd/{host_fd}/secret")
    if tty:
        out = holding_in_terminal(host_fd, argv, "/secret ")
    else:
        res = holding(host_fd, argv)
        assert res.returncode == 0, describe(res)
        out = res.stdout
    assert_no_host_descriptor(out, tmp_path / "host-dir")
    found = probe_results(out)
    assert found[f"open_wr=/proc/self/fd/{host_fd}/secret"] == "ENOENT"
    assert "cwd ok /\n" in out


@pytest.mark.parametrize("tty", [False, True], ids=["pipes", "tty"])
def test_exec_leaves_no_host_descriptor_in_the_container(pc: Pycontain, probes: Path, host_fd: int,  # noqa: F811
                                                         tmp_path: Path, tty: bool) -> None:
    pc.ok("run", "-d", "--name", "c", *probe_volume(probes), "busybox", "sleep", "1000")
    argv = pc.argv("exec", *(["-t"] if tty else []), "c", f"{PROBE_DIR}/sysprobe", "fds", "cwd")
    if tty:
        out = holding_in_terminal(host_fd, argv, "cwd ok")
    else:
        res = holding(host_fd, argv)
        assert res.returncode == 0, describe(res)
        out = res.stdout
    assert_no_host_descriptor(out, tmp_path / "host-dir")
    # and nothing of it reached the container's init either
    init = pc.ok("exec", "c", "sh", "-c", "ls -l /proc/1/fd | grep -- '->' | sed 's/.*-> //'").stdout.split()
    assert all(HARMLESS_FD.fullmatch(link) for link in init), init


def test_oci_create_leaves_the_callers_other_descriptors_out(oci: Oci, probes: Path, host_fd: int,  # noqa: F811
                                                             tmp_path: Path) -> None:
    """An engine's own descriptors beyond 0-2 (and --preserve-fds) never reach the container. Its
    stdio are the caller's files by design (conmon's, a shim's), so they are not judged here."""
    b = oci.bundle([f"{PROBE_DIR}/sysprobe", "fds", "cwd"])
    b.config["mounts"].append({"destination": PROBE_DIR, "type": "bind", "source": str(probes),
                               "options": ["rbind", "ro"]})
    b.write()
    cid = new_id()
    out, err, pid_file = tmp_path / "c.out", tmp_path / "c.err", tmp_path / "c.pid"
    oci.cgroup_names.append(f"pycontain-{cid}")
    with open(out, "w") as o, open(err, "w") as e:
        res = subprocess.run([OCI, "--root", str(oci.root), "create", "--bundle", str(b.path), "--pid-file",
                              str(pid_file), cid], pass_fds=(host_fd,), stdin=subprocess.DEVNULL, stdout=o,
                             stderr=e, timeout=COMMAND_TIMEOUT)
    assert res.returncode == 0, err.read_text()
    code, _ = Container(oci, cid, b, int(pid_file.read_text()), out, err).run_to_end()
    assert code == 0, err.read_text()
    assert_no_host_descriptor(out.read_text(), tmp_path / "host-dir", first=3)
    assert "cwd ok /\n" in out.read_text()
