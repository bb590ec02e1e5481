"""A Dockerfile as instructions and stages: the reference parser (the `dockerfile` package) plus Docker's checks.

Why the `dockerfile` package: it wraps the reference front end's own Go parser, so continuation lines, comments,
JSON (exec) form with its fallbacks, flags, the `escape` directive and heredocs come out exactly as `docker build`
reads them. Measured against the 33 golden `result` files in ../shared/testdata/dockerfile/parser: the package's
own output, rendered in that format, reproduces 32 of 33 (the one miss, `json`, is a JSON `\\u0000` that cuts the
string, as it passes through C; we decode the exec-form array again, so this module reproduces 33 of 33).
`dockerfile-parse` 2.0.1 (unmaintained since 2023) gives one raw string per instruction and, even with our own
argument splitting (flags, JSON, key=value) put on top, reproduces 26 of 33: a comment or blank line inside a
continuation ends its instruction (4 directories), a continuation at the end of the file loses the instruction (2)
and `\\\\` at the end of a line is taken for a continuation (1). With heredocs it turns every body line (`RUN <<EOF`
/ `echo hi` / `EOF`) into an instruction of its own; the package returns each body with its name and file
descriptor (several per instruction too).
What the package does not give, added here: the separator of ENV/LABEL pairs (old `ENV k v` form or `k=v`),
whether a heredoc expands (`<<EOF` vs `<<"EOF"`) and chomps (`<<-EOF`; the package leaves the tabs in), the
parser directives themselves, an ONBUILD trigger's flags and heredocs (the package drops them: we parse the
trigger again on its own), and the line of a parse error (we find it by parsing ever shorter prefixes).

The package is imported only inside `parse_instructions` so that `pycontain run` never loads it.

The checks are Docker's: FROM first (ARG may come before it), known instructions only, the flags each instruction
accepts, argument counts, stage names (`[a-z][a-z0-9-_.]*`, unique), HEALTHCHECK options, ONBUILD triggers.
`RUN --mount` and `RUN --security=insecure` are refused: pycontain runs RUN steps with the image's own layers and
the build network only (no cache/secret/ssh/bind mounts, no privileged steps).
"""

from __future__ import annotations

from pycontain.build import Value, words
from pycontain.errors import UsageError

# Annotations only. This module is on the path of every `pycontain build`, a fully cached one included, so it
# imports nothing it does not use there: `dataclasses` (inspect, ast: ~10 ms), `re` (enum, sre: ~5 ms) and `json`
# are imported where they are needed (heredocs, ONBUILD, HEALTHCHECK durations, exec-form arrays).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    from typing import Any


class BuildError(UsageError):
    """A Dockerfile that cannot be built (exit 125); the message is `Dockerfile:LINE: what is wrong`."""


class Heredoc(Value):
    """One here-document: `content` is already tab-stripped when `chomp` (`<<-`); `expand` is False when the
    delimiter was quoted (`<<"EOF"`, `<<'EOF'`), so variables in it stay literal. A value: compared and hashed
    by its fields."""

    __slots__ = ("name", "content", "expand", "chomp", "fd")

    def __init__(self, name: str, content: str, expand: bool = True, chomp: bool = False, fd: int = 0) -> None:
        self.name = name
        self.content = content
        self.expand = expand
        self.chomp = chomp
        self.fd = fd


class Instruction(Value):
    """One instruction. `args` are the raw words, not expanded: for JSON (exec) form the array's elements, for
    RUN/CMD/ENTRYPOINT/SHELL/MAINTAINER in shell form one string (continuations joined as the reference does),
    for ENV/LABEL the keys and values alternating (see key_values), otherwise the whitespace-separated words
    with their quotes. `flags` maps `--from=x` to {"from": ["x"]} and a bare `--link` to {"link": ["true"]};
    `raw_flags` keeps them as written. For ONBUILD, `sub` is the trigger and `sub.original` its text without
    the ONBUILD keyword (what the image config stores)."""

    __slots__ = ("cmd", "flags", "args", "json", "original", "line", "heredocs", "sub", "raw_flags", "end_line",
                 "source")
    __hash__ = None  # type: ignore[assignment]  # mutable: compared by value, never a dict key

    def __init__(self, cmd: str, flags: dict[str, list[str]], args: tuple[str, ...], json: bool, original: str,
                 line: int, heredocs: tuple[Heredoc, ...] = (), sub: Instruction | None = None,
                 raw_flags: tuple[str, ...] = (), end_line: int = 0, source: str = "Dockerfile") -> None:
        self.cmd = cmd
        self.flags = flags
        self.args = args
        self.json = json
        self.original = original
        self.line = line
        self.heredocs = heredocs
        self.sub = sub
        self.raw_flags = raw_flags
        self.end_line = end_line
        self.source = source

    def error(self, message: str) -> BuildError:
        return BuildError(f"{self.source}:{self.line}: {message}")


