"""Word expansion for Dockerfiles: `$VAR`, `${VAR:-x}`, quotes and the escape character, as `docker build` does it.

No Python library implements the reference front end's shell lexer (the `dockerfile` package exposes only the
parser, and `shlex` knows neither `${VAR:-x}` nor Dockerfile quoting), so this is our own implementation of its
documented behaviour, checked against the reference's golden files: all 228 A/U lines of `envVarTest` and all 24
expectation lines of `wordsTest` in ../shared/testdata/dockerfile (tests/unit/test_build_words.py).

What it does, per word:
- `$NAME`, `${NAME}`: the value, or "" when unset. A name is letters, digits and `_`; `$1`, `$001` (digits) and
  the special parameters `$@ $* $# $? $- $$ $! $0` are never set in a Dockerfile and expand to "". A `$` not
  followed by a name stays a `$`.
- `${NAME:-word}` / `${NAME-word}`: word when NAME is unset or empty / unset only.
  `${NAME:+word}` / `${NAME+word}`: word when NAME is set and non-empty / set.
  `${NAME:?msg}` / `${NAME?msg}`: an error when NAME is unset or empty / unset.
  `${NAME#pat}` `${NAME##pat}` `${NAME%pat}` `${NAME%%pat}` `${NAME/pat/repl}` `${NAME//pat/repl}`: prefix,
  suffix and pattern replacement with shell patterns (`*`, `?`, `[...]`), as newer releases of the reference
  front end accept (the golden data predates them). The word part is itself expanded (nesting works).
  Anything else (`${}`, `${:x}`, `${A:=x}`, `${.}`, a missing `}`) is an ExpansionError.
- Single quotes: everything literal up to the next `'` (no escapes inside).
- Double quotes: `$` expands; the escape character escapes only `"`, `$` and itself, otherwise it stays.
- Unquoted, the escape character makes the next character literal; one at the very end is dropped.
`expand` gives one word with quotes removed (ProcessWord); `split` also splits on unquoted whitespace, including
whitespace that comes out of an unquoted expansion (ProcessWords). Every variable name looked up is added to
`used`, so a build cache key can include exactly the build args a step depends on.

Which instructions the builder expands (EXPANDED): ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER,
VOLUME, WORKDIR and ARG (and their flags, such as COPY --chown/--from). RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK,
MAINTAINER and ONBUILD are stored as written: the shell in the container expands RUN/CMD/ENTRYPOINT itself, and
an ONBUILD trigger is expanded when it runs in the child build.
"""

from __future__ import annotations

from pycontain.errors import UsageError

# Only for annotations: a fully cached rebuild must not pay for imports it does not use (`re` is imported by
# _pattern, the one place that needs it, when a `${VAR#pattern}` is expanded).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    from collections.abc import Mapping

EXPANDED = frozenset({"ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
                      "ARG"})

# Shell special parameters: never set in a Dockerfile, so they always expand to "".
_SPECIAL = frozenset("@*#?-$!0")


class ExpansionError(UsageError):
    """A word that cannot be expanded: an unterminated quote, a bad `${...}`, `${VAR?msg}` of an unset VAR."""


# A name character as the reference sees it: a Unicode letter (category L*), a decimal digit (Nd) or `_`.
# str.isalpha() is exactly "category L*" and str.isdecimal() exactly "Nd" (checked over every code point against
# unicodedata.category on this interpreter), and they cost no module import and no table look-up by name.
def _is_letter(ch: str) -> bool:
    return ch.isalpha()


