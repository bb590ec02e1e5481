"""Fuzzing image references (pycontain/images/reference.py): any text either parses, into a reference that
prints and parses back to itself (also from its short, familiar form), or is refused with one UsageError."""

from __future__ import annotations

from fuzz_support import count, fuzz, one_line
from hypothesis import given
from hypothesis import strategies as st

from pycontain.errors import UsageError
from pycontain.images import reference

PART = st.text(alphabet="abcz019._-", min_size=1, max_size=8)
DOMAIN = st.one_of(st.sampled_from(["docker.io", "index.docker.io", "localhost", "localhost:5000", "127.0.0.1:5000",
                                    "my.registry", "-bad.host", "host:port", "a.b:999999", "UPPER.case"]),
                   st.text(alphabet="abc.:-019", min_size=1, max_size=12))
TAG = st.one_of(st.text(alphabet="aZ09_.-", min_size=1, max_size=10), st.text(max_size=5), st.just("a" * 129))
DIGEST = st.one_of(st.builds(lambda h: "sha256:" + h, st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)),
                   st.text(max_size=12), st.just("sha512:" + "0" * 128))


@st.composite
def structured(draw: st.DrawFn) -> str:
    """Mostly well-formed references, with a wrong piece here and there."""
    out = "/".join(draw(st.lists(PART, min_size=1, max_size=3)))
    if draw(st.booleans()):
        out = f"{draw(DOMAIN)}/{out}"
    if draw(st.booleans()):
        out += f":{draw(TAG)}"
    if draw(st.booleans()):
        out += f"@{draw(DIGEST)}"
    return out


@fuzz(4000)
@given(st.one_of(structured(), st.text(max_size=40)))
def test_parse_round_trips_or_refuses(text: str) -> None:
    count("image references")
    try:
        ref = reference.parse(text)
    except UsageError as e:
        one_line(e)
        return
    assert reference.parse(str(ref)) == ref
    assert str(reference.parse(str(ref))) == str(ref)
    familiar = reference.parse(ref.familiar)
    assert familiar.repository == ref.repository
    assert (familiar.tag, familiar.digest) == ((ref.tag, None) if ref.tag else (None, ref.digest))