class Stage(Value):
    __slots__ = ("index", "name", "base", "platform", "line", "instructions", "from_instruction")
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, index: int, name: str | None, base: str, platform: str | None, line: int,
                 instructions: list[Instruction] | None = None, from_instruction: Instruction | None = None
                 ) -> None:
        self.index = index
        self.name = name
        self.base = base
        self.platform = platform
        self.line = line
        self.instructions: list[Instruction] = [] if instructions is None else instructions
        self.from_instruction = from_instruction


class Dockerfile(Value):
    __slots__ = ("directives", "meta_args", "stages")
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, directives: dict[str, str], meta_args: list[Instruction], stages: list[Stage]) -> None:
        self.directives = directives
        self.meta_args = meta_args
        self.stages = stages

    @property
    def escape(self) -> str:
        return self.directives.get("escape", "\\")


INSTRUCTIONS = frozenset({"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
                          "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME",
                          "WORKDIR"})

# The flags each instruction accepts: "bool" (bare --x means true), "string" (once), "list" (repeatable).
FLAGS: dict[str, dict[str, str]] = {
    "FROM": {"platform": "string"},
    "RUN": {"mount": "list", "network": "string", "security": "string"},
    "COPY": {"from": "string", "chown": "string", "chmod": "string", "link": "bool", "parents": "bool",
             "exclude": "list"},
    "ADD": {"chown": "string", "chmod": "string", "link": "bool", "checksum": "string", "keep-git-dir": "bool",
            "exclude": "list"},
    "HEALTHCHECK": {"interval": "string", "timeout": "string", "start-period": "string",
                    "start-interval": "string", "retries": "string"},
}

_KNOWN_DIRECTIVES = ("escape", "syntax", "check")
_ASCII_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ASCII_ALNUM = _ASCII_LETTERS | frozenset("0123456789")
_STAGE_FIRST = frozenset("abcdefghijklmnopqrstuvwxyz")
_STAGE_REST = _STAGE_FIRST | frozenset("0123456789-_.")

# Compiled on first use: most Dockerfiles have no heredoc, ONBUILD or HEALTHCHECK duration, and importing `re`
# plus compiling costs more than a cached rebuild can afford.
_regexes: dict[str, re.Pattern[str]] = {}
_PATTERNS = {
    "directive": r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$",
    "heredoc": r"^(\d*)<<(-?)([^<]*)$",
    "onbuild": r"^\s*ONBUILD\s*",
    "duration": r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)",
}


def _regex(name: str) -> re.Pattern[str]:
    regex = _regexes.get(name)
    if regex is None:
        import re

        regex = _regexes[name] = re.compile(_PATTERNS[name], re.IGNORECASE if name == "onbuild" else 0)
    return regex


def _directive(line: str) -> tuple[str, str] | None:
    """`# name = value` as _PATTERNS["directive"] reads it, (name, value), or None when the line is not one; here
    without `re`, which a Dockerfile that starts with FROM then never imports. `\\s` is what str.isspace()
    accepts, and a value that is all blanks is the last blank, as the lazy `.+?` leaves it. A line with a newline
    (where `.` and `$` differ) goes to the regex itself; those from splitlines() have none."""
    if not line.startswith("#"):
        return None
    if "\n" in line:
        match = _regex("directive").match(line)
        return (match.group(1), match.group(2)) if match else None
    i = 1
    n = len(line)
    while i < n and line[i].isspace():
        i += 1
    start = i
    if i >= n or line[i] not in _ASCII_LETTERS:
        return None
    while i < n and line[i] in _ASCII_ALNUM:
        i += 1
    name = line[start:i]
    while i < n and line[i].isspace():
        i += 1
    if i >= n or line[i] != "=":
        return None
    rest = line[i + 1:]
    value = rest.strip()
    if not value:
        if not rest:
            return None
        value = rest[-1]
    return name, value


