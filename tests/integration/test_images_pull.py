"""`pycontain pull` against a real registry (Debian's docker-registry on 127.0.0.1), no mocks.

Every test has its own --root; the registries are filled by skopeo, never by pycontain.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from pathlib import Path

import pytest

from images_support import PASSWORD, USER, LocalRegistry, store_files
from support import Pycontain, assert_pycontain_error, describe


# The registry fixtures (registry, htpasswd_registry, token_registry, fresh_registry, pcr).
pytest_plugins = ("images_support",)

def alpine(reg: LocalRegistry) -> str:
    return f"{reg.host}/library/alpine:3.20"


def test_pulled_alpine_runs_and_reads_its_release(pcr: Pycontain, registry: LocalRegistry) -> None:
    res = pcr.ok("pull", alpine(registry))
    assert res.stdout.strip() == alpine(registry)
    assert "Pull complete" in res.stderr and "Downloaded newer image" in res.stderr
    assert pcr.ok("run", "--rm", alpine(registry), "cat", "/etc/alpine-release").stdout == "3.20.3\n"


def test_run_pulls_an_image_that_is_not_here(pcr: Pycontain, registry: LocalRegistry,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYCONTAIN_PULL", raising=False)
    res = pcr.ok("run", "--rm", alpine(registry), "cat", "/etc/alpine-release")
    assert res.stdout == "3.20.3\n"
    assert "Unable to find image" in res.stderr and "Pull complete" in res.stderr


def test_second_pull_fetches_nothing_and_says_up_to_date(pcr: Pycontain, registry: LocalRegistry) -> None:
    pcr.ok("pull", alpine(registry))
    before = store_files(pcr.root)
    res = pcr.ok("pull", alpine(registry))
    assert "Already exists" in res.stderr and "Image is up to date" in res.stderr
    assert store_files(pcr.root) == before


def test_quiet_pull_prints_only_the_name(pcr: Pycontain, registry: LocalRegistry) -> None:
    res = pcr.ok("pull", "-q", alpine(registry))
    assert res.stdout == alpine(registry) + "\n" and res.stderr == ""


def test_pull_by_digest_verifies_and_stores_the_digest_reference(pcr: Pycontain, registry: LocalRegistry) -> None:
    res = pcr.ok("pull", alpine(registry))
    digest = next(line.split()[1] for line in res.stderr.splitlines() if line.startswith("Digest:"))
    other = Pycontain(pcr.root.parent / "root2")
    by_digest = f"{registry.host}/library/alpine@{digest}"
    other.ok("pull", by_digest)
    assert other.ok("run", "--rm", by_digest, "cat", "/etc/alpine-release").stdout == "3.20.3\n"
    wrong = f"{registry.host}/library/alpine@sha256:{'0' * 64}"
    assert_pycontain_error(other("pull", wrong))


def test_zstd_layers_are_pulled(pcr: Pycontain, registry: LocalRegistry) -> None:
    image = f"{registry.host}/zstd/alpine:3.20"
    pcr.ok("pull", image)
    assert pcr.ok("run", "--rm", image, "cat", "/etc/alpine-release").stdout == "3.20.3\n"


def test_manifest_lists_choose_linux_amd64_or_the_platform_asked_for(pcr: Pycontain, registry: LocalRegistry) -> None:
    for flavour in ("oci", "docker"):
        image = f"{registry.host}/library/multi:{flavour}"
        pcr.ok("pull", image)
        assert pcr.ok("run", "--rm", image, "cat", "/etc/alpine-release").stdout == "3.20.3\n"
        other = Pycontain(pcr.root.parent / f"arm-{flavour}")
        other.ok("pull", "--platform", "linux/arm64", image)
        config = other.inspect(image)
        layer_dir = Path(config["LayerDirs"][0])
        assert (layer_dir / "etc" / "platform").read_text() == "arm64\n"
    res = pcr("pull", "--platform", "linux/s390x", f"{registry.host}/library/multi:oci")
    assert_pycontain_error(res)
    assert "linux/amd64" in res.stderr and "--platform" in res.stderr


def test_htpasswd_registry_needs_a_login(pcr: Pycontain, htpasswd_registry: LocalRegistry) -> None:
    image = f"{htpasswd_registry.host}/private/alpine:3.20"
    res = pcr("pull", image)
    assert_pycontain_error(res)
    assert "login" in res.stderr
    bad = pcr("login", "-u", USER, "--password-stdin", htpasswd_registry.host, input="wrong\n")
    assert_pycontain_error(bad)
    pcr.ok("login", "-u", USER, "--password-stdin", htpasswd_registry.host, input=PASSWORD + "\n")
    creds = pcr.root / "storage" / "auth.json"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600 and creds.stat().st_uid == 0
    pcr.ok("pull", image)
    assert pcr.ok("run", "--rm", image, "cat", "/etc/alpine-release").stdout == "3.20.3\n"
    pcr.ok("logout", htpasswd_registry.host)
    assert_pycontain_error(pcr("pull", image))


def test_docker_cli_config_credentials_are_used(pcr: Pycontain, htpasswd_registry: LocalRegistry,
                                                 tmp_path: Path) -> None:
    import base64

    docker_dir = Path(os.environ["DOCKER_CONFIG"])
    docker_dir.mkdir(parents=True)
    encoded = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (docker_dir / "config.json").write_text(json.dumps({"auths": {htpasswd_registry.host: {"auth": encoded}}}))
    pcr.ok("pull", f"{htpasswd_registry.host}/private/alpine:3.20")


def test_token_auth_challenge_flow(pcr: Pycontain, token_registry: LocalRegistry) -> None:
    image = f"{token_registry.host}/team/alpine:3.20"
    res = pcr("pull", image)  # anonymous: the token service refuses
    assert_pycontain_error(res)
    assert "login" in res.stderr and token_registry.host in res.stderr
    pcr.ok("login", "-u", USER, "--password-stdin", token_registry.host, input=PASSWORD + "\n")
    pcr.ok("pull", image)
    assert pcr.ok("run", "--rm", image, "cat", "/etc/alpine-release").stdout == "3.20.3\n"
    assert token_registry.issuer is not None
    assert any("scope=repository%3Ateam%2Falpine%3Apull" in r for r in token_registry.issuer.requests)


def test_unreachable_registry_is_one_clear_line(pcr: Pycontain) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = pcr("pull", f"127.0.0.1:{port}/library/alpine:3.20")
    assert_pycontain_error(res)
    assert f"127.0.0.1:{port}" in res.stderr and "load" in res.stderr and "import" in res.stderr


def test_missing_tag_and_bad_references_are_clear_errors(pcr: Pycontain, registry: LocalRegistry) -> None:
    res = pcr("pull", f"{registry.host}/library/alpine:9.99")
    assert_pycontain_error(res)
    assert "not found" in res.stderr
    for bad in ("UPPER/case", "alpine@sha256:xyz", "a:b:c", ""):
        assert_pycontain_error(pcr("pull", bad))


def test_registry_mirror_serves_docker_hub_names(pcr: Pycontain, registry: LocalRegistry) -> None:
    res = pcr.ok("pull", "--registry-mirror", f"http://{registry.host}", "alpine:3.20")
    assert res.stdout.strip() == "docker.io/library/alpine:3.20"
    assert pcr.ok("run", "--rm", "alpine:3.20", "cat", "/etc/alpine-release").stdout == "3.20.3\n"


def test_mirror_from_the_config_file(pcr: Pycontain, registry: LocalRegistry) -> None:
    Path(os.environ["PYCONTAIN_REGISTRIES_CONFIG"]).write_text(
        json.dumps({"registry-mirrors": [f"http://{registry.host}"]}))
    pcr.ok("pull", "alpine:3.20")


def test_a_corrupted_blob_fails_the_pull_and_leaves_nothing(pcr: Pycontain, fresh_registry: LocalRegistry) -> None:
    fresh_registry.push_tarball("library/alpine:3.20")
    manifest = json.loads(fresh_registry.get_manifest("library/alpine", "3.20"))
    blob = fresh_registry.blob_file(manifest["layers"][0]["digest"])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one bit pattern flipped in the middle
    blob.write_bytes(bytes(data))
    res = pcr("pull", alpine(fresh_registry))
    assert_pycontain_error(res, after_progress=True)
    assert "verification" in res.stderr
    leftovers = [f for f in store_files(pcr.root) if ".tmp-" in f or f.startswith("layers/")]
    assert leftovers == [], leftovers
    assert pcr.ok("images", "-q").stdout == ""


def test_concurrent_pulls_both_succeed_with_one_stored_copy(pcr: Pycontain, registry: LocalRegistry) -> None:
    procs = [pcr.popen("pull", "-q", alpine(registry)) for _ in range(3)]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    layers = [f for f in store_files(pcr.root) if f.startswith("layers/") and f.count("/") == 1]
    assert len([f for f in layers if not f.endswith(".json")]) == 1, layers
    assert not [f for f in store_files(pcr.root) if ".tmp-" in f]


def test_killed_pull_leaves_the_store_consistent(pcr: Pycontain, registry: LocalRegistry) -> None:
    for delay in (0.05, 0.15, 0.3):
        p = pcr.popen("pull", "-q", alpine(registry))
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=30)
        # Whatever the moment of death: either no image, or a complete one.
        images = pcr.ok("images", "-q").stdout.split()
        if images:
            assert pcr.ok("run", "--rm", alpine(registry), "true").returncode == 0
        res = pcr.ok("pull", alpine(registry))
        assert "Status:" in res.stderr, describe(res)
        assert not [f for f in store_files(pcr.root) if ".tmp-" in f]
        assert pcr.ok("run", "--rm", alpine(registry), "cat", "/etc/alpine-release").stdout == "3.20.3\n"
        pcr.ok("rmi", alpine(registry))
