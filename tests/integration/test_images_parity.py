"""Image and registry behaviour a Docker user expects (issue 13): what `run` says about pulls, registry
errors in Docker's words, OCI archives for `load`, kept-alive connections and proxies, the built-in image.

Registries are Debian's docker-registry on 127.0.0.1 (images_support.py); proxies and plain servers
here listen on 127.0.0.1 too. Nothing leaves the loopback interface.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from images_support import LocalRegistry
from support import Pycontain, assert_pycontain_error, describe

pytest_plugins = ("images_support",)

REPO = Path(__file__).resolve().parents[2]


def alpine(reg: LocalRegistry) -> str:
    return f"{reg.host}/library/alpine:3.20"


# ---------------------------------------------------------------- run and its pulls

def test_run_pull_always_of_a_present_image_does_not_say_it_is_missing(
        pcr: Pycontain, registry: LocalRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    pcr.ok("pull", alpine(registry))
    monkeypatch.delenv("PYCONTAIN_PULL", raising=False)
    res = pcr.ok("run", "--rm", "--pull", "always", alpine(registry), "cat", "/etc/alpine-release")
    assert res.stdout == "3.20.3\n"
    assert "Unable to find image" not in res.stderr, describe(res)
    assert "Image is up to date" in res.stderr, describe(res)


def test_run_of_a_misspelt_image_says_not_found_locally_then_the_registry_answer(
        pcr: Pycontain, registry: LocalRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYCONTAIN_PULL", raising=False)
    res = pcr("run", "--rm", f"{registry.host}/library/alpnie", "true")
    assert_pycontain_error(res, after_progress=True)
    lines = res.stderr.strip().splitlines()
    assert lines[0] == f"Unable to find image '{registry.host}/library/alpnie:latest' locally", describe(res)
    assert len(lines) == 2, describe(res)
    # Docker's words for what this registry answers (distribution says MANIFEST_UNKNOWN for a missing
    # repository, Docker Hub 401), with the registry's own code.
    assert "not found" in lines[1] or "pull access denied" in lines[1], describe(res)
    assert "_UNKNOWN" in lines[1], describe(res)

    res = pcr("run", "--rm", f"{registry.host}/library/alpine:9.99", "true")
    assert_pycontain_error(res, after_progress=True)
    lines = res.stderr.strip().splitlines()
    assert lines[0] == f"Unable to find image '{registry.host}/library/alpine:9.99' locally", describe(res)
    assert len(lines) == 2 and "not found" in lines[1] and "MANIFEST_UNKNOWN" in lines[1], describe(res)


def test_pull_of_a_misspelt_image_is_still_one_line(pcr: Pycontain, registry: LocalRegistry) -> None:
    res = pcr("pull", f"{registry.host}/library/alpnie")
    assert_pycontain_error(res)
    assert "_UNKNOWN" in res.stderr
