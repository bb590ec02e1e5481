"""Fuzzing what a registry sends (pycontain/images/pull.py, registry.py, auth.py): manifests, manifest lists,
image configs and layer blobs, error bodies, auth challenges, and the registry and credential files.

The pull runs whole, against an in-memory registry: documents start out valid (digests and sizes right,
so the checks further in are reached) and are then damaged in a few random places, or replaced by any
JSON at all. Only pycontain's own errors may come out, and a failed pull leaves no temp file behind.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from fuzz_support import JSON, count, damaged, fuzz, one_line
from hypothesis import given
from hypothesis import strategies as st

from pycontain.config import ContainerConfig
from pycontain.errors import ImageNotFound, PycontainError, RegistryError
from pycontain.images import auth, pull, registry
from pycontain.images.progress import Progress
from pycontain.images.store import Store
from pycontain.state import Paths

MANIFEST_TYPES = ["application/vnd.docker.distribution.manifest.v2+json", "application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.list.v2+json",
                  "application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.v1+json",
                  "text/html", ""]
LAYER_TYPES = sorted(pull.LAYER_TYPES) + ["application/octet-stream"]


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tiny_layer(content: bytes) -> tuple[bytes, str]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("file")
        info.size = len(content)
        tf.addfile(info, io.BytesIO(content))
    return gzip.compress(buf.getvalue(), mtime=0), sha(buf.getvalue())


class Blob:
    """What Registry.blob returns: a streamed body."""

    def __init__(self, data: bytes) -> None:
        self.f = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self.f.read(n)

    def body(self, limit: int) -> bytes:
        data = self.f.read(limit + 1)
        if len(data) > limit:
            raise RegistryError("answered more than expected")
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        pass


class FakeRegistry:
    def __init__(self, manifests: dict[str, tuple[bytes, str, str | None]], blobs: dict[str, bytes]) -> None:
        self.manifests, self.blobs = manifests, blobs

    def manifest(self, reference: str) -> tuple[bytes, str, str | None]:
        if reference not in self.manifests:
            raise ImageNotFound(f"{reference} was not found")
        return self.manifests[reference]

    def blob(self, digest: str) -> Blob:
        if digest not in self.blobs:
            raise RegistryError(f"downloading {digest[:19]} failed with HTTP 404")
        return Blob(self.blobs[digest])


@st.composite
def registries(draw: st.DrawFn) -> FakeRegistry:
    blobs: dict[str, bytes] = {}
    layers, diff_ids = [], []
    for _ in range(draw(st.integers(0, 2))):
        if draw(st.booleans()):
            data, diff_id = tiny_layer(draw(st.binary(max_size=16)))
        else:
            data, diff_id = draw(st.binary(max_size=64)), sha(draw(st.binary(max_size=4)))
        blobs[sha(data)] = data
        layers.append({"mediaType": draw(st.sampled_from(LAYER_TYPES)), "size": len(data), "digest": sha(data)})
        diff_ids.append(diff_id)
    config_doc = draw(damaged({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"], "Env": ["A=1"]},
                               "rootfs": {"type": "layers", "diff_ids": diff_ids}}))
    config = json.dumps(config_doc).encode() if draw(st.integers(0, 9)) else draw(st.binary(max_size=20))
    blobs[sha(config)] = config
    manifest_doc = draw(damaged({"schemaVersion": 2, "mediaType": MANIFEST_TYPES[0],
                                 "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                            "size": len(config), "digest": sha(config)},
                                 "layers": layers}))
    manifest = json.dumps(manifest_doc).encode() if draw(st.integers(0, 9)) else draw(st.binary(max_size=20))
    manifests: dict[str, tuple[bytes, str, str | None]] = {
        sha(manifest): (manifest, draw(st.sampled_from(MANIFEST_TYPES)), None)}
    top = manifest
    if draw(st.booleans()):  # behind a manifest list
        index_doc = draw(damaged({"schemaVersion": 2, "mediaType": MANIFEST_TYPES[3], "manifests": [
            {"mediaType": MANIFEST_TYPES[0], "size": len(manifest), "digest": sha(manifest),
             "platform": {"os": "linux", "architecture": draw(st.sampled_from(["amd64", "arm64", ""]))}},
            {"mediaType": MANIFEST_TYPES[0], "size": 1, "digest": "sha256:" + "0" * 64,
             "platform": {"os": "unknown", "architecture": "unknown"}}]}))
        top = json.dumps(index_doc).encode()
    header = draw(st.sampled_from([None, sha(top), "sha256:" + "f" * 64, "md5:x"]))
    manifests["latest"] = (top, draw(st.sampled_from(MANIFEST_TYPES)), header)
    return FakeRegistry(manifests, blobs)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Under pytest's basetemp, never a new entry in /tmp (other sessions' leak checks watch /tmp)."""
    d = tmp_path_factory.mktemp("fuzz-pull")
    yield d
    shutil.rmtree(d)


