"""Go's text/template, as Docker's CLI applies it to `--format`, written for pycontain.

Docker users paste templates such as `{{.State.Status}}`, `{{json .Config.Labels}}` or
`table {{.ID}}\\t{{.Names}}`; this module gives the output Go gives. The data are plain Python values
(Docker's objects as JSON-shaped dicts and lists), so Go's *map* semantics apply throughout: a missing key
prints `<no value>`, a field of a JSON null is Go's "nil pointer" error. A dict value that is callable is a
method: `.Label "k"` calls it with the arguments, `.Size` calls it with none (the way `ps` computes costly
columns only when a template asks for them).

Supported: fields and chains, variables (`$`, `$x := ...`, `$x = ...`, `$i, $v := range`), pipelines,
parenthesised pipelines, string/raw/char/number/bool/nil literals, comments, `{{-`/`-}}` trimming,
if / else if / else, with / else with, range / else / break / continue, and the functions of Go
(and or not len index slice print printf println eq ne lt le gt ge html urlquery) and of Docker's CLI
(json split join title lower upper pad truncate). Not supported: define / template / block (one
template per format, as Docker's flags use it).

Errors are TemplateError (a UsageError: one line, exit 125) worded as Go words them:
`template: :1: function "foo" not defined`, `template: :1:2: executing "" at <.State.Health.Status>:
nil pointer evaluating interface {}.Status`.

Parsing is done once; Template.execute runs per row. Nothing heavy is imported: `ps` renders hundreds
of rows per call, and its whole run has a 30 ms budget.
"""

from __future__ import annotations

from pycontain.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class TemplateError(UsageError):
    """A template that does not parse or cannot be executed (one line: `template: ...`)."""


