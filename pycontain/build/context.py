"""The build context and the COPY/ADD file operations.

A context is a directory (or a tar on stdin, unpacked into a temp dir by the hardened layer unpacker).
Everything COPY/ADD reads is confined to it: source paths are cleaned lexically first (`../x` is `x`,
`/abs` is relative to the context), then resolved one component at a time with RESOLVE_IN_ROOT
semantics (an absolute link target starts again at the context root, `..` stops there), so no link can
lead a copy to a file outside. `.dockerignore` follows the reference pattern matcher: cleaned patterns,
filepath.Match syntax per segment plus `**`, `!` exceptions, the last matching pattern wins, and a
pattern that matches a parent directory matches everything below it.

The destination side writes into the step's root (an overlay the builder mounted): the destination
path is resolved inside that root the same way, and every write is made relative to a directory
descriptor opened component by component with O_NOFOLLOW, so a link in the image can never send a
file to the host.
"""

from __future__ import annotations

import errno
import os
import stat
import sys

from pycontain.build import Value
from pycontain.errors import ImageError, UsageError

# What a fully cached rebuild does not use is imported where it is used, and annotations only for the type
# checker. Measured on this VM (python -IS -X importtime, each alone, best of 5): urllib.request 37 ms (http.client,
# email, ssl), dataclasses 13 ms (inspect, ast), re 7.5 ms (enum, sre), tarfile 7.4 ms, tempfile 7.3 ms, shutil
# 6.5 ms (sharing some of that), hashlib 2.2 ms warm (see sha256). A context without .dockerignore, globs or
# --exclude never imports re.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    import urllib.request
    from collections.abc import Iterable
    from typing import IO, Any

MAX_LINKS = 40  # as the kernel: more links than this on one path is a loop (ELOOP)
MAX_ID_FILE = 16 << 20  # /etc/passwd or /etc/group larger than this is not a real one
MAX_URL_BYTES = 4 << 30  # ADD <url>: a download larger than this is refused
URL_TIMEOUT = 30.0
DOCKERFILE_NAMES = ("Dockerfile", "dockerfile")  # the CLI falls back to the lowercase name


class ContextError(UsageError):
    """A build context, a COPY/ADD source or destination, --chown or --chmod that cannot be used."""


def sha256(data: bytes = b"") -> Any:
    """A sha256 object from the builtin _sha256 module: `import _sha256` takes 0.03 ms where `import hashlib`
    takes 2.2 ms on this VM with libcrypto in the page cache and up to ~10 ms without (it loads OpenSSL), against
    a fully cached rebuild of ~20 ms. hashlib only when the interpreter was built without _sha256 (the digests
    are the same)."""
    try:
        import _sha256  # type: ignore[import-not-found,unused-ignore]  # C module, no stub
    except ImportError:  # pragma: no cover - CPython builds it unless configured not to
        import hashlib

        return hashlib.sha256(data)
    return _sha256.sha256(data)


# ---------------------------------------------------------------- patterns

def _class_regex(pattern: str, i: int) -> tuple[str, int]:
    """Translate the filepath.Match character class starting at pattern[i] == '[' ; returns (regex, next i).
    A class never matches the separator, as in Go."""
    import re

    j = i + 1
    negate = j < len(pattern) and pattern[j] == "^"
    if negate:
        j += 1
    items: list[str] = []
    first = True
    while True:
        if j >= len(pattern):
            raise ValueError("syntax error in pattern")
        ch = pattern[j]
        if ch == "]" and not first:
            j += 1
            break
        first = False
        if ch == "\\":
            j += 1
            if j >= len(pattern):
                raise ValueError("syntax error in pattern")
            ch = pattern[j]
        lo = ch
        j += 1
        if j + 1 < len(pattern) and pattern[j] == "-" and pattern[j + 1] != "]":
            hi = pattern[j + 1]
            if hi == "\\":
                j += 1
                if j + 1 >= len(pattern):
                    raise ValueError("syntax error in pattern")
                hi = pattern[j + 1]
            if hi < lo:
                raise ValueError("syntax error in pattern")
            items.append(f"{re.escape(lo)}-{re.escape(hi)}")
            j += 2
        else:
            items.append(re.escape(lo))
    body = "".join(items)
    return (f"[^/{body}]" if negate else f"(?!/)[{body}]"), j


