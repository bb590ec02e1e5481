"""cgroups' block I/O weight writer: the first weight file present gets its value; with none, one warning
for the whole process and no error (Docker's behaviour for a kernel without CFQ/BFQ)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pycontain.cgroups import base


def test_first_present_file_wins(tmp_path: Path) -> None:
    (tmp_path / "io.weight").write_text("")  # cgroupfs files take a write without truncation
    assert base.write_blkio_weight(str(tmp_path), (("io.bfq.weight", "300"), ("io.weight", "2900")))
    assert (tmp_path / "io.weight").read_text() == "2900"
    assert not (tmp_path / "io.bfq.weight").exists()


def test_no_weight_file_warns_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(base, "_weight_warned", False)
    for _ in range(2):
        assert not base.write_blkio_weight(str(tmp_path), (("blkio.weight", "300"), ("blkio.bfq.weight", "300")))
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "blkio.weight or blkio.bfq.weight" in err[0] and "discarded" in err[0]
    assert list(tmp_path.iterdir()) == []