class _Missing:
    """Go's invalid reflect.Value: what a missing map key yields; printed `<no value>`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<no value>"


MISSING: Any = _Missing()


class _ExecError(Exception):
    """Raised inside execution; Template.execute turns it into a TemplateError with the position."""


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


# ---------------------------------------------------------------- lexer

_SPACE = " \t\r\n"
_IDENT_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_IDENT = _IDENT_START | frozenset("0123456789")
_DIGITS = frozenset("0123456789")
_KEYWORDS = frozenset(("if", "else", "end", "range", "with", "break", "continue", "define", "template", "block"))
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "a": "\a", "b": "\b", "f": "\f",
            "v": "\v"}


class _Tok:
    """One token: kind, value, offset in the template text, and the offset after it."""

    __slots__ = ("kind", "value", "pos", "end")

    def __init__(self, kind: str, value: Any, pos: int, end: int) -> None:
        self.kind, self.value, self.pos, self.end = kind, value, pos, end


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks: list[_Tok] = []

    def error(self, pos: int, message: str) -> TemplateError:
        return TemplateError(f"template: :{self.text.count(chr(10), 0, pos) + 1}: {message}")

    def run(self) -> list[_Tok]:
        text, n, toks = self.text, len(self.text), self.toks
        i = 0
        trim_next = False
        while i < n:
            j = text.find("{{", i)
            chunk = text[i:] if j < 0 else text[i:j]
            if trim_next:
                chunk = chunk.lstrip(_SPACE)
            k = j + 2
            trim_left = j >= 0 and text.startswith("-", k) and k + 1 < n and text[k + 1] in _SPACE
            if trim_left:
                chunk = chunk.rstrip(_SPACE)
            if chunk:
                toks.append(_Tok("text", chunk, i, j if j >= 0 else n))
            if j < 0:
                return self._eof(n)
            if trim_left:
                k += 2
            if text.startswith("/*", k):
                close = text.find("*/", k + 2)
                if close < 0:
                    raise self.error(j, "unclosed comment")
                m = close + 2
                if text.startswith("}}", m):
                    i, trim_next = m + 2, False
                elif m + 3 <= n and text[m] in _SPACE and text.startswith("-}}", m + 1):
                    i, trim_next = m + 4, True
                else:
                    raise self.error(j, "comment ends before closing delimiter")
                continue
            toks.append(_Tok("left", None, j, k))
            i, trim_next = self._action(k)
        return self._eof(n)

    def _eof(self, n: int) -> list[_Tok]:
        self.toks.append(_Tok("eof", None, n, n))
        return self.toks

    def _action(self, i: int) -> tuple[int, bool]:
        """Tokens of one action from offset i; returns the offset after `}}` and whether it trims."""
        text, n, toks = self.text, len(self.text), self.toks
        depth = 0
        while True:
            if i >= n:
                raise self.error(i, "unclosed action")
            c = text[i]
            if c in _SPACE:
                start = i
                while i < n and text[i] in _SPACE:
                    i += 1
                if text.startswith("-}}", i):
                    toks.append(_Tok("right", None, i, i + 3))
                    return i + 3, True
                toks.append(_Tok("space", None, start, i))
                continue
            if text.startswith("}}", i):
                if depth:
                    raise self.error(i, "unclosed left paren")
                toks.append(_Tok("right", None, i, i + 2))
                return i + 2, False
            start = i
            if c == '"':
                i, value = self._quoted(i)
                toks.append(_Tok("string", value, start, i))
            elif c == "`":
                close = text.find("`", i + 1)
                if close < 0:
                    raise self.error(i, "unterminated raw quoted string")
                i = close + 1
                toks.append(_Tok("string", text[start + 1:close], start, i))
            elif c == "'":
                i, value = self._quoted(i)
                if len(value) != 1:
                    raise self.error(start, f"malformed character constant: {text[start:i]}")
                toks.append(_Tok("number", ord(value), start, i))
            elif c == "." and i + 1 < n and text[i + 1] in _IDENT_START:
                i, fields = self._chain(i)
                toks.append(_Tok("field", fields, start, i))
            elif c in _DIGITS or (c in "+-." and i + 1 < n and (text[i + 1] in _DIGITS or (
                    c != "." and text[i + 1] == "." and i + 2 < n and text[i + 2] in _DIGITS))):
                i, number = self._number(i)
                toks.append(_Tok("number", number, start, i))
            elif c == ".":
                i += 1
                toks.append(_Tok("dot", None, start, i))
            elif c == "$":
                i += 1
                while i < n and text[i] in _IDENT:
                    i += 1
                name = text[start:i]
                chain: tuple[str, ...] = ()
                if i + 1 < n and text[i] == "." and text[i + 1] in _IDENT_START:
                    i, chain = self._chain(i)
                toks.append(_Tok("var", (name, chain), start, i))
            elif c in _IDENT_START:
                while i < n and text[i] in _IDENT:
                    i += 1
                word = text[start:i]
                if word in ("true", "false"):
                    toks.append(_Tok("bool", word == "true", start, i))
                elif word == "nil":
                    toks.append(_Tok("nil", None, start, i))
                else:
                    toks.append(_Tok("keyword" if word in _KEYWORDS else "ident", word, start, i))
            elif c == "(":
                depth += 1
                i += 1
                toks.append(_Tok("(", None, start, i))
            elif c == ")":
                depth -= 1
                if depth < 0:
                    raise self.error(i, "unexpected right paren")
                i += 1
                if i + 1 < n and text[i] == "." and text[i + 1] in _IDENT_START:
                    toks.append(_Tok(")", None, start, i))
                    start = i
                    i, chain = self._chain(i)
                    toks.append(_Tok("chain", chain, start, i))
                    continue
                toks.append(_Tok(")", None, start, i))
            elif c == "|":
                i += 1
                toks.append(_Tok("|", None, start, i))
            elif c == ",":
                i += 1
                toks.append(_Tok(",", None, start, i))
            elif text.startswith(":=", i):
                i += 2
                toks.append(_Tok(":=", None, start, i))
            elif c == "=":
                i += 1
                toks.append(_Tok("=", None, start, i))
            else:
                raise self.error(i, f"unrecognized character in action: {c!r}")

    def _chain(self, i: int) -> tuple[int, tuple[str, ...]]:
        text, n = self.text, len(self.text)
        names = []
        while i + 1 < n and text[i] == "." and text[i + 1] in _IDENT_START:
            start = i = i + 1
            while i < n and text[i] in _IDENT:
                i += 1
            names.append(text[start:i])
        return i, tuple(names)

    def _quoted(self, i: int) -> tuple[int, str]:
        text, n = self.text, len(self.text)
        quote = text[i]
        out: list[str] = []
        i += 1
        while True:
            if i >= n or text[i] == "\n":
                raise self.error(i, "unterminated quoted string")
            c = text[i]
            if c == quote:
                return i + 1, "".join(out)
            if c != "\\":
                out.append(c)
                i += 1
                continue
            e = text[i + 1:i + 2]
            if e in _ESCAPES:
                out.append(_ESCAPES[e])
                i += 2
                continue
            width = {"x": 2, "u": 4, "U": 8}.get(e)
            digits = text[i + 2:i + 2 + width] if width else text[i + 1:i + 4]
            try:
                if width and len(digits) == width:
                    out.append(chr(int(digits, 16)))
                    i += 2 + width
                    continue
                if not width and len(digits) == 3:
                    out.append(chr(int(digits, 8)))
                    i += 4
                    continue
            except ValueError:
                pass
            raise self.error(i, f"bad escape in quoted string: {text[i:i + 2]}")

    def _number(self, i: int) -> tuple[int, int | float]:
        text, n = self.text, len(self.text)
        start = i
        while i < n and (text[i] in _IDENT or text[i] == "." or (text[i] in "+-" and (
                i == start or text[i - 1] in "eEpP"))):
            i += 1
        word = text[start:i].replace("_", "")
        try:
            if word.lstrip("+-")[:2].lower() in ("0x", "0o", "0b") or not any(ch in word for ch in ".eE"):
                sign = -1 if word.startswith("-") else 1
                body = word.lstrip("+-")
                if len(body) > 1 and body[0] == "0" and body[1] in _DIGITS:
                    body = "0o" + body[1:]  # Go's 0755
                return i, sign * int(body, 0)
            return i, float(word)
        except ValueError:
            raise self.error(start, f"bad number syntax: {text[start:i]!r}") from None


# ---------------------------------------------------------------- parser
#
# Nodes are tuples, first item the kind:
#   ("text", str)  ("action", pipe)  ("if"|"with"|"range", pipe, body, else_body, pos)
#   ("break",)  ("continue",)
# pipe = (decl names, is_assign, commands, pos, source)
# command = (args, pos, source); an arg is
#   ("field", chain, src)  ("var", name, chain, src)  ("dot",)  ("lit", value)  ("nil",)
#   ("ident", name)  ("pipe", pipe, chain)


class _Parser:
    def __init__(self, text: str, funcs: dict[str, Callable[..., Any]]) -> None:
        self.text = text
        self.lexer = _Lexer(text)
        self.toks = self.lexer.run()
        self.i = 0
        self.funcs = funcs
        self.vars = ["$"]
        self.range_depth = 0

    def error(self, message: str, tok: _Tok | None = None) -> TemplateError:
        return self.lexer.error((tok or self.toks[min(self.i, len(self.toks) - 1)]).pos, message)

    def next(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def peek_nonspace(self) -> _Tok:
        while self.toks[self.i].kind == "space":
            self.i += 1
        return self.toks[self.i]

    def parse(self) -> list[Any]:
        body, end = self.list_()
        if end is not None:
            raise self.error(f"unexpected {{{{{end.value}}}}}", end)
        return body

    def list_(self) -> tuple[list[Any], _Tok | None]:
        """Nodes up to {{end}} / {{else}} (returned, after the keyword) or EOF (None)."""
        nodes: list[Any] = []
        while True:
            tok = self.next()
            if tok.kind == "eof":
                return nodes, None
            if tok.kind == "text":
                nodes.append(("text", tok.value))
                continue
            # tok is "left"
            word = self.peek_nonspace()
            if word.kind == "keyword":
                self.i += 1
                if word.value in ("end", "else"):
                    return nodes, word
                nodes.append(self.control(word))
            else:
                pipe = self.pipeline("command", ("right",))
                self.i += 1
                nodes.append(("action", pipe))

    def expect_right(self, context: str) -> None:
        tok = self.peek_nonspace()
        if tok.kind != "right":
            raise self.error(f"unexpected {self.describe(tok)} in {context}", tok)
        self.i += 1

    def control(self, word: _Tok) -> Any:
        kind = word.value
        if kind in ("break", "continue"):
            if not self.range_depth:
                raise self.error(f"{{{{{kind}}}}} outside {{{{range}}}}", word)
            self.expect_right(kind)
            return (kind,)
        if kind in ("define", "template", "block"):
            raise self.error(f"{{{{{kind}}}}} is not supported in a --format template", word)
        return self.branch(kind, word)

    def branch(self, kind: str, word: _Tok) -> Any:
        mark = len(self.vars)
        pipe = self.pipeline(kind, ("right",))
        self.i += 1
        if kind == "range":
            self.range_depth += 1
        body, end = self.list_()
        if kind == "range":
            self.range_depth -= 1
        if end is None:
            raise self.error("unexpected EOF")
        else_body: list[Any] = []
        if end.value == "else":
            nxt = self.peek_nonspace()
            if kind in ("if", "with") and nxt.kind == "keyword" and nxt.value == kind:
                # {{else if x}} is {{else}}{{if x}}...{{end}} sharing the one {{end}}
                self.i += 1
                else_body = [self.branch(kind, nxt)]
                del self.vars[mark:]
                return (kind, pipe, body, else_body, word.pos)
            self.expect_right("else")
            else_body, end = self.list_()
            if end is None:
                raise self.error("unexpected EOF")
            if end.value != "end":
                raise self.error("expected end; found {{else}}", end)
        self.expect_right("end")
        del self.vars[mark:]
        return (kind, pipe, body, else_body, word.pos)

    def pipeline(self, context: str, closers: tuple[str, ...]) -> Any:
        start = self.peek_nonspace()
        decl: list[str] = []
        assign = False
        # $x :=   $x =   $i, $v :=
        save = self.i
        if start.kind == "var" and not start.value[1]:
            names = [start.value[0]]
            self.i += 1
            tok = self.peek_nonspace()
            if tok.kind == "," and context == "range":
                self.i += 1
                second = self.peek_nonspace()
                if second.kind != "var" or second.value[1]:
                    raise self.error("range can only initialize variables", second)
                names.append(second.value[0])
                self.i += 1
                tok = self.peek_nonspace()
                if tok.kind not in (":=", "="):
                    raise self.error(f"unexpected {self.describe(tok)} in range", tok)
            if tok.kind in (":=", "="):
                self.i += 1
                assign = tok.kind == "="
                decl = names
                if assign:
                    for name in names:
                        if name not in self.vars:
                            raise self.error(f"undefined variable {name!r}".replace("'", '"'), start)
            else:
                self.i = save
        commands = []
        while True:
            tok = self.peek_nonspace()
            if tok.kind in closers:
                break
            commands.append(self.command(closers))
            tok = self.peek_nonspace()
            if tok.kind == "|":
                self.i += 1
                continue
        if not commands:
            raise self.error(f"missing value for {context}", tok)
        for n, cmd in enumerate(commands[1:], 2):
            if cmd[0][0][0] not in ("field", "ident", "var", "pipe") or (
                    cmd[0][0][0] == "var" and not cmd[0][0][2]):
                raise self.error(f"non executable command in pipeline stage {n}", tok)
        if not assign:
            self.vars.extend(decl)
        end = self.toks[self.i].pos
        return (tuple(decl), assign, tuple(commands), start.pos, self.text[start.pos:end].strip())

    def command(self, closers: tuple[str, ...]) -> Any:
        args = []
        first = self.peek_nonspace()
        while True:
            tok = self.peek_nonspace()
            if tok.kind in closers or tok.kind == "|":
                break
            args.append(self.operand())
            nxt = self.toks[self.i]
            if nxt.kind not in ("space", "|") and nxt.kind not in closers:
                raise self.error(f"unexpected {self.describe(nxt)} in operand", nxt)
        if not args:
            raise self.error("missing value for command", first)
        if args[0][0] in ("lit", "dot", "nil") and len(args) > 1:
            what = "nil" if args[0][0] == "nil" else self.text[first.pos:first.end]
            raise self.error(f"can't give argument to non-function {what}", first)
        if args[0][0] == "nil" and len(args) == 1:
            raise self.error("nil is not a command", first)
        end = self.toks[self.i].pos
        return (tuple(args), first.pos, self.text[first.pos:end].strip())

    def operand(self) -> Any:
        tok = self.next()
        kind = tok.kind
        if kind == "field":
            return ("field", tok.value, self.text[tok.pos:tok.end])
        if kind == "var":
            name, fields = tok.value
            if name not in self.vars:
                raise self.error(f'undefined variable "{name}"', tok)
            return ("var", name, fields, self.text[tok.pos:tok.end])
        if kind == "dot":
            return ("dot",)
        if kind in ("string", "number", "bool"):
            return ("lit", tok.value)
        if kind == "nil":
            return ("nil",)
        if kind == "ident":
            if tok.value not in self.funcs:
                raise self.error(f'function "{tok.value}" not defined', tok)
            return ("ident", tok.value)
        if kind == "(":
            pipe = self.pipeline("parenthesized pipeline", (")",))
            self.i += 1
            chain: tuple[str, ...] = ()
            if self.toks[self.i].kind == "chain":
                chain = self.next().value
            return ("pipe", pipe, chain)
        raise self.error(f"unexpected {self.describe(tok)} in operand", tok)

    @staticmethod
    def describe(tok: _Tok) -> str:
        return {"right": '"}}"', "eof": "EOF", ")": '")"', "(": '"("', "|": '"|"', ",": '","', ":=": '":="',
                "=": '"="'}.get(tok.kind, f"<{tok.value}>")


# ---------------------------------------------------------------- values, the way Go prints them

def _go_type(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "map[string]interface {}"
    if isinstance(v, (list, tuple)):
        return "[]interface {}"
    if v is None:
        return "interface {}"
    return type(v).__name__


def _go_float(f: float) -> str:
    """strconv.FormatFloat(f, 'g', -1, 64), which %v uses: shortest digits, exponent below 1e-4 or from 1e6."""
    if f != f:
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "+Inf" if f > 0 else "-Inf"
    text = repr(f)
    sign = "-" if text.startswith("-") else ""
    text = text.lstrip("-")
    mantissa, _, exp_text = text.partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    exp = (int(exp_text) if exp_text else 0) + len(whole) - 1
    if whole.strip("0") == "":  # 0.000123: the leading zeros of frac set the exponent
        stripped = frac.lstrip("0")
        exp = (int(exp_text) if exp_text else 0) - (len(frac) - len(stripped)) - 1
        digits = stripped
    digits = digits.rstrip("0") or "0"
    if digits == "0":
        return sign + "0"
    if exp < -4 or exp >= 6:
        body = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{body}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if exp < 0:
        return f"{sign}0.{'0' * (-exp - 1)}{digits}"
    if len(digits) <= exp + 1:
        return sign + digits + "0" * (exp + 1 - len(digits))
    return f"{sign}{digits[:exp + 1]}.{digits[exp + 1:]}"


def to_text(v: Any) -> str:
    """fmt.Sprint of one value, as text/template prints it."""
    if isinstance(v, str):
        return v
    if v is MISSING:
        return "<no value>"
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _go_float(v)
    if isinstance(v, dict):
        return "map[" + " ".join(f"{to_text(k)}:{to_text(v[k])}" for k in sorted(v, key=str)) + "]"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(to_text(x) for x in v) + "]"
    if callable(v):
        return to_text(v())
    return str(v)


def truth(v: Any) -> bool:
    """Go's truth: false, 0, nil, a missing value and empty strings, lists and maps are false."""
    if v is MISSING or v is None:
        return False
    if isinstance(v, (bool, int, float, str, dict, list, tuple)):
        return bool(v)
    return True


