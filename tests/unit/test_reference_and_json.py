"""Image references normalise like Docker's; the start-path JSON is real JSON."""

import json

import pytest

from pycontain import jsonfast
from pycontain.errors import UsageError
from pycontain.images.reference import parse


@pytest.mark.parametrize("text,full,familiar", [
    ("alpine", "docker.io/library/alpine:latest", "alpine:latest"),
    ("alpine:3.20", "docker.io/library/alpine:3.20", "alpine:3.20"),
    ("user/app", "docker.io/user/app:latest", "user/app:latest"),
    ("localhost:5000/a/b:c", "localhost:5000/a/b:c", "localhost:5000/a/b:c"),
    ("127.0.0.1:5000/library/alpine:3.20", "127.0.0.1:5000/library/alpine:3.20", "127.0.0.1:5000/library/alpine:3.20"),
    ("index.docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
])
def test_references_normalise(text, full, familiar):
    ref = parse(text)
    assert str(ref) == full and ref.familiar == familiar


def test_digest_references():
    digest = "sha256:" + "a" * 64
    ref = parse(f"alpine@{digest}")
    assert ref.digest == digest and ref.tag is None


@pytest.mark.parametrize("bad", ["", "Alpine", "a..b", "a:b:c", "alpine@sha256:xyz", "-lead", "a/ b", "x:" + "t" * 200])
def test_bad_references_are_rejected(bad):
    with pytest.raises(UsageError):
        parse(bad)


def test_jsonfast_matches_the_json_module():
    data = {"b": [1, 2.5, None, True, "é\n\"q\""], "a": {"nested": []}, "t": (1, 2)}
    text = jsonfast.dumps(data)
    assert json.loads(text) == json.loads(json.dumps(data))
    assert jsonfast.loads(text) == json.loads(text)
    assert jsonfast.loads(b' {"x": 1} \n') == {"x": 1}
    for bad in ("", "{bad", "[1] trailing"):
        with pytest.raises(ValueError):
            jsonfast.loads(bad)
