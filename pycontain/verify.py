"""`pycontain verify [IMAGE]`: prove each isolation claim (being written; see issue 15)."""

from __future__ import annotations

from typing import Any

from pycontain.errors import PycontainError

COMMANDS: dict[str, tuple[list[Any], str, str]] = {
    "verify": ([], "[IMAGE]", "start a container and prove each isolation claim from inside and outside"),
}


def cmd_verify(paths: Any, opts: dict[str, Any], pos: list[str]) -> int:
    raise PycontainError("verify is not written yet")


HANDLERS = {"verify": cmd_verify}
