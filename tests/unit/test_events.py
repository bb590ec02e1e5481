"""The event journal: emit (pycontain/events.py) never fails and lines stay whole under concurrent writers;
rotation keeps the recent past; the reader (system.py) follows across rotations; --since/--until and
--filter parsing; Docker's text line."""

from __future__ import annotations

import calendar
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from pycontain import events, system
from pycontain.errors import UsageError
from pycontain.state import Paths


def paths_in(tmp_path: Path) -> Paths:
    return Paths(state=str(tmp_path / "run"), storage=str(tmp_path / "storage"))


def test_emit_makes_the_state_dir_and_writes_one_json_line(tmp_path: Path) -> None:
    p = paths_in(tmp_path)
    events.emit(p, "container", "start", "c" * 64, {"name": "web", "image": "alpine", "exitCode": 0})  # type: ignore[dict-item]
    reader = system.Reader(p)
    [event] = reader.backlog()
    reader.close()
    assert event["type"] == "container" and event["action"] == "start" and event["id"] == "c" * 64
    assert event["attributes"] == {"name": "web", "image": "alpine", "exitCode": "0"}
    assert abs(event["time"] - time.time_ns()) < 60 * 10**9
    assert os.stat(events.journal(p)).st_mode & 0o777 == 0o600


def test_emit_never_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    events.emit(Paths(state=str(blocker / "run"), storage=str(tmp_path)), "container", "start", "x", {})
    events.emit(paths_in(tmp_path), "container", "start", "x", {"k": object()})  # type: ignore[dict-item]
    events.emit(None, "container", "start", "x", {})  # type: ignore[arg-type]


def _writer(state: str, n: int, tag: str) -> None:
    p = Paths(state=state, storage=state)
    for i in range(n):
        events.emit(p, "container", "start", f"{tag}-{i}", {"pad": "x" * 300})


