"""COPY/ADD file operations as root, on real files in tmp dirs: copy_into's directory and trailing-slash
rules, owners and modes, confinement of the destination inside the step's root, ADD of archives through
the hardened unpacker, --chown names from the root's own files, ADD URLs from a 127.0.0.1 server."""

from __future__ import annotations

import http.server
import io
import os
import socket
import stat
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycontain.build import context as cx
from pycontain.build.context import Context, ContextError, RootSource


def make(tmp: Path, files: dict[str, str | bytes | None], links: dict[str, str] | None = None) -> Path:
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


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    root = make(tmp_path / "ctx", {"Dockerfile": "FROM scratch\n", "a.txt": "A", "b.txt": "B",
                                   "dir/x": "X", "dir/sub/y": "Y"}, {"dir/link": "x"})
    os.chown(root / "dir/x", 1234, 1234)
    os.chmod(root / "dir/x", 0o4750)  # after chown, which clears set-uid
    os.chown(root / "a.txt", 1234, 1234)
    return Context.from_dir(str(root), None)


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    return make(tmp_path / "rootfs", {"etc": None, "existing": None, "tmp": None})


def tree(root: Path) -> dict[str, tuple[str, int, int, int, str]]:
    """Every entry below root: (type, mode, uid, gid, content or link target)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                kind, data = "l", os.readlink(p)
            elif stat.S_ISDIR(st.st_mode):
                kind, data = "d", ""
            else:
                kind, data = "f", p.read_bytes().decode(errors="replace")
            out[str(p.relative_to(root))] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, data)
    return out


def copy(rootfs: Path, srcs: list[cx.Source], dest: str, workdir: str = "/", **kw: object) -> None:
    opts: dict[str, object] = {"chown": None, "chmod": None, "unpack_archives": False}
    opts.update(kw)
    cx.copy_into(str(rootfs), srcs, dest, workdir, **opts)  # type: ignore[arg-type]


def test_directory_copies_its_contents_owned_by_root(ctx: Context, rootfs: Path) -> None:
    copy(rootfs, ctx.sources(["dir"]), "/new/place")
    t = tree(rootfs)
    assert t["new"][:4] == ("d", 0o755, 0, 0)
    assert t["new/place"][:4] == ("d", 0o755, 0, 0)
    assert t["new/place/x"] == ("f", 0o4750, 0, 0, "X")  # mode kept (set-uid too), owner reset
    assert t["new/place/link"] == ("l", 0o777, 0, 0, "x")
    assert t["new/place/sub/y"][0::4] == ("f", "Y")
    assert "new/place/dir" not in t


def test_file_to_dir_slash_existing_dir_or_new_name(ctx: Context, rootfs: Path) -> None:
    copy(rootfs, ctx.sources(["a.txt"]), "/into/")
    copy(rootfs, ctx.sources(["a.txt"]), "/existing")
    copy(rootfs, ctx.sources(["a.txt"]), "renamed")
    copy(rootfs, ctx.sources(["b.txt"]), ".", workdir="/work/dir")
    t = tree(rootfs)
    assert t["into/a.txt"] == ("f", 0o644, 0, 0, "A")
    assert t["existing/a.txt"][4] == "A"
    assert t["renamed"][4] == "A"
    assert t["work/dir/b.txt"][4] == "B"


def test_multiple_sources_need_a_slash(ctx: Context, rootfs: Path) -> None:
    with pytest.raises(ContextError, match="must be a directory and end with a /"):
        copy(rootfs, ctx.sources(["a.txt", "b.txt"]), "/existing")
    with pytest.raises(ContextError, match="must be a directory and end with a /"):
        copy(rootfs, ctx.sources(["*.txt"]), "/dest")
    copy(rootfs, ctx.sources(["*.txt"]), "/dest/")
    assert sorted(os.listdir(rootfs / "dest")) == ["a.txt", "b.txt"]


def test_chown_and_chmod_apply_to_everything_written(ctx: Context, rootfs: Path) -> None:
    copy(rootfs, ctx.sources(["dir"]), "/p/q/", chown=(1000, 1001), chmod=0o640)
    t = tree(rootfs)
    assert t["p"][:4] == ("d", 0o755, 1000, 1001)  # created parents: 0755, the --chown owner
    assert t["p/q/x"][:4] == ("f", 0o640, 1000, 1001)
    assert t["p/q/sub"][:4] == ("d", 0o640, 1000, 1001)
    assert t["p/q/link"][2:] == (1000, 1001, "x")
    assert t["existing"][2:4] == (0, 0)  # an existing directory keeps its owner


def test_overwrites_files_and_links_never_follows_them(ctx: Context, rootfs: Path, tmp_path: Path) -> None:
    outside = make(tmp_path / "host", {"victim": "keep"})
    os.symlink(str(outside / "victim"), rootfs / "existing/a.txt")
    copy(rootfs, ctx.sources(["a.txt"]), "/existing/")
    assert (outside / "victim").read_text() == "keep"
    assert tree(rootfs)["existing/a.txt"] == ("f", 0o644, 0, 0, "A")


def test_dest_through_symlink_escaping_stays_inside_root(ctx: Context, rootfs: Path, tmp_path: Path) -> None:
    os.symlink("/../../tmp/x", rootfs / "esc")
    os.symlink("/../../../..", rootfs / "up")
    before = set(os.listdir("/tmp"))
    copy(rootfs, ctx.sources(["a.txt"]), "/esc/")
    copy(rootfs, ctx.sources(["dir"]), "/up/etc/")
    assert (rootfs / "tmp/x/a.txt").read_text() == "A"
    assert (rootfs / "etc/x").read_text() == "X"
    assert set(os.listdir("/tmp")) - before == set()


def test_dest_parent_is_a_file_is_a_clear_error(ctx: Context, rootfs: Path) -> None:
    (rootfs / "afile").write_text("")
    with pytest.raises(ContextError) as e:
        copy(rootfs, ctx.sources(["a.txt"]), "/afile/sub/")
    assert "\n" not in str(e.value)


def test_dockerignore_respected_by_copy(tmp_path: Path, rootfs: Path) -> None:
    root = make(tmp_path / "c", {"Dockerfile": "FROM x\n", ".dockerignore": "*.log\nsecret\n!secret/ok\n",
                                 "a.log": "", "keep": "k", "secret/no": "", "secret/ok": "ok"})
    with Context.from_dir(str(root), None) as c:
        copy(rootfs, c.sources(["."]), "/app/")
    assert sorted(os.listdir(rootfs / "app")) == [".dockerignore", "Dockerfile", "keep", "secret"]
    assert os.listdir(rootfs / "app/secret") == ["ok"]


def test_copy_excludes(ctx: Context, rootfs: Path) -> None:
    copy(rootfs, ctx.sources(["dir"]), "/e/", excludes=["sub", "link"])
    assert os.listdir(rootfs / "e") == ["x"]


def test_copy_from_root_source_keeps_owners_and_stays_inside(tmp_path: Path, rootfs: Path) -> None:
    other = make(tmp_path / "stage", {"app/bin": "B"}, {"app/l": "/etc/shadow", "pw": "/etc/passwd"})
    os.chown(other / "app/bin", 5, 6)
    src = RootSource(str(other))
    copy(rootfs, src.sources(["/app"]), "/app")
    assert tree(rootfs)["app/bin"][2:] == (5, 6, "B")
    assert os.readlink(rootfs / "app/l") == "/etc/shadow"  # a link, copied as a link
    with pytest.raises(ContextError, match="not found"):
        src.sources(["pw"])  # /etc/passwd of that root, which it does not have: never the host's


def test_fifo_in_a_directory_is_recreated_devices_skipped(tmp_path: Path, rootfs: Path) -> None:
    root = make(tmp_path / "c", {"Dockerfile": "", "d/f": "f"})
    os.mkfifo(root / "d/pipe", 0o640)
    os.mknod(root / "d/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    c = Context.from_dir(str(root), None)
    copy(rootfs, c.sources(["d"]), "/d")
    assert sorted(os.listdir(rootfs / "d")) == ["f", "pipe"]
    st = os.lstat(rootfs / "d/pipe")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640


# ---------------------------------------------------------------- ADD archives

def tar_bytes(entries: list[tuple[str, bytes]], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o640
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("mode,name", [("w:gz", "a.tar.gz"), ("w", "a.tar"), ("w:bz2", "a.tbz"),
                                       ("w:xz", "a.txz")])
def test_add_unpacks_local_archives(tmp_path: Path, rootfs: Path, mode: str, name: str) -> None:
    root = make(tmp_path / "c", {"Dockerfile": "", name: tar_bytes([("top/f", b"F"), ("g", b"G")], mode)})
    c = Context.from_dir(str(root), None)
    copy(rootfs, c.sources([name]), "/un", unpack_archives=True)
    assert (rootfs / "un/top/f").read_text() == "F"
    assert (rootfs / "un/g").read_text() == "G"
    copy(rootfs, c.sources([name]), "/plain/", unpack_archives=False)  # COPY copies it as it is
    assert (rootfs / "plain" / name).read_bytes() == (root / name).read_bytes()


def test_add_non_tar_gzip_is_copied_as_a_file(tmp_path: Path, rootfs: Path) -> None:
    import gzip

    root = make(tmp_path / "c", {"Dockerfile": "", "x.gz": gzip.compress(b"not a tar")})
    c = Context.from_dir(str(root), None)
    copy(rootfs, c.sources(["x.gz"]), "/d/", unpack_archives=True)
    assert (rootfs / "d/x.gz").read_bytes() == (root / "x.gz").read_bytes()


def test_add_archive_with_dotdot_is_refused(tmp_path: Path, rootfs: Path) -> None:
    root = make(tmp_path / "c", {"Dockerfile": "", "evil.tar.gz": tar_bytes([("../escape", b"E")])})
    c = Context.from_dir(str(root), None)
    with pytest.raises(ContextError) as e:
        copy(rootfs, c.sources(["evil.tar.gz"]), "/x", unpack_archives=True)
    assert "ADD failed" in str(e.value) and ".." in str(e.value) and "\n" not in str(e.value)
    assert not (rootfs / "escape").exists() and not (tmp_path / "escape").exists()


def test_context_from_tar_on_stdin(tmp_path: Path, rootfs: Path) -> None:
    data = tar_bytes([("Dockerfile", b"FROM scratch\n"), (".dockerignore", b"skip\n"), ("f", b"F"),
                      ("skip", b"S")])
    with Context.from_tar(io.BytesIO(data), None, str(tmp_path)) as c:
        assert c.dockerfile_text == "FROM scratch\n"
        assert c.root.startswith(str(tmp_path))
        copy(rootfs, c.sources(["."]), "/ctx/")
        root = c.root
    assert not os.path.exists(root)
    assert sorted(os.listdir(rootfs / "ctx")) == [".dockerignore", "Dockerfile", "f"]
    evil = tar_bytes([("Dockerfile", b"FROM x\n"), ("../../out", b"")])
    with pytest.raises(ContextError, match="invalid build context tar"):
        Context.from_tar(io.BytesIO(evil), None, str(tmp_path))
    assert os.listdir(tmp_path) == ["rootfs"]  # the temp dir went with the error


# ---------------------------------------------------------------- --chown names

def test_chown_names_from_the_roots_own_passwd(ctx: Context, rootfs: Path) -> None:
    (rootfs / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\nweb:x:33:44::/:/bin/false\n")
    (rootfs / "etc/group").write_text("root:x:0:\nwww:x:55:\n")
    owner = cx.resolve_owner(str(rootfs), "web:www")
    assert owner == (33, 55)
    copy(rootfs, ctx.sources(["a.txt"]), "/o", chown=owner)
    assert tree(rootfs)["o"][2:4] == (33, 55)
    assert cx.resolve_owner(str(rootfs), "web") == (33, 44)


@pytest.mark.parametrize("target", ["/etc/shadow", "../../../../../../etc/passwd", "/proc/self/root/etc/passwd"])
def test_symlinked_passwd_never_reads_the_host(rootfs: Path, target: str) -> None:
    (rootfs / "etc/shadow").write_text("root:*:19000:0:99999:7:::\n")
    os.symlink(target, rootfs / "etc/passwd")
    host_user = next(line.split(":")[0] for line in Path("/etc/passwd").read_text().splitlines()
                     if line.split(":")[0] != "root")
    with pytest.raises(ContextError, match=f"unable to find user {host_user}"):
        cx.resolve_owner(str(rootfs), host_user)


# ---------------------------------------------------------------- ADD URLs (127.0.0.1 only)

@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    served = make(tmp_path / "www", {"file.txt": "served", "big.bin": b"z" * 4096})

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, directory=str(served), **kw)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_fetch_url_from_a_local_server(server: str, tmp_path: Path, rootfs: Path) -> None:
    d = tmp_path / "dl"
    d.mkdir()
    path = cx.fetch_url(f"{server}/file.txt", str(d))
    assert Path(path).read_text() == "served"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    copy(rootfs, [cx.url_source(path, f"{server}/file.txt")], "/dl/")
    assert tree(rootfs)["dl/file.txt"] == ("f", 0o600, 0, 0, "served")
    with pytest.raises(ContextError, match="ADD failed: cannot fetch URL .*HTTP 404"):
        cx.fetch_url(f"{server}/missing", str(d))
    with pytest.raises(ContextError, match="larger than"):
        cx.fetch_url(f"{server}/big.bin", str(d), max_bytes=100)
    assert os.listdir(d) == [os.path.basename(path)]  # failures leave no partial file


def test_fetch_url_unreachable_port_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(ContextError) as e:
            cx.fetch_url(f"http://127.0.0.1:{port}/x", str(tmp_path))
    assert time.monotonic() - start < 5
    assert str(e.value).startswith(f"ADD failed: cannot fetch URL http://127.0.0.1:{port}/x: ")
    assert "refused" in str(e.value).lower() and "\n" not in str(e.value)
    assert os.listdir(tmp_path) == []
    with pytest.raises(ContextError, match="only http and https"):
        cx.fetch_url("file:///etc/passwd", str(tmp_path))


def test_checksum_timing_100k(tmp_path: Path) -> None:
    """The fully cached rebuild's cost: a 100 kB file plus a small tree (printed with -s)."""
    root = make(tmp_path / "c", {"Dockerfile": "", "big": os.urandom(100_000),
                                 **{f"app/m{i}.py": "x" * 200 for i in range(10)}})
    c = Context.from_dir(str(root), None)
    start = time.perf_counter()
    c.checksum(c.sources(["big", "app"]))
    cold = time.perf_counter() - start
    runs = []
    for _ in range(50):
        start = time.perf_counter()
        c.checksum(c.sources(["big", "app"]))
        runs.append(time.perf_counter() - start)
    runs.sort()
    print(f"\nchecksum: first {cold * 1e3:.3f} ms, cached median {runs[25] * 1e3:.3f} ms, best {runs[0] * 1e3:.3f} ms")
    assert runs[25] < 0.005