def segment_regex(pattern: str) -> str:
    """filepath.Match syntax (`*`, `?`, `[...]`, `\\` escapes) for one path segment, as a regex body."""
    import re

    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            regex, i = _class_regex(pattern, i)
            out.append(regex)
            continue
        elif ch == "\\":
            i += 1
            if i >= len(pattern):
                raise ValueError("syntax error in pattern")
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def ignore_regex(pattern: str) -> re.Pattern[str]:
    """A cleaned .dockerignore pattern as the reference matcher compiles it: `**` spans any number of
    segments (`**/` may match none, a trailing `**` matches everything below), the rest per segment."""
    import re

    out = ["^"]
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            i += 2
            if i < len(pattern) and pattern[i] == "/":
                i += 1
            out.append(".*" if i >= len(pattern) else "(?:.*/)?")
            continue
        # the run up to the next "**" (or the end) is ordinary filepath.Match syntax
        j = pattern.find("**", i)
        j = len(pattern) if j < 0 else j
        out.append(segment_regex(pattern[i:j]))
        i = j
    out.append("$")
    return re.compile("".join(out), re.DOTALL)


def clean_path(path: str) -> str:
    """Go's path.Clean of "/" + path, without the leading "/": `..` can never climb above the root."""
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/".join(parts)


def _clean_pattern(pattern: str) -> str:
    """filepath.Clean of a relative pattern (`..` at its start is kept), leading "/" dropped."""
    absolute = pattern.startswith("/")
    parts: list[str] = []
    for part in pattern.split("/"):
        if part in ("", "."):
            continue
        if part == ".." and parts and parts[-1] != "..":
            parts.pop()
            continue
        if part == ".." and absolute:
            continue
        parts.append(part)
    return "/".join(parts) or "."


class _Rule:
    __slots__ = ("regex", "exclusion", "text")

    def __init__(self, regex: re.Pattern[str], exclusion: bool, text: str) -> None:
        self.regex = regex
        self.exclusion = exclusion
        self.text = text


class Matcher:
    """A list of .dockerignore (or COPY --exclude) patterns, evaluated as the reference matcher does."""

    def __init__(self, patterns: Iterable[str], source: str = ".dockerignore") -> None:
        self.rules: list[_Rule] = []
        for raw in patterns:
            pattern = raw.strip()
            if not pattern:
                continue
            exclusion = pattern.startswith("!")
            if exclusion:
                pattern = pattern[1:].strip()
                if not pattern:
                    raise ContextError(f'{source}: illegal exclusion pattern: "!"')
            cleaned = _clean_pattern(pattern)
            import re  # only with a pattern: no .dockerignore and no --exclude, no `re`

            try:
                regex = ignore_regex(cleaned)
            except (ValueError, re.error):
                raise ContextError(f"{source}: syntax error in pattern {raw.strip()!r}") from None
            self.rules.append(_Rule(regex, exclusion, cleaned))
        self.has_exclusions = any(r.exclusion for r in self.rules)

    @classmethod
    def from_text(cls, text: str, source: str = ".dockerignore") -> Matcher:
        lines = []
        for n, line in enumerate(text.splitlines()):
            if n == 0:
                line = line.lstrip("\ufeff")
            if line.startswith("#"):  # a comment only at the start of the line, as the reference reader
                continue
            lines.append(line)
        return cls(lines, source)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def matches(self, rel: str) -> bool:
        """True when `rel` (relative, "/"-separated) is excluded: the last pattern matching it or one of
        its parent directories decides."""
        rel = clean_path(rel)
        if not rel or not self.rules:
            return False
        parents = rel.split("/")[:-1]
        prefixes = ["/".join(parents[: i + 1]) for i in range(len(parents))]
        matched = False
        for rule in self.rules:
            if rule.exclusion != matched:
                continue  # only a pattern that could change the answer is evaluated
            hit = bool(rule.regex.match(rel)) or any(rule.regex.match(p) for p in prefixes)
            if hit:
                matched = not rule.exclusion
        return matched


# ---------------------------------------------------------------- resolution inside a root

def resolve_in_root(root: str, rel: str, follow_last: bool = True, allow_missing: bool = False) -> str:
    """`rel` resolved inside `root` as openat2(RESOLVE_IN_ROOT) would: links followed with `root` as
    "/", `..` stopping at it. Returns a relative path with no link in it ("" is the root itself).
    With allow_missing, a missing component and what follows it are kept as names (to be created);
    otherwise a missing one raises FileNotFoundError. A loop raises ELOOP."""
    todo = [p for p in rel.split("/") if p]
    done: list[str] = []
    links = 0
    missing = False
    while todo:
        part = todo.pop(0)
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        if missing:
            done.append(part)
            continue
        path = os.path.join(root, *done, part)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            if not allow_missing:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), "/" + rel) from None
            missing = True
            done.append(part)
            continue
        if stat.S_ISLNK(st.st_mode) and (todo or follow_last):
            links += 1
            if links > MAX_LINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), "/" + rel)
            target = os.readlink(path)
            if target.startswith("/"):
                done = []
            todo[:0] = [p for p in target.split("/") if p]
            continue
        if todo and not stat.S_ISDIR(st.st_mode) and any(p not in (".", "..") for p in todo):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), "/" + rel)
        done.append(part)
    return "/".join(done)


