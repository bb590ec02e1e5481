"""CVE-2019-5736: a container overwrites the runtime's binary through /proc/PID/exe.

runc's init (a host binary) was, until its final execve, a process of the container's PID namespace.
The container got at that binary two ways: a program `#!/proc/self/exe` (the kernel runs whatever the
runtime's process is, with the image's ld.so as its interpreter), or a process watching /proc for the
runtime entering on `exec` and opening /proc/PID/exe; once runc had moved on, the descriptor was
reopened for writing and runc was replaced on the host.

pycontain's child is the host's Python. It stays non-dumpable until it execs a sealed memfd copy of a
static helper (no PT_INTERP), and that helper execs the container's program. Here the attacks run as
written, with probes that can see a host binary when there is one:
  - fake_ld (the image's /lib64/ld-linux-x86-64.so.2) runs for any dynamically linked interpreter;
    the control `#!/dynbin` (a dynamic program of the image's) shows it does, and what it reports.
  - proc_watch spins over the container's /proc while `exec` runs; the control execs a host binary
    bound in read-only (/bin/busybox), and the watcher must name that inode as a host file's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from attacks import derived_image, entry, probes  # noqa: F401 - the probes fixture
from cvesupport import no_leaks  # noqa: F401 - the fixture, less other test sessions' objects
from cvesupport import file_id, runtime_binaries, watch_execs, watch_lines
from oci_support import Bundle, Oci
from support import Pycontain, describe

pytestmark = pytest.mark.usefixtures("no_leaks")

DYNAMIC = "/usr/bin/true"  # any dynamically linked host program: its PT_INTERP is the image's loader
HOST_BUSYBOX = Path("/bin/busybox")


def selfexe_files(probes: Path) -> list[tuple[str, bytes]]:  # noqa: F811
    return [
        ("x", b"#!/proc/self/exe\n"),  # the attack: the kernel runs the process's own executable
        ("y", b"#!/dynbin\n"),  # the control: the same path through a dynamic program of the image's
        ("dynbin", Path(DYNAMIC).read_bytes()),
        ("lib64/ld-linux-x86-64.so.2", (probes / "fake_ld").read_bytes()),
    ]


@pytest.fixture
def selfexe_image(pc: Pycontain, busybox_tarball: Path, probes: Path, tmp_path: Path) -> str:  # noqa: F811
    files = selfexe_files(probes)
    image = derived_image(busybox_tarball, tmp_path / "selfexe.tar.gz",
                          add=[entry("lib64", directory=True)] + [entry(name, data=data) for name, data in files])
    pc.ok("import", "--change", 'CMD ["sh"]', image, "selfexe")
    return "selfexe"


def loader_report(stdout: str) -> tuple[str | None, str | None]:
    """fake_ld's (exe dev:ino, write result), or Nones if it never ran."""
    exe = write = None
    for line in stdout.splitlines():
        if line.startswith("loader exe "):
            exe = ":".join(line.split()[2:4])
        elif line.startswith("loader write "):
            write = line.split()[2]
    return exe, write


def assert_no_host_binary_reached(stdout: str) -> None:
    exe, write = loader_report(stdout)
    hosts = runtime_binaries()
    assert exe not in hosts, f"the image's loader ran with {hosts.get(exe or '')} as /proc/self/exe"
    assert write != "ok", "the image's loader opened its /proc/self/exe for writing"


def assert_control_loader_ran(stdout: str) -> None:
    """The control: the image's loader does run for a dynamically linked interpreter, reports its exe
    (the image's own /dynbin), and could not open it for writing while it runs (ETXTBSY)."""
    exe, write = loader_report(stdout)
    assert exe is not None and ":" in exe, f"the image's fake loader never ran: {stdout!r}"
    assert exe not in runtime_binaries()
    assert write == str(-26), stdout  # -ETXTBSY


