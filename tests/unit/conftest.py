"""The unit tests' one hook: the example counts of the property-based fuzz tests, at the end of the session."""

from __future__ import annotations

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    try:
        from fuzz_support import COUNTS
    except ImportError:  # hypothesis is not installed: no fuzz test ran
        return
    if COUNTS:
        # "... of which ..." lines count a subset of the line above them, not examples of their own.
        total = sum(n for name, n in COUNTS.items() if "of which" not in name)
        terminalreporter.write_sep("-", f"fuzz examples run: {total}")
        for name, n in sorted(COUNTS.items()):
            terminalreporter.write_line(f"{n:6d}  {name}")