# ---------------------------------------------------------------- functions

def _want_str(v: Any) -> str:
    if isinstance(v, str):
        return v
    if v is MISSING:
        raise _ExecError("invalid value; expected string")
    raise _ExecError(f"wrong type for value; expected string; got {_go_type(v)}")


def _want_int(v: Any) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    raise _ExecError(f"wrong type for value; expected int; got {_go_type(v)}")


def _arity(name: str, args: tuple[Any, ...], want: int) -> None:
    if len(args) != want:
        raise _ExecError(f"wrong number of args for {name}: want {want} got {len(args)}")


def _json_value(v: Any) -> Any:
    """What json.Marshal sees: methods called (those needing arguments left out), MISSING as null."""
    if v is MISSING:
        return None
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            if callable(x):
                try:
                    x = x()
                except TypeError:
                    continue
            out[k] = _json_value(x)
        return out
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    if callable(v):
        return _json_value(v())
    return v


_json_encoder: Any = None


def go_json(v: Any) -> str:
    """json.Marshal with HTML escaping off (Docker's `json`): compact, keys in the order stored."""
    global _json_encoder
    if _json_encoder is None:
        import _json

        def default(obj: Any) -> Any:
            if isinstance(obj, (set, frozenset)):
                return sorted(obj)
            return str(obj)

        _json_encoder = _json.make_encoder(None, default, _json.encode_basestring, None, ":", ",", False, False,
                                           True)
    return "".join(_json_encoder(_json_value(v), 0))