def _directives(text: str) -> dict[str, str]:
    """The parser directives at the top: they end at the first line that is not one (blank lines included) or
    at an unknown directive name, as in the reference."""
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines()):
        if number == 0:
            line = line.removeprefix("\ufeff")
        directive = _directive(line.lstrip())
        if directive is None:
            break
        name = directive[0].lower()
        if name not in _KNOWN_DIRECTIVES:
            break
        if name in found:
            raise BuildError(f"Dockerfile:{number + 1}: only one {name} parser directive can be used")
        found[name] = directive[1]
    escape = found.get("escape", "\\")
    if escape not in ("\\", "`"):
        raise BuildError(f"Dockerfile:1: invalid escape directive {escape!r}: must be ` or \\")
    return found


def _package() -> Any:
    # Imported here, not at the top: `pycontain run` must never pay for loading the Go parser. It is the one
    # import a cached rebuild cannot avoid: ~2.3 ms best of 5 here (the Go runtime's start, and collections).
    import importlib

    return importlib.import_module("dockerfile")


def _parse_flags(raw: tuple[str, ...]) -> dict[str, list[str]]:
    flags: dict[str, list[str]] = {}
    for item in raw:
        name, eq, value = item.removeprefix("--").partition("=")
        flags.setdefault(name, []).append(value if eq else "true")
    return flags


def _first_words(rest: str, escape: str) -> list[str]:
    """The reference parser's word split of an argument string: blanks separate words outside quotes, quotes
    and escape characters are kept, nothing is expanded."""
    out: list[str] = []
    word: list[str] = []
    quote = ""
    in_word = False
    i = 0
    while i < len(rest):
        ch = rest[i]
        if quote:
            if ch == quote:
                quote = ""
            elif ch == escape and quote != "'" and i + 1 < len(rest):
                word.append(ch)
                i += 1
                ch = rest[i]
            word.append(ch)
        elif ch.isspace():
            if in_word:
                out.append("".join(word))
                word, in_word = [], False
        else:
            in_word = True
            if ch in "'\"":
                quote = ch
            elif ch == escape:
                if i + 1 == len(rest):
                    break
                word.append(ch)
                i += 1
                ch = rest[i]
            word.append(ch)
        i += 1
    if in_word:
        out.append("".join(word))
    return out


def _heredocs(command: Any, escape: str) -> tuple[Heredoc, ...]:
    if not command.heredocs:
        return ()
    first_line = command.original.split("\n", 1)[0]
    markers: list[tuple[bool, bool]] = []
    try:
        candidates = words.raw_words(first_line)
    except words.ExpansionError:
        candidates = first_line.split()
    for word in candidates:
        match = _regex("heredoc").match(word)
        if not match or not match.group(3):
            continue
        try:
            plain = words.split(match.group(3), {})
            raw = words.raw_words(match.group(3))
        except words.ExpansionError:
            continue
        if len(plain) != 1 or len(raw) != 1:
            continue
        # A delimiter with any quoting (`<<"EOF"`, `<<E'O'F`) keeps the body literal.
        quoted = sum(plain[0].count(q) for q in "'\"") != sum(raw[0].count(q) for q in "'\"")
        markers.append((not quoted, match.group(2) == "-"))
    out: list[Heredoc] = []
    for index, doc in enumerate(command.heredocs):
        expand, chomp = markers[index] if index < len(markers) else (True, False)
        content = doc.content
        if chomp:
            content = "".join(line.lstrip("\t") for line in content.splitlines(keepends=True))
        out.append(Heredoc(name=doc.name, content=content, expand=expand, chomp=chomp, fd=doc.file_descriptor))
    return tuple(out)


