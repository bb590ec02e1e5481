"""The Dockerfile parser against the reference front end's golden files (read in place from
../shared/testdata/dockerfile/parser, never copied here), and Docker's checks on top of it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pycontain.build import dockerfile as df
from pycontain.build.dockerfile import BuildError, Instruction, command_form, healthcheck, key_values, parse
from pycontain.errors import UsageError
from pycontain.pytest_plugin import require_testdata

PARSER_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "dockerfile" / "parser"
GOLDEN = "the Dockerfile golden files"


def go_quote(text: str) -> str:
    """Go's strconv.Quote, the quoting of the golden `result` files."""
    escapes = {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
               "\t": "\\t", "\v": "\\v"}
    out = []
    for ch in text:
        if ch in escapes:
            out.append(escapes[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def render(instr: Instruction) -> str:
    """One instruction in the reference's AST dump format: `cmd ["--flag"] "arg" ...`."""
    parts = [instr.cmd.lower()]
    if instr.raw_flags:
        parts.append("[" + " ".join(go_quote(flag) for flag in instr.raw_flags) + "]")
    if instr.cmd == "ONBUILD" and instr.sub is not None:
        parts.append(f"({render(instr.sub)})")
    elif instr.cmd in ("ENV", "LABEL"):
        separator = "" if df.legacy_form(instr) else "="
        for key, value in key_values(instr):
            parts += [go_quote(key), go_quote(value or ""), go_quote(separator)]
    else:
        parts += [go_quote(arg) for arg in instr.args]
    return " ".join(parts)


def _golden_dirs() -> list[object]:
    if not PARSER_DATA.is_dir():
        return [pytest.param(None, marks=pytest.mark.pycontain_testdata(PARSER_DATA, GOLDEN))]
    return [pytest.param(path, id=path.name) for path in sorted(PARSER_DATA.iterdir()) if path.is_dir()]


@pytest.mark.parametrize("directory", _golden_dirs())
def test_golden(directory: Path) -> None:
    text = (directory / "Dockerfile").read_text(encoding="utf-8")
    expected = (directory / "result").read_text(encoding="utf-8").splitlines()
    _, instructions = df.parse_instructions(text)
    assert [f"({render(instr)})" for instr in instructions] == expected


def test_golden_count() -> None:
    require_testdata(PARSER_DATA, GOLDEN)
    assert len([p for p in PARSER_DATA.iterdir() if p.is_dir()]) == 33


# Golden directories that are complete Dockerfiles Docker would build also pass the checks of parse().
@pytest.mark.parametrize("name", ["ADD-COPY-with-JSON", "args", "brimstone-consuldock", "continueIndent", "docker",
                                  "env", "escape", "escapes", "influxdb", "lk4d4-the-edge-case-generator",
                                  "mail", "multiple-volumes", "nginx", "tf2", "trailing-backslash", "znc"])
def test_golden_builds(name: str) -> None:
    require_testdata(PARSER_DATA, GOLDEN)
    parse((PARSER_DATA / name / "Dockerfile").read_text(encoding="utf-8"))


def test_structure() -> None:
    result = parse("# syntax=docker/dockerfile:1\nARG BASE=alpine\nARG V\n"
                   "FROM --platform=linux/amd64 $BASE AS Build\nRUN --network=none make\n"
                   "COPY --from=build --link --chown=1:2 a b /dst/\n"
                   "FROM scratch\nCOPY --from=build /x /x\n")
    assert result.directives == {"syntax": "docker/dockerfile:1"}
    assert [key_values(a) for a in result.meta_args] == [[("BASE", "alpine")], [("V", None)]]
    first, second = result.stages
    assert (first.index, first.name, first.base, first.platform, first.line) == (0, "build", "$BASE",
                                                                                 "linux/amd64", 4)
    run, copy = first.instructions
    assert (run.cmd, run.flags, run.args, run.line) == ("RUN", {"network": ["none"]}, ("make",), 5)
    assert copy.flags == {"from": ["build"], "link": ["true"], "chown": ["1:2"]}
    assert copy.args == ("a", "b", "/dst/")
    assert (second.name, second.base, second.platform) == (None, "scratch", None)


@pytest.mark.parametrize(("text", "message"), [
    ("RUN echo\n", "before the first FROM"),
    ("ARG A\n", "no FROM"),
    ("# just a comment\n", "no FROM"),
    ("FROM a\nFOO bar\n", "unknown instruction: FOO"),
    ("FROM a\nRUN \\\n", "empty continuation"),
    ("FROM a\n\\\n", "empty continuation"),
    ("FROM a\nRUN x\n\\", "empty continuation"),
    ("FROM a\nCOPY --user=me a b\n", "unknown flag --user"),
    ("FROM a\nADD --from=x a b\n", "unknown flag --from"),
    ("FROM a\nRUN --mount=type=cache,target=/x make\n", "--mount is not supported by pycontain"),
    ("FROM a\nRUN --security=insecure make\n", "not supported by pycontain"),
    ("FROM a\nRUN --network=bridge0 make\n", "must be default, none or host"),
    ("FROM a\nCMD --doit [\"a\"]\n", "CMD takes no flags"),
    ("FROM a\nCOPY --from a b\n", "--from needs a value"),
    ("FROM a\nCOPY --link=maybe a b\n", "true or false"),
    ("FROM a\nCOPY --chown=1 --chown=2 a b\n", "more than once"),
    ("FROM a\nHEALTHCHECK --interval=5 CMD true\n", "not a duration"),
    ("FROM a\nHEALTHCHECK --interval=5us CMD true\n", "less than 1ms"),
    ("FROM a\nHEALTHCHECK --retries=-1 CMD true\n", "negative"),
    ("FROM a\nHEALTHCHECK CONNECT TCP 7000\n", "try CMD"),
    ("FROM a\nHEALTHCHECK CMD\n", "missing command"),
    ("FROM a\nHEALTHCHECK NONE x\n", "takes no arguments"),
    ("FROM a AS x\nFROM b AS X\n", "duplicate stage name 'x'"),
    ("FROM a AS 1x\n", "invalid name for build stage"),
    ("FROM a AS b$c\n", "invalid name for build stage"),
    ("FROM a AS\n", "FROM requires either one"),
    ("FROM a BS b\n", "expected AS"),
    ("FROM\n", "requires at least one argument"),
    ("FROM a\nCOPY a\n", "at least two arguments"),
    ("FROM a\nWORKDIR\n", "requires at least one argument"),
    ("FROM a\nCMD [\"a\\u0000b\"]\n", "NUL"),
    ("FROM a\nSHELL /bin/bash\n", "JSON form"),
    ("FROM a\nENV a\n", "ENV must have two arguments"),
    ("FROM a\nLABEL a=b c\n", "can't find ="),
    ("FROM a\nRUN <<EOF\nnever ends\n", "unterminated heredoc"),
    ("FROM a\nONBUILD ONBUILD RUN x\n", "ONBUILD ONBUILD"),
    ("FROM a\nONBUILD FROM b\n", "FROM isn't allowed as an ONBUILD trigger"),
    ("FROM a\nONBUILD\n", "ONBUILD requires"),
    ("FROM a\nONBUILD COPY --user=x a b\n", "unknown flag --user"),
    ("# escape=x\nFROM a\n", "invalid escape"),
    ("# escape=`\n# escape=\\\nFROM a\n", "only one escape"),
])
def test_errors(text: str, message: str) -> None:
    with pytest.raises(BuildError) as info:
        parse(text)
    text_of_error = str(info.value)
    assert message in text_of_error
    assert "\n" not in text_of_error
    assert text_of_error.startswith("Dockerfile")
    assert issubclass(BuildError, UsageError) and BuildError.exit_code == 125


@pytest.mark.parametrize(("text", "line"), [
    ("FROM a\nRUN x\n\nFOO bar\n", 4),
    ("FROM a\nRUN <<EOF\nok\nEOF\nENV x\nRUN y\n", 5),
    ("FROM a\nRUN <<EOF\nok\nEOF\nRUN <<X\nno end\n", 5),
    ("\n\nRUN x\n", 3),
])
def test_error_lines(text: str, line: int) -> None:
    with pytest.raises(BuildError, match=rf"^Dockerfile:{line}: "):
        parse(text)


def test_source_name_in_errors() -> None:
    with pytest.raises(BuildError, match=r"^build/Containerfile:2: unknown instruction"):
        parse("FROM a\nFOO x\n", source="build/Containerfile")


def _run(text: str) -> Instruction:
    return parse("FROM a\n" + text).stages[0].instructions[0]


def test_heredoc_plain_and_expanding() -> None:
    instr = _run("RUN <<EOF\necho $HOME\n\techo tab\nEOF\n")
    (doc,) = instr.heredocs
    assert (doc.name, doc.content, doc.expand, doc.chomp, doc.fd) == ("EOF", "echo $HOME\n\techo tab\n",
                                                                     True, False, 0)
    assert df.single_heredoc(instr) == doc
    assert command_form(instr, ["/bin/sh", "-c"]) == ["/bin/sh", "-c", "echo $HOME\n\techo tab\n"]
    assert (instr.line, instr.end_line) == (2, 5)


def test_heredoc_chomp() -> None:
    (doc,) = _run("RUN <<-EOF\n\techo a\n\t\techo b\n\tEOF\n").heredocs
    assert (doc.content, doc.chomp, doc.expand) == ("echo a\necho b\n", True, True)


@pytest.mark.parametrize("marker", ['<<"EOF"', "<<'EOF'", '<<E"O"F', '<<-"EOF"'])
def test_heredoc_quoted_does_not_expand(marker: str) -> None:
    (doc,) = _run(f"COPY {marker} /x\n$HOME\nEOF\n").heredocs
    assert doc.name == "EOF" and not doc.expand and doc.content == "$HOME\n"


def test_several_heredocs() -> None:
    instr = _run("RUN <<A cat - /dev/fd/3 3<<'B' > /out\naaa\nA\nbbb $x\nB\n")
    a, b = instr.heredocs
    assert (a.name, a.content, a.fd, a.expand) == ("A", "aaa\n", 0, True)
    assert (b.name, b.content, b.fd, b.expand) == ("B", "bbb $x\n", 3, False)
    assert df.single_heredoc(instr) is None
    assert command_form(instr, ["/bin/sh", "-c"]) == [
        "/bin/sh", "-c", "<<A cat - /dev/fd/3 3<<'B' > /out\naaa\nA\nbbb $x\nB"]


def test_heredoc_marker_in_quotes_is_not_one() -> None:
    instr = _run("RUN echo '<<EOF'\n")
    assert instr.heredocs == () and instr.args == ("echo '<<EOF'",)


def test_escape_directive() -> None:
    result = parse("# escape=`\nFROM a\nRUN echo C:\\dir `\n  next\nCOPY a` b c\\d /x\n")
    assert result.directives == {"escape": "`"}
    assert result.escape == "`"
    run, copy = result.stages[0].instructions
    assert run.args == ("echo C:\\dir   next",)
    # COPY/ADD split on blanks only (the reference's rule): paths with spaces need the JSON form.
    assert copy.args == ("a`", "b", "c\\d", "/x")


def test_directive_stops_at_first_other_line() -> None:
    result = parse("# syntax=x/y\n\n# escape=`\nFROM a\nRUN a \\\n b\n")
    assert result.directives == {"syntax": "x/y"}
    assert result.stages[0].instructions[0].args == ("a  b",)


def test_onbuild() -> None:
    result = parse("FROM a\nONBUILD COPY --from=x --chown=1 a b\nONBUILD RUN [\"echo\", \"hi\"]\n"
                   "ONBUILD ENV a=1 b=\"2 3\"\nONBUILD RUN <<EOF\necho hi\nEOF\n")
    copy, run, env, here = result.stages[0].instructions
    assert copy.cmd == "ONBUILD" and copy.sub is not None
    assert (copy.sub.cmd, copy.sub.flags, copy.sub.args) == ("COPY", {"from": ["x"], "chown": ["1"]}, ("a", "b"))
    assert copy.sub.original == "COPY --from=x --chown=1 a b"
    assert run.sub is not None and run.sub.json and run.sub.args == ("echo", "hi")
    assert env.sub is not None and key_values(env.sub) == [("a", "1"), ("b", '"2 3"')]
    assert here.sub is not None and here.sub.heredocs[0].content == "echo hi\n"
    assert here.sub.original == "RUN <<EOF\necho hi\nEOF"


def test_key_values_raw() -> None:
    env = _run("ENV a=1 b=\"x y\" c=d\\ e\n")
    assert key_values(env) == [("a", "1"), ("b", '"x y"'), ("c", "d\\ e")]
    assert not df.legacy_form(env)
    old = _run("ENV name  some value\n")
    assert key_values(old) == [("name", "some value")] and df.legacy_form(old)
    arg = _run("ARG a b=2 c=\"3 4\"\n")
    assert key_values(arg) == [("a", None), ("b", "2"), ("c", '"3 4"')]
    label = _run("LABEL \"com.x\"=\"y\"\n")
    assert key_values(label) == [('"com.x"', '"y"')]


def test_healthcheck_config() -> None:
    s = 1_000_000_000
    assert healthcheck(_run("HEALTHCHECK --interval=5s --timeout=1m30s --start-period=1.5s "
                            "--start-interval=500ms --retries=3 CMD curl -f http://x/ || exit 1\n")) == {
        "Test": ["CMD-SHELL", "curl -f http://x/ || exit 1"], "Interval": 5 * s, "Timeout": 90 * s,
        "StartPeriod": 1500 * 1_000_000, "StartInterval": 500 * 1_000_000, "Retries": 3}
    assert healthcheck(_run("HEALTHCHECK CMD [\"/bin/check\", \"-q\"]\n")) == {"Test": ["CMD", "/bin/check", "-q"]}
    assert healthcheck(_run("HEALTHCHECK NONE\n")) == {"Test": ["NONE"]}
    assert healthcheck(_run("HEALTHCHECK --timeout=0s --retries=0 cmd true\n")) == {"Test": ["CMD-SHELL", "true"]}


def test_command_form() -> None:
    sh = ["/bin/sh", "-c"]
    assert command_form(_run("RUN [\"a\", \"b c\"]\n"), sh) == ["a", "b c"]
    assert command_form(_run("CMD echo a \\\n   b\n"), sh) == ["/bin/sh", "-c", "echo a    b"]
    assert command_form(_run("ENTRYPOINT [\"x\"\n"), sh) == ["/bin/sh", "-c", "[\"x\""]
    assert command_form(_run("CMD []\n"), sh) == []
    with pytest.raises(BuildError):
        command_form(_run("USER x\n"), sh)


def test_run_never_imports_the_package() -> None:
    code = ("import sys, pycontain.build.dockerfile, pycontain.build.words; "
            "assert 'dockerfile' not in sys.modules, 'imported at module load'")
    subprocess.run([sys.executable, "-c", code], check=True)


_PIECES = ["FROM a", "FROM a AS b", "RUN x", "RUN <<EOF", "EOF", "<<-E", "\tE", "ONBUILD ", "COPY --from=x a b",
           "ENV a=b", "ENV a", "ARG x", "HEALTHCHECK --interval=1s CMD x", "\\", "`", "# escape=`", "[\"a\"", "\"",
           "'", " ", "\n", "--x", "=", "$", "CMD [\"a\\u0000\"]", "\ufeff", "ONBUILD RUN <<X", "X", "\x1f", "\r"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES) | st.text(max_size=5), max_size=12), st.sampled_from(["\n", " ", ""]))