# ---------------------------------------------------------------- sources

KIND_DIR, KIND_FILE, KIND_LINK, KIND_FIFO = "d", "f", "l", "p"


class Entry(Value):
    """One thing a copy writes: `rel` relative to the copy's target ("" for a file source itself). A value:
    compared and hashed by its fields."""

    __slots__ = ("rel", "path", "kind", "st")

    def __init__(self, rel: str, path: str, kind: str, st: os.stat_result) -> None:
        self.rel = rel
        self.path = path  # absolute path on this machine, no link in it but possibly the entry itself
        self.kind = kind
        self.st = st


class Source(Value):
    """One COPY/ADD source after globbing: `name` as matched (its base name names a copied file),
    `path` the same thing resolved inside the tree (no link in it). A value: compared and hashed by name, path
    and is_dir (not by its tree)."""

    __slots__ = ("tree", "name", "path", "is_dir")
    _fields = ("name", "path", "is_dir")

    def __init__(self, tree: Tree, name: str, path: str, is_dir: bool) -> None:
        self.tree = tree
        self.name = name
        self.path = path
        self.is_dir = is_dir

    @property
    def abspath(self) -> str:
        return os.path.join(self.tree.root, self.path) if self.path else self.tree.root


def _kind(mode: int) -> str | None:
    if stat.S_ISDIR(mode):
        return KIND_DIR
    if stat.S_ISREG(mode):
        return KIND_FILE
    if stat.S_ISLNK(mode):
        return KIND_LINK
    if stat.S_ISFIFO(mode):
        return KIND_FIFO
    return None  # devices and sockets are never copied: a container gets its own /dev


def _has_meta(pattern: str) -> bool:
    return any(c in pattern for c in "*?[\\")