def _json_args(command: Any) -> tuple[str, ...]:
    """The exec-form array, decoded again from the text: the package passes strings through C and cuts them at
    a NUL (`"a\\u0000b"` comes back as "a"). Kept only when it agrees with the package's own reading."""
    values = tuple(command.value)
    original = command.original
    if "\\u0000" not in original:
        # No NUL can have been cut (a raw NUL is refused before parsing): the decoded array could only equal the
        # package's values, and `json` (which imports `re` and `enum`: ~7 ms) stays unloaded.
        return values
    import json

    start = original.find("[")
    while start != -1:
        try:
            decoded = json.loads(original[start:])
        except ValueError:
            decoded = None
        if (isinstance(decoded, list) and len(decoded) == len(values)
                and all(isinstance(item, str) and item.split("\0", 1)[0] == value
                        for item, value in zip(decoded, values))):
            return tuple(decoded)
        start = original.find("[", start + 1)
    return values


def _instruction(command: Any, escape: str, source: str) -> Instruction:
    args = _json_args(command) if command.json else tuple(command.value)
    return Instruction(
        cmd=command.cmd.upper(), flags=_parse_flags(tuple(command.flags)), args=args,
        json=bool(command.json), original=command.original, line=command.start_line,
        heredocs=_heredocs(command, escape), raw_flags=tuple(command.flags), end_line=command.end_line,
        source=source)


def _error_line(parse: Any, text: str, message: str) -> int:
    """The line of a parse error the package reports without one: the line after the longest prefix of the
    file that still parses (a truncated but valid heredoc further up fails only transiently)."""
    lines = text.splitlines(keepends=True)
    for count in range(len(lines) - 1, -1, -1):
        try:
            parse("".join(lines[:count]))
        except ValueError:
            continue
        return count + 1
    return 1


def _onbuild_trigger(parse: Any, command: Any, text_lines: list[str], prefix: str, escape: str,
                     source: str) -> Instruction | None:
    """The trigger of an ONBUILD, parsed again on its own: the package keeps neither its flags nor its heredocs."""
    if not command.sub_cmd:
        return None
    body = text_lines[command.start_line - 1:command.end_line]
    if not body:
        return None
    body[0] = _regex("onbuild").sub("", body[0], count=1)
    try:
        parsed = parse(prefix + "".join(body))
    except ValueError as exc:
        raise BuildError(f"{source}:{command.start_line}: ONBUILD: {str(exc).splitlines()[0]}") from None
    if not parsed:
        return None
    sub = _instruction(parsed[0], escape, source)
    sub.line, sub.end_line = command.start_line, command.end_line
    sub.original = _regex("onbuild").sub("", command.original, count=1)
    for doc in sub.heredocs:
        sub.original += "\n" + doc.content + doc.name
    return sub


def parse_instructions(text: str, source: str = "Dockerfile") -> tuple[dict[str, str], list[Instruction]]:
    """The syntax only: the directives and every instruction as the reference parser reads it, with no check of
    instruction names, flags or order (the golden files need exactly this level)."""
    if "\x00" in text:
        raise BuildError(f"{source}: contains a NUL byte: not a Dockerfile")
    try:
        directives = _directives(text)
    except BuildError as exc:
        raise BuildError(str(exc).replace("Dockerfile:", f"{source}:", 1)) from None
    package = _package()
    try:
        commands = package.parse_string(text)
    except ValueError as exc:
        message = " ".join(str(exc).split()) or "cannot parse"
        if message == "file with no instructions":
            return directives, []  # parse() reports the missing FROM
        line = _error_line(package.parse_string, text, message)
        raise BuildError(f"{source}:{line}: {message}") from None
    escape = directives.get("escape", "\\")
    # Re-parsing an ONBUILD trigger on its own must use the same escape character.
    prefix = f"# escape={escape}\n" if "escape" in directives else ""
    text_lines = text.removeprefix("\ufeff").splitlines(keepends=True)
    out: list[Instruction] = []
    for command in commands:
        if command.cmd is None:
            # What the package gives for a line that is only a continuation at the end of the file.
            raise BuildError(f"{source}:{command.start_line}: empty continuation at the end of the file")
        instr = _instruction(command, escape, source)
        if instr.cmd == "ONBUILD":
            instr.sub = _onbuild_trigger(package.parse_string, command, text_lines, prefix, escape, source)
            if instr.sub is not None:
                instr.heredocs = instr.sub.heredocs
                instr.args = instr.sub.args
        out.append(instr)
    return directives, out


