"""Typed container state: Status (what each status allows), ContainerState (state.json's fields), and the
Record accessors, with the on-disk format and the old dict API unchanged."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pycontain import jsonfast, state
from pycontain.config import Limits
from pycontain.state import ContainerState, Status

REPO = Path(__file__).resolve().parents[2]
ALL = [Status.CREATED, Status.STARTING, Status.RUNNING, Status.EXITED, Status.DEAD]


def test_statuses_are_the_strings_state_json_always_held() -> None:
    assert ALL == ["created", "starting", "running", "exited", "dead"]
    assert all(isinstance(s, str) for s in ALL)
    assert jsonfast.dumps({"status": Status.RUNNING}) == '{"status": "running"}'
    assert json.dumps(Status.EXITED) == '"exited"'


@pytest.mark.parametrize(("status", "start", "kill", "exec_", "remove"), [
    (Status.CREATED, True, False, False, True),
    (Status.STARTING, False, False, False, False),
    (Status.RUNNING, False, True, True, False),
    (Status.EXITED, True, False, False, True),
    (Status.DEAD, True, False, False, True),
])
def test_what_each_status_allows(status: Status, start: bool, kill: bool, exec_: bool, remove: bool) -> None:
    allowed = (status.can_start(), status.can_kill(), status.can_exec(), status.can_remove())
    assert allowed == (start, kill, exec_, remove)
    assert Status(str(status)).can_start() == start  # a status read back from disk behaves the same


@pytest.fixture
def rec(tmp_path: Path) -> state.Record:
    paths = state.Paths(str(tmp_path / "run"), str(tmp_path / "storage"))
    state.ensure_dirs(paths)
    r = state.Record(paths, "e" * 64)
    os.mkdir(r.dir)
    state.atomic_write_json(f"{r.dir}/config.json", {
        "id": r.id, "name": "web", "created": "2024-01-01T00:00:00.000000000Z", "image": "busybox",
        "image_id": "sha256:" + "1" * 64, "layers": ["/l/a", "/l/b"], "config": {"image": "busybox"},
        "resolved": {"argv": ["sh"], "env": [], "workdir": "/", "user": "", "hostname": "h"},
        "network": None}, durable=False)
    return r


def test_a_record_without_state_json_is_created(rec: state.Record) -> None:
    st = rec.read_state()
    assert st.status == Status.CREATED and st.pid is None and st.exit_code is None and st.oom_killed is False
    assert rec.status() == Status.CREATED


def test_a_state_json_written_by_an_older_pycontain_reads_with_defaults(rec: state.Record) -> None:
    old = '{"exit_code": 3, "finished_at": "2024-01-02T00:00:00Z", "status": "exited"}'
    Path(rec.dir, "state.json").write_text(old)
    st = rec.read_state()
    assert (st.status, st.exit_code, st.finished_at, st.error, st.oom_killed, st.limits) == \
        (Status.EXITED, 3, "2024-01-02T00:00:00Z", None, False, None)
    assert rec.state() == {"exit_code": 3, "finished_at": "2024-01-02T00:00:00Z", "status": "exited"}


def test_running_without_a_supervisor_is_dead_and_with_one_running(rec: state.Record) -> None:
    rec.set_state(status=Status.RUNNING, pid=1234, pid_start=99)
    assert rec.read_state().status == Status.RUNNING  # as stored
    assert rec.status() == Status.DEAD  # nobody holds the lock
    fd = rec.acquire()
    try:
        assert rec.status() == Status.RUNNING
        assert rec.status(rec.read_state()) == Status.RUNNING
    finally:
        os.close(fd)


def test_typed_writes_keep_the_format_and_unknown_keys(rec: state.Record) -> None:
    rec.set_state(status="running", pid=7, future_field="kept")
    rec.write_state(rec.read_state().replace(status=Status.EXITED, exit_code=0, oom_killed=True,
                                             limits=Limits(pids=64)))
    raw = json.loads(Path(rec.dir, "state.json").read_text())
    assert raw["status"] == "exited" and raw["exit_code"] == 0 and raw["oom_killed"] is True
    assert raw["future_field"] == "kept" and raw["limits"]["pids"] == 64
    assert rec.limits().pids == 64


def test_limits_fall_back_to_those_given_at_create(rec: state.Record) -> None:
    assert rec.limits() == rec.config.limits


def test_config_accessors(rec: state.Record) -> None:
    assert (rec.name, rec.image, rec.image_id, rec.created, rec.layers, rec.network) == \
        ("web", "busybox", "sha256:" + "1" * 64, "2024-01-01T00:00:00.000000000Z", ["/l/a", "/l/b"], None)


def test_container_state_equality_and_json() -> None:
    st = ContainerState.from_json({"status": "running", "pid": 5, "pid_start": 6})
    assert st == ContainerState(status=Status.RUNNING, pid=5, pid_start=6)
    assert st.to_json()["status"] == "running"


def test_the_start_path_imports_nothing_new() -> None:
    # -IS as the installed launcher runs: no site, so only what pycontain itself imports is loaded.
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); import pycontain.cli, pycontain.state; "
            "print(sorted(m for m in ('json', 'enum', 'dataclasses', 're', 'typing') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-IS", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


STATUS_WORDS = {"created", "starting", "running", "exited", "dead"}
CONVERTED = ["cli.py", "details.py", "stats.py", "images/store.py", "images/commands.py", "network/commands.py"]


@pytest.mark.parametrize("module", CONVERTED)
def test_no_status_literals_outside_state(module: str) -> None:
    """Statuses are compared through state.Status, not by spelling their strings."""
    tree = ast.parse((REPO / "pycontain" / module).read_text())
    found = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Compare)
             for side in [node.left, *node.comparators]
             for const in ([side] if not isinstance(side, (ast.Tuple, ast.List, ast.Set)) else side.elts)
             if isinstance(const, ast.Constant) and const.value in STATUS_WORDS]
    assert found == []
