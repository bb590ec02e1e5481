"""The container never holds the caller's own descriptors: its stdio are pipes the supervisor owns.

The review found `run` without -t and `exec` passed the caller's stdin/stdout/stderr: `readlink
/proc/self/fd/1` named the host file the caller redirected to (and container root could chmod it
through that link), and a process left behind by `exec` read what the administrator typed after
`exec` had returned.
Would have caught: 3009c56 (the last commit before the fix).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from support import COMMAND_TIMEOUT, Pycontain

pytestmark = pytest.mark.usefixtures("no_leaks")


def run_with_stdout_file(pc: Pycontain, out: Path, *args: str) -> int:
    with open(out, "wb") as f:
        return subprocess.run(pc.argv(*args), stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.PIPE,
                              timeout=COMMAND_TIMEOUT).returncode


def test_run_gives_the_container_pipes_not_the_callers_files(pc: Pycontain, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    run_with_stdout_file(pc, out, "run", "--rm", "busybox", "sh", "-c",
                         "for fd in 0 1 2; do readlink /proc/self/fd/$fd; done")
    links = out.read_text().split()
    assert len(links) == 3 and all(link.startswith("pipe:") for link in links), links
    assert str(tmp_path) not in out.read_text()


def test_container_root_cannot_chmod_the_callers_output_file(pc: Pycontain, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    out.touch(mode=0o600)
    out.chmod(0o600)
    run_with_stdout_file(pc, out, "run", "--rm", "busybox", "chmod", "4777", "/proc/self/fd/1")
    assert out.stat().st_mode & 0o7777 == 0o600


def test_exec_gives_pipes_too(pc: Pycontain, tmp_path: Path) -> None:
    pc.ok("run", "-d", "--name", "c", "busybox", "sleep", "1000")
    out = tmp_path / "out.txt"
    run_with_stdout_file(pc, out, "exec", "c", "readlink", "/proc/self/fd/1")
    assert out.read_text().startswith("pipe:")


def test_a_detached_container_does_not_hold_its_log_file(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "c", "busybox", "sh", "-c", "readlink /proc/self/fd/1; sleep 1000")
    assert pc.wait_for_log("c", "pipe:").startswith("pipe:")


def test_a_process_left_behind_by_exec_cannot_read_the_callers_input(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "c", "busybox", "sleep", "1000")
    r, w = os.pipe()
    try:
        # The exec'd shell exits at once; the subshell it leaves behind reads stdin a little later (through
        # fd 3: a shell gives a background job /dev/null as its stdin).
        res = subprocess.run(pc.argv("exec", "-i", "c", "sh", "-c", "exec 3<&0; (sleep 1; cat <&3 > /tmp/stolen) &"),
                             stdin=r, capture_output=True, timeout=COMMAND_TIMEOUT)
        assert res.returncode == 0, res.stderr
        os.write(w, b"typed after exec returned\n")  # what the administrator types next
    finally:
        os.close(r)
        os.close(w)
    time.sleep(2)
    stolen = pc("exec", "c", "cat", "/tmp/stolen").stdout
    assert "typed after exec returned" not in stolen


def test_interactive_input_and_both_outputs_are_relayed(pc: Pycontain) -> None:
    res = pc.ok("run", "--rm", "-i", "busybox", "sh", "-c", "cat; echo to-stderr >&2", input="line one\nline two\n")
    assert res.stdout == "line one\nline two\n"
    assert res.stderr == "to-stderr\n"


def test_large_output_is_relayed_completely(pc: Pycontain) -> None:
    res = pc.ok("run", "--rm", "busybox", "sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' a")
    assert len(res.stdout) == 3000000


def test_without_i_the_container_reads_end_of_file(pc: Pycontain) -> None:
    res = pc.ok("run", "--rm", "busybox", "sh", "-c", "cat; echo done", input="not for the container\n")
    assert res.stdout == "done\n"
