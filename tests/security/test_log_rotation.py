"""A detached container's log is capped: it rotates at max-size and keeps max-file pieces.

The review saw one container write 191 MB of log with no flags; now the default keeps at most
3 x 10 MiB (`--log-opt max-size=... --log-opt max-file=...` change it).
Would have caught: 3009c56 (the last commit before the fix: the log grew without bound).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from support import Pycontain

pytestmark = pytest.mark.usefixtures("no_leaks")


def log_files(pc: Pycontain, ref: str) -> list[Path]:
    path = Path(pc.inspect(ref)["LogPath"])
    return sorted(path.parent.glob(path.name + "*"))


def test_a_chatty_container_cannot_grow_its_log_past_the_cap(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "chatty", "--log-opt", "max-size=64k", "--log-opt", "max-file=2", "busybox",
          "sh", "-c", "i=0; while [ $i -lt 40000 ]; do echo line-$i; i=$((i+1)); done; echo DONE")
    assert pc.ok("wait", "chatty").stdout.strip() == "0"
    files = log_files(pc, "chatty")
    assert len(files) <= 2, files
    assert sum(f.stat().st_size for f in files) <= 2 * 64 * 1024
    out = pc.ok("logs", "chatty").stdout.splitlines()
    assert out[-1] == "DONE" and out[-2] == "line-39999"
    # What is kept is contiguous: the newest lines, in order.
    numbers = [int(line.split("-")[1]) for line in out[1:-1]]
    assert numbers == list(range(numbers[0], 40000))


def test_follow_continues_across_a_rotation(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "slow", "--log-opt", "max-size=4k", "busybox", "sh", "-c",
          "sleep 0.5; i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done; echo DONE")
    res = subprocess.run(pc.argv("logs", "-f", "slow"), capture_output=True, text=True, timeout=60)
    assert res.stdout.splitlines()[-1] == "DONE"
    lines = res.stdout.splitlines()
    assert "line-2999" in lines and len(lines) == len(set(lines))


def test_the_default_cap_is_three_pieces_of_ten_megabytes(pc: Pycontain) -> None:
    pc.ok("create", "--name", "defaults", "busybox", "true")
    config = pc.inspect("defaults")
    assert config["HostConfig"]["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}


def test_bad_log_options_are_one_line_and_125(pc: Pycontain) -> None:
    for opt in ("max-size=1", "max-file=0", "colour=blue", "max-size=lots"):
        res = pc("run", "--rm", "--log-opt", opt, "busybox", "true")
        assert res.returncode == 125 and len(res.stderr.splitlines()) == 1, res.stderr