class Tree:
    """A directory COPY/ADD reads from. RootSource: another stage's or image's root filesystem (owners
    are kept, as BuildKit keeps them for COPY --from). Context: the build context (.dockerignore, owners
    reset to 0:0)."""

    keep_owners = True
    what = "root filesystem"

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.matcher = Matcher(())

    def ignored(self, rel: str) -> bool:
        return self.matcher.matches(rel)

    def _not_found(self, pattern: str) -> ContextError:
        return ContextError(f"COPY failed: file not found in build context or excluded by .dockerignore: "
                            f"stat {pattern}: file does not exist")

    def sources(self, patterns: list[str]) -> list[Source]:
        if not patterns:
            raise ContextError("COPY failed: no source files were specified")
        out: list[Source] = []
        for pattern in patterns:
            name = clean_path(pattern)
            if _has_meta(name):
                names = [n for n in self._glob(name) if not self.ignored(n)]
                if not names:
                    raise ContextError("COPY failed: no source files were specified")
            else:
                names = [name]
            out.extend(self._source(n, pattern) for n in names)
        return out

    def _glob(self, name: str) -> list[str]:
        """filepath.Match per segment; every directory listed is resolved inside the root."""
        import re

        candidates = [""]
        for seg in name.split("/"):
            if not _has_meta(seg):
                candidates = [f"{c}/{seg}" if c else seg for c in candidates]
                continue
            try:
                regex = re.compile(segment_regex(seg) + r"\Z", re.DOTALL)
            except (ValueError, re.error):
                raise ContextError(f"COPY failed: syntax error in pattern {name!r}") from None
            found: list[str] = []
            for c in candidates:
                try:
                    real = resolve_in_root(self.root, c)
                    entries = sorted(os.listdir(os.path.join(self.root, real) if real else self.root))
                except OSError:
                    continue
                found.extend(f"{c}/{e}" if c else e for e in entries if regex.match(e))
            candidates = found
        out = []
        for c in candidates:  # literal segments after a pattern: only what exists matched
            try:
                resolve_in_root(self.root, c, follow_last=False)
            except OSError:
                continue
            out.append(c)
        return out

    def _source(self, name: str, pattern: str) -> Source:
        try:
            real = resolve_in_root(self.root, name)  # the named source itself is followed, as BuildKit does
            st = os.lstat(os.path.join(self.root, real) if real else self.root)
        except FileNotFoundError:
            raise self._not_found(pattern) from None
        except OSError as e:
            if e.errno == errno.ENOTDIR:
                raise self._not_found(pattern) from None
            raise ContextError(f"COPY failed: {pattern}: {os.strerror(e.errno or 0).lower()}") from None
        kind = _kind(st.st_mode)
        if kind not in (KIND_DIR, KIND_FILE):
            raise ContextError(f"COPY failed: {pattern} is a device, socket or fifo; only files, directories "
                               "and links can be copied")
        src = Source(self, name, real, kind == KIND_DIR)
        if self.ignored(name) or self.ignored(real):
            if not (kind == KIND_DIR and self.matcher.has_exclusions and self.entries(src)):
                raise self._not_found(pattern)
        return src

    def entries(self, src: Source, excludes: Matcher | None = None) -> list[Entry]:
        """What copying `src` writes, parents before children, in name order. Ignored entries are left
        out; an ignored directory is kept only as the parent of something an exception re-includes."""
        if not src.is_dir:
            st = os.lstat(src.abspath)
            if excludes and excludes.matches(os.path.basename(src.name)):
                return []
            return [Entry("", src.abspath, KIND_FILE, st)]
        out: list[Entry] = []
        self._walk(src.abspath, src.path, "", excludes, out)
        return out

    def _walk(self, abspath: str, ctx_rel: str, rel: str, excludes: Matcher | None, out: list[Entry]) -> None:
        try:
            with os.scandir(abspath) as it:
                names = sorted(e.name for e in it)
        except OSError as e:
            raise ContextError(f"COPY failed: cannot read {ctx_rel or '.'}: {e.strerror}") from None
        for n in names:
            path = os.path.join(abspath, n)
            st = os.lstat(path)
            kind = _kind(st.st_mode)
            if kind is None:
                continue
            c_rel = f"{ctx_rel}/{n}" if ctx_rel else n
            e_rel = f"{rel}/{n}" if rel else n
            skip = self.ignored(c_rel) or bool(excludes and excludes.matches(e_rel))
            if kind == KIND_DIR:
                if skip and not (self.matcher.has_exclusions or (excludes and excludes.has_exclusions)):
                    continue
                mark = len(out)
                out.append(Entry(e_rel, path, kind, st))
                self._walk(path, c_rel, e_rel, excludes, out)
                if skip and len(out) == mark + 1:
                    out.pop()  # nothing inside was re-included
            elif not skip:
                out.append(Entry(e_rel, path, kind, st))

    def checksum(self, sources: list[Source], chown: tuple[int, int] | None = None, chmod: int | None = None,
                 excludes: Iterable[str] = ()) -> str:
        return checksum(sources, chown=chown, chmod=chmod, excludes=excludes)


class RootSource(Tree):
    """COPY --from=stage|image: a root filesystem directory; links inside it resolve within it."""


class Context(Tree):
    """The build context: a directory, with its .dockerignore and the Dockerfile's text."""

    keep_owners = False
    what = "build context"

    def __init__(self, root: str, dockerfile_text: str, ignore_text: str | None, tmpdir: str | None = None) -> None:
        super().__init__(root)
        self.dockerfile_text = dockerfile_text
        self._tmpdir = tmpdir
        if ignore_text is not None:
            self.matcher = Matcher.from_text(ignore_text)

    def close(self) -> None:
        if self._tmpdir is not None:
            import shutil

            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def from_dir(cls, path: str, dockerfile: str | None) -> Context:
        if not os.path.isdir(path):
            raise ContextError(f'unable to prepare context: path "{path}" not found')
        root = os.path.abspath(path)
        df_path: str | None = None
        if dockerfile == "-":
            text = _decode(sys.stdin.buffer.read(), "the Dockerfile on stdin")
        else:
            df_path = dockerfile or _default_dockerfile(root)
            text = _decode(_read_file(df_path, "Dockerfile"), df_path)
        return cls(root, text, _read_ignore(root, df_path))

    @classmethod
    def from_tar(cls, stream: IO[bytes], dockerfile: str | None, tmpdir_parent: str) -> Context:
        if dockerfile == "-":
            raise ContextError("cannot use stdin for both the build context and the Dockerfile")
        import shutil
        import tempfile

        head = _read_head(stream, 1024)
        tmpdir = tempfile.mkdtemp(prefix="context-", dir=tmpdir_parent)
        try:
            if not _is_tar_head(head):
                # `build - < Dockerfile`: the stream is the Dockerfile and the context is empty
                text = _decode(head + stream.read(), "the Dockerfile on stdin")
                return cls(tmpdir, text, None, tmpdir)
            from pycontain.images.unpack import unpack

            try:
                unpack(_Prefixed(head, stream), tmpdir)
            except ImageError as e:
                raise ContextError(f"invalid build context tar on stdin: {e}") from None
            name = clean_path(dockerfile or "Dockerfile")
            try:
                real = resolve_in_root(tmpdir, name)
            except OSError:
                raise ContextError(f"the build context has no Dockerfile at {name}") from None
            text = _decode(_read_file(os.path.join(tmpdir, real), "Dockerfile"), name)
            ignore_path = None if dockerfile is None else os.path.join(tmpdir, real)
            return cls(tmpdir, text, _read_ignore(tmpdir, ignore_path), tmpdir)
        except BaseException:
            shutil.rmtree(tmpdir, ignore_errors=True)
            raise


