"""The markers: pycontain_root and pycontain_requires skip with a reason; pycontain_testdata fails in one
line (an error at its setup); and the pycontain fixture itself skips when not root. "Not root" and "no
overlayfs" are faked in the inner run's conftest (the plugin reads os.geteuid and its FEATURES table when a
test starts)."""

from __future__ import annotations

from collections.abc import Callable

from plugin_support import Inner

FAKE_HOST = '''
import os

import pycontain.pytest_plugin as plugin

plugin.FEATURES["overlay"] = (lambda: False, "overlayfs (faked away by this conftest)")
if os.environ.get("FAKE_NOT_ROOT"):
    os.geteuid = lambda: 1000
'''

MARKED = '''
import pytest


@pytest.mark.pycontain_root
def test_needs_root():
    pass


@pytest.mark.pycontain_requires("overlay", "netns")
def test_needs_overlay():
    pass


@pytest.mark.pycontain_requires("netns", "cgroup")
def test_needs_what_is_there():
    pass


def test_uses_the_fixture(pycontain):
    pass


@pytest.mark.pycontain_testdata("/nonexistent/plugin-test/golden", "the golden files")
def test_needs_test_data():
    pass


def test_unmarked():
    pass
'''


def test_markers_as_root(inner: Callable[..., Inner]) -> None:
    run = inner(MARKED, conftest=FAKE_HOST)
    assert run.outcomes == {"passed": 4, "skipped": 1, "error": 1}, run.output
    assert "SKIPPED [1] test_inner0.py:" in run.output and "needs overlayfs (faked away by this conftest)" \
        in run.output, run.output
    # One line: what is missing and where it is expected, no traceback.
    assert "ERROR test_inner0.py::test_needs_test_data - Failed: missing test data: " in run.output, run.output
    assert "\nmissing test data: the golden files expected at /nonexistent/plugin-test/golden\n" in run.output
    assert "Traceback" not in run.output


def test_markers_when_not_root(inner: Callable[..., Inner], monkeypatch: object) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setenv("FAKE_NOT_ROOT", "1")
    run = inner(MARKED, conftest=FAKE_HOST)
    assert run.outcomes == {"passed": 2, "skipped": 3, "error": 1}, run.output
    assert "needs root (pycontain makes namespaces, mounts and cgroups)" in run.output
    assert "the pycontain fixture needs root" in run.output


def test_an_unknown_feature_is_a_usage_error(inner: Callable[..., Inner]) -> None:
    run = inner('''
import pytest

@pytest.mark.pycontain_requires("warp-drive")
def test_x():
    pass
''')
    assert "unknown feature 'warp-drive'" in run.output, run.output
