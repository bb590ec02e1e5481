"""clifmt: the one table, time-ago and size formatter every command prints with."""

from __future__ import annotations

import time

import pytest

from pycontain import clifmt


@pytest.mark.parametrize(("n", "units", "text"), [
    (0, "si", "0B"), (999, "si", "999B"), (1000, "si", "1kB"), (7_800_000, "si", "7.8MB"),
    (1_234_567_890, "si", "1.23GB"), (5.5e15, "si", "5.5e+03TB"),
    (512, "iec", "512B"), (2048, "iec", "2KiB"), (2_048_000, "iec", "1.953MiB"), (128 << 20, "iec", "128MiB"),
    (10 << 20, "flag", "10m"), (64 << 10, "flag", "64k"), (2 << 30, "flag", "2g"), (5000, "flag", "5000"),
])
def test_size(n: float, units: str, text: str) -> None:
    assert clifmt.size(n, units) == text


def test_table_pads_columns_three_spaces_apart_without_trailing_blanks(capsys: pytest.CaptureFixture[str]) -> None:
    clifmt.table(["ID", "NAME"], [["abc", "x"], ["d", "longer"]])
    assert capsys.readouterr().out == "ID    NAME\nabc   x\nd     longer\n"


def test_ago() -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 3 * 3600 - 5)) + ".000000000Z"
    assert clifmt.ago(stamp) == "3 hours"
    assert clifmt.ago("") == "?" and clifmt.ago("garbage") == "?"
