"""Logs for every container in Docker's json-file format, `logs` filters, and `attach` / `start -a`.

Attaching is played through real pseudo-terminals (pty.fork): the test is the user at a terminal who
attaches, types, and detaches with Ctrl-P Ctrl-Q. Every read has a deadline, so a hang fails instead.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import Pycontain, Terminal, alive, wait_for

pytestmark = pytest.mark.usefixtures("no_leaks")

CTRL_P_Q = b"\x10\x11"


def log_lines(pc: Pycontain, ref: str) -> list[dict[str, str]]:
    return [json.loads(line) for line in Path(pc.inspect(ref)["LogPath"]).read_text().splitlines()]


def socket_of(pc: Pycontain, ref: str) -> Path:
    return Path(pc.root) / "run" / "containers" / pc.inspect(ref)["Id"] / "attach.sock"


def monitor_pid(pc: Pycontain, ref: str) -> int:
    """The detached monitor: the process holding the container's lock (its PID 1's parent)."""
    pid = pc.inspect(ref)["State"]["Pid"]
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("PPid:")).split()[1])


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    opened: list[Terminal] = []
    yield opened
    for term in opened:
        term.close()


# ---------------------------------------------------------------- logs

def test_a_foreground_container_has_json_file_logs(pc: Pycontain) -> None:
    res = pc.ok("run", "--name", "fg", "busybox", "sh", "-c", "echo out; echo err >&2; printf tail")
    assert res.stdout == "out\ntail" and res.stderr == "err\n"
    records = log_lines(pc, "fg")
    assert sorted((r["stream"], r["log"]) for r in records) == [("stderr", "err\n"), ("stdout", "out\n"),
                                                              ("stdout", "tail")]
    for r in records:
        assert set(r) == {"log", "stream", "time"} and r["time"].endswith("Z") and "T" in r["time"]
    logs = pc.ok("logs", "fg")
    assert logs.stdout == "out\ntail" and logs.stderr == "err\n"


def test_detached_logs_since_until_timestamps_details_tail(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "d", "busybox", "sh", "-c", "echo one; echo two; sleep 1.2; echo three")
    assert pc.ok("wait", "d").stdout.strip() == "0"
    assert pc.ok("logs", "d").stdout == "one\ntwo\nthree\n"
    assert pc.ok("logs", "-n", "2", "d").stdout == "two\nthree\n"
    stamped = pc.ok("logs", "-t", "d").stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["one", "two", "three"]
    stamp = stamped[2].split(" ")[0]
    assert len(stamp) == len("2026-01-02T03:04:05.123456789Z") and stamp.endswith("Z")
    assert pc.ok("logs", "--since", stamp, "d").stdout == "three\n"
    assert pc.ok("logs", "--until", stamped[1].split(" ")[0], "d").stdout == "one\ntwo\n"
    assert pc.ok("logs", "--since", "10m", "d").stdout == "one\ntwo\nthree\n"
    assert pc.ok("logs", "--until", "10m", "d").stdout == ""
    assert pc.ok("logs", "--since", str(int(time.time()) + 3600), "d").stdout == ""
    assert pc.ok("logs", "--since", "2000-01-01", "--until", "2100-01-01T00:00:00Z", "d").stdout.count("\n") == 3
    assert pc.ok("logs", "--details", "d").stdout == " one\n two\n three\n"
    for bad in (("--since", "yesterday"), ("--until", "2020-13-01"), ("--tail", "x")):
        res = pc("logs", *bad, "d")
        assert res.returncode == 125 and len(res.stderr.splitlines()) == 1, res.stderr


def test_follow_prints_new_lines_and_ends_with_the_container(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "f", "busybox", "sh", "-c", "echo a; sleep 0.5; echo b >&2; sleep 0.5; echo c")
    res = subprocess.run(pc.argv("logs", "-f", "f"), capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout == "a\nc\n" and res.stderr == "b\n"


def test_logs_in_the_old_plain_format_still_read(pc: Pycontain) -> None:
    pc.ok("run", "--name", "old", "busybox", "echo", "new")
    path = Path(pc.inspect("old")["LogPath"])
    path.write_bytes(b"plain one\nplain two\n" + path.read_bytes())
    assert pc.ok("logs", "old").stdout == "plain one\nplain two\nnew\n"
    assert pc.ok("logs", "--since", "1h", "old").stdout == "new\n"


def test_rm_foreground_keeps_no_log_and_log_driver_none_says_so(pc: Pycontain) -> None:
    assert pc.ok("run", "--rm", "busybox", "echo", "hi").stdout == "hi\n"
    assert not list(Path(pc.root).glob("storage/containers/*"))
    pc.ok("create", "--log-driver", "none", "--name", "quiet", "busybox", "echo", "x")
    res = pc("logs", "quiet")
    assert res.returncode == 125 and len(res.stderr.splitlines()) == 1 and "none" in res.stderr


def test_long_lines_are_cut_into_records_and_rotation_keeps_whole_records(pc: Pycontain) -> None:
    pc.ok("run", "--name", "long", "--log-opt", "max-size=8k", "--log-opt", "max-file=2", "busybox", "sh", "-c",
          "i=0; while [ $i -lt 3000 ]; do printf x; i=$((i+1)); done; echo; echo end")
    path = Path(pc.inspect("long")["LogPath"])
    for piece in path.parent.glob(path.name + "*"):
        assert piece.stat().st_size <= 8 * 1024
        for line in piece.read_text().splitlines():
            json.loads(line)  # never a record cut in two
    assert pc.ok("logs", "long").stdout.endswith("x\nend\n")


# ---------------------------------------------------------------- attach

def test_attach_detach_and_attach_again_to_run_dit(pc: Pycontain, terminals: list[Terminal]) -> None:
    pc.ok("run", "-dit", "--name", "sh", "busybox", "sh")
    assert socket_of(pc, "sh").is_socket()
    for word in ("first", "second"):
        term = Terminal(pc.argv("attach", "sh"))
        terminals.append(term)
        time.sleep(0.2)
        term.type(f"echo {word}''{word}\r".encode())
        term.expect(f"{word}{word}".encode())
        term.type(CTRL_P_Q)
        assert term.wait() == 0
        assert pc.status("sh") == "running"
    assert "firstfirst" in pc.ok("logs", "sh").stdout
    # Custom keys, two clients at once; `exit` ends both with the shell's status.
    one = Terminal(pc.argv("attach", "--detach-keys", "ctrl-a,x", "sh"))
    two = Terminal(pc.argv("attach", "sh"))
    terminals += [one, two]
    time.sleep(0.3)
    one.type(b"echo bo''th\r")
    one.expect(b"both")
    two.expect(b"both")
    one.type(b"\x01x")
    assert one.wait() == 0
    two.type(b"exit 3\r")
    assert two.wait() == 3
    assert pc.ok("wait", "sh").stdout.strip() == "3"
    assert not socket_of(pc, "sh").exists()


def test_attach_to_a_non_tty_container_relays_output_stdin_and_exit_code(pc: Pycontain) -> None:
    pc.ok("run", "-di", "--name", "cat", "busybox", "sh", "-c",
          'while read l; do echo "got $l"; echo "err $l" >&2; [ "$l" = quit ] && exit 7; done')
    proc = subprocess.Popen(pc.argv("attach", "cat"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdin is not None
    time.sleep(0.3)
    proc.stdin.write(b"one\nquit\n")
    proc.stdin.flush()
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out, err) == (7, b"got one\ngot quit\n", b"err one\nerr quit\n")
    assert pc.ok("logs", "cat").stdout == "got one\ngot quit\n"


def test_attach_without_stdin_and_sig_proxy(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "trap", "busybox", "sh", "-c",
          "trap 'echo got-term; exit 9' TERM; echo ready; while :; do sleep 0.1; done")
    pc.wait_for_log("trap", "ready")
    proc = subprocess.Popen(pc.argv("attach", "--no-stdin", "trap"), stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 9 and out == "got-term\n"
    pc.ok("run", "-d", "--name", "kept", "busybox", "sleep", "60")
    proc = subprocess.Popen(pc.argv("attach", "--sig-proxy=false", "kept"), stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM and pc.status("kept") == "running"


def test_start_attach_interactive_sees_everything_and_returns_the_exit_code(pc: Pycontain) -> None:
    pc.ok("create", "-i", "--name", "c", "busybox", "sh", "-c", "echo early; cat; exit 5")
    res = pc("start", "-a", "-i", "c", input="typed\n")
    assert (res.returncode, res.stdout) == (5, "early\ntyped\n"), res.stderr
    res = pc("start", "-a", "c", "c")
    assert res.returncode == 125 and len(res.stderr.splitlines()) == 1


def test_attach_refuses_what_it_cannot_reach(pc: Pycontain) -> None:
    pc.ok("create", "--name", "idle", "busybox", "true")
    for args in (("attach", "idle"), ("attach", "nosuch"), ("attach", "--detach-keys", "ctrl-", "idle"),
                 ("attach", "--sig-proxy", "maybe", "idle")):
        res = pc(*args)
        assert res.returncode == 125 and len(res.stderr.splitlines()) == 1, (args, res.stderr)


def test_gc_removes_the_socket_of_a_killed_monitor(pc: Pycontain) -> None:
    pc.ok("run", "-dit", "--name", "k", "busybox", "sh")
    sock = socket_of(pc, "k")
    assert sock.is_socket()
    monitor = monitor_pid(pc, "k")
    os.kill(monitor, signal.SIGKILL)
    wait_for("the monitor to die", lambda: not alive(monitor))
    assert "removed the attach socket" in pc.ok("gc").stdout
    assert not sock.exists()


def test_attach_to_a_foreground_tty_run(pc: Pycontain, terminals: list[Terminal]) -> None:
    fg = Terminal(pc.argv("run", "-it", "--name", "fg", "busybox", "sh"))
    terminals.append(fg)
    pc.wait_until_running("fg")
    wait_for("the foreground run's attach socket", socket_of(pc, "fg").is_socket)
    client = Terminal(pc.argv("attach", "fg"))
    terminals.append(client)
    time.sleep(0.3)
    client.type(b"echo from''client\r")  # the client's keys reach the shell, both terminals see its output
    client.expect(b"fromclient")
    fg.expect(b"fromclient")
    fg.type(b"echo from''front\r")
    fg.expect(b"fromfront")
    client.expect(b"fromfront")
    client.type(CTRL_P_Q)  # the client leaves; the foreground run goes on
    assert client.wait() == 0
    assert pc.status("fg") == "running"
    fg.type(b"exit 5\r")
    assert fg.wait() == 5
    assert not socket_of(pc, "fg").exists()


def test_attach_to_a_foreground_non_tty_run(pc: Pycontain) -> None:
    fg = subprocess.Popen(pc.argv("run", "-i", "--name", "fgi", "busybox", "sh", "-c",
                                  'echo ready; while read l; do echo "got $l"; [ "$l" = quit ] && exit 6; done'),
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert fg.stdin is not None and fg.stdout is not None
    try:
        assert fg.stdout.readline() == b"ready\n"
        fg.stdin.write(b"front\n")
        fg.stdin.flush()
        assert fg.stdout.readline() == b"got front\n"
        client = subprocess.Popen(pc.argv("attach", "fgi"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        assert client.stdin is not None
        time.sleep(0.3)
        client.stdin.write(b"back\nquit\n")
        client.stdin.flush()
        out, err = client.communicate(timeout=30)
        assert (client.returncode, out) == (6, b"got back\ngot quit\n"), err
        fg_out, _ = fg.communicate(timeout=30)
        assert (fg.returncode, fg_out) == (6, b"got back\ngot quit\n")
    finally:
        if fg.poll() is None:
            fg.kill()
            fg.wait()
    assert pc.ok("logs", "fgi").stdout == "ready\ngot front\ngot back\ngot quit\n"


def test_attach_to_a_foreground_run_rm_without_stdin(pc: Pycontain) -> None:
    fg = pc.popen("run", "--rm", "--name", "fgr", "busybox", "sh", "-c",
                  "echo ready; while [ ! -e /stop ]; do sleep 0.1; done; echo done; exit 2")
    assert fg.stdout is not None
    try:
        assert fg.stdout.readline() == "ready\n"
        client = subprocess.Popen(pc.argv("attach", "fgr"), stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)
        pc.ok("exec", "fgr", "touch", "/stop")
        out, _ = client.communicate(timeout=30)
        assert (client.returncode, out) == (2, "done\n")
        assert fg.wait(timeout=30) == 2
    finally:
        if fg.poll() is None:
            fg.kill()
            fg.wait()