def _f_json(*args: Any) -> str:
    _arity("json", args, 1)
    return go_json(args[0])


def _f_split(*args: Any) -> list[str]:
    _arity("split", args, 2)
    s, sep = _want_str(args[0]), _want_str(args[1])
    return list(s) if sep == "" else s.split(sep)


def _f_join(*args: Any) -> str:
    _arity("join", args, 2)
    items, sep = args[0], _want_str(args[1])
    if not isinstance(items, (list, tuple)) or not all(isinstance(x, str) for x in items):
        raise _ExecError(f"wrong type for value; expected []string; got {_go_type(items)}")
    return sep.join(items)


def _title(s: str) -> str:
    """strings.Title: the first letter of each word upper-cased (a word follows a space or punctuation)."""
    out = []
    prev = " "
    for c in s:
        sep = not (prev.isalnum() or prev == "_") if prev.isascii() else prev.isspace()
        out.append(c.upper() if sep else c)
        prev = c
    return "".join(out)


def _str1(name: str, fn: Callable[[str], str]) -> Callable[..., str]:
    def call(*args: Any) -> str:
        _arity(name, args, 1)
        return fn(_want_str(args[0]))
    return call


def _f_pad(*args: Any) -> str:
    _arity("pad", args, 3)
    return " " * _want_int(args[1]) + _want_str(args[0]) + " " * _want_int(args[2])