def test_parse_only_raises_build_error(parts: list[str], sep: str) -> None:
    try:
        result = parse(sep.join(parts))
    except BuildError as exc:
        assert len(str(exc).splitlines()) == 1
        return
    for stage in result.stages:
        for instr in stage.instructions:
            if instr.cmd in ("RUN", "CMD", "ENTRYPOINT"):
                command_form(instr, ["/bin/sh", "-c"])


_DIRECTIVE_RE = r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$"


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from(["#", " ", "\t", "\u00a0", "\u3000", "\x1c", "=", "escape", "a", "Z9", "9", "`",
                                 "\\", "é", "_", "\n"]), max_size=10))
def test_directive_reads_as_the_regex(pieces: list[str]) -> None:
    """The directive reader without `re` agrees with the regex it replaces, blanks of every kind included."""
    import re

    line = "".join(pieces)
    match = re.match(_DIRECTIVE_RE, line)
    assert df._directive(line) == ((match.group(1), match.group(2)) if match else None)


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet="aZ0-_. \t\n\u00a0é", max_size=8))
def test_stage_name_and_first_word_read_as_the_regexes(text: str) -> None:
    import re

    assert df._stage_name(text) == bool(re.match(r"^[a-z][a-z0-9\-_.]*$", text))
    assert df._drop_first_word(text) == re.sub(r"^\s*\S+", "", text, count=1)