def _check_flags(instr: Instruction) -> None:
    allowed = FLAGS.get(instr.cmd, {})
    for raw in instr.raw_flags:
        if not raw.startswith("--") or raw == "--":
            raise instr.error(f"{instr.cmd}: bad flag {raw!r}")
        name, eq, value = raw[2:].partition("=")
        kind = allowed.get(name)
        if kind is None:
            if allowed:
                accepted = ", ".join("--" + flag for flag in allowed)
                raise instr.error(f"{instr.cmd}: unknown flag --{name} (accepted: {accepted})")
            raise instr.error(f"{instr.cmd}: unknown flag --{name} ({instr.cmd} takes no flags)")
        if kind == "bool":
            if eq and value.lower() not in ("true", "false"):
                raise instr.error(f"{instr.cmd}: --{name} expects true or false, not {value!r}")
        elif not eq:
            raise instr.error(f"{instr.cmd}: --{name} needs a value (--{name}=VALUE)")
        if kind != "list" and len(instr.flags.get(name, ())) > 1:
            raise instr.error(f"{instr.cmd}: --{name} given more than once")
    if instr.cmd == "RUN":
        if "mount" in instr.flags:
            raise instr.error("RUN --mount is not supported by pycontain (cache, secret, ssh and bind mounts)")
        security = instr.flags.get("security", [])
        if security and security[0] != "sandbox":
            raise instr.error(f"RUN --security={security[0]} is not supported by pycontain (only sandbox)")
        network = instr.flags.get("network", [])
        if network and "$" not in network[0] and network[0] not in ("default", "none", "host"):
            raise instr.error(f"RUN --network={network[0]}: must be default, none or host")


def _check_args(instr: Instruction) -> None:
    cmd, n = instr.cmd, len(instr.args)
    if n == 0 and cmd not in ("CMD", "ENTRYPOINT") and not (cmd == "RUN" and instr.json):
        raise instr.error(f"{cmd} requires at least one argument")
    if cmd in ("ADD", "COPY") and n < 2:
        raise instr.error(f"{cmd} requires at least two arguments, but only one was provided: "
                          "the destination could not be determined")
    if cmd in ("WORKDIR", "USER", "STOPSIGNAL", "MAINTAINER") and n != 1:
        raise instr.error(f"{cmd} requires exactly one argument")
    if cmd == "SHELL" and not instr.json:
        raise instr.error("SHELL requires the arguments to be in JSON form, e.g. SHELL [\"/bin/sh\", \"-c\"]")
    if instr.json and any("\0" in arg for arg in instr.args):
        raise instr.error(f"{cmd}: an argument contains a NUL character (\\u0000), which no command line can hold")
    if cmd == "VOLUME" and any(not arg.strip() for arg in instr.args):
        raise instr.error("VOLUME specified can not be an empty string")
    if cmd == "HEALTHCHECK":
        healthcheck(instr)
    if cmd in ("ENV", "LABEL", "ARG"):
        for key, _ in key_values(instr):
            if not key:
                raise instr.error(f"{cmd} names can not be blank")