def _f_truncate(*args: Any) -> str:
    _arity("truncate", args, 2)
    s, n = _want_str(args[0]), _want_int(args[1])
    return s[:n] if len(s) > n else s


def _f_len(*args: Any) -> int:
    _arity("len", args, 1)
    v = args[0]
    if isinstance(v, str):
        return len(v.encode())
    if isinstance(v, (list, tuple, dict)):
        return len(v)
    what = "nil pointer" if v is None or v is MISSING else "type " + _go_type(v)
    raise _ExecError(f"error calling len: len of {what}")


def _f_index(*args: Any) -> Any:
    if not args:
        raise _ExecError("wrong number of args for index: want at least 1 got 0")
    item = args[0]
    for key in args[1:]:
        if item is None or item is MISSING:
            raise _ExecError("error calling index: index of untyped nil")
        if isinstance(item, dict):
            # A missing key gives the zero value of the map's values: Docker's maps (Labels, Options) hold
            # strings, so "" rather than <nil>.
            item = item.get(key, "") if isinstance(key, str) else ""
        elif isinstance(item, (list, tuple, str)):
            if not isinstance(key, int) or isinstance(key, bool):
                raise _ExecError(f"error calling index: cannot index slice/array with type {_go_type(key)}")
            if not 0 <= key < len(item):
                raise _ExecError(f"error calling index: index out of range: {key}")
            item = item[key] if not isinstance(item, str) else item.encode()[key]
        else:
            raise _ExecError(f"error calling index: can't index item of type {_go_type(item)}")
    return item


def _f_slice(*args: Any) -> Any:
    if not args:
        raise _ExecError("wrong number of args for slice: want at least 1 got 0")
    item, idx = args[0], args[1:]
    if not isinstance(item, (str, list, tuple)):
        raise _ExecError(f"error calling slice: can't slice item of type {_go_type(item)}")
    if len(idx) > 2 + (not isinstance(item, str)) or not all(isinstance(i, int) for i in idx):
        raise _ExecError("error calling slice: invalid slice indices")
    lo = idx[0] if idx else 0
    hi = idx[1] if len(idx) > 1 else len(item)
    if not 0 <= lo <= hi <= len(item):
        raise _ExecError(f"error calling slice: slice index out of range: {lo}:{hi}")
    return item[lo:hi]


def _f_not(*args: Any) -> bool:
    _arity("not", args, 1)
    return not truth(args[0])


def _f_print(*args: Any) -> str:
    # fmt.Sprint: a space between operands when neither is a string
    out = []
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(to_text(a))
    return "".join(out)


def _f_println(*args: Any) -> str:
    return " ".join(to_text(a) for a in args) + "\n"


def _f_html(*args: Any) -> str:
    s = "".join(to_text(a) for a in args)
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;")
            .replace("'", "&#39;").replace("\x00", "\ufffd"))


def _f_urlquery(*args: Any) -> str:
    from urllib.parse import quote_plus

    return quote_plus("".join(to_text(a) for a in args))


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if v is None or v is MISSING:
        return "nil"
    return "other"


def _compare(name: str, a: Any, b: Any) -> int:
    """-1, 0, 1 as Go's lt/eq would order two basic values; errors as Go words them."""
    ka, kb = _kind(a), _kind(b)
    if ka == "other" or kb == "other":
        raise _ExecError(f"error calling {name}: non-comparable type {to_text(a if ka == 'other' else b)}: "
                         f"{_go_type(a if ka == 'other' else b)}")
    if ka != kb:
        if "nil" in (ka, kb) and name in ("eq", "ne"):
            return 1
        raise _ExecError(f"error calling {name}: incompatible types for comparison")
    if ka == "nil":
        if name not in ("eq", "ne"):
            raise _ExecError(f"error calling {name}: invalid type for comparison")
        return 0
    if ka == "bool" and name not in ("eq", "ne"):
        raise _ExecError(f"error calling {name}: invalid type for comparison")
    return 0 if a == b else (-1 if a < b else 1)


def _f_eq(*args: Any) -> bool:
    if len(args) < 2:
        raise _ExecError("error calling eq: missing argument for comparison")
    return any(_compare("eq", args[0], b) == 0 for b in args[1:])


def _f_ne(*args: Any) -> bool:
    _arity("ne", args, 2)
    return _compare("ne", args[0], args[1]) != 0


def _cmp(name: str, test: Callable[[int], bool]) -> Callable[..., bool]:
    def call(*args: Any) -> bool:
        _arity(name, args, 2)
        return test(_compare(name, args[0], args[1]))
    return call


FUNCS: dict[str, Callable[..., Any]] = {
    # Go's builtins (and/or are evaluated lazily by the executor: these run only for piped values)
    "and": lambda *a: next((x for x in a if not truth(x)), a[-1]),
    "or": lambda *a: next((x for x in a if truth(x)), a[-1]),
    "not": _f_not, "len": _f_len, "index": _f_index, "slice": _f_slice,
    "print": _f_print, "println": _f_println, "printf": lambda *a: sprintf(*a),
    "eq": _f_eq, "ne": _f_ne, "lt": _cmp("lt", lambda c: c < 0), "le": _cmp("le", lambda c: c <= 0),
    "gt": _cmp("gt", lambda c: c > 0), "ge": _cmp("ge", lambda c: c >= 0),
    "html": _f_html, "urlquery": _f_urlquery,
    # Docker's CLI
    "json": _f_json, "split": _f_split, "join": _f_join, "title": _str1("title", _title),
    "lower": _str1("lower", str.lower), "upper": _str1("upper", str.upper), "pad": _f_pad,
    "truncate": _f_truncate,
}


