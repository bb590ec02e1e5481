"""`pycontain doctor`: check this host before class (being written; see issue 15)."""

from __future__ import annotations

from typing import Any

from pycontain.errors import PycontainError

COMMANDS: dict[str, tuple[list[Any], str, str]] = {
    "doctor": ([(("--format",), "format", "value", "json", "json: one object")], "",
               "check that this host can run containers, and say how to fix what is missing"),
}


def cmd_doctor(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    raise PycontainError("doctor is not written yet")


HANDLERS = {"doctor": cmd_doctor}