class _Prefixed:
    """The bytes already read to sniff the stream, then the rest of it."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self.head, self.rest = head, rest

    def read(self, n: int = -1, /) -> bytes:
        if self.head:
            if n < 0:
                chunk, self.head = self.head + self.rest.read(), b""
                return chunk
            chunk, self.head = self.head[:n], self.head[n:]
            return chunk
        return self.rest.read(n)


def _read_head(stream: IO[bytes], size: int) -> bytes:
    head = b""
    while len(head) < size:
        chunk = stream.read(size - len(head))
        if not chunk:
            break
        head += chunk
    return head


COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")


def _is_tar_head(head: bytes) -> bool:
    """As the reference CLI decides: any compressed stream is an archive, else a valid first tar header."""
    if head.startswith(COMPRESSED_MAGIC):
        return True
    if len(head) < 512:
        return False
    import tarfile

    try:
        tarfile.TarInfo.frombuf(head[:512], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _default_dockerfile(root: str) -> str:
    for name in DOCKERFILE_NAMES:
        path = os.path.join(root, name)
        if os.path.exists(path):
            return path
    return os.path.join(root, DOCKERFILE_NAMES[0])


def _read_file(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ContextError(f"cannot read {what} {path}: {e.strerror}") from None


def _decode(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise ContextError(f"{what} is not UTF-8 text") from None


def _read_ignore(root: str, dockerfile_path: str | None) -> str | None:
    """<Dockerfile>.dockerignore next to the Dockerfile wins over the context's .dockerignore (BuildKit)."""
    candidates = [dockerfile_path + ".dockerignore"] if dockerfile_path else []
    candidates.append(os.path.join(root, ".dockerignore"))
    for path in candidates:
        try:
            with open(path, "rb") as f:
                return _decode(f.read(), path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as e:
            raise ContextError(f"cannot read {path}: {e.strerror}") from None
    return None


# ---------------------------------------------------------------- checksum

_digests: dict[tuple[str, int, int, int, int, int], str] = {}


def file_digest(path: str, st: os.stat_result) -> str:
    """sha256 of a file's content, remembered per (path, dev, ino, size, mtime, ctime) in this process."""
    key = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    digest = _digests.get(key)
    if digest is None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            raise ContextError(f"COPY failed: cannot read {path}: {e.strerror}") from None
        h = sha256()
        with os.fdopen(fd, "rb") as f:
            while chunk := f.read(1 << 18):
                h.update(chunk)
        digest = str(h.hexdigest())
        _digests[key] = digest
    return digest


def _owner(tree: Tree, st: os.stat_result, chown: tuple[int, int] | None) -> tuple[int, int]:
    if chown is not None:
        return chown
    return (st.st_uid, st.st_gid) if tree.keep_owners else (0, 0)


def _mode(kind: str, st: os.stat_result, chmod: int | None) -> int:
    if chmod is not None and kind != KIND_LINK:
        return chmod
    return stat.S_IMODE(st.st_mode)


def checksum(sources: list[Source], *, chown: tuple[int, int] | None = None, chmod: int | None = None,
             excludes: Iterable[str] = ()) -> str:
    """The cache key of a COPY/ADD's sources: names, types, modes and owners as they will be written,
    contents and link targets. Not mtimes: touching a file does not invalidate the cache."""
    ex = Matcher(excludes, "--exclude")
    h = sha256()
    for src in sources:
        h.update(f"S\0{src.name}\0{int(src.is_dir)}\n".encode("utf-8", "surrogateescape"))
        for e in src.tree.entries(src, ex or None):
            uid, gid = _owner(src.tree, e.st, chown)
            mode = _mode(e.kind, e.st, chmod)
            if e.kind == KIND_FILE:
                extra = file_digest(e.path, e.st)
            elif e.kind == KIND_LINK:
                extra = os.readlink(e.path)
            else:
                extra = ""
            h.update(f"{e.rel}\0{e.kind}\0{mode:o}\0{uid}\0{gid}\0{extra}\n".encode("utf-8", "surrogateescape"))
    return "sha256:" + str(h.hexdigest())


# ---------------------------------------------------------------- copy

def _dest_is_dir(dest: str) -> bool:
    return dest.endswith("/") or dest in (".", "..") or dest.endswith(("/.", "/.."))


class _Dirs:
    """Directory descriptors inside the step's root, opened one component at a time with O_NOFOLLOW:
    no link, whatever it says, is ever followed on the way."""

    def __init__(self, root: str, owner: tuple[int, int]) -> None:
        self.root = root
        self.owner = owner
        self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.fds: list[int] = [self.root_fd]

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    def open(self, rel: str, create: bool = True) -> int:
        """The directory `rel` (a path with no link in it); missing ones are created 0755 with the
        --chown owner (or root), as BuildKit creates them."""
        fd = self.root_fd
        for part in [p for p in rel.split("/") if p]:
            fd = self._child(fd, part, create, rel)
        return fd

    def _child(self, parent: int, name: str, create: bool, rel: str) -> int:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(name, 0o755, dir_fd=parent)
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            os.fchown(fd, *self.owner)
            os.fchmod(fd, 0o755)
        except OSError as e:
            if e.errno in (errno.ENOTDIR, errno.ELOOP):
                raise ContextError(f"COPY failed: cannot copy to /{rel}: /{name} on the way is not a "
                                   "directory") from None
            raise
        self.fds.append(fd)
        return fd


def copy_into(root: str, sources: list[Source], dest: str, workdir: str, *, chown: tuple[int, int] | None,
              chmod: int | None, unpack_archives: bool, excludes: Iterable[str] = ()) -> None:
    """COPY/ADD `sources` to `dest` (relative to `workdir` unless absolute) inside the root filesystem
    `root`, with Docker's rules: a directory source copies its contents, a destination ending in "/" or
    an existing directory receives files by their base name, several sources need such a destination."""
    dir_wanted = _dest_is_dir(dest)
    if len(sources) > 1 and not dir_wanted:
        raise ContextError("When using COPY with more than one source file, the destination must be a "
                           "directory and end with a /")
    full = clean_path(dest if dest.startswith("/") else f"{workdir or '/'}/{dest}")
    ex = Matcher(excludes, "--exclude")
    dirs = _Dirs(root, chown or (0, 0))
    try:
        for src in sources:
            try:
                _copy_one(dirs, src, full, dir_wanted, chown, chmod, unpack_archives, ex)
            except OSError as e:
                raise ContextError(f"COPY failed: {src.name or '.'} to /{full}: {e.strerror or e}") from None
    finally:
        dirs.close()


def _copy_one(dirs: _Dirs, src: Source, full: str, dir_wanted: bool, chown: tuple[int, int] | None,
              chmod: int | None, unpack_archives: bool, ex: Matcher) -> None:
    target = resolve_in_root(dirs.root, full, follow_last=True, allow_missing=True)
    target_abs = os.path.join(dirs.root, target) if target else dirs.root
    existing_dir = os.path.isdir(target_abs) and not os.path.islink(target_abs)
    if src.is_dir:
        fd = dirs.open(target)
        _write(fd, src, src.tree.entries(src, ex or None), chown, chmod)
        return
    if unpack_archives and _is_archive(src.abspath):
        dirs.open(target)
        from pycontain.images.unpack import unpack

        with open(src.abspath, "rb") as f:
            try:
                unpack(f, target_abs)
            except ImageError as e:
                raise ContextError(f"ADD failed: cannot unpack {src.name}: {e}") from None
        return
    if dir_wanted or existing_dir:
        parent, name = target, os.path.basename(src.name)
    else:
        parent, name = os.path.dirname(target), os.path.basename(target)
    if not name:
        raise ContextError(f"COPY failed: cannot copy {src.name} to /: the destination must be a directory")
    fd = dirs.open(parent)
    entries = [Entry(name, e.path, e.kind, e.st) for e in src.tree.entries(src, ex or None)]
    _write(fd, src, entries, chown, chmod)


def _write(base_fd: int, src: Source, entries: list[Entry], chown: tuple[int, int] | None,
           chmod: int | None) -> None:
    dir_fds: dict[str, int] = {"": base_fd}
    dir_times: list[tuple[int, Entry]] = []
    try:
        for e in entries:
            parent_rel, name = os.path.split(e.rel)
            parent = dir_fds[parent_rel]
            uid, gid = _owner(src.tree, e.st, chown)
            mode = _mode(e.kind, e.st, chmod)
            if e.kind == KIND_DIR:
                fd = _make_dir(parent, name, e.rel)
                dir_fds[e.rel] = fd
                os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)  # after chown, which clears set-gid
                dir_times.append((fd, e))
                continue
            _clear(parent, name, e.rel)
            if e.kind == KIND_FILE:
                _copy_file(e.path, parent, name, uid, gid, mode, e.st)
            elif e.kind == KIND_LINK:
                os.symlink(os.readlink(e.path), name, dir_fd=parent)
                os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
                os.utime(name, ns=(e.st.st_atime_ns, e.st.st_mtime_ns), dir_fd=parent, follow_symlinks=False)
            elif e.kind == KIND_FIFO:
                os.mkfifo(name, 0o600, dir_fd=parent)
                os.chown(name, uid, gid, dir_fd=parent, follow_symlinks=False)
                _chmod_at(parent, name, mode)
        for fd, e in reversed(dir_times):  # last: writing into a directory changes its mtime
            os.utime(fd, ns=(e.st.st_atime_ns, e.st.st_mtime_ns))
    finally:
        for rel, fd in dir_fds.items():
            if rel:
                os.close(fd)


