"""Word expansion against the reference front end's own golden files (envVarTest, wordsTest), read in place
from ../shared/testdata/dockerfile (never copied into this repository)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pycontain.build import words
from pycontain.build.words import ExpansionError, expand, raw_words, split
from pycontain.errors import UsageError

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "dockerfile"
ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}


def _missing(path: object) -> object:
    """Fails the test in one line naming the golden file and where it was expected (pytest plugin)."""
    return pytest.mark.pycontain_testdata(path, "the Dockerfile golden files")


def _env_var_cases() -> list[object]:
    path = DATA / "envVarTest"
    if not path.exists():
        return [pytest.param(None, None, marks=_missing(path))]
    cases: list[object] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        platform, source, expected = line.split("|", 2)
        if platform == "W":
            continue
        cases.append(pytest.param(source.strip(), expected.strip(), id=f"envVarTest:{number}"))
    return cases


def _words_cases() -> list[object]:
    path = DATA / "wordsTest"
    if not path.exists():
        return [pytest.param(None, None, None, marks=_missing(path))]
    cases: list[object] = []
    env: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("ENV "):
            name, _, value = line[4:].partition("=")
            env[name] = value
            continue
        source, expected = line.split("|", 1)
        # Only leading blanks of the expected words are layout: trailing ones belong to the last word.
        cases.append(pytest.param(source.strip(), expected.lstrip(" "), dict(env), id=f"wordsTest:{number}"))
    return cases


@pytest.mark.parametrize(("source", "expected"), _env_var_cases())
def test_env_var_golden(source: str, expected: str) -> None:
    if expected == "error":
        with pytest.raises(ExpansionError):
            expand(source, ENV)
    else:
        assert expand(source, ENV) == expected


@pytest.mark.parametrize(("source", "expected", "env"), _words_cases())
def test_words_golden(source: str, expected: str, env: dict[str, str]) -> None:
    if expected == "error":
        with pytest.raises(ExpansionError):
            split(source, env)
    else:
        assert split(source, env) == expected.split(",")


def test_expansion_error_is_a_usage_error() -> None:
    assert issubclass(ExpansionError, UsageError)
    with pytest.raises(ExpansionError) as info:
        expand("${X?must be set}", {})
    assert "X: must be set" in str(info.value)
    with pytest.raises(ExpansionError) as info:
        expand("${X?two\nlines}", {})
    assert len(str(info.value).splitlines()) == 1


def test_used_records_every_name() -> None:
    used: set[str] = set()
    expand("$A ${B:-$C} ${D+x} '$E' \\$F", {"A": "1"}, used=used)
    assert used == {"A", "B", "C", "D"}


@pytest.mark.parametrize(("source", "env", "expected"), [
    ("${A-x}", {}, "x"),
    ("${A-x}", {"A": ""}, ""),
    ("${A:-x}", {"A": ""}, "x"),
    ("${A+x}", {"A": ""}, "x"),
    ("${A:+x}", {"A": ""}, ""),
    ("${A?}", {"A": ""}, ""),
    ("${A#*/}", {"A": "a/b/c"}, "b/c"),
    ("${A##*/}", {"A": "a/b/c"}, "c"),
    ("${A%/*}", {"A": "a/b/c"}, "a/b"),
    ("${A%%/*}", {"A": "a/b/c"}, "a"),
    ("${A/b/x}", {"A": "abcb"}, "axcb"),
    ("${A//b/x}", {"A": "abcb"}, "axcx"),
    ("${A//b}", {"A": "abcb"}, "ac"),
    ("${A/$P/x}", {"A": "v1.2", "P": "."}, "v1x2"),
])
def test_modifiers(source: str, env: dict[str, str], expected: str) -> None:
    assert expand(source, env) == expected


@pytest.mark.parametrize("source", ["${A:?}", "${A?}", "${A", "${A:=x}", "${}", "'a", '"a'])
def test_errors(source: str) -> None:
    with pytest.raises(ExpansionError):
        expand(source, {"A": ""} if source == "${A:?}" else {})


def test_backtick_escape() -> None:
    assert expand("a`$B c", {"B": "x"}, escape="`") == "a$B c"
    assert expand("C:\\dir\\$B", {"B": "x"}, escape="`") == "C:\\dir\\x"
    assert expand('"a`"b"', {}, escape="`") == 'a"b'
    assert split("a` b c", {}, escape="`") == ["a b", "c"]


def test_raw_words_keep_quotes() -> None:
    assert raw_words('cat <<"EOF" 3<<\'X\' a\\ b') == ["cat", '<<"EOF"', "3<<'X'", "a\\ b"]


def test_expanded_instructions() -> None:
    assert words.EXPANDED >= {"ADD", "COPY", "ENV", "WORKDIR", "ARG"}
    assert not words.EXPANDED & {"RUN", "CMD", "ENTRYPOINT", "ONBUILD"}


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab $={}:-+?#%/\\`'\"\n\t1@*")) | st.characters(), max_size=40),
       st.sampled_from(["\\", "`"]))
def test_expand_only_raises_expansion_error(text: str, escape: str) -> None:
    env = {"a": "x y", "b": ""}
    for fn in (expand, split):
        try:
            fn(text, env, escape)  # type: ignore[operator]
        except ExpansionError as exc:
            assert len(str(exc).splitlines()) == 1
