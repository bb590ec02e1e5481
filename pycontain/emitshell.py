"""`run --emit-shell`: the container as a bash script of standard tools (being written; see issue 15)."""

from __future__ import annotations

from typing import Any

from pycontain.errors import PycontainError


def cmd_emit(paths: Any, cfg: Any) -> int:
    raise PycontainError("--emit-shell is not written yet")
