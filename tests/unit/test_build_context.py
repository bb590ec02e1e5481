"""The build context without the kernel's help: .dockerignore matching, source globs, confinement,
checksums, --chmod and --chown parsing (files in tmp dirs, no root needed)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pycontain.build import context as cx
from pycontain.build.context import Context, ContextError, Matcher, RootSource


def ign(patterns: str) -> Matcher:
    return Matcher.from_text(patterns)


# ---------------------------------------------------------------- .dockerignore

@pytest.mark.parametrize("patterns,path,expected", [
    # the reference documentation's examples
    ("*/temp*", "somedir/temporary.txt", True),
    ("*/temp*", "somedir/temp", True),
    ("*/temp*", "temp", False),
    ("*/temp*", "a/b/temp", False),
    ("*/*/temp*", "somedir/subdir/temporary.txt", True),
    ("*/*/temp*", "somedir/temporary.txt", False),
    ("temp?", "tempa", True),
    ("temp?", "tempab", False),
    ("temp?", "temp", False),
    ("**/*.go", "a.go", True),
    ("**/*.go", "x/y/z/a.go", True),
    ("**/*.go", "x/a.gox", False),
    ("*.md\n!README.md", "README.md", False),
    ("*.md\n!README.md", "CHANGES.md", True),
    ("*.md\n!README*.md\nREADME-secret.md", "README-secret.md", True),
    ("*.md\n!README*.md\nREADME-secret.md", "README-public.md", False),
    ("*.md\nREADME-secret.md\n!README*.md", "README-secret.md", False),  # the last match wins
    # comments, blank lines, whitespace
    ("# comment\n\nfoo", "foo", True),
    ("#foo", "foo", False),
    (" foo  ", "foo", True),
    ("\ufefffoo", "foo", True),  # a BOM on the first line
    # cleaning: leading "/", trailing "/", "./", ".."
    ("/foo", "foo", True),
    ("foo/", "foo", True),
    ("foo/", "foo/bar", True),  # a directory excluded excludes its contents
    ("./foo", "foo", True),
    ("foo/../bar", "bar", True),
    ("foo//bar", "foo/bar", True),
    ("foo", "bar/foo", False),  # patterns are anchored at the context root
    (".", "foo", False),
    # ** forms
    ("**", "anything/at/all", True),
    ("foo/**", "foo/a/b", True),
    ("foo/**", "foo", False),
    ("foo/**/bar", "foo/bar", True),
    ("foo/**/bar", "foo/x/y/bar", True),
    ("foo/**/bar", "foo/x/bary", False),
    ("**/node_modules", "a/node_modules/x/y.js", True),
    # character classes and escapes (filepath.Match)
    ("[abc].txt", "b.txt", True),
    ("[abc].txt", "d.txt", False),
    ("[^abc].txt", "d.txt", True),
    ("[^abc].txt", "a.txt", False),
    ("[a-c]x", "bx", True),
    ("f\\*o", "f*o", True),
    ("f\\*o", "fxo", False),
    ("*", "a/b", True),  # matches the parent "a"
    ("a?c", "a/c", False),  # ? never matches the separator
    ("a.c", "abc", False),  # regex metacharacters are literal
    ("a+(b)", "a+(b)", True),
    # exceptions inside an excluded directory
    ("dir\n!dir/keep", "dir/keep", False),
    ("dir\n!dir/keep", "dir/other", True),
    ("dir\n!dir/keep", "dir/keep/inner", False),
    ("!foo", "foo", False),
])
def test_ignore_patterns(patterns: str, path: str, expected: bool) -> None:
    assert ign(patterns).matches(path) is expected


def test_ignore_never_excludes_the_root() -> None:
    assert not ign("**").matches("")
    assert not ign("*").matches(".")


@pytest.mark.parametrize("bad", ["[", "a[b", "!", "x\\"])
def test_ignore_bad_patterns_one_line_error(bad: str) -> None:
    with pytest.raises(ContextError) as e:
        ign(bad)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- a context on disk

def make(tmp: Path, files: dict[str, str | bytes | None], links: dict[str, str] | None = None) -> Path:
    """files: path -> content (None: a directory); links: path -> target."""
    for rel, content in files.items():
        p = tmp / rel
        if content is None:
            p.mkdir(parents=True, exist_ok=True)
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode() if isinstance(content, str) else content)
    for rel, target in (links or {}).items():
        p = tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, p)
    return tmp


def ctx_of(root: Path, ignore: str | None = None) -> Context:
    if ignore is not None:
        (root / ".dockerignore").write_text(ignore)
    if not (root / "Dockerfile").exists():
        (root / "Dockerfile").write_text("FROM scratch\n")
    return Context.from_dir(str(root), None)


def names(sources: list[cx.Source]) -> list[str]:
    return [s.name for s in sources]


def rels(ctx: cx.Tree, src: cx.Source) -> list[str]:
    return [e.rel for e in ctx.entries(src)]


def test_from_dir_reads_dockerfile_and_ignore(tmp_path: Path) -> None:
    make(tmp_path, {"Dockerfile": "\ufeffFROM scratch\n", ".dockerignore": "x\n"})
    ctx = Context.from_dir(str(tmp_path), None)
    assert ctx.dockerfile_text == "FROM scratch\n"
    assert ctx.ignored("x") and not ctx.ignored("y")


def test_from_dir_dockerfile_outside_context_and_its_own_ignore_file(tmp_path: Path) -> None:
    make(tmp_path, {"ctx/a": "a", "ctx/.dockerignore": "a\n", "other/Dev.df": "FROM x\n",
                    "other/Dev.df.dockerignore": "b\n"})
    ctx = Context.from_dir(str(tmp_path / "ctx"), str(tmp_path / "other/Dev.df"))
    assert ctx.dockerfile_text == "FROM x\n"
    assert ctx.ignored("b") and not ctx.ignored("a")  # <Dockerfile>.dockerignore wins


def test_from_dir_lowercase_dockerfile_and_errors(tmp_path: Path) -> None:
    make(tmp_path, {"c/dockerfile": "FROM y\n"})
    assert Context.from_dir(str(tmp_path / "c"), None).dockerfile_text == "FROM y\n"
    with pytest.raises(ContextError, match="not found"):
        Context.from_dir(str(tmp_path / "nope"), None)
    with pytest.raises(ContextError, match="cannot read Dockerfile"):
        Context.from_dir(str(tmp_path / "c"), str(tmp_path / "missing"))


def test_from_tar_bare_dockerfile_on_stdin_gives_empty_context(tmp_path: Path) -> None:
    with Context.from_tar(io.BytesIO(b"FROM scratch\nCOPY a /\n"), None, str(tmp_path)) as ctx:
        assert ctx.dockerfile_text.startswith("FROM scratch")
        assert os.listdir(ctx.root) == []
        with pytest.raises(ContextError, match="file not found in build context"):
            ctx.sources(["a"])
        root = ctx.root
    assert not os.path.exists(root)
    with pytest.raises(ContextError, match="stdin for both"):
        Context.from_tar(io.BytesIO(b""), "-", str(tmp_path))


def test_sources_plain_glob_and_order(tmp_path: Path) -> None:
    ctx = ctx_of(make(tmp_path, {"b.txt": "b", "a.txt": "a", "c.md": "c", "d/e.txt": "e", ".h.txt": "h"}))
    assert names(ctx.sources(["*.txt"])) == [".h.txt", "a.txt", "b.txt"]
    assert names(ctx.sources(["?.md", "d/*.txt"])) == ["c.md", "d/e.txt"]
    assert names(ctx.sources(["*/e.txt"])) == ["d/e.txt"]
    assert names(ctx.sources(["[ab].txt"])) == ["a.txt", "b.txt"]
    assert [s.is_dir for s in ctx.sources([".", "d", "a.txt"])] == [True, True, False]


def test_sources_missing_and_empty_glob(tmp_path: Path) -> None:
    ctx = ctx_of(make(tmp_path, {"a": "a"}))
    with pytest.raises(ContextError, match="no source files were specified"):
        ctx.sources(["*.nothing"])
    with pytest.raises(ContextError, match="no source files were specified"):
        ctx.sources([])
    with pytest.raises(ContextError, match="file not found in build context or excluded by .dockerignore: stat x"):
        ctx.sources(["x"])
    with pytest.raises(ContextError, match="not found"):
        ctx.sources(["a/b"])  # through a file


def test_sources_ignored_are_not_found_or_not_matched(tmp_path: Path) -> None:
    ctx = ctx_of(make(tmp_path, {"a.log": "", "b.txt": "", "d/x.log": "", "d/y": ""}), "*.log\n**/*.log\n")
    with pytest.raises(ContextError, match="excluded by .dockerignore"):
        ctx.sources(["a.log"])
    assert names(ctx.sources(["*"])) == [".dockerignore", "Dockerfile", "b.txt", "d"]
    assert rels(ctx, ctx.sources(["d"])[0]) == ["y"]


def test_dockerfile_and_dockerignore_copied_unless_ignored(tmp_path: Path) -> None:
    ctx = ctx_of(make(tmp_path, {"a": ""}), "Dockerfile\n.dockerignore\n")
    assert rels(ctx, ctx.sources(["."])[0]) == ["a"]
    assert ctx.dockerfile_text == "FROM scratch\n"  # the builder still has it
    ctx2 = ctx_of(make(tmp_path / "two", {"a": ""}), "")
    assert rels(ctx2, ctx2.sources(["."])[0]) == [".dockerignore", "Dockerfile", "a"]


def test_excluded_directory_with_exception_inside(tmp_path: Path) -> None:
    ctx = ctx_of(make(tmp_path, {"dir/keep/k": "", "dir/other": "", "dir/sub/z": "", "top": ""}),
                 "dir\n!dir/keep\n")
    entries = rels(ctx, ctx.sources(["."])[0])
    assert entries == [".dockerignore", "Dockerfile", "dir", "dir/keep", "dir/keep/k", "top"]
    assert rels(ctx, ctx.sources(["dir"])[0]) == ["keep", "keep/k"]  # found: something inside is kept


def test_excluded_directory_without_exception_is_not_walked(tmp_path: Path) -> None:
    ctx = ctx_of(make(tmp_path, {"node_modules/a/b": "", "src/x": ""}), "node_modules\n")
    assert rels(ctx, ctx.sources(["."])[0]) == [".dockerignore", "Dockerfile", "src", "src/x"]
    with pytest.raises(ContextError, match="excluded"):
        ctx.sources(["node_modules"])


# ---------------------------------------------------------------- confinement

def test_dotdot_and_absolute_sources_stay_inside(tmp_path: Path) -> None:
    make(tmp_path, {"secret": "outside", "ctx/x": "inside", "ctx/sub/y": "y"})
    ctx = ctx_of(tmp_path / "ctx")
    for pattern in ("../x", "/x", "../../../../x", "sub/../../x", "./x"):
        (src,) = ctx.sources([pattern])
        assert src.abspath == str(tmp_path / "ctx/x")
    with pytest.raises(ContextError, match="not found"):
        ctx.sources(["../secret"])
    (src,) = ctx.sources(["/"])
    assert src.abspath == str(tmp_path / "ctx") and src.is_dir


def test_symlink_to_host_file_resolves_inside_the_context(tmp_path: Path) -> None:
    ctx = ctx_of(make(tmp_path, {"etc/passwd": "the context's own"},
                      {"pw": "/etc/passwd", "up": "../../../../../../etc/passwd", "host": "/etc/hostname"}))
    for name in ("pw", "up"):
        (src,) = ctx.sources([name])
        assert src.abspath == str(tmp_path / "etc/passwd")
        assert src.name == name  # copied under the name it was given
    with pytest.raises(ContextError, match="not found"):
        ctx.sources(["host"])


def test_symlink_loop_is_a_clear_error(tmp_path: Path) -> None:
    ctx = ctx_of(make(tmp_path, {}, {"a": "b", "b": "a", "self": "self"}))
    for name in ("a", "self"):
        with pytest.raises(ContextError, match="too many levels of symbolic links"):
            ctx.sources([name])


def test_symlink_to_directory_outside(tmp_path: Path) -> None:
    make(tmp_path, {"outside/secret": "s"})
    ctx = ctx_of(make(tmp_path / "ctx", {"inner/ok": "ok"}, {"out": str(tmp_path / "outside"),
                                                            "rel": "../outside", "in": "inner"}))
    with pytest.raises(ContextError, match="not found"):
        ctx.sources(["out"])
    with pytest.raises(ContextError, match="not found"):
        ctx.sources(["rel/secret"])  # ../outside stops at the context root: ctx/outside does not exist
    (src,) = ctx.sources(["in"])
    assert src.is_dir and rels(ctx, src) == ["ok"]
    # inside a copied directory, links are entries (copied as links), never followed
    whole = ctx.sources(["."])[0]
    kinds = {e.rel: e.kind for e in ctx.entries(whole)}
    assert kinds["out"] == "l" and kinds["rel"] == "l" and "out/secret" not in kinds


def test_glob_through_a_symlinked_directory_stays_inside(tmp_path: Path) -> None:
    make(tmp_path, {"outside/a.txt": ""})
    ctx = ctx_of(make(tmp_path / "ctx", {"real/b.txt": ""}, {"esc": "/", "lnk": "real"}))
    assert names(ctx.sources(["lnk/*.txt"])) == ["lnk/b.txt"]
    with pytest.raises(ContextError, match="no source files"):
        ctx.sources(["esc/../outside/*.txt"])


def test_resolve_in_root(tmp_path: Path) -> None:
    make(tmp_path, {"a/b": None}, {"a/abs": "/a/b", "a/up": "../../../a", "a/dangling": "/nowhere/x"})
    root = str(tmp_path)
    assert cx.resolve_in_root(root, "a/abs") == "a/b"
    assert cx.resolve_in_root(root, "a/up/b") == "a/b"
    assert cx.resolve_in_root(root, "a/abs", follow_last=False) == "a/abs"
    assert cx.resolve_in_root(root, "a/dangling/y", allow_missing=True) == "nowhere/x/y"
    assert cx.resolve_in_root(root, "new/../a/b/c", allow_missing=True) == "a/b/c"
    with pytest.raises(FileNotFoundError):
        cx.resolve_in_root(root, "a/dangling")


def test_root_source_has_no_dockerignore(tmp_path: Path) -> None:
    make(tmp_path, {".dockerignore": "*\n", "etc/x": "x"}, {"etc/l": "/etc/x"})
    tree = RootSource(str(tmp_path))
    assert names(tree.sources(["etc/*"])) == ["etc/l", "etc/x"]
    (src,) = tree.sources(["/etc/l"])
    assert src.abspath == str(tmp_path / "etc/x")


def test_special_files_are_refused_as_sources_and_skipped_in_dirs(tmp_path: Path) -> None:
    make(tmp_path, {"d/f": "f"})
    os.mkfifo(tmp_path / "fifo")
    ctx = ctx_of(tmp_path)
    with pytest.raises(ContextError, match="device, socket or fifo"):
        ctx.sources(["fifo"])
    kinds = {e.rel: e.kind for e in ctx.entries(ctx.sources(["."])[0])}
    assert kinds["fifo"] == "p"


# ---------------------------------------------------------------- checksum

def test_checksum_ignores_mtime_but_not_mode_owner_content_or_links(tmp_path: Path) -> None:
    ctx = ctx_of(make(tmp_path, {"f": "x" * 100_000, "d/g": "g"}, {"d/l": "g"}))
    srcs = ctx.sources(["f", "d"])
    base = ctx.checksum(srcs)
    assert base.startswith("sha256:") and ctx.checksum(srcs) == base
    os.utime(tmp_path / "f", (1, 1))
    os.utime(tmp_path / "d", (2, 2))
    assert ctx.checksum(ctx.sources(["f", "d"])) == base
    os.chmod(tmp_path / "f", 0o600)
    changed = ctx.checksum(ctx.sources(["f", "d"]))
    assert changed != base
    assert ctx.checksum(srcs, chmod=0o755) != ctx.checksum(srcs, chmod=0o700)
    assert ctx.checksum(srcs, chown=(1, 1)) != ctx.checksum(srcs)
    (tmp_path / "d/g").write_text("h")
    assert ctx.checksum(ctx.sources(["f", "d"])) != changed
    after_content = ctx.checksum(ctx.sources(["f", "d"]))
    os.unlink(tmp_path / "d/l")
    os.symlink("other", tmp_path / "d/l")
    assert ctx.checksum(ctx.sources(["f", "d"])) != after_content


def test_checksum_same_content_same_mtime_rewritten(tmp_path: Path) -> None:
    """Content changed with the mtime set back: ctime and the inode still change the cache key."""
    ctx = ctx_of(make(tmp_path, {"f": "aaaa"}))
    before = ctx.checksum(ctx.sources(["f"]))
    st = os.stat(tmp_path / "f")
    (tmp_path / "f").write_text("bbbb")
    os.utime(tmp_path / "f", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert ctx.checksum(ctx.sources(["f"])) != before


def test_checksum_context_resets_owners_root_source_keeps_them(tmp_path: Path) -> None:
    make(tmp_path, {"f": "x"})
    ctx = ctx_of(tmp_path)
    tree = RootSource(str(tmp_path))
    a, b = ctx.checksum(ctx.sources(["f"])), tree.checksum(tree.sources(["f"]))
    if os.geteuid() == 0:
        os.chown(tmp_path / "f", 1234, 1234)
        assert ctx.checksum(ctx.sources(["f"])) == a
        assert tree.checksum(tree.sources(["f"])) != b


def test_checksum_is_fast_on_the_cached_path(tmp_path: Path) -> None:
    ctx = ctx_of(make(tmp_path, {"big": os.urandom(100_000), **{f"t/{i}": str(i) for i in range(20)}}))
    patterns = ["big", "t"]
    ctx.checksum(ctx.sources(patterns))
    best = min(_timed(lambda: ctx.checksum(ctx.sources(patterns))) for _ in range(20))
    assert best < 0.005, f"checksum took {best * 1000:.2f} ms"


def _timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


# ---------------------------------------------------------------- --chmod, --chown

@pytest.mark.parametrize("spec,mode", [("755", 0o755), ("0644", 0o644), ("4755", 0o4755), ("0", 0)])
def test_parse_chmod(spec: str, mode: int) -> None:
    assert cx.parse_chmod(spec) == mode


@pytest.mark.parametrize("spec", ["u+x", "800", "17777", "", "0x1ff", "-1", "７５５"])
def test_parse_chmod_refuses(spec: str) -> None:
    with pytest.raises(ContextError, match="octal"):
        cx.parse_chmod(spec)


def fake_root(tmp: Path) -> Path:
    return make(tmp, {"etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
                      "etc/group": "root:x:0:\nstaff:x:50:\napp:x:1001:\n"})


@pytest.mark.parametrize("spec,ids", [
    ("app", (1000, 1001)), ("app:staff", (1000, 50)), ("app:7", (1000, 7)), ("10", (10, 10)),
    ("10:20", (10, 20)), ("10:staff", (10, 50)), ("root", (0, 0)),
])
def test_resolve_owner(tmp_path: Path, spec: str, ids: tuple[int, int]) -> None:
    assert cx.resolve_owner(str(fake_root(tmp_path)), spec) == ids


@pytest.mark.parametrize("spec,msg", [("nobody", "unable to find user nobody"),
                                      ("app:nogroup", "unable to find group nogroup"),
                                      (":x", "user\\[:group\\]"), ("app:", "user\\[:group\\]"),
                                      ("99999999999", "out of range")])
def test_resolve_owner_errors(tmp_path: Path, spec: str, msg: str) -> None:
    with pytest.raises(ContextError, match=msg):
        cx.resolve_owner(str(fake_root(tmp_path)), spec)


def test_resolve_owner_numeric_needs_no_files(tmp_path: Path) -> None:
    assert cx.resolve_owner(str(tmp_path), "5:6") == (5, 6)
    with pytest.raises(ContextError):
        cx.resolve_owner(str(tmp_path), "root")  # no /etc/passwd in this root: not the host's


def test_url_filename() -> None:
    assert cx.url_filename("http://127.0.0.1:1/a/b/file.tar.gz?x=1") == "file.tar.gz"
    with pytest.raises(ContextError, match="file name"):
        cx.url_filename("http://127.0.0.1:1/")


# ---------------------------------------------------------------- import cost

def test_cached_rebuild_path_imports_nothing_costly(tmp_path: Path) -> None:
    """What a fully cached rebuild does with these modules (parse, expand, sources, checksum) loads none of the
    modules that made it slow: urllib.request, dataclasses, hashlib (OpenSSL), re/enum, json, tarfile..."""
    import sysconfig

    (tmp_path / "data.bin").write_bytes(b"x" * 1000)
    (tmp_path / "Dockerfile").write_text('FROM alpine\nCOPY data.bin /app/\nRUN echo hi > /x\nENV A="b c"\n'
                                         'WORKDIR /app\nCMD ["cat","/x"]\n')
    repo = str(Path(__file__).resolve().parents[2])
    code = (f"import sys; sys.path[:0] = [{repo!r}, {sysconfig.get_paths()['purelib']!r}]\n"
            "from pycontain.build import context as cx, dockerfile as df, words\n"
            "ctx = cx.Context.from_dir('.', None)\n"
            "dfile = df.parse(ctx.dockerfile_text)\n"
            "for instr in dfile.stages[0].instructions:\n"
            "    if instr.cmd == 'ENV':\n"
            "        [words.expand(v or '', {}) for _, v in df.key_values(instr)]\n"
            "    if instr.cmd == 'CMD':\n"
            "        df.command_form(instr, ['/bin/sh', '-c'])\n"
            "ctx.checksum(ctx.sources(['data.bin']))\n"
            "costly = ('re', 'enum', 'json', 'dataclasses', 'inspect', 'hashlib', 'urllib.request', 'tarfile',\n"
            "          'tempfile', 'shutil')\n"
            "print(' '.join(m for m in costly if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""


def test_sha256_matches_hashlib() -> None:
    import hashlib

    data = os.urandom(1000)
    assert cx.sha256(data).hexdigest() == hashlib.sha256(data).hexdigest()
    h = cx.sha256()
    h.update(data[:10])
    h.update(data[10:])
    assert h.hexdigest() == hashlib.sha256(data).hexdigest()