class _Words:
    """Collects the words of `split`: unquoted whitespace ends a word, quoted or escaped characters never do."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.word: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            if self.in_word and self.word:
                self.words.append("".join(self.word))
                self.word = []
                self.in_word = False
        else:
            self.add_raw_char(ch)

    def add_raw_char(self, ch: str) -> None:
        self.word.append(ch)
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def add_raw_string(self, text: str) -> None:
        for ch in text:
            self.add_raw_char(ch)

    def result(self) -> list[str]:
        if self.word:
            self.words.append("".join(self.word))
            self.word = []
        return self.words


class _Lexer:
    def __init__(self, text: str, env: Mapping[str, str], escape: str, used: set[str] | None,
                 raw: bool = False) -> None:
        if escape not in ("\\", "`"):
            raise ExpansionError(f"invalid escape character {escape!r}: must be \\ or `")
        self.text = text
        self.pos = 0
        self.env = env
        self.escape = escape
        self.used = used
        # raw: keep quotes and escape characters in the output (used to find heredoc markers the way the
        # reference does, where `<<"EOF"` and `<<EOF` must stay distinguishable).
        self.raw = raw

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        if ch:
            self.pos += 1
        return ch

    def lookup(self, name: str) -> str | None:
        if self.used is not None:
            self.used.add(name)
        return self.env.get(name)

    def process(self, stop: str = "") -> tuple[str, list[str]]:
        """Up to `stop` (consumed) or the end of the text: the single word and the split words."""
        out: list[str] = []
        words = _Words()
        while self.peek():
            ch = self.peek()
            if stop and ch == stop:
                self.next()
                return "".join(out), words.result()
            if ch in "'\"$":
                if ch == "'":
                    piece = self.single_quote()
                elif ch == '"':
                    piece = self.double_quote()
                else:
                    piece = self.dollar()
                out.append(piece)
                # Only an unquoted expansion is split into words.
                if ch == "$":
                    words.add_string(piece)
                else:
                    words.add_raw_string(piece)
                continue
            ch = self.next()
            if ch == self.escape:
                if self.raw:
                    words.add_raw_char(ch)
                    out.append(ch)
                ch = self.next()
                if not ch:
                    break  # an escape at the very end is dropped
                words.add_raw_char(ch)
            else:
                words.add_char(ch)
            out.append(ch)
        if stop:
            raise ExpansionError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out), words.result()

    def single_quote(self) -> str:
        self.next()
        out = ["'"] if self.raw else []
        while True:
            ch = self.next()
            if not ch:
                raise ExpansionError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                break
            out.append(ch)
        if self.raw:
            out.append("'")
        return "".join(out)

    def double_quote(self) -> str:
        self.next()
        out = ['"'] if self.raw else []
        while True:
            ch = self.peek()
            if not ch:
                raise ExpansionError("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.next()
                break
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == self.escape:
                if self.raw:
                    out.append(ch)
                following = self.peek()
                if not following:
                    continue  # reported as the missing closing quote
                if following in ('"', "$", self.escape):
                    ch = self.next()
            out.append(ch)
        if self.raw:
            out.append('"')
        return "".join(out)

    def name(self) -> str:
        ch = self.peek()
        if ch and ch.isdecimal():
            start = self.pos
            while self.peek() and self.peek().isdecimal():
                self.next()
            return self.text[start:self.pos]
        if ch in _SPECIAL and ch:
            return self.next()
        start = self.pos
        while self.peek() and (_is_letter(self.peek()) or self.peek().isdecimal() or self.peek() == "_"):
            self.next()
        return self.text[start:self.pos]

    def dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            return self.lookup(name) or ""
        self.next()
        ch = self.peek()
        if not ch:
            raise ExpansionError("syntax error: missing '}'")
        if ch in "{}:":
            raise ExpansionError("syntax error: bad substitution")
        name = self.name()
        ch = self.next()
        if ch == "}":
            return self.lookup(name) or ""
        if not name:
            raise ExpansionError("syntax error: bad substitution")
        if ch == ":":
            modifier = self.next()
            if modifier not in ("-", "+", "?"):
                raise ExpansionError(f"unsupported modifier ({modifier}) in substitution" if modifier
                                     else "syntax error: missing '}'")
            return self.modifier(name, modifier, colon=True)
        if ch in ("-", "+", "?"):
            return self.modifier(name, ch, colon=False)
        if ch in ("#", "%"):
            longest = self.peek() == ch
            if longest:
                self.next()
            return self.trim(name, ch, longest)
        if ch == "/":
            return self.replace(name)
        if not ch:
            raise ExpansionError("syntax error: missing '}'")
        raise ExpansionError("missing ':' in substitution")

    def word_until_brace(self) -> str:
        try:
            word, _ = self.process("}")
        except ExpansionError:
            if not self.peek():
                raise ExpansionError("syntax error: missing '}'") from None
            raise
        return word

    def modifier(self, name: str, modifier: str, colon: bool) -> str:
        word = self.word_until_brace()
        value = self.lookup(name)
        # With the colon an empty value counts as unset.
        present = bool(value) if colon else value is not None
        if modifier == "-":
            return (value or "") if present else word
        if modifier == "+":
            return word if present else ""
        if not present:
            if value is None:
                raise ExpansionError(f"{name}: {word or 'is not allowed to be unset'}")
            raise ExpansionError(f"{name}: {word or 'is not allowed to be empty'}")
        return value or ""

    def trim(self, name: str, kind: str, longest: bool) -> str:
        pattern = _pattern(self.word_until_brace())
        value = self.lookup(name) or ""
        cuts = range(len(value) + 1)
        if kind == "#":
            for n in (reversed(cuts) if longest else cuts):
                if pattern.fullmatch(value[:n]):
                    return value[n:]
        else:
            for n in (cuts if longest else reversed(cuts)):
                if pattern.fullmatch(value[n:]):
                    return value[:n]
        return value

    def replace(self, name: str) -> str:
        every = self.peek() == "/"
        if every:
            self.next()
        # The pattern ends at an unescaped `/`, or at `}` when there is no replacement.
        start = self.pos
        depth = 0
        while self.peek():
            ch = self.peek()
            if ch == self.escape:
                self.next()
            elif ch == "{":
                depth += 1
            elif ch == "}":
                if depth == 0:
                    break
                depth -= 1
            elif ch == "/" and depth == 0:
                break
            self.next()
        if not self.peek():
            raise ExpansionError("syntax error: missing '}'")
        pattern_text = _Lexer(self.text[start:self.pos], self.env, self.escape, self.used).process()[0]
        if self.next() == "/":
            replacement = self.word_until_brace()
        else:
            replacement = ""
        value = self.lookup(name) or ""
        if not pattern_text:
            return value
        pattern = _pattern(pattern_text)
        out: list[str] = []
        i = 0
        while i <= len(value):
            match = None
            for end in range(len(value), i, -1):  # longest match at i, as the shell does
                if pattern.fullmatch(value[i:end]):
                    match = end
                    break
            if match is None:
                if i < len(value):
                    out.append(value[i])
                i += 1
                continue
            out.append(replacement)
            if not every:
                out.append(value[match:])
                return "".join(out)
            i = match
        return "".join(out)


def _pattern(glob: str) -> re.Pattern[str]:
    """A shell pattern (`*`, `?`, `[...]`) as a regular expression; everything else is literal."""
    import re

    parts: list[str] = []
    i = 0
    while i < len(glob):
        ch = glob[i]
        if ch == "*":
            parts.append(".*")
        elif ch == "?":
            parts.append(".")
        elif ch == "[":
            end = glob.find("]", i + 2)
            if end == -1:
                parts.append(re.escape(ch))
            else:
                body = glob[i + 1:end]
                negate = body[:1] in ("!", "^")
                if negate:
                    body = body[1:]
                body = body.replace("\\", "\\\\").replace("[", "\\[")
                parts.append(f"[{'^' if negate else ''}{body}]")
                i = end
        else:
            parts.append(re.escape(ch))
        i += 1
    try:
        return re.compile("".join(parts), re.DOTALL)
    except re.error:
        return re.compile(re.escape(glob), re.DOTALL)


def _run(text: str, env: Mapping[str, str], escape: str, used: set[str] | None, raw: bool = False
         ) -> tuple[str, list[str]]:
    try:
        return _Lexer(text, env, escape, used, raw).process()
    except ExpansionError as exc:
        # A `${X?message}` may span lines; the error must stay on one.
        raise ExpansionError(f"failed to process {text!r}: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise ExpansionError(f"failed to process {text[:40]!r}...: too deeply nested") from None


def expand(word: str, env: Mapping[str, str], escape: str = "\\", used: set[str] | None = None) -> str:
    """One word with its variables expanded and its quotes removed (the reference's ProcessWord)."""
    return _run(word, env, escape, used)[0]


def split(text: str, env: Mapping[str, str], escape: str = "\\", used: set[str] | None = None) -> list[str]:
    """Expand `text`, then split it into words on unquoted whitespace (the reference's ProcessWords)."""
    return _run(text, env, escape, used)[1]


def raw_words(text: str, escape: str = "\\") -> list[str]:
    """`text` split into words with quotes and escape characters kept and no variables set (how the reference
    finds heredoc markers such as `<<"EOF"` on an instruction's first line)."""
    return _run(text, {}, escape, None, raw=True)[1]
