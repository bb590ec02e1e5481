"""Each container gets a fresh session keyring: the caller's session keys stay on the host.

The review found the container read keys from the caller's session keyring (and shares root's user
keyring, which stays shared until user namespaces: see docs/security.md).
Would have caught: 3009c56 (the last commit before the fix).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from attacks import probes  # noqa: F401 - the probes fixture
from support import PYCONTAIN, Pycontain

pytestmark = pytest.mark.usefixtures("no_leaks")


def test_the_callers_session_keys_are_not_in_the_container(pc: Pycontain, probes: Path,  # noqa: F811
                                                          tmp_path: Path) -> None:
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    (probe_dir / "keyring_probe").write_bytes((probes / "keyring_probe").read_bytes())
    (probe_dir / "keyring_probe").chmod(0o755)
    description = f"pycontain-test-{os.getpid()}"
    # add_key: a session keyring holding the key, then `pycontain run` inside that session.
    import subprocess

    res = subprocess.run([str(probes / "add_key"), description, PYCONTAIN, "--root", str(pc.root), "run", "--rm",
                          "-v", f"{probe_dir}:/probe:ro", "busybox", "/probe/keyring_probe", description],
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr
    assert "missing" in res.stdout and "found" not in res.stdout, res.stdout
    host = subprocess.run([str(probes / "add_key"), description, str(probes / "keyring_probe"), description],
                          capture_output=True, text=True, timeout=60)
    assert "found" in host.stdout  # the probe does see a key that is there