def _chmod_at(parent: int, name: str, mode: int) -> None:
    """chmod of a fifo without following a link: through an O_PATH descriptor of exactly that inode."""
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    try:
        if not stat.S_ISLNK(os.fstat(fd).st_mode):
            os.chmod(f"/proc/self/fd/{fd}", mode)
    finally:
        os.close(fd)


def _make_dir(parent: int, name: str, rel: str) -> int:
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=parent)  # a file or link where the source has a directory: replaced
            os.mkdir(name, 0o755, dir_fd=parent)
    except FileNotFoundError:
        os.mkdir(name, 0o755, dir_fd=parent)
    return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)


def _clear(parent: int, name: str, rel: str) -> None:
    """Make room for a non-directory: an existing file or link is replaced (never followed)."""
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise ContextError(f"COPY failed: cannot replace the directory {rel} with a file")
    os.unlink(name, dir_fd=parent)


def _copy_file(path: str, parent: int, name: str, uid: int, gid: int, mode: int, st: os.stat_result) -> None:
    src = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        dst = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                      dir_fd=parent)
        try:
            _copy_data(src, dst)
            os.fchown(dst, uid, gid)
            os.fchmod(dst, mode)  # after chown, which clears set-uid/set-gid
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _copy_data(src: int, dst: int) -> None:
    """copy_file_range (reflinks, no copy through user space), else sendfile, else read/write."""
    try:
        while os.copy_file_range(src, dst, 1 << 30):
            pass
        return
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    offset = os.lseek(dst, 0, os.SEEK_CUR)
    os.lseek(src, offset, os.SEEK_SET)
    while chunk := os.read(src, 1 << 20):
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst, view):]


