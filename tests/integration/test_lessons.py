"""The lessons in docs/lessons/ are run, command by command, and their printed output is checked.

Each lesson is one test. Its ```console blocks are read in order (the convention is in
docs/lessons/README.md: `$ ` starts a command, `> ` continues it, the lines after it are what it prints,
`...` stands for any lines and `<any>`, `<id>`, `<n>` for the varying parts of a line). All the commands
of one lesson run in one bash session, so state carries over from one block to the next (`cid=$(...)`),
with a state root of the test's own in PYCONTAIN_ROOT (the text needs no --root), busybox and alpine
imported beforehand as a reader who followed the README has them, and stdin at /dev/null.

A lesson whose first lines carry `<!-- lesson-test: netns -->` runs inside a network namespace made
for it (loopback up, PYCONTAIN_NETWORK unset): the bridge, the nft table and a registry's port then live
there and vanish with it. Every other lesson runs with PYCONTAIN_NETWORK=none, as the whole suite does.

LESSONS_ALL_IN_NETNS=1 runs every lesson that way, as a reader with the default network (the bridge)
would see it: slower (a bridge per lesson), for checking the text, not needed in CI.

A lesson ends by removing what it made; the test then checks that it did (no container, volume or user
network is left in its root) and that nothing leaked onto the host (leakcheck, run inside the
namespace for netns lessons). Only after those checks does the test clean up by itself.

The parser and the matcher are plain functions (parse_lesson, match_output): the unit tests in
tests/unit/test_lesson_format.py load this file to test them without root.
"""

from __future__ import annotations

import difflib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
LESSONS_DIR = REPO / "docs" / "lessons"
LESSONS = sorted(p for p in LESSONS_DIR.glob("[0-9][0-9]-*.md")) if LESSONS_DIR.is_dir() else []

# A hang guard per lesson (the whole suite of lessons takes well under a minute): a lesson still running
# after this long is stuck, and the command it was in is named.
LESSON_TIMEOUT = 120

PROMPT, CONTINUATION = "$ ", "> "
ANY_LINES = "..."
# The in-line wildcards and what each matches.
WILDCARDS = {"<any>": ".*?", "<id>": "[0-9a-f]+", "<n>": "[0-9]+"}
WILDCARD_RE = re.compile("|".join(re.escape(w) for w in WILDCARDS))
DIRECTIVE_RE = re.compile(r"<!--\s*lesson-test:\s*(.*?)\s*-->")
KNOWN_DIRECTIVES = {"netns"}


# ---------------------------------------------------------------- the format

@dataclass
class Step:
    """One command of a lesson and what it is expected to print."""

    line: int                       # the line of `$ ` in the lesson file (1-based)
    command: str                    # the command as bash gets it (continuation lines joined by newlines)
    expected: list[str] = field(default_factory=list)


@dataclass
class Lesson:
    path: Path
    steps: list[Step]
    directives: set[str]


class FormatError(ValueError):
    """A lesson that does not follow the convention (said with its file and line)."""


def parse_lesson(text: str, path: Path = Path("<lesson>")) -> Lesson:
    """The ```console blocks of a lesson as steps, in order. Other fenced blocks are not run."""
    steps: list[Step] = []
    directives: set[str] = set()
    for m in DIRECTIVE_RE.finditer(text):
        directives |= set(m.group(1).replace(",", " ").split())
    unknown = directives - KNOWN_DIRECTIVES
    if unknown:
        raise FormatError(f"{path.name}: unknown lesson-test directive(s): {', '.join(sorted(unknown))}")
    fence: str | None = None   # the fence that opened the current block
    console = False
    current: Step | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if fence is None:
            opening = re.match(r"^(`{3,}|~{3,})\s*(\S*)", stripped)
            if opening:
                fence, console = opening.group(1), opening.group(2) == "console"
                current = None
            continue
        if stripped.startswith(fence) and stripped.strip(fence[0]) == "":
            if console and current is None:
                raise FormatError(f"{path.name}:{number}: a console block without a `$ ` command")
            fence, console, current = None, False, None
            continue
        if not console:
            continue
        line = raw.rstrip()
        if line.startswith(PROMPT) or line == PROMPT.rstrip():
            current = Step(number, line[len(PROMPT):])
            steps.append(current)
        elif line.startswith(CONTINUATION) or line == CONTINUATION.rstrip():
            if current is None or current.expected:
                raise FormatError(f"{path.name}:{number}: `> ` continues a command, but no command precedes it")
            current.command += "\n" + line[len(CONTINUATION):]
        elif current is None:
            raise FormatError(f"{path.name}:{number}: output before any `$ ` command in a console block")
        else:
            current.expected.append(line)
    if fence is not None:
        raise FormatError(f"{path.name}: a fenced block is never closed")
    for step in steps:
        while step.expected and not step.expected[-1].strip():
            step.expected.pop()
    return Lesson(path, steps, directives)


