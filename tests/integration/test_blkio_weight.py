"""--blkio-weight reaches the container's cgroup (blkio.weight / blkio.bfq.weight on v1, io.bfq.weight /
io.weight on v2) when this kernel has such a file; without one, as Docker, a one-line warning and the run
goes on with the weight discarded (inspect shows 0)."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import Pycontain

V2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
BASE = Path("/sys/fs/cgroup") if V2 else Path("/sys/fs/cgroup/blkio")
NAMES = ("io.bfq.weight", "io.weight") if V2 else ("blkio.weight", "blkio.bfq.weight")


def _host_has_weight() -> bool:
    if V2:
        return any((d / n).exists() for d in BASE.iterdir() if d.is_dir() for n in NAMES)
    return any((BASE / n).exists() for n in NAMES)


@pytest.mark.usefixtures("no_leaks")
def test_blkio_weight_is_written_or_warned_about(pc: Pycontain) -> None:
    res = pc("run", "-d", "--blkio-weight", "300", "busybox", "sleep", "60")
    assert res.returncode == 0, res.stderr
    cid = res.stdout.strip()
    pc.wait_until_running(cid)
    applied = pc.inspect(cid)["HostConfig"]["BlkioWeight"]
    if not _host_has_weight():
        assert "--blkio-weight discarded" in res.stderr
        assert len([line for line in res.stderr.splitlines() if "blkio" in line]) == 1  # warned once
        assert applied == 0
    else:
        assert res.stderr == ""
        cg = BASE / f"pycontain-{cid}"
        name = next(n for n in NAMES if (cg / n).exists())
        text = (cg / name).read_text().split()
        # io.weight reads "default N" on the 1..10000 scale; the others N (BFQ's may say "default N" too)
        expected = str(1 + 290 * 9999 // 990) if name == "io.weight" else "300"
        assert expected in text
        assert applied == 300
    pc.ok("rm", "-f", cid)