@fuzz(600)
@given(registries())
def test_pull_of_damaged_documents(base: Path, fake: FakeRegistry) -> None:
    count("registry: whole pulls of damaged manifests, lists, configs, layers")
    root = Path(tempfile.mkdtemp(dir=base))
    paths = Paths(str(root / "run"), str(root / "storage"))
    settings = registry.Settings.__new__(registry.Settings)
    settings.mirrors, settings.insecure = [], set()
    try:
        with mock.patch.object(registry, "Registry", lambda *a, **k: fake):
            pull.Puller(paths, settings, Progress(quiet=True)).pull("127.0.0.1:5000/fuzz/image:latest")
        # Pulled: then `run` can read what it needs of the config (or say in one line what is missing).
        image = Store(paths).resolve("127.0.0.1:5000/fuzz/image:latest")
        ContainerConfig(image=image.ref).with_image_defaults(image.config, "0123456789ab")
    except PycontainError as e:
        one_line(e)
        assert Store(paths).gc_temp() == [], "a failed pull left temp files"
    finally:
        shutil.rmtree(root)


@fuzz(1500)
@given(st.one_of(st.dictionaries(st.sampled_from(["manifests", "mediaType", "x"]), JSON, max_size=3),
                 st.builds(lambda m: {"manifests": m}, st.lists(st.one_of(
                     JSON, st.builds(lambda p: {"digest": "sha256:" + "0" * 64, "platform": p}, JSON)), max_size=4))),
       st.sampled_from([("linux", "amd64", ""), ("linux", "arm64", "v8"), ("windows", "amd64", "")]))
def test_choose_platform_and_descriptors(doc: dict[str, Any], wanted: tuple[str, str, str]) -> None:
    """choose_platform gets the parsed list (a JSON object, pull._json says); anything inside may be wrong."""
    count("registry: manifest lists and descriptors")
    for check in (lambda: pull.choose_platform(doc, wanted, "fuzz"), lambda: pull._check_descriptor(doc, "fuzz"),
                  lambda: [pull._check_descriptor(e, "fuzz")
                           for e in (doc["manifests"] if isinstance(doc.get("manifests"), list) else [])]):
        try:
            check()
        except PycontainError as e:
            one_line(e)


@fuzz(1000)
@given(st.one_of(st.binary(max_size=60), JSON.map(lambda v: json.dumps(v).encode())), st.integers(100, 599))
def test_error_bodies_and_json_answers(body: bytes, status: int) -> None:
    count("registry: error bodies and JSON answers")
    reg = registry.Registry.__new__(registry.Registry)
    reg.domain, reg.repo = "127.0.0.1:5000", "fuzz/image"
    resp = mock.Mock(status=status, body=Blob(body).body)
    err = reg._fail(resp, "reading something")
    one_line(err)
    for parse in (lambda: pull._json(body, "fuzz"),
                  lambda: registry.Response(mock.Mock(status=200, headers={}, read=io.BytesIO(body).read), "u").json()):
        try:
            parse()
        except PycontainError as e:
            one_line(e)


@fuzz(1500)
@given(st.one_of(st.text(max_size=60),
                 st.builds(lambda s, kv: s + " " + ",".join(kv), st.sampled_from(["Bearer", "Basic", "bearer", ""]),
                           st.lists(st.builds(lambda k, v: f'{k}={v}', st.sampled_from(["realm", "service", "scope",
                                                                                        "x", ""]),
                                              st.text(max_size=12)), max_size=4))))
def test_auth_challenges(header: str) -> None:
    count("registry: WWW-Authenticate challenges")
    scheme, params = auth.parse_challenge(header)
    assert isinstance(scheme, str) and all(isinstance(k, str) and isinstance(v, str) for k, v in params.items())


@fuzz(800)
@given(st.one_of(st.binary(max_size=40), JSON.map(lambda v: json.dumps(v).encode()),
                 st.builds(lambda v: json.dumps({"auths": {"127.0.0.1:5000": v}}).encode(), JSON),
                 st.builds(lambda v: json.dumps({"registry-mirrors": v, "insecure-registries": v}).encode(), JSON)))
def test_registry_settings_and_credential_files(base: Path, data: bytes) -> None:
    count("registry: settings and credential files")
    d = Path(tempfile.mkdtemp(dir=base))
    (d / "file.json").write_bytes(data)
    env = {"PYCONTAIN_REGISTRIES_CONFIG": str(d / "file.json"), "DOCKER_CONFIG": str(d),
           "PYCONTAIN_REGISTRY_MIRRORS": "", "PYCONTAIN_INSECURE_REGISTRIES": ""}
    (d / "config.json").write_bytes(data)
    paths = Paths(str(d / "run"), str(d / "storage"))
    try:
        with mock.patch.dict(os.environ, env), contextlib.redirect_stderr(io.StringIO()):
            for call in (registry.Settings, lambda: auth.credentials(paths, "127.0.0.1:5000")):
                try:
                    call()
                except PycontainError as e:
                    one_line(e)
    finally:
        shutil.rmtree(d)
