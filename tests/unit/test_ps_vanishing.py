"""`pycontain ps` lists what exists while it looks: a container removed meanwhile is skipped, not an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from pycontain import cli, state


def write_record(paths: state.Paths, cid: str, name: str, created: str) -> state.Record:
    state.ensure_dirs(paths)
    rec = state.Record(paths, cid)
    Path(rec.dir).mkdir()
    state.atomic_write_json(f"{rec.dir}/config.json", {
        "id": cid, "name": name, "created": created, "image": "busybox", "image_id": "sha256:" + "0" * 64,
        "layers": [], "config": {"image": "busybox"}, "network": None,
        "resolved": {"argv": ["sleep", "1"], "env": [], "workdir": "/", "user": "", "hostname": "h"},
    }, durable=False)
    state.atomic_write_json(f"{rec.dir}/state.json", {"status": "exited", "exit_code": 0,
                                                      "finished_at": created}, durable=False)
    return rec


def test_a_record_removed_after_the_listing_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    paths = state.Paths(str(tmp_path / "run"), str(tmp_path / "storage"))
    kept = write_record(paths, "a" * 64, "kept", "2024-01-01T00:00:00.000000000Z")
    gone = write_record(paths, "b" * 64, "gone", "2024-01-02T00:00:00.000000000Z")
    listed = state.all_records(paths)
    assert {r.id for r in listed} == {kept.id, gone.id}
    # `rm` wins the race: the record is deleted after ps listed the directory, before it read the files.
    state.remove_record(gone)
    monkeypatch.setattr(state, "all_records", lambda _paths: listed)

    assert cli.cmd_ps(paths, {"all": True, "quiet": False}, []) == 0
    out = capsys.readouterr().out
    assert "kept" in out and "gone" not in out
    assert cli.cmd_ps(paths, {"all": True, "quiet": True}, []) == 0
    assert capsys.readouterr().out.split() == [kept.short_id]


def test_newest_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = state.Paths(str(tmp_path / "run"), str(tmp_path / "storage"))
    old = write_record(paths, "c" * 64, "old", "2024-01-01T00:00:00.000000000Z")
    new = write_record(paths, "d" * 64, "new", "2024-03-01T00:00:00.000000000Z")
    assert cli.cmd_ps(paths, {"all": True, "quiet": True}, []) == 0
    assert capsys.readouterr().out.split() == [new.short_id, old.short_id]