def test_concurrent_writers_and_rotation_cut_no_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four processes append at once past a small cap: every line read back parses, and what the two
    parts hold is the most recent events (all of them, as the cap is larger than one burst)."""
    monkeypatch.setattr(events, "MAX_BYTES", 200_000)
    p = paths_in(tmp_path)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(p.state, 150, f"w{k}")) for k in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    raw = b"".join(Path(f).read_bytes() for f in (events.journal(p) + ".1", events.journal(p))
                   if os.path.exists(f))
    lines = raw.splitlines()
    assert all(system._parse(line) for line in lines)  # noqa: SLF001 - whole lines, each parses
    assert os.path.getsize(events.journal(p)) <= 200_000 + 1000
    reader = system.Reader(p)
    got = reader.backlog()
    reader.close()
    assert len(got) == len(lines) and len(got) > 200
    # the newest event of each writer survived rotation
    assert {f"w{k}-149" for k in range(4)} <= {e["id"] for e in got}


def test_reader_follows_appends_and_rotation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = paths_in(tmp_path)
    events.emit(p, "image", "pull", "old", {})
    reader = system.Reader(p)
    assert [e["id"] for e in reader.backlog()] == ["old"]
    assert reader.poll() == []
    events.emit(p, "image", "tag", "new1", {})
    assert [e["id"] for e in reader.poll()] == ["new1"]
    monkeypatch.setattr(events, "MAX_BYTES", 10)
    events.emit(p, "image", "tag", "new2", {})  # written, then the journal rotates
    events.emit(p, "image", "tag", "new3", {})  # into the fresh file (then rotated again)
    assert [e["id"] for e in reader.poll()] == ["new2", "new3"]
    reader.close()


def test_partial_line_waits_for_its_end(tmp_path: Path) -> None:
    p = paths_in(tmp_path)
    os.makedirs(p.state)
    reader = system.Reader(p)
    reader.backlog()
    with open(events.journal(p), "ab") as f:
        f.write(b'{"time": 5, "type": "volume", "action": "create", "id": "v", ')
        f.flush()
        assert reader.poll() == []
        f.write(b'"attributes": {}}\n')
    assert [e["id"] for e in reader.poll()] == ["v"]
    reader.close()


def test_follow_window(tmp_path: Path) -> None:
    p = paths_in(tmp_path)
    events.emit(p, "container", "create", "a", {})
    mid = time.time_ns()
    events.emit(p, "container", "start", "b", {})
    end = time.time_ns()
    assert [e["id"] for e in system.follow(p, None, end)] == ["a", "b"]
    assert [e["id"] for e in system.follow(p, mid, end)] == ["b"]
    assert [e["id"] for e in system.follow(p, 0, mid)] == ["a"]


def test_text_is_dockers_line() -> None:
    ns = calendar.timegm((2026, 11, 30, 14, 0, 0)) * 10**9 + 42
    line = system.text({"time": ns, "type": "container", "action": "start", "id": "abc",
                        "attributes": {"name": "web", "image": "alpine"}})
    assert line == "2026-11-30T14:00:00.000000042Z container start abc (image=alpine, name=web)"
    assert system.text({"time": ns, "type": "volume", "action": "create", "id": "v", "attributes": {}}) \
        == "2026-11-30T14:00:00.000000042Z volume create v"


def test_parse_time_forms() -> None:
    now = 1_800_000_000 * 10**9
    assert system.parse_time("1700000000", "--since", now) == 1_700_000_000 * 10**9
    assert system.parse_time("1700000000.5", "--since", now) == 1_700_000_000 * 10**9 + 500_000_000
    assert system.parse_time("10m", "--since", now) == now - 600 * 10**9
    assert system.parse_time("1h30m", "--since", now) == now - 5400 * 10**9
    assert system.parse_time("0s", "--until", now) == now
    two_pm = calendar.timegm((2026, 11, 30, 14, 0, 0)) * 10**9
    assert system.parse_time("2026-11-30T14:00:00Z", "--since", now) == two_pm
    assert system.parse_time("2026-11-30T15:00:00.25+01:00", "--since", now) == two_pm + 250_000_000
    local_midnight = int(time.mktime((2026, 11, 30, 0, 0, 0, 0, 0, -1))) * 10**9
    assert system.parse_time("2026-11-30", "--since", now) == local_midnight
    for bad in ("", "yesterday", "10x", "2026-13-01", "1.2.3"):
        with pytest.raises(UsageError, match="invalid --since"):
            system.parse_time(bad, "--since", now)


def test_filters() -> None:
    ev = {"time": 1, "type": "container", "action": "start", "id": "0123456789abcdef" * 4,
          "attributes": {"name": "web", "image": "alpine", "com.example": "yes"}}
    img = {"time": 1, "type": "image", "action": "tag", "id": "sha256:" + "b" * 64, "attributes": {"name": "alpine"}}

    def m(event: dict[str, object], *items: str) -> bool:
        return system.matches(event, system.parse_filters(list(items)))

    assert m(ev) and m(ev, "type=container") and not m(ev, "type=image")
    assert m(ev, "event=start") and m(ev, "event=die", "event=start") and not m(ev, "event=die")
    assert m(ev, "container=web") and m(ev, "container=0123456789ab") and not m(ev, "container=db")
    assert m(ev, "image=alpine") and m(img, "image=alpine") and not m(img, "image=busybox")
    assert m(ev, "label=com.example") and m(ev, "label=com.example=yes") and not m(ev, "label=com.example=no")
    assert not m(ev, "type=container", "event=die")  # different keys narrow
    assert not m(img, "container=alpine")
    for bad in ("type", "type=", "type=daemonx", "colour=red"):
        with pytest.raises(UsageError, match="invalid --filter"):
            system.parse_filters([bad])


class _Rec:
    def __init__(self, paths: Paths, meta: object) -> None:
        self.paths, self.id, self._meta = paths, "e" * 64, meta

    def meta(self) -> object:
        if isinstance(self._meta, Exception):
            raise self._meta
        return self._meta


def test_container_event_carries_labels_image_name_and_extra(tmp_path: Path) -> None:
    p = paths_in(tmp_path)
    meta = {"name": "web", "image": "alpine", "config": {"labels": {"tier": "front", "name": "shadowed"}}}
    events.container(_Rec(p, meta), "die", exitCode="3")  # type: ignore[arg-type]
    events.container(_Rec(p, ValueError("damaged")), "destroy")  # type: ignore[arg-type]
    reader = system.Reader(p)
    die, destroy = reader.backlog()
    reader.close()
    assert die["attributes"] == {"tier": "front", "name": "web", "image": "alpine", "exitCode": "3"}
    assert (destroy["action"], destroy["id"], destroy["attributes"]) == ("destroy", "e" * 64, {})