def _header_func(name: str) -> Callable[..., Any]:
    """Docker's header functions: when a `table` header is rendered, json/upper/... return the header as is."""
    def call(*args: Any) -> Any:
        return args[0] if args else ""
    return call


HEADER_FUNCS = dict(FUNCS)
HEADER_FUNCS.update({name: _header_func(name) for name in
                     ("json", "split", "join", "title", "lower", "upper", "pad", "truncate")})


# ---------------------------------------------------------------- printf

def sprintf(*args: Any) -> str:
    """fmt.Sprintf for the verbs templates use (%v %s %d %q %x %X %o %b %c %f %e %g %t %T %%), flags, width,
    precision; Go's %!d(string=x), %!s(MISSING) and %!(EXTRA ...) for mismatches."""
    if not args:
        raise _ExecError("wrong number of args for printf: want at least 1 got 0")
    fmt = _want_str(args[0])
    vals = list(args[1:])
    out: list[str] = []
    used = 0
    i, n = 0, len(fmt)
    while i < n:
        j = fmt.find("%", i)
        if j < 0:
            out.append(fmt[i:])
            break
        out.append(fmt[i:j])
        i = j + 1
        flags = ""
        while i < n and fmt[i] in "+-# 0":
            flags += fmt[i]
            i += 1
        width = prec = None
        if i < n and fmt[i] == "*":
            width = vals[used] if used < len(vals) and isinstance(vals[used], int) else 0
            used += 1
            i += 1
        else:
            start = i
            while i < n and fmt[i].isdigit():
                i += 1
            width = int(fmt[start:i]) if i > start else None
        if i < n and fmt[i] == ".":
            i += 1
            if i < n and fmt[i] == "*":
                prec = vals[used] if used < len(vals) and isinstance(vals[used], int) else 0
                used += 1
                i += 1
            else:
                start = i
                while i < n and fmt[i].isdigit():
                    i += 1
                prec = int(fmt[start:i]) if i > start else 0
        if i >= n:
            out.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            out.append("%")
            continue
        if used >= len(vals):
            out.append(f"%!{verb}(MISSING)")
            continue
        v = vals[used]
        used += 1
        out.append(_pad(_format_one(verb, v, flags, prec), width, flags, verb))
    if used < len(vals):
        out.append("%!(EXTRA " + ", ".join(f"{_go_type(v)}={to_text(v)}" for v in vals[used:]) + ")")
    return "".join(out)


def _pad(text: str, width: int | None, flags: str, verb: str) -> str:
    if width is None or len(text) >= width:
        return text
    if "-" in flags:
        return text.ljust(width)
    if "0" in flags and verb in "dfeEgGxXob" and text[:1] in "+-":
        return text[0] + text[1:].rjust(width - 1, "0")
    return text.rjust(width, "0" if "0" in flags and verb in "dfeEgGxXob" else " ")


def _format_one(verb: str, v: Any, flags: str, prec: int | None) -> str:
    bad = f"%!{verb}({_go_type(v)}={to_text(v)})"
    if v is MISSING:
        v = None
    if verb == "v":
        return to_text(v)
    if verb == "T":
        return _go_type(v)
    if verb == "s":
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return bad
        text = to_text(v)
        return text[:prec] if prec is not None else text
    if verb == "q":
        if isinstance(v, str):
            return go_json(v).replace("\\u003c", "<").replace("\\u003e", ">").replace("\\u0026", "&")
        if isinstance(v, int) and not isinstance(v, bool):
            return "'" + chr(v) + "'"
        return bad
    if verb == "t":
        return ("true" if v else "false") if isinstance(v, bool) else bad
    if verb in "dxXobc" and isinstance(v, int) and not isinstance(v, bool):
        if verb == "c":
            return chr(v)
        text = format(v, {"d": "d", "x": "x", "X": "X", "o": "o", "b": "b"}[verb])
        if "#" in flags and verb in "xXo":
            text = text.replace("-", "-" + {"x": "0x", "X": "0X", "o": "0"}[verb], 1) if v < 0 else \
                {"x": "0x", "X": "0X", "o": "0"}[verb] + text
        return ("+" + text) if "+" in flags and v >= 0 else ((" " + text) if " " in flags and v >= 0 else text)
    if verb in "xX" and isinstance(v, str):
        text = v.encode().hex()
        return text.upper() if verb == "X" else text
    if verb in "feEgGF" and isinstance(v, (int, float)) and not isinstance(v, bool):
        if isinstance(v, int):
            return bad
        if verb in "gG" and prec is None:
            text = _go_float(v)
            text = text.upper() if verb == "G" else text
        else:
            text = format(v, f".{6 if prec is None else prec}{'f' if verb == 'F' else verb}")
        return ("+" + text) if "+" in flags and v >= 0 else text
    return bad


# ---------------------------------------------------------------- execution

