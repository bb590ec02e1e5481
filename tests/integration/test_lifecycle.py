"""A container's life: run, detach, logs, exec, stop, kill, start, wait, inspect, top, ps, rm."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from support import Pycontain, alive, assert_pycontain_error, container_cgroup_dirs, describe

pytestmark = pytest.mark.usefixtures("no_leaks")


def test_rm_flag_removes_the_record_cgroup_and_storage(pc: Pycontain) -> None:
    res = pc.ok("run", "--rm", "busybox", "hostname")
    short_id = res.stdout.strip()  # the default hostname is the short id
    assert re.fullmatch(r"[0-9a-f]{12}", short_id), res.stdout
    assert pc.ok("ps", "-a", "-q").stdout == ""
    assert container_cgroup_dirs(f"pycontain-{short_id}") == []
    # nothing under the state root (records, storage, names) is named for the container any more
    assert [p for p in pc.root.rglob(f"*{short_id}*")] == []
    assert_pycontain_error(pc("inspect", short_id))


def test_container_without_rm_is_kept_after_exit(pc: Pycontain) -> None:
    pc.ok("run", "--name", "kept", "busybox", "true")
    info = pc.inspect("kept")
    assert info["State"]["Status"] == "exited"
    assert info["State"]["ExitCode"] == 0
    assert container_cgroup_dirs(f"pycontain-{info['Id']}") == []  # only the record stays


def test_detached_output_goes_to_logs_and_tail_limits_it(pc: Pycontain) -> None:
    res = pc.ok("run", "-d", "--name", "web", "busybox", "sh", "-c", "echo one; echo two; echo three; sleep 60")
    assert re.fullmatch(r"[0-9a-f]{64}\n", res.stdout), res.stdout
    assert pc.inspect("web")["Id"] == res.stdout.strip()
    pc.wait_for_log("web", "three")
    assert pc.ok("logs", "web").stdout == "one\ntwo\nthree\n"
    assert pc.ok("logs", "--tail", "1", "web").stdout == "three\n"
    assert pc.ok("logs", "--tail", "2", "web").stdout == "two\nthree\n"


def test_stop_kills_a_container_that_ignores_sigterm_with_sigkill(pc: Pycontain) -> None:
    # sh as PID 1 has no SIGTERM handler, and the kernel does not apply default actions to a PID 1
    pc.ok("run", "-d", "--name", "stubborn", "busybox", "sh", "-c", "echo ready; sleep 60")
    pc.wait_for_log("stubborn", "ready")
    pc.ok("stop", "-t", "1", "stubborn")
    info = pc.inspect("stubborn")
    assert info["State"]["Status"] == "exited"
    assert info["State"]["ExitCode"] == 137
    assert container_cgroup_dirs(f"pycontain-{info['Id']}") == []


def test_stop_lets_a_container_exit_cleanly_on_sigterm(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "polite", "busybox", "sh", "-c",
          "trap 'echo got-term; exit 0' TERM; echo ready; sleep 60 & wait")
    pc.wait_for_log("polite", "ready")
    pc.ok("stop", "polite")
    info = pc.inspect("polite")
    assert info["State"]["Status"] == "exited"
    assert info["State"]["ExitCode"] == 0
    assert "got-term" in pc.ok("logs", "polite").stdout


def test_rm_removes_a_stopped_container(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "gone", "busybox", "sleep", "60")
    pc.wait_until_running("gone")
    container_id = pc.inspect("gone")["Id"]
    pc.ok("stop", "-t", "0", "gone")
    pc.ok("rm", "gone")
    assert pc.ok("ps", "-a", "-q").stdout == ""
    assert_pycontain_error(pc("inspect", "gone"))
    assert [p for p in pc.root.rglob(f"*{container_id}*")] == []
    # and the name is free again
    pc.ok("run", "--rm", "--name", "gone", "busybox", "true")


def test_rm_force_removes_a_running_container(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "busy", "busybox", "sleep", "60")
    pid = pc.wait_until_running("busy")["State"]["Pid"]
    pc.ok("rm", "-f", "busy")
    assert pc.ok("ps", "-a", "-q").stdout == ""
    assert not alive(pid)


def test_exec_shares_the_containers_filesystem_and_pid_namespace(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "ex", "busybox", "sh", "-c",
          "echo from-main > /tmp/shared-file; echo ready; exec sleep 60")
    pc.wait_for_log("ex", "ready")
    assert pc.ok("exec", "ex", "cat", "/tmp/shared-file").stdout == "from-main\n"
    res = pc.ok("exec", "ex", "ps", "-o", "pid,args")
    rows = {line.split(None, 1)[0]: line.split(None, 1)[1] for line in res.stdout.strip().splitlines()[1:]}
    assert rows["1"] == "sleep 60", res.stdout
    assert all(int(pid) < 100 for pid in rows), f"exec sees host pids: {res.stdout}"
    assert pc.ok("exec", "ex", "sh", "-c", "echo $$").stdout.strip() != "1"
    assert pc.ok("exec", "ex", "hostname").stdout.strip() == pc.inspect("ex")["Id"][:12]


def test_exec_exit_code_propagates(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "ex", "busybox", "sleep", "60")
    pc.wait_until_running("ex")
    assert pc("exec", "ex", "sh", "-c", "exit 7").returncode == 7
    assert pc("exec", "ex", "false").returncode == 1
    assert pc("exec", "ex", "no-such-command").returncode == 127


def test_exec_env_workdir_and_user(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "ex", "busybox", "sleep", "60")
    pc.wait_until_running("ex")
    res = pc.ok("exec", "-e", "GREETING=hi", "-w", "/etc", "-u", "app", "ex", "sh", "-c",
                "echo $GREETING; pwd; id -u")
    assert res.stdout.split() == ["hi", "/etc", "1000"]


def test_exec_with_stdin(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "ex", "busybox", "sleep", "60")
    pc.wait_until_running("ex")
    res = pc.ok("exec", "-i", "ex", "tr", "a-z", "A-Z", input="shout\n")
    assert res.stdout == "SHOUT\n"


def test_run_interactive_passes_stdin(pc: Pycontain) -> None:
    res = pc.ok("run", "--rm", "-i", "busybox", "sh", "-c", "read line; echo got:$line", input="abc\n")
    assert res.stdout == "got:abc\n"


def test_start_restarts_an_exited_container_keeping_its_files(pc: Pycontain) -> None:
    # The exit code is the number of runs recorded in the container's own filesystem.
    script = "echo run >> /runs; exit $(wc -l < /runs)"
    assert pc("run", "--name", "again", "busybox", "sh", "-c", script).returncode == 1
    assert pc.ok("start", "again").stdout.strip() == "again"
    assert pc.ok("wait", "again").stdout.strip() == "2"
    pc.ok("start", "again")
    assert pc.ok("wait", "again").stdout.strip() == "3"
    info = pc.inspect("again")
    assert info["State"]["Status"] == "exited"
    assert info["State"]["ExitCode"] == 3


def test_wait_prints_the_exit_code_of_a_detached_container(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "w", "busybox", "sh", "-c", "exit 42")
    res = pc.ok("wait", "w")
    assert res.stdout == "42\n"


def test_inspect_reports_state_as_a_json_list(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "i", "-e", "K=V", "busybox", "sleep", "60")
    pc.wait_until_running("i")
    data = json.loads(pc.ok("inspect", "i").stdout)
    assert isinstance(data, list) and len(data) == 1
    info = data[0]
    assert info["Name"] == "/i"  # Docker's shape: a leading slash
    assert info["State"]["Status"] == "running"
    assert info["State"]["Running"] is True
    assert info["State"]["Pid"] > 1
    assert info["Path"] == "sleep" and info["Args"] == ["60"]
    assert "K=V" in info["Config"]["Env"]
    pc.ok("kill", "i")
    pc.ok("wait", "i")
    info = pc.inspect("i")
    assert info["State"]["Status"] == "exited"
    assert info["State"]["Running"] is False


def test_top_lists_the_containers_processes(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "t", "busybox", "sh", "-c", "sleep 61 & exec sleep 62")
    pid1 = pc.wait_until_running("t")["State"]["Pid"]
    res = pc.ok("top", "t")
    lines = res.stdout.strip().splitlines()
    header = lines[0].split()
    assert "PID" in header and "CMD" in header, res.stdout
    pids = [int(line.split()[header.index("PID")]) for line in lines[1:]]
    assert pid1 in pids, res.stdout
    assert any(line.endswith("sleep 61") for line in lines[1:]), res.stdout
    assert any(line.endswith("sleep 62") for line in lines[1:]), res.stdout
    assert len(pids) == 2, res.stdout


def test_ps_shows_running_containers_and_ps_all_shows_exited_ones(pc: Pycontain) -> None:
    pc.ok("run", "--name", "done", "busybox", "true")
    pc.ok("run", "-d", "--name", "alive", "busybox", "sleep", "60")
    pc.wait_until_running("alive")
    alive_id = pc.inspect("alive")["Id"][:12]
    done_id = pc.inspect("done")["Id"][:12]
    assert pc.ok("ps", "-q").stdout.split() == [alive_id]
    assert sorted(pc.ok("ps", "-a", "-q").stdout.split()) == sorted([alive_id, done_id])
    table = pc.ok("ps").stdout
    assert "alive" in table and "done" not in table
    table = pc.ok("ps", "-a").stdout
    assert "alive" in table and "done" in table and "Exited (0)" in table


def test_container_names_are_unique_under_parallel_runs(pc: Pycontain) -> None:
    procs = [pc.popen("run", "-d", "--name", "same", "busybox", "sleep", "5") for _ in range(6)]
    results = [(p.wait(timeout=60), *p.communicate(timeout=60)) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 125, 125, 125, 125, 125], results
    for code, _, err in results:
        if code == 125:
            assert "already in use" in err and err.startswith("pycontain: "), err
    assert len(pc.ok("ps", "-a", "-q").stdout.split()) == 1
    pc.ok("rm", "-f", "same")
    assert pc.ok("ps", "-a", "-q").stdout == ""


def test_pids_limit_is_written_to_the_pids_cgroup(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "p", "--pids-limit", "7", "busybox", "sleep", "60")
    info = pc.wait_until_running("p")
    pids_dirs = [d for d in info["Cgroup"]["Paths"] if "/pids/" in d or (Path(d) / "pids.max").exists()]
    assert pids_dirs, info["Cgroup"]
    assert (Path(pids_dirs[0]) / "pids.max").read_text().strip() == "7"


def test_pids_limit_stops_a_fork_bomb(pc: Pycontain) -> None:
    # PID 1 plus up to 3 more: the fifth concurrent process cannot be forked.
    res = pc("run", "--rm", "--pids-limit", "4", "busybox", "sh", "-c",
             "for i in 1 2 3 4 5 6; do sleep 30 & done; exit 0")
    assert "can't fork" in res.stderr or "Resource temporarily unavailable" in res.stderr, describe(res)


def test_imported_alpine_image_runs(pc: Pycontain, alpine_tarball: Path) -> None:
    res = pc.ok("import", alpine_tarball, "alpine")
    assert res.stdout.startswith("sha256:")
    assert "alpine" in pc.ok("images").stdout
    res = pc.ok("run", "--rm", "alpine", "cat", "/etc/alpine-release")
    assert res.stdout == "3.20.3\n"


def test_images_lists_imported_images(pc: Pycontain) -> None:
    res = pc.ok("images")
    assert res.stdout.splitlines()[0].split()[:2] == ["REPOSITORY", "TAG"]
    assert any(line.split()[:2] == ["busybox", "latest"] for line in res.stdout.splitlines()[1:]), res.stdout
    assert len(pc.ok("images", "-q").stdout.split()) == 1


def test_version_prints_the_version(pc: Pycontain) -> None:
    res = subprocess.run(pc.argv("--version"), capture_output=True, text=True, timeout=30)
    assert res.returncode == 0
    assert re.fullmatch(r"pycontain version \d+\.\d+\.\d+\S*\n", res.stdout), res.stdout