def line_pattern(expected: str) -> re.Pattern[str]:
    """An expected line as a regex: literal text, with the wildcards <any>, <id> and <n>."""
    parts = WILDCARD_RE.split(expected)
    marks = WILDCARD_RE.findall(expected)
    out = re.escape(parts[0])
    for mark, part in zip(marks, parts[1:]):
        out += WILDCARDS[mark] + re.escape(part)
    return re.compile(out)


def match_output(expected: list[str], actual: list[str]) -> bool:
    """Do the actual lines match the expected ones? `...` alone on a line matches zero or more lines;
    every other line must match one actual line in full (trailing spaces are ignored on both sides)."""
    exp = [e.rstrip() for e in expected]
    act = [a.rstrip() for a in actual]
    while act and not act[-1]:
        act.pop()
    patterns = [None if e.strip() == ANY_LINES else line_pattern(e) for e in exp]
    # reachable[j]: the expected lines so far can match exactly the first j actual lines.
    reachable = [True] + [False] * len(act)
    for pat in patterns:
        nxt = [False] * (len(act) + 1)
        if pat is None:
            seen = False
            for j in range(len(act) + 1):
                seen = seen or reachable[j]
                nxt[j] = seen
        else:
            for j in range(len(act)):
                if reachable[j] and pat.fullmatch(act[j]):
                    nxt[j + 1] = True
        reachable = nxt
    return reachable[len(act)]


# ---------------------------------------------------------------- running a lesson

def marker_token() -> str:
    return "@@lesson-step-" + os.urandom(8).hex()


def lesson_script(steps: list[Step], token: str) -> str:
    """One bash script for the whole lesson: each command, then a marker line carrying its exit status.
    The marker starts with a newline, so a command whose output has no final newline still ends its
    own chunk; split_output takes that one newline off again."""
    lines = ["exec </dev/null 2>&1"]
    for i, step in enumerate(steps):
        lines.append(step.command)
        lines.append(f"printf '\\n{token} {i} %s\\n' \"$?\"")
    return "\n".join(lines) + "\n"


def split_output(out: str, token: str) -> list[tuple[list[str], int | None]]:
    """The script's output cut at the markers: (the lines a command printed, its exit status)."""
    chunks: list[tuple[list[str], int | None]] = []
    rest = out
    marker = re.compile(r"\n" + re.escape(token) + r" (\d+) (\d+)\n")
    while True:
        m = marker.search(rest)
        if m is None:
            if rest:
                chunks.append((rest.splitlines(), None))  # a command that never finished
            return chunks
        chunks.append((rest[:m.start()].splitlines(), int(m.group(2))))
        rest = rest[m.end():]


def mismatch_report(lesson: Lesson, step: Step, actual: list[str], status: int | None) -> str:
    diff = "\n".join(difflib.unified_diff(step.expected, actual, "expected (the lesson)", "printed",
                                          lineterm="", n=2))
    where = f"{lesson.path.relative_to(REPO) if lesson.path.is_relative_to(REPO) else lesson.path}:{step.line}"
    state = "it did not finish" if status is None else f"exit status {status}"
    return (f"{where}: `{step.command.splitlines()[0]}` printed something else ({state})\n{diff}\n"
            "(`...` matches any lines, <any> any text, <id> hex digits, <n> decimal digits)")