class Template:
    """A parsed template: execute(data) runs it against one value (dict, list, str, ...)."""

    __slots__ = ("text", "nodes", "funcs")

    def __init__(self, text: str, nodes: list[Any], funcs: dict[str, Callable[..., Any]]) -> None:
        self.text = text
        self.nodes = nodes
        self.funcs = funcs

    def execute(self, data: Any) -> str:
        out: list[str] = []
        run = _Run(self, data, out)
        try:
            run.walk(self.nodes, data)
        except _ExecError as e:
            raise TemplateError(self._where(run.at, str(e))) from None
        except RecursionError:
            raise TemplateError("template: too deeply nested") from None
        return "".join(out)

    def _where(self, at: tuple[int, str], message: str) -> str:
        pos, source = at
        line = self.text.count("\n", 0, pos) + 1
        col = pos - (self.text.rfind("\n", 0, pos) + 1) if line > 1 else pos
        return f'template: :{line}:{col}: executing "" at <{source}>: {message}'


class _Run:
    __slots__ = ("funcs", "root", "out", "vars", "at")

    def __init__(self, tmpl: Template, data: Any, out: list[str]) -> None:
        self.funcs = tmpl.funcs
        self.root = data
        self.out = out
        self.vars: list[tuple[str, Any]] = [("$", data)]
        self.at: tuple[int, str] = (0, "")

    def walk(self, nodes: list[Any], dot: Any) -> None:
        out = self.out
        for node in nodes:
            kind = node[0]
            if kind == "text":
                out.append(node[1])
            elif kind == "action":
                pipe = node[1]
                cmds = pipe[2]
                if not pipe[0] and len(cmds) == 1 and len(cmds[0][0]) == 1 and cmds[0][0][0][0] == "field":
                    # the common {{.A.B}}: no function, no declaration
                    arg = cmds[0][0][0]
                    self.at = (cmds[0][1], arg[2])
                    value = self.chain(dot, arg[1], (), MISSING, False)
                else:
                    value = self.pipeline(dot, pipe)
                    if pipe[0]:
                        continue
                out.append(value if isinstance(value, str) else to_text(value))
            elif kind == "if":
                mark = len(self.vars)
                value = self.pipeline(dot, node[1])
                self.walk(node[2] if truth(value) else node[3], dot)
                del self.vars[mark:]
            elif kind == "with":
                mark = len(self.vars)
                value = self.pipeline(dot, node[1])
                if truth(value):
                    self.walk(node[2], value)
                else:
                    self.walk(node[3], dot)
                del self.vars[mark:]
            elif kind == "range":
                self.range_(node, dot)
            elif kind == "break":
                raise _Break
            else:
                raise _Continue

    def range_(self, node: Any, dot: Any) -> None:
        pipe = node[1]
        mark = len(self.vars)
        value = self.pipeline(dot, ((), False, pipe[2], pipe[3], pipe[4]))  # range binds its variables per element
        decl = pipe[0]
        if isinstance(value, dict):
            items: Any = ((k, value[k]) for k in sorted(value, key=str))
            empty = not value
        elif isinstance(value, (list, tuple)):
            items = enumerate(value)
            empty = not value
        elif isinstance(value, int) and not isinstance(value, bool):
            items = ((i, i) for i in range(value))
            empty = value <= 0
        elif value is MISSING or value is None:
            items, empty = (), True
        else:
            self.at = (pipe[3], pipe[4])
            raise _ExecError(f"range can't iterate over {to_text(value)}")
        if empty:
            self.walk(node[3], dot)
            return
        for key, elem in items:
            del self.vars[mark:]
            if len(decl) == 1:
                self.vars.append((decl[0], elem))
            elif len(decl) == 2:
                self.vars.append((decl[0], key))
                self.vars.append((decl[1], elem))
            try:
                self.walk(node[2], elem)
            except _Continue:
                continue
            except _Break:
                break
        del self.vars[mark:]

    def pipeline(self, dot: Any, pipe: Any) -> Any:
        value: Any = MISSING
        has_final = False
        for cmd in pipe[2]:
            value = self.command(dot, cmd, value, has_final)
            has_final = True
        if pipe[0]:
            if pipe[1]:  # $x = value: the innermost variable of that name
                for i in range(len(self.vars) - 1, -1, -1):
                    if self.vars[i][0] == pipe[0][0]:
                        self.vars[i] = (pipe[0][0], value)
                        break
            else:
                self.vars.append((pipe[0][0], value))
        return value

    def command(self, dot: Any, cmd: Any, final: Any, has_final: bool) -> Any:
        args, pos, source = cmd
        first = args[0]
        kind = first[0]
        self.at = (pos, source)
        if kind == "ident":
            name = first[1]
            if name in ("and", "or"):  # lazy, as Go 1.18+: evaluation stops at the deciding operand
                value: Any = MISSING
                for arg in args[1:]:
                    value = self.arg(dot, arg)
                    if truth(value) != (name == "and"):
                        return value
                if has_final:
                    value = final
                if len(args) == 1 and not has_final:
                    raise _ExecError(f"wrong number of args for {name}: want at least 1 got 0")
                return value
            values = [self.arg(dot, a) for a in args[1:]]
            if has_final:
                values.append(final)
            self.at = (pos, source)
            try:
                return self.funcs[name](*values)
            except _ExecError:
                raise
            except (TypeError, ValueError, OverflowError) as e:
                raise _ExecError(f"error calling {name}: {e}") from None
        if kind == "field":
            self.at = (pos, first[2])
            rest = tuple(self.arg(dot, a) for a in args[1:])
            return self.chain(dot, first[1], rest + ((final,) if has_final else ()), MISSING, bool(rest) or has_final)
        if kind == "var" and first[2]:
            rest = tuple(self.arg(dot, a) for a in args[1:])
            self.at = (pos, first[3])
            return self.chain(self.var(first[1]), first[2], rest + ((final,) if has_final else ()), MISSING,
                              bool(rest) or has_final)
        if kind == "pipe" and first[2]:
            base = self.pipeline(dot, first[1])
            rest = tuple(self.arg(dot, a) for a in args[1:])
            self.at = (pos, source)
            return self.chain(base, first[2], rest + ((final,) if has_final else ()), MISSING,
                              bool(rest) or has_final)
        if has_final:
            raise _ExecError(f"can't give argument to non-function {source}")
        return self.arg(dot, first)

    def arg(self, dot: Any, arg: Any) -> Any:
        kind = arg[0]
        if kind == "lit":
            return arg[1]
        if kind == "field":
            return self.chain(dot, arg[1], (), MISSING, False)
        if kind == "dot":
            return dot
        if kind == "var":
            value = self.var(arg[1])
            return self.chain(value, arg[2], (), MISSING, False) if arg[2] else value
        if kind == "nil":
            return None
        if kind == "pipe":
            value = self.pipeline(dot, arg[1])
            return self.chain(value, arg[2], (), MISSING, False) if arg[2] else value
        # a function name as an argument: called with no arguments, as Go does
        try:
            return self.funcs[arg[1]]()
        except _ExecError:
            raise
        except (TypeError, ValueError, StopIteration, IndexError) as e:
            raise _ExecError(f"error calling {arg[1]}: {e}") from None

    def var(self, name: str) -> Any:
        for key, value in reversed(self.vars):
            if key == name:
                return value
        raise _ExecError(f"undefined variable: {name}")

    def chain(self, value: Any, names: tuple[str, ...], args: tuple[Any, ...], _unused: Any, has_args: bool) -> Any:
        last = len(names) - 1
        for i, name in enumerate(names):
            if isinstance(value, dict):
                try:
                    value = value[name]
                except KeyError:
                    value = MISSING
                if callable(value):
                    try:
                        value = value(*args) if i == last else value()
                    except _ExecError:
                        raise
                    except TypeError as e:
                        raise _ExecError(f"error calling {name}: {e}") from None
                    continue
                if i == last and has_args:
                    raise _ExecError(f"{name} is not a method but has arguments")
            elif value is MISSING:
                return MISSING
            elif value is None:
                raise _ExecError(f"nil pointer evaluating interface {{}}.{name}")
            else:
                raise _ExecError(f"can't evaluate field {name} in type {_go_type(value)}")
        return value