def _check(instr: Instruction, text_lines: list[str], escape: str) -> None:
    if instr.cmd not in INSTRUCTIONS:
        word = (instr.original.split(None, 1) or [instr.cmd])[0]
        raise instr.error(f"unknown instruction: {word if word.isprintable() else repr(word)}")
    if not instr.args and not instr.json and instr.cmd != "ONBUILD" and instr.end_line:
        last = text_lines[instr.end_line - 1].rstrip() if instr.end_line <= len(text_lines) else ""
        if last.endswith(escape) and instr.end_line >= len([ln for ln in text_lines if ln.strip()]):
            raise instr.error(f"{instr.cmd}: empty continuation at the end of the file")
    _check_flags(instr)
    if instr.cmd == "ONBUILD":
        sub = instr.sub
        if sub is None:
            raise instr.error("ONBUILD requires at least one argument")
        if sub.cmd == "ONBUILD":
            raise instr.error("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        if sub.cmd in ("FROM", "MAINTAINER"):
            raise instr.error(f"{sub.cmd} isn't allowed as an ONBUILD trigger")
        _check(sub, text_lines, escape)
        return
    _check_args(instr)


def parse(text: str, source: str = "Dockerfile") -> Dockerfile:
    """A Dockerfile's directives, the ARGs before the first FROM, and its stages, checked as Docker does.
    Every problem is a BuildError with one line: `SOURCE:LINE: message`."""
    directives, instructions = parse_instructions(text, source)
    escape = directives.get("escape", "\\")
    text_lines = text.removeprefix("\ufeff").splitlines(keepends=True)
    meta_args: list[Instruction] = []
    stages: list[Stage] = []
    names: dict[str, int] = {}
    for instr in instructions:
        _check(instr, text_lines, escape)
        if instr.cmd == "FROM":
            stages.append(_stage(instr, len(stages), names))
        elif not stages:
            if instr.cmd != "ARG":
                raise instr.error(f"{instr.cmd} before the first FROM (only ARG may come before FROM)")
            meta_args.append(instr)
        else:
            stages[-1].instructions.append(instr)
    if not stages:
        raise BuildError(f"{source}: no FROM instruction: a Dockerfile must have at least one build stage")
    return Dockerfile(directives=directives, meta_args=meta_args, stages=stages)


def _stage(instr: Instruction, index: int, names: dict[str, int]) -> Stage:
    args = instr.args
    if len(args) not in (1, 3):
        raise instr.error("FROM requires either one argument (FROM image) or three (FROM image AS name)")
    name = None
    if len(args) == 3:
        if args[1].upper() != "AS":
            raise instr.error(f"FROM: expected AS as the second word of `FROM image AS name`, got {args[1]!r}")
        name = args[2].lower()
        if not _stage_name(name):
            raise instr.error(f"invalid name for build stage: {args[2]!r}, name can't start with a number or "
                              "contain symbols")
        if name in names:
            raise instr.error(f"duplicate stage name {name!r} (first used on line {names[name]})")
        names[name] = instr.line
    platform = instr.flags.get("platform", [None])[0]
    return Stage(index=index, name=name, base=args[0], platform=platform, line=instr.line,
                 from_instruction=instr)


def _stage_name(name: str) -> bool:
    """`^[a-z][a-z0-9\\-_.]*$` without `re` (`$` also matches before a final newline)."""
    name = name.removesuffix("\n")
    return bool(name) and name[0] in _STAGE_FIRST and all(ch in _STAGE_REST for ch in name[1:])


def _drop_first_word(line: str) -> str:
    """`re.sub(r"^\\s*\\S+", "", line, count=1)` without `re`: the line after its leading blanks and first
    word, or the line unchanged when it is all blanks."""
    start = len(line) - len(line.lstrip())
    end = start
    while end < len(line) and not line[end].isspace():
        end += 1
    return line[end:] if end > start else line


def legacy_form(instr: Instruction) -> bool:
    """ENV/LABEL written the old way, `ENV key value with spaces` (one pair, the rest of the line is the value),
    rather than `key=value ...` (the reference decides by whether the first word holds an `=`)."""
    if instr.cmd not in ("ENV", "LABEL"):
        return False
    rest = _drop_first_word(instr.original.split("\n", 1)[0])
    first = _first_words(rest, "\\")[:1] if rest.strip() else []
    return bool(first) and "=" not in first[0]


def key_values(instr: Instruction) -> list[tuple[str, str | None]]:
    """The pairs of ENV, LABEL or ARG, RAW: keys and values exactly as written, quotes and escapes included
    (`name="a b"` gives ("name", '"a b"'); the old form `ENV name a b` gives ("name", "a b")). The builder expands
    each key and each value separately with words.expand, which also removes the quotes, all against the
    environment from before the instruction (Docker expands every pair before setting any). ARG without a
    default gives (name, None)."""
    if instr.cmd == "ARG":
        out: list[tuple[str, str | None]] = []
        for word in instr.args:
            key, eq, value = word.partition("=")
            out.append((key, value if eq else None))
        return out
    if instr.cmd not in ("ENV", "LABEL"):
        raise instr.error(f"{instr.cmd} has no key/value pairs")
    args = instr.args
    if len(args) % 2:
        raise instr.error(f"{instr.cmd}: expected key/value pairs")
    return [(args[i], args[i + 1]) for i in range(0, len(args), 2)]


_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
          "m": 60_000_000_000, "h": 3_600_000_000_000}


