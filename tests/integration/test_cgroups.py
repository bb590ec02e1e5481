"""Resource limits and accounting through the container's own cgroup, on whichever cgroup version runs.

The same tests run on this host (cgroup v1) and in scripts/vm-test's qemu guest (pure cgroup v2).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support import CGROUP_ROOT, Pycontain, assert_pycontain_error, container_cgroup_dirs

V2 = (CGROUP_ROOT / "cgroup.controllers").exists()
# Inside the container its cgroup is mounted read-only at /sys/fs/cgroup (one dir per hierarchy on v1).
MEMORY_LIMIT = "/sys/fs/cgroup/memory.max" if V2 else "/sys/fs/cgroup/memory/memory.limit_in_bytes"
PIDS_MAX = "/sys/fs/cgroup/pids.max" if V2 else "/sys/fs/cgroup/pids/pids.max"
CPU_USAGE = "/sys/fs/cgroup/cpu.stat" if V2 else "/sys/fs/cgroup/cpuacct/cpuacct.usage"


def cpu_seconds(text: str) -> float:
    if V2:
        fields = dict(line.split() for line in text.splitlines() if line)
        return int(fields["usage_usec"]) / 1e6
    return int(text.strip()) / 1e9


def cgroup_dirs_of(pc: Pycontain, name: str) -> list[Path]:
    cid = pc.inspect(name)["Id"]
    return container_cgroup_dirs(f"pycontain-{cid}")


def test_a_process_allocating_past_the_memory_limit_is_oom_killed_and_reported(pc: Pycontain) -> None:
    res = pc("run", "--name", "hog", "--memory", "16m", "--memory-swap", "16m", "busybox",
             "sh", "-c", "a=$(head -c 64000000 /dev/zero | tr '\\0' a); echo survived")
    assert res.returncode == 137, res
    assert "survived" not in res.stdout
    state = pc.inspect("hog")["State"]
    assert state["OOMKilled"] is True and state["ExitCode"] == 137


def test_a_container_within_its_memory_limit_is_not_reported_oom(pc: Pycontain) -> None:
    pc.ok("run", "--name", "fine", "--memory", "64m", "busybox", "true")
    assert pc.inspect("fine")["State"]["OOMKilled"] is False


def test_the_limits_are_written_to_the_containers_own_cgroup(pc: Pycontain) -> None:
    res = pc.ok("run", "--rm", "--memory", "64m", "--pids-limit", "100", "busybox",
                "cat", MEMORY_LIMIT, PIDS_MAX)
    assert res.stdout.split() == [str(64 << 20), "100"]


def test_the_default_pids_limit_is_2048(pc: Pycontain) -> None:
    assert pc.ok("run", "--rm", "busybox", "cat", PIDS_MAX).stdout.strip() == "2048"


def test_a_fork_loop_stops_at_the_pids_limit(pc: Pycontain) -> None:
    res = pc("run", "--rm", "--pids-limit", "20", "busybox", "sh", "-c",
             "n=0; while [ $n -lt 60 ]; do sleep 30 & n=$((n+1)); done; echo started $n")
    assert "can't fork" in res.stderr or "Resource temporarily unavailable" in res.stderr, res
    assert "started 60" not in res.stdout


def test_half_a_cpu_limit_holds_a_busy_loop_near_half_a_cpu(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "spin", "--cpus", "0.5", "busybox", "sh", "-c", "while :; do :; done")
    first = cpu_seconds(pc.ok("exec", "spin", "cat", CPU_USAGE).stdout)
    started = time.monotonic()
    time.sleep(3)
    used = cpu_seconds(pc.ok("exec", "spin", "cat", CPU_USAGE).stdout) - first
    share = used / (time.monotonic() - started)
    # The CFS quota is 50 ms per 100 ms period: the cgroup's own counter must show about half a CPU.
    assert 0.25 < share < 0.7, f"busy loop used {share:.2f} CPUs under --cpus 0.5"


def test_update_changes_the_limits_of_a_running_container(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "live", "--memory", "64m", "busybox", "sleep", "60")
    pc.ok("update", "--memory", "128m", "--pids-limit", "50", "live")
    out = pc.ok("exec", "live", "cat", MEMORY_LIMIT, PIDS_MAX).stdout.split()
    assert out == [str(128 << 20), "50"]
    assert "128MiB" in pc.ok("stats", "--no-stream", "live").stdout


def test_stats_no_stream_shows_the_memory_limit_and_pids(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "s", "--memory", "96m", "busybox", "sleep", "60")
    out = pc.ok("stats", "--no-stream").stdout.splitlines()
    assert out[0].split()[:3] == ["CONTAINER", "ID", "NAME"]
    row = next(line for line in out if " s " in line)
    assert "/ 96MiB" in row and row.split()[-1] == "1"


def test_the_container_sees_its_own_cgroup_as_root_and_read_only(pc: Pycontain) -> None:
    res = pc("run", "--rm", "busybox", "sh", "-c",
             "cat /proc/self/cgroup; if [ -d /sys/fs/cgroup/pids ]; then mkdir /sys/fs/cgroup/pids/x 2>&1; "
             "else mkdir /sys/fs/cgroup/x 2>&1; fi")
    lines = [line for line in res.stdout.splitlines() if line and not line.startswith("mkdir")]
    assert lines and all(line.endswith(":/") for line in lines), res.stdout
    assert "Read-only file system" in res.stdout + res.stderr


@pytest.mark.parametrize("flag,value", [("--memory", "lots"), ("--memory", "1k"), ("--cpus", "0"),
                                        ("--cpus", "999"), ("--cpu-shares", "1"), ("--cpuset-cpus", "99"),
                                        ("--pids-limit", "-5"), ("--memory-swap", "10m")])
def test_invalid_limits_are_refused_before_anything_is_created(pc: Pycontain, flag: str, value: str) -> None:
    res = pc("run", "--rm", flag, value, "busybox", "true")
    assert_pycontain_error(res)
    assert pc.ok("ps", "-a", "-q").stdout == ""


def test_the_cgroup_is_removed_after_rm(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "gone", "busybox", "sleep", "60")
    dirs = cgroup_dirs_of(pc, "gone")
    assert dirs and all(d.is_dir() for d in dirs)
    pc.ok("rm", "-f", "gone")
    assert not any(d.exists() for d in dirs)


def test_the_cgroup_is_removed_after_the_command_fails_to_start(pc: Pycontain) -> None:
    res = pc("run", "--name", "broken", "busybox", "no-such-command")
    assert res.returncode == 127
    assert cgroup_dirs_of(pc, "broken") == []


def test_the_cgroup_is_removed_by_gc_after_the_cli_is_killed(pc: Pycontain) -> None:
    proc = pc.popen("run", "--name", "orphan", "busybox", "sleep", "60")
    pc.wait_until_running("orphan")
    dirs = cgroup_dirs_of(pc, "orphan")
    assert dirs
    proc.kill()
    proc.wait()
    pc.ok("gc")
    assert not any(d.exists() for d in dirs)