def run_lesson(lesson: Lesson, env: dict[str, str], cwd: Path, prefix: list[str],
               started: list[int] | None = None) -> list[str]:
    """Run the lesson's commands in one bash; returns the mismatches (empty: the lesson is right).
    The shell's pid (its process group's id) is appended to `started`, for end_session."""
    token = marker_token()
    script = cwd / ".lesson.sh"
    script.write_text(lesson_script(lesson.steps, token))
    # A session of its own: whatever the lesson leaves running in the background (it should leave
    # nothing) can be ended with its process group, by this pid only.
    # The output goes to a file, not a pipe: a process the lesson leaves running that still holds the
    # shell's output (a detached monitor of another session, say) must not keep the test waiting for
    # an end of file; only the shell's own exit counts.
    output = cwd / ".lesson.out"
    with open(output, "wb") as out:
        proc = subprocess.Popen([*prefix, "bash", "--noprofile", "--norc", str(script)], cwd=cwd, env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    if started is not None:
        started.append(proc.pid)
    try:
        proc.wait(timeout=LESSON_TIMEOUT)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        timed_out = True
    finally:
        script.unlink(missing_ok=True)
    raw = output.read_bytes()
    output.unlink()
    chunks = split_output(raw.decode(errors="replace"), token)
    problems = []
    for i, step in enumerate(lesson.steps):
        actual, status = chunks[i] if i < len(chunks) else ([], None)
        if status is None:
            why = f"timed out after {LESSON_TIMEOUT} s" if timed_out else "the shell ended"
            problems.append(mismatch_report(lesson, step, actual, None) + f"\n({why} in this command)")
            break
        if not match_output(step.expected, actual):
            problems.append(mismatch_report(lesson, step, actual, status))
    return problems


def end_session(pgid: int) -> None:
    """SIGKILL whatever is left of a lesson's shell session (its process group: the shell this test
    started and the background jobs of the lesson, never a detached container's monitor, which has a
    session of its own). A lesson that ends cleanly leaves nothing there; this runs after the leak
    check, so a leftover still fails the test, and only then is it ended."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def state_left(pc: Any) -> list[str]:
    """What the lesson made and did not remove from its state root."""
    left = [f"container {c}" for c in pc.ok("ps", "-aq").stdout.split()]
    left += [f"volume {v}" for v in pc.ok("volume", "ls", "-q").stdout.split()]
    nets = pc.ok("network", "ls", "--format", "{{.Name}}").stdout.split()
    left += [f"network {n}" for n in nets if n not in ("bridge", "pycontain", "host", "none")]
    tags = pc.ok("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    left += [f"image {t}" for t in tags if t not in ("busybox:latest", "alpine:latest")]
    return left


# ---------------------------------------------------------------- the tests

def test_the_index_links_every_lesson() -> None:
    index = (LESSONS_DIR / "README.md").read_text()
    assert len(LESSONS) == 8, f"issue 15 asks for eight lessons: {[p.name for p in LESSONS]}"
    missing = [p.name for p in LESSONS if f"]({p.name})" not in index]
    assert not missing, f"docs/lessons/README.md does not link {missing}"
    for p in LESSONS:
        lesson = parse_lesson(p.read_text(), p)
        assert lesson.steps, f"{p.name} has no ```console block"


@pytest.fixture
def lesson_env(tmp_path: Path, busybox_tarball: Path, alpine_tarball: Path) -> Iterator[dict[str, Any]]:
    """The shell's environment for one lesson, its work dir, and its state root's images."""
    work = tmp_path / "work"
    home = tmp_path / "home"
    work.mkdir()
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYCONTAIN_")}
    env.update(HOME=str(home), PYCONTAIN_ROOT=str(tmp_path / "root"), PYCONTAIN_PULL="never",
               PYCONTAIN_DNS_UPSTREAM="none", DOCKER_CONFIG=str(home / ".docker"),
               PYCONTAIN_REGISTRIES_CONFIG=str(home / "registries.json"), LC_ALL="C.UTF-8", TERM="dumb",
               COLUMNS="200")
    env.pop("PYCONTAIN_DEBUG", None)
    yield {"env": env, "work": work, "root": tmp_path / "root",
           "busybox": busybox_tarball, "alpine": alpine_tarball}


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson(path: Path, lesson_env: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                tmp_path_factory: pytest.TempPathFactory) -> None:
    import leaks as leaks_module
    import support
    from netns_support import NetNs, NetPycontain, leakcheck_wrapper, network_leftovers

    lesson = parse_lesson(path.read_text(), path)
    env = lesson_env["env"]
    ns: NetNs | None = None
    prefix: list[str] = []
    pc: Any
    if "netns" in lesson.directives or os.environ.get("LESSONS_ALL_IN_NETNS") == "1":
        ns = NetNs()
        monkeypatch.setattr(leaks_module, "LEAKCHECK", leakcheck_wrapper(tmp_path, ns))
        prefix = ["nsenter", f"--net={ns.path}", "--"]
        pc = NetPycontain(lesson_env["root"], ns)
    else:
        env["PYCONTAIN_NETWORK"] = "none"
        pc = support.Pycontain(lesson_env["root"])
    shells: list[int] = []
    try:
        before = leaks_module.snapshot(tmp_path / "leakcheck-before.json")
        pc.ok("import", "--change", 'CMD ["sh"]', lesson_env["busybox"], "busybox")
        pc.ok("import", lesson_env["alpine"], "alpine")
        started = time.monotonic()
        problems = run_lesson(lesson, env, lesson_env["work"], prefix, shells)
        took = time.monotonic() - started
        if problems:
            pytest.fail(f"{path.name}: {len(problems)} command(s) printed other output:\n\n"
                        + "\n\n".join(problems), pytrace=False)
        left = state_left(pc)
        if left:
            pytest.fail(f"{path.name} does not remove what it made: {', '.join(left)}", pytrace=False)
        if ns is not None:
            assert network_leftovers(pc) == [], f"{path.name} leaves network objects behind"
        leaked = [line for line in leaks_module.leaks_since(before, tmp_path_factory.getbasetemp())
                  # the default network's bridge and its table stay, as in Docker: they vanish with the netns
                  if not (ns is not None and (line.startswith("leaked link: pycontain0")
                                              or line.startswith("leaked nft: ")
                                              and not re.search(r"[0-9a-f]{64}", line)))]
        if leaked:
            pytest.fail(f"{path.name} leaves host objects behind:\n" + "\n".join(leaked), pytrace=False)
        print(f"{path.name}: {len(lesson.steps)} commands in {took:.1f} s")
    finally:
        for pgid in shells:
            end_session(pgid)
        pc.remove_all()
        if ns is not None:
            ns.close()

