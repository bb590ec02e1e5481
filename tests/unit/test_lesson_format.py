"""The lesson transcript convention (docs/lessons/README.md): parsing and output matching, without root.

The runner lives in tests/integration/test_lessons.py (it needs root to run the lessons); its parser and
matcher are plain functions, loaded here from that file.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

RUNNER = Path(__file__).resolve().parents[1] / "integration" / "test_lessons.py"


def load_runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lesson_runner", RUNNER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["lesson_runner"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


runner = load_runner()
FENCE = "```"


def lesson(*lines: str) -> str:
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- parsing

def test_only_console_blocks_are_steps_with_their_lines_and_output() -> None:
    text = lesson("# Title", "", f"{FENCE}sh", "$ not run", FENCE, "text", f"{FENCE}console",
                  "$ echo one", "one", "$ true", FENCE, "", f"{FENCE}console", "$ echo two", "two", "", FENCE)
    parsed = runner.parse_lesson(text)
    assert [(s.line, s.command, s.expected) for s in parsed.steps] == [
        (8, "echo one", ["one"]), (10, "true", []), (14, "echo two", ["two"])]
    assert parsed.directives == set()


def test_continuation_lines_join_the_command_with_newlines() -> None:
    text = lesson(f"{FENCE}console", "$ cat <<'EOF'", "> a", ">", "> EOF", "a", "", FENCE)
    (step,) = runner.parse_lesson(text).steps
    assert step.command == "cat <<'EOF'\na\n\nEOF"
    assert step.expected == ["a"]


def test_output_keeps_inner_blank_lines_and_drops_trailing_ones() -> None:
    text = lesson(f"{FENCE}console", "$ printf 'a\\n\\nb\\n'", "a", "", "b", "", "", FENCE)
    assert runner.parse_lesson(text).steps[0].expected == ["a", "", "b"]


def test_a_directive_comment_is_read_and_an_unknown_one_refused() -> None:
    text = "<!-- lesson-test: netns -->\n" + lesson(f"{FENCE}console", "$ true", FENCE)
    assert runner.parse_lesson(text).directives == {"netns"}
    with pytest.raises(runner.FormatError, match="unknown lesson-test directive"):
        runner.parse_lesson("<!-- lesson-test: nets -->\n" + lesson(f"{FENCE}console", "$ true", FENCE))


@pytest.mark.parametrize("text, message", [
    (lesson(f"{FENCE}console", "output first", "$ true", FENCE), "output before any"),
    (lesson(f"{FENCE}console", FENCE), "without a `\\$ ` command"),
    (lesson(f"{FENCE}console", "$ true", "x", "> more", FENCE), "continues a command"),
    (lesson(f"{FENCE}console", "$ true"), "never closed"),
])
def test_malformed_lessons_are_refused_with_the_line(text: str, message: str) -> None:
    with pytest.raises(runner.FormatError, match=message):
        runner.parse_lesson(text)


# ---------------------------------------------------------------- matching

@pytest.mark.parametrize("expected, actual", [
    (["a", "b"], ["a", "b"]),
    (["a  "], ["a"]),                                  # trailing spaces do not count
    (["a"], ["a", "", ""]),                            # nor trailing empty lines
    ([], []),
    (["..."], []),                                     # ... may stand for no line
    (["..."], ["x", "y"]),
    (["a", "...", "z"], ["a", "z"]),
    (["a", "...", "z"], ["a", "b", "c", "z"]),
    (["...", "z", "..."], ["z", "z"]),
    (["pid <n> on the host"], ["pid 123 on the host"]),
    (["sha256:<id>"], ["sha256:" + "ab" * 32]),
    (["eth0@<any>UP  10.<n>.0.<n>/16"], ["eth0@if6 UP  10.88.0.2/16"]),
    (["a<any>"], ["a"]),                              # <any> may stand for nothing
    (["a.b*c (d) [e]"], ["a.b*c (d) [e]"]),           # regex characters are literal
])
def test_matching_output(expected: list[str], actual: list[str]) -> None:
    assert runner.match_output(expected, actual)


@pytest.mark.parametrize("expected, actual", [
    (["a"], ["b"]),
    (["a"], ["a", "b"]),                               # an extra line
    (["a", "b"], ["a"]),                               # a missing line
    ([], ["a"]),                                       # no expected lines: nothing may be printed
    (["a.b"], ["axb"]),
    (["pid <n>"], ["pid 12a"]),
    (["<id>"], ["ABC"]),                               # ids are lower-case hex
    (["<n>"], [""]),
    (["a", "...", "z"], ["a", "b"]),
    (["x<any>"], ["y x"]),                             # a line matches from its start
])
def test_mismatching_output(expected: list[str], actual: list[str]) -> None:
    assert not runner.match_output(expected, actual)


# ---------------------------------------------------------------- the session script

def test_the_script_runs_the_steps_in_one_shell_and_the_output_splits_per_step() -> None:
    steps = [runner.Step(1, "x=1; printf 'no newline'"), runner.Step(2, "echo \"$x\"; false"),
             runner.Step(3, "printf 'two\\nlines\\n\\n'"), runner.Step(4, "cat <<'EOF'\nheredoc\nEOF")]
    token = runner.marker_token()
    out = subprocess.run(["bash", "-c", runner.lesson_script(steps, token)], capture_output=True, text=True,
                         timeout=20).stdout
    assert runner.split_output(out, token) == [(["no newline"], 0), (["1"], 1), (["two", "lines", ""], 0),
                                               (["heredoc"], 0)]


def test_a_step_that_never_finished_has_no_status() -> None:
    assert runner.split_output("partial", "@@t") == [(["partial"], None)]


# ---------------------------------------------------------------- the lessons themselves

def test_every_lesson_parses_and_is_linked_from_the_index() -> None:
    assert len(runner.LESSONS) == 8
    index = (runner.LESSONS_DIR / "README.md").read_text()
    for path in runner.LESSONS:
        parsed = runner.parse_lesson(path.read_text(), path)
        assert parsed.steps, path.name
        assert f"]({path.name})" in index, path.name
        # Pasteable as written: no placeholders for the reader to fill in.
        for step in parsed.steps:
            assert "IMG" not in step.command and "<" + "id>" not in step.command, (path.name, step.line)