def _duration(text: str) -> int:
    """A Go duration (`1m30s`, `1.5h`, `300ms`) in nanoseconds."""
    rest = text
    sign = 1
    if rest[:1] in "+-" and rest:
        sign = -1 if rest[0] == "-" else 1
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise ValueError(text)
    total = 0
    pos = 0
    duration = _regex("duration")
    while pos < len(rest):
        match = duration.match(rest, pos)
        if not match or match.group(1) in ("", "."):
            raise ValueError(text)
        total += round(float(match.group(1)) * _UNITS[match.group(2)])
        pos = match.end()
    return sign * total


def healthcheck(instr: Instruction) -> dict[str, Any]:
    """HEALTHCHECK as the image config's Healthcheck: Test ["NONE"], ["CMD", ...] (exec form) or
    ["CMD-SHELL", "..."], and Interval, Timeout, StartPeriod, StartInterval (nanoseconds) and Retries, each only
    when set and not zero (Docker omits them)."""
    if not instr.args:
        raise instr.error("HEALTHCHECK requires at least one argument")
    kind = instr.args[0].upper()
    rest = list(instr.args[1:])
    if kind == "NONE":
        if rest:
            raise instr.error("HEALTHCHECK NONE takes no arguments")
        if instr.raw_flags:
            raise instr.error("HEALTHCHECK NONE takes no flags")
        return {"Test": ["NONE"]}
    if kind != "CMD":
        raise instr.error(f"unknown type {instr.args[0]!r} in HEALTHCHECK (try CMD)")
    if not rest:
        raise instr.error("missing command after HEALTHCHECK CMD")
    config: dict[str, Any] = {"Test": ["CMD", *rest] if instr.json else ["CMD-SHELL", " ".join(rest)]}
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod"),
                      ("start-interval", "StartInterval")):
        value = instr.flags.get(flag, [""])[-1]
        if not value:
            continue
        try:
            nanoseconds = _duration(value)
        except ValueError:
            raise instr.error(f"HEALTHCHECK --{flag}={value}: not a duration (like 30s, 1m30s, 500ms)") from None
        if nanoseconds == 0:
            continue
        if nanoseconds < 1_000_000:
            raise instr.error(f"HEALTHCHECK --{flag}={value}: cannot be less than 1ms")
        config[key] = nanoseconds
    retries = instr.flags.get("retries", [""])[-1]
    if retries:
        try:
            count = int(retries, 10)
        except ValueError:
            raise instr.error(f"HEALTHCHECK --retries={retries}: not a number") from None
        if count < 0:
            raise instr.error(f"HEALTHCHECK --retries cannot be negative ({count})")
        if count >= 2**31:
            raise instr.error(f"HEALTHCHECK --retries={retries}: out of range")
        if count:
            config["Retries"] = count
    return config


def single_heredoc(instr: Instruction) -> Heredoc | None:
    """The heredoc of a RUN that is nothing but one (`RUN <<EOF` ... `EOF`): its body is the script itself.
    (The reference writes a body that starts with `#!` to a file and executes it; otherwise the shell runs it.)"""
    if instr.json or len(instr.heredocs) != 1 or len(instr.args) != 1:
        return None
    doc = instr.heredocs[0]
    match = _regex("heredoc").match(instr.args[0].strip())
    if not match or doc.fd != 0 or match.group(1):
        return None
    return doc


def command_form(instr: Instruction, shell: list[str]) -> list[str]:
    """RUN/CMD/ENTRYPOINT as the argv Docker stores or runs: the JSON array as is, or `shell` plus the command
    text (continuations joined by the parser, exactly what the reference passes to `sh -c`). For a shell-form
    RUN with heredocs the bodies follow the first line (`cmd <<EOF` + "\\n" + body + "EOF"), so the shell reads
    them itself; a RUN that is only a heredoc runs the body (see single_heredoc)."""
    if instr.cmd not in ("RUN", "CMD", "ENTRYPOINT"):
        raise instr.error(f"{instr.cmd} has no command")
    if instr.json:
        return list(instr.args)
    text = " ".join(instr.args)
    if instr.cmd == "RUN" and instr.heredocs:
        doc = single_heredoc(instr)
        if doc is not None:
            return [*shell, doc.content]
        for doc in instr.heredocs:
            text += "\n" + doc.content + doc.name
    return [*shell, text]
