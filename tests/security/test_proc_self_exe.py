"""No host binary is ever the container's /proc/self/exe (the CVE-2019-5736 shape).

The attack: an image with `/x` = `#!/proc/self/exe` and its own static /lib64/ld-linux-x86-64.so.2.
Running /x makes the kernel execute /proc/self/exe, which was the host's Python (the process making
the final execve), with the image's "loader" as its interpreter: that code then ran with the host's
python binary as /proc/self/exe, and with CAP_FOWNER/CAP_SETFCAP could have chmod'ed it set-uid.
Would have caught: 3009c56 (the last commit before the fix).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from attacks import derived_image, entry, probes  # noqa: F401 - the probes fixture
from support import Pycontain

pytestmark = pytest.mark.usefixtures("no_leaks")


def host_binaries() -> set[str]:
    """(dev, ino) of what could have been the container's exe: the interpreter pycontain runs on."""
    found = set()
    for path in (sys.executable, "/opt/pycontain/venv/bin/python3", "/usr/bin/python3"):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        found.add(f"exe {st.st_dev} {st.st_ino}")
    return found


@pytest.fixture
def selfexe_image(pc: Pycontain, busybox_tarball: Path, probes: Path, tmp_path: Path) -> str:  # noqa: F811
    image = derived_image(busybox_tarball, tmp_path / "selfexe.tar.gz", add=[
        entry("x", data=b"#!/proc/self/exe\n"),
        entry("lib64", directory=True),
        entry("lib64/ld-linux-x86-64.so.2", data=(probes / "exe_probe").read_bytes()),
    ])
    pc.ok("import", "--change", 'CMD ["sh"]', image, "selfexe")
    return "selfexe"


def test_run_of_a_proc_self_exe_script_never_reaches_a_host_binary(pc: Pycontain, selfexe_image: str) -> None:
    res = pc("run", "--rm", selfexe_image, "/x")
    reached = host_binaries() & set(res.stdout.splitlines())
    assert not reached, f"the image's loader ran with a host binary as /proc/self/exe: {res.stdout!r}"
    assert res.returncode != 0  # the helper refuses to be an interpreter


def test_exec_of_a_proc_self_exe_script_never_reaches_a_host_binary(pc: Pycontain, selfexe_image: str) -> None:
    pc.ok("run", "-d", "--name", "target", selfexe_image, "sleep", "1000")
    res = pc("exec", "target", "/x")
    reached = host_binaries() & set(res.stdout.splitlines())
    assert not reached, f"the image's loader ran with a host binary as /proc/self/exe: {res.stdout!r}"
