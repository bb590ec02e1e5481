"""The "shocker" escape (Docker 0.11, 2014): open_by_handle_at(2) from a descriptor on a host filesystem.

A file handle names an inode by number; open_by_handle_at opens it given any descriptor on the same
filesystem. pycontain binds /etc/hosts, /etc/hostname and /etc/resolv.conf from the container's state
directory, so a container holds such a descriptor, and inode 2 is the host filesystem's root. The call
needs CAP_DAC_READ_SEARCH (not in the default set), and the default seccomp filter refuses it besides.

The probe first asks name_to_handle_at what /etc/hosts's handles look like: type 1 (FILEID_INO32_GEN)
is ext2/3/4's, the one the probe builds for inode 2. The control lifts both protections and must read
the host root's directory listing through the handle.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from attacks import probes  # noqa: F401 - the probes fixture
from cvesupport import no_leaks  # noqa: F401 - the fixture, less other test sessions' objects
from cvesupport import PROBE_DIR, probe_volume
from support import Pycontain, describe

pytestmark = pytest.mark.usefixtures("no_leaks")

UNLOCK = ("--cap-add", "DAC_READ_SEARCH", "--security-opt", "seccomp=unconfined")


def shocker(pc: Pycontain, probes: Path, *flags: str) -> list[str]:  # noqa: F811
    res = pc("run", "--rm", *flags, *probe_volume(probes), "busybox", f"{PROBE_DIR}/shocker", "/etc/hosts")
    assert res.returncode == 0, describe(res)
    lines = res.stdout.splitlines()
    if not lines or lines[0] != "handle 1 8":
        pytest.skip(f"the state root's filesystem does not use ext4 file handles ({lines[:1]}): the probe's "
                    "handle for inode 2 would be meaningless there")
    return lines[1:]


def test_open_by_handle_at_cannot_open_the_host_root(pc: Pycontain, probes: Path) -> None:  # noqa: F811
    lines = shocker(pc, probes)
    assert lines == ["open_by_handle_at errno 1 EPERM"], lines


def test_control_with_the_capability_and_no_filter_the_host_root_is_read(pc: Pycontain, probes: Path,  # noqa: F811
                                                                         tmp_path: Path) -> None:
    lines = shocker(pc, probes, *UNLOCK)
    assert lines[:1] == ["open_by_handle_at ok"], lines
    entries = {line.split(" ", 1)[1] for line in lines[1:]}
    # The filesystem the state root is on: its root directory is what the handle opened.
    top = Path(os.path.realpath(pc.root))
    while os.path.ismount(top) is False and top != top.parent:
        top = top.parent
    assert set(os.listdir(top)) - {"lost+found"} <= entries | {"lost+found"}, (sorted(entries), top)
