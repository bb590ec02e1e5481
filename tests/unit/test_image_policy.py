"""The pull policy (--pull missing|never|always) has one home, runtime.image_for, and the store does not
need the pull code to read an image."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pycontain.errors import ImageNotFound, UsageError
from pycontain import runtime as policy
from pycontain.images import pull

REPO = Path(__file__).resolve().parents[2]


class FakeStore:
    def __init__(self, present: bool) -> None:
        self.present = present

    def resolve(self, ref: str) -> str:
        if not self.present:
            raise ImageNotFound(f"no {ref}")
        return f"stored {ref}"


@pytest.fixture
def pulls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    done: list[str] = []

    def fake_pull(store: object, ref: str) -> str:
        done.append(ref)
        return f"pulled {ref}"

    monkeypatch.setattr(pull, "pull_for_run", fake_pull)
    return done


def test_missing_uses_a_stored_image_and_pulls_an_absent_one(pulls: list[str]) -> None:
    assert policy.image_for(FakeStore(True), "busybox", "missing") == "stored busybox"
    assert pulls == []
    assert policy.image_for(FakeStore(False), "busybox", "missing") == "pulled busybox"
    assert pulls == ["busybox"]


def test_never_does_not_pull(pulls: list[str]) -> None:
    assert policy.image_for(FakeStore(True), "busybox", "never") == "stored busybox"
    with pytest.raises(ImageNotFound):
        policy.image_for(FakeStore(False), "busybox", "never")
    assert pulls == []


def test_always_pulls_even_a_stored_image(pulls: list[str]) -> None:
    assert policy.image_for(FakeStore(True), "busybox", "always") == "pulled busybox"
    assert pulls == ["busybox"]


def test_an_unknown_policy_is_a_usage_error(pulls: list[str]) -> None:
    with pytest.raises(UsageError, match="--pull"):
        policy.image_for(FakeStore(True), "busybox", "sometimes")


@pytest.mark.parametrize("first", ["pycontain.images.store", "pycontain.runtime", "pycontain.images.pull"])
def test_each_images_module_imports_on_its_own_and_reading_needs_no_pull_code(first: str) -> None:
    code = (f"import sys; import {first}; import pycontain.images.store, pycontain.runtime; "
            "print('pycontain.images.pull' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(first == "pycontain.images.pull")