def _is_archive(path: str) -> bool:
    """ADD unpacks a local file only if it (decompressed) is a tar with at least one entry, as Docker."""
    import tarfile

    try:
        with tarfile.open(path, "r:*") as tf:
            return tf.next() is not None
    except (tarfile.TarError, OSError, EOFError):
        return False


# ---------------------------------------------------------------- --chown, --chmod, URLs

def _read_in_root(root: str, rel: str) -> str | None:
    """A small text file of the root filesystem, resolved inside it (a link to the host's file reads the
    root's own), or None when it does not exist."""
    try:
        real = resolve_in_root(root, rel)
        fd = os.open(os.path.join(root, real), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return f.read(MAX_ID_FILE).decode("utf-8", "replace")


def _lookup(root: str, rel: str, name: str) -> list[str] | None:
    text = _read_in_root(root, rel)
    for line in (text or "").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name:
            return fields
    return None


def _numeric_id(text: str) -> int | None:
    if text.isdigit() and text.isascii():
        value = int(text)
        if value >= 0xFFFFFFFF:
            raise ContextError(f"--chown: id {text} is out of range")
        return value
    return None


def resolve_owner(root: str, spec: str) -> tuple[int, int]:
    """--chown user[:group]: names from the root filesystem's own /etc/passwd and /etc/group."""
    user, sep, group = spec.partition(":")
    if not user or (sep and not group):
        raise ContextError(f"--chown={spec}: use user[:group] (names or numeric ids)")
    uid = _numeric_id(user)
    primary: int | None = None
    if uid is None:
        fields = _lookup(root, "etc/passwd", user)
        if fields is None or len(fields) < 4:
            raise ContextError(f"--chown={spec}: unable to find user {user}: no matching entries in passwd file")
        try:
            uid, primary = int(fields[2]), int(fields[3])
        except ValueError:
            raise ContextError(f"--chown={spec}: the passwd entry of {user} is malformed") from None
    if not sep:
        return uid, (uid if primary is None else primary)
    gid = _numeric_id(group)
    if gid is None:
        gfields = _lookup(root, "etc/group", group)
        if gfields is None:
            raise ContextError(f"--chown={spec}: unable to find group {group}: no matching entries in group file")
        try:
            gid = int(gfields[2])
        except ValueError:
            raise ContextError(f"--chown={spec}: the group entry of {group} is malformed") from None
    return uid, gid


def parse_chmod(spec: str) -> int:
    # re.fullmatch(r"[0-7]{1,4}", spec), without importing re for it
    if not (1 <= len(spec) <= 4 and all(ch in "01234567" for ch in spec)):
        raise ContextError(f"invalid --chmod={spec}: it must be an octal mode between 0 and 7777")
    return int(spec, 8)


def _http_only_redirects() -> urllib.request.HTTPRedirectHandler:
    """A redirect handler that follows only http(s) redirects (the class is made here: urllib.request is
    imported only by ADD <url>)."""
    import urllib.error
    import urllib.parse
    import urllib.request

    class HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                             headers: object, newurl: str) -> urllib.request.Request | None:
            if urllib.parse.urlsplit(newurl).scheme not in ("http", "https"):
                raise urllib.error.URLError(f"redirect to a non-HTTP URL {newurl}")
            return super().redirect_request(req, fp, code, msg, headers, newurl)  # type: ignore[arg-type]

    return HttpOnlyRedirects()