# ---------------------------------------------------------------- API

_cache: dict[tuple[str, bool], Template] = {}


def parse(text: str, header: bool = False) -> Template:
    """Parse once (TemplateError if the text is not a template); header: Docker's header functions."""
    key = (text, header)
    tmpl = _cache.get(key)
    if tmpl is None:
        funcs = HEADER_FUNCS if header else FUNCS
        try:
            nodes = _Parser(text, funcs).parse()
        except RecursionError:
            raise TemplateError("template: too deeply nested") from None
        tmpl = _cache[key] = Template(text, nodes, funcs)
    return tmpl


def render(text: str, data: Any) -> str:
    """The template applied to one value, as `docker inspect --format` does (no `table`, no \\t escapes)."""
    return parse(text).execute(data)


def is_table(text: str) -> bool:
    return text.startswith("table")


def docker_format(text: str) -> str:
    """What Docker's formatter makes of a --format for a listing: `table` dropped, blanks trimmed, the two
    characters \\t and \\n made a tab and a newline (so a shell's single quotes keep working)."""
    if is_table(text):
        text = text[5:]
    return text.strip(" ").replace("\\t", "\t").replace("\\n", "\n")


class _Headers(dict):  # type: ignore[type-arg]
    """The data a `table` header is rendered from: a field's header text, or the field name in capitals."""

    def __missing__(self, key: str) -> str:
        return key.upper()


def _header_value(text: str) -> Any:
    # .Label "k" (a method in Docker) gets its header too: a callable returning the header text
    def method(*_args: Any) -> str:
        return text
    return method


def table(text: str, rows: list[Any], headers: dict[str, str] | None = None) -> list[str]:
    """Docker's listing output for --format: one line (or more) per row; with the `table` prefix a header line
    first and the columns aligned as Go's tabwriter (minimum width 10, padding 3) aligns them."""
    tmpl = parse(docker_format(text))
    if not is_table(text):
        return [tmpl.execute(row) for row in rows]
    header_data = _Headers({k: _header_value(v) for k, v in (headers or {}).items()})
    try:
        head = parse(docker_format(text), header=True).execute(header_data)
    except TemplateError:
        head = ""  # Docker ignores a header it cannot render (e.g. a field of a field)
    body = [head]
    body.extend(tmpl.execute(row) for row in rows)
    return tabwrite("\n".join(body).split("\n"))


def tabwrite(lines: list[str], minwidth: int = 10, padding: int = 3) -> list[str]:
    """Go's text/tabwriter (padchar ' ', no flags): a tab ends a cell; consecutive lines that have a cell in a
    column form a block whose cells are padded to the widest (+ padding, at least minwidth). A line's text
    after its last tab is not a column and is not padded."""
    cells = [line.split("\t") for line in lines]
    widths: list[list[int]] = [[0] * (len(c) - 1) for c in cells]

    def fmt(line0: int, line1: int, column: int) -> None:
        this = line0
        while this < line1:
            if column >= len(cells[this]) - 1:
                this += 1
                continue
            start = this
            width = minwidth
            while this < line1 and column < len(cells[this]) - 1:
                w = len(cells[this][column]) + padding
                if w > width:
                    width = w
                this += 1
            for k in range(start, this):
                widths[k][column] = width
            fmt(start, this, column + 1)

    fmt(0, len(cells), 0)
    out = []
    for row, ws in zip(cells, widths):
        out.append("".join(c.ljust(w) for c, w in zip(row, ws)) + row[-1])
    return out