def test_run_of_a_proc_self_exe_script(pc: Pycontain, selfexe_image: str) -> None:
    control = pc("run", "--rm", selfexe_image, "/y")
    assert_control_loader_ran(control.stdout)
    res = pc("run", "--rm", selfexe_image, "/x")
    assert_no_host_binary_reached(res.stdout)
    assert loader_report(res.stdout) == (None, None), "a dynamic program ran as /proc/self/exe: " + describe(res)
    assert res.returncode == 126, describe(res)  # the helper refuses to be anyone's interpreter


def test_exec_of_a_proc_self_exe_script(pc: Pycontain, selfexe_image: str) -> None:
    pc.ok("run", "-d", "--name", "target", selfexe_image, "sleep", "1000")
    assert_control_loader_ran(pc("exec", "target", "/y").stdout)
    res = pc("exec", "target", "/x")
    assert_no_host_binary_reached(res.stdout)
    assert loader_report(res.stdout) == (None, None), describe(res)
    assert res.returncode == 126, describe(res)


def test_oci_run_and_exec_of_a_proc_self_exe_script(oci: Oci, probes: Path) -> None:  # noqa: F811
    def bundle(args: list[str]) -> Bundle:
        b = oci.bundle(args)
        (b.rootfs / "lib64").mkdir(exist_ok=True)
        for name, data in selfexe_files(probes):
            (b.rootfs / name).write_bytes(data)
            (b.rootfs / name).chmod(0o755)
        return b

    code, out = oci.run_bundle(bundle(["/y"]))
    assert_control_loader_ran(out)
    code, out = oci.run_bundle(bundle(["/x"]))
    assert_no_host_binary_reached(out)
    assert (code, loader_report(out)) == (126, (None, None)), out
    c = oci.create(bundle(["sleep", "1000"]))
    c.start()
    assert_control_loader_ran(oci("exec", c.id, "/y").stdout)
    res = oci("exec", c.id, "/x")
    assert_no_host_binary_reached(res.stdout)
    assert (res.returncode, loader_report(res.stdout)) == (126, (None, None)), describe(res)
    c.delete("--force")
    c.wait()


# ---------------------------------------------------------------- a container watching `exec` enter

def test_exec_never_shows_the_container_a_host_binary_as_exe(pc: Pycontain, probes: Path) -> None:  # noqa: F811
    assert HOST_BUSYBOX.is_file(), "the control needs the host's static busybox (busybox-static)"
    execs = [["/bin/sleep", "0.05"]] * 10 + [["/hostbin/busybox", "sleep", "0.3"]]
    logs = watch_execs(pc, probes, execs, extra=("-v", f"{HOST_BUSYBOX}:/hostbin/busybox:ro"))
    seen = watch_lines(logs)
    inodes = {o["ino"] for o in seen}
    # The control: a host binary run by `exec` is seen as exactly that host inode.
    assert file_id(HOST_BUSYBOX) in inodes, f"the watcher cannot see a host binary as exe:\n{logs}"
    # The window before execve was watched: the runtime's process was there, its exe refused (EACCES).
    assert any(o["exe"] == "!13" for o in seen), f"the watcher never saw pycontain's own process:\n{logs}"
    reached = {runtime_binaries()[i] for i in inodes if i in runtime_binaries()}
    assert not reached, f"a container process reached {reached} through /proc/PID/exe:\n{logs}"
    assert all(o["write"] != "ok" for o in seen), logs
    reopened = [line.split("\t") for line in logs.splitlines() if line.startswith("reopen\t/memfd:pycontain-exec")]
    # (A helper made non-dumpable would never show up here at all: nothing to reopen, which is fine.)
    # The sealed copy: reopened for writing once the helper moved on, any write is refused (EPERM), and
    # it carries every seal (F_SEAL_SEAL|SHRINK|GROW|WRITE = 15: nobody can ever make it writable again).
    for line in reopened:
        assert line[2:] == ["ok", "seals=15", "pwrite=!1"] or line[2] == "!26", line