def url_filename(url: str) -> str:
    """The name ADD gives a downloaded file: the URL path's last segment."""
    import urllib.parse

    name = os.path.basename(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
    if not name or name in (".", ".."):
        raise ContextError(f"ADD failed: cannot determine a file name from the URL {url}")
    return name


def fetch_url(url: str, dest_dir: str, max_bytes: int = MAX_URL_BYTES) -> str:
    """ADD http(s)://...: download into a new temp file in dest_dir (mode 0600, as Docker writes it)."""
    import tempfile
    import urllib.error
    import urllib.parse
    import urllib.request

    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ContextError(f"ADD failed: cannot fetch URL {url}: only http and https URLs are supported")
    # Only HTTP handlers: no file:// or ftp://, no proxy taken from the environment.
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.HTTPHandler(), urllib.request.HTTPSHandler(), _http_only_redirects(),
                    urllib.request.HTTPDefaultErrorHandler(), urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    fd, path = tempfile.mkstemp(prefix="add-", dir=dest_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            with opener.open(url, timeout=URL_TIMEOUT) as resp:
                total = 0
                while chunk := resp.read(1 << 20):
                    total += len(chunk)
                    if total > max_bytes:
                        raise ContextError(f"ADD failed: cannot fetch URL {url}: larger than {max_bytes >> 20} MiB")
                    out.write(chunk)
        return path
    except ContextError:
        os.unlink(path)
        raise
    except urllib.error.HTTPError as e:
        os.unlink(path)
        raise ContextError(f"ADD failed: cannot fetch URL {url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        os.unlink(path)
        reason = e.reason.strerror if isinstance(e.reason, OSError) and e.reason.strerror else e.reason
        raise ContextError(f"ADD failed: cannot fetch URL {url}: {reason}") from None
    except (OSError, ValueError) as e:
        os.unlink(path)
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e) or type(e).__name__
        raise ContextError(f"ADD failed: cannot fetch URL {url}: {why}") from None


def url_source(path: str, url: str) -> Source:
    """A downloaded file as a COPY source named by the URL's file name (the builder copies it as a
    plain file: ADD never unpacks what it downloaded)."""
    tree = RootSource(os.path.dirname(path))
    return Source(tree, url_filename(url), os.path.basename(path), False)
