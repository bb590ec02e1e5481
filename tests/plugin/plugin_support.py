"""Helpers of the plugin tests (fixtures in conftest.py): running an inner pytest and reading its outcome."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 300


@dataclass
class Inner:
    outcomes: dict[str, int]
    output: str
    basetemp: Path

    @property
    def root(self) -> Path:
        """The inner run's state root (the plugin's: one per run, under its basetemp)."""
        roots = sorted(self.basetemp.glob("pycontain[0-9]*/root"))
        assert len(roots) == 1, roots
        return roots[0]

    def count(self, outcome: str) -> int:
        return self.outcomes.get(outcome, 0)


def summary(output: str) -> dict[str, int]:
    """pytest's last line, "1 failed, 2 passed, 1 skipped in 3.2s", as {"failed": 1, ...}."""
    lines = [line for line in output.splitlines() if line.strip()]
    found = re.findall(r"(\d+) (passed|failed|errors?|skipped|deselected|xfailed|xpassed)", lines[-1] if lines else "")
    return {("error" if kind.startswith("error") else kind): int(n) for n, kind in found}



def root_is_empty(root: Path) -> None:
    """No container record and no network but what pycontain keeps by design (the default one)."""
    for sub in ("run/containers", "run/networks"):
        left = [n for n in os.listdir(root / sub) if not n.startswith(".")] if (root / sub).is_dir() else []
        # The default network is made on first use and kept for the run, like its images.
        left = [n for n in left if n not in ("ports.json", "lock", "pycontain")]
        assert left == [], f"{sub}: {left}"
