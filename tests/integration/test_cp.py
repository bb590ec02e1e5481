"""`pycontain cp`: in and out of running and stopped containers, with Docker's path rules, tar streams on
stdin and stdout, -a and -L, its errors, and containers whose symlinks point at the host.

Every test runs real containers under its own --root (the pc fixture) and ends with the leak check:
a stopped container's overlay is mounted only in a child's private mount namespace, so no mount may
ever show on the host, during the copy or after it.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import leaks
import pytest
from support import COMMAND_TIMEOUT, Pycontain, alive, assert_pycontain_error, describe, host_mounts, wait_for

pytestmark = pytest.mark.usefixtures("no_leaks")


@pytest.fixture
def no_leaks(pc: Pycontain, leak_snapshot: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The suite's leak check, where a mount counts only if it names this session's paths: the machine
    is shared, and another session's podman mounts its own overlays under /tmp meanwhile (every mount
    cp could leave lies under this test's --root)."""
    yield
    pc.remove_all()
    base = tmp_path_factory.getbasetemp()
    mine = str(base.resolve()) + "/"
    found = [line for line in leaks.leaks_since(leak_snapshot, base) if _counts(line, mine)]
    assert not found, "pycontain left host objects behind:\n" + "\n".join(found)


def _counts(line: str, mine: str) -> bool:
    """A mount counts when it names this session's paths; a cgroup when it is a container's
    (pycontain-<64 hex>), not another suite's pycontain-ocitest-... bundle cgroups."""
    if line.startswith("leaked mount: "):
        return mine in line
    if line.startswith("leaked cgroup: "):
        name = line.rsplit("/", 1)[-1].removeprefix("pycontain-")
        return len(name) == 64 and all(c in "0123456789abcdef" for c in name)
    return True


def no_overlay_of(pc: Pycontain) -> None:
    """No mount on the host names anything under this test's state root (the overlay of a stopped one)."""
    root = str(pc.root)
    found = [m for m in host_mounts() if root in m[0] or root in m[2]]
    assert not found, f"mounts left on the host: {found}"


def tar_of(pc: Pycontain, src: str) -> tuple[list[str], tarfile.TarFile]:
    res = subprocess.run(pc.argv("cp", src, "-"), stdin=subprocess.DEVNULL, capture_output=True,
                         timeout=COMMAND_TIMEOUT)
    assert res.returncode == 0, res.stderr.decode()
    tar = tarfile.open(fileobj=io.BytesIO(res.stdout))
    return tar.getnames(), tar


def cp_stdin(pc: Pycontain, data: bytes, dst: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(pc.argv("cp", "-", dst), input=data, capture_output=True, timeout=COMMAND_TIMEOUT)


def make_tar(*entries: tuple[str, str, bytes | str]) -> bytes:
    """(name, kind "file"|"dir"|"sym"|"link", data or link target) -> a tar archive."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            info.mode = 0o755 if kind == "dir" else 0o644
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "file":
                raw = data if isinstance(data, bytes) else data.encode()
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
            else:
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = str(data)
                tar.addfile(info)
    return buf.getvalue()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A host directory d/ with a file, a subdirectory and a relative link."""
    d = tmp_path / "src" / "d"
    (d / "sub").mkdir(parents=True)
    (d / "a").write_text("a\n")
    (d / "sub" / "b").write_text("b\n")
    (d / "lnk").symlink_to("a")
    return d


def listing(pc: Pycontain, ctr: str, path: str) -> list[str]:
    return sorted(pc.ok("exec", ctr, "find", path).stdout.split())


def running(pc: Pycontain, name: str = "c") -> str:
    pc.ok("run", "-d", "--name", name, "busybox", "sleep", "1000")
    return name


# ---------------------------------------------------------------- Docker's path rules

def test_file_in_and_out_of_a_running_container(pc: Pycontain, tmp_path: Path) -> None:
    c = running(pc)
    src = tmp_path / "hello.txt"
    src.write_text("hello\n")
    pc.ok("cp", src, f"{c}:/tmp/")  # an existing directory receives it by its basename
    assert pc.ok("exec", c, "cat", "/tmp/hello.txt").stdout == "hello\n"
    pc.ok("cp", src, f"{c}:/tmp/renamed")  # a new name in an existing directory
    assert pc.ok("exec", c, "cat", "/tmp/renamed").stdout == "hello\n"
    pc.ok("exec", c, "sh", "-c", "echo changed > /tmp/renamed")
    pc.ok("cp", src, f"{c}:tmp/renamed")  # an existing file is replaced; the leading / is optional
    assert pc.ok("exec", c, "cat", "/tmp/renamed").stdout == "hello\n"
    out = tmp_path / "out"
    pc.ok("cp", f"{c}:/tmp/hello.txt", out)
    assert out.read_text() == "hello\n"
    outdir = tmp_path / "outdir"
    outdir.mkdir()
    pc.ok("cp", f"{c}:/tmp/hello.txt", outdir)
    assert (outdir / "hello.txt").read_text() == "hello\n"


def test_directories_with_and_without_dot(pc: Pycontain, tree: Path, tmp_path: Path) -> None:
    c = running(pc)
    pc.ok("exec", c, "mkdir", "/x")
    pc.ok("cp", tree, f"{c}:/x")  # into an existing directory: the directory itself
    assert listing(pc, c, "/x") == ["/x", "/x/d", "/x/d/a", "/x/d/lnk", "/x/d/sub", "/x/d/sub/b"]
    pc.ok("cp", f"{tree}/.", f"{c}:/x")  # "/.": its contents
    assert listing(pc, c, "/x") == ["/x", "/x/a", "/x/d", "/x/d/a", "/x/d/lnk", "/x/d/sub", "/x/d/sub/b",
                                    "/x/lnk", "/x/sub", "/x/sub/b"]
    pc.ok("cp", tree, f"{c}:/new")  # a new name: the directory made with that name
    assert listing(pc, c, "/new") == ["/new", "/new/a", "/new/lnk", "/new/sub", "/new/sub/b"]
    assert pc.ok("exec", c, "readlink", "/new/lnk").stdout.strip() == "a"
    out = tmp_path / "out"
    out.mkdir()
    pc.ok("cp", f"{c}:/new", out)
    pc.ok("cp", f"{c}:/new/.", out)
    pc.ok("cp", f"{c}:/new/", out / "again")
    found = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert found == ["a", "again", "again/a", "again/lnk", "again/sub", "again/sub/b", "lnk", "new", "new/a",
                     "new/lnk", "new/sub", "new/sub/b", "sub", "sub/b"]
    assert os.readlink(out / "new" / "lnk") == "a"
    assert (out / "sub" / "b").read_text() == "b\n"


def test_stopped_containers_created_and_exited(pc: Pycontain, tree: Path, tmp_path: Path) -> None:
    pc.ok("create", "--name", "made", "busybox", "sh", "-c", "cat /root/a /root/d/sub/b")
    pc.ok("run", "--name", "done", "busybox", "sh", "-c", "echo exited > /root/state")
    (tmp_path / "a").write_text("copied in while created\n")
    pc.ok("cp", tmp_path / "a", "made:/root/a")
    pc.ok("cp", tree, "made:/root/")
    no_overlay_of(pc)
    pc.ok("start", "made")
    assert pc.ok("wait", "made").stdout.strip() == "0"
    assert pc.ok("logs", "made").stdout == "copied in while created\nb\n"
    out = tmp_path / "state"
    pc.ok("cp", "done:/root/state", out)
    assert out.read_text() == "exited\n"
    names, _ = tar_of(pc, "done:/root")
    assert names == ["root", "root/state"] or sorted(names) == ["root", "root/.ash_history", "root/state"]
    pc.ok("cp", f"{tree}/.", "done:/root/tree")
    names, _ = tar_of(pc, "done:/root/tree/.")
    assert sorted(names) == [".", "./a", "./lnk", "./sub", "./sub/b"]
    no_overlay_of(pc)


def test_stopped_container_sees_its_volume(pc: Pycontain, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "inside").write_text("from the volume\n")
    pc.ok("create", "--name", "v", "-v", f"{vol}:/data", "busybox", "true")
    out = tmp_path / "out"
    pc.ok("cp", "v:/data/inside", out)
    assert out.read_text() == "from the volume\n"
    (tmp_path / "f").write_text("new\n")
    pc.ok("cp", tmp_path / "f", "v:/data/")
    assert (vol / "f").read_text() == "new\n", "a copy into a volume path must land in the volume"
    # A named volume, a read-only bind and a tmpfs of a stopped container.
    pc.ok("create", "--name", "w", "-v", "named:/named", "-v", f"{vol}:/ro:ro", "--tmpfs", "/tmp",
          "busybox", "cat", "/named/f")
    pc.ok("cp", tmp_path / "f", "w:/named/")
    for dst, text in (("w:/ro/f", "mounted volume is marked read-only"), ("w:/tmp/f", "tmpfs")):
        res = pc("cp", tmp_path / "f", dst)
        assert_pycontain_error(res)
        assert text in res.stderr, describe(res)
    pc.ok("start", "w")
    assert pc.ok("wait", "w").stdout.strip() == "0"
    assert pc.ok("logs", "w").stdout == "new\n"
    pc.ok("rm", "w")
    pc.ok("run", "--rm", "-v", "named:/named", "busybox", "cat", "/named/f")
    no_overlay_of(pc)


def test_tar_streams_both_ways(pc: Pycontain) -> None:
    c = running(pc)
    names, tar = tar_of(pc, f"{c}:/etc")
    inside = pc.ok("exec", c, "find", "/etc").stdout.split()
    assert sorted(names) == sorted(p.lstrip("/") for p in inside)
    pc.ok("exec", c, "mkdir", "/in")
    data = make_tar(("top", "dir", ""), ("top/f", "file", "content\n"), ("top/l", "sym", "f"),
                    ("top/h", "link", "top/f"), ("/abs", "file", "absolute names stay below\n"))
    res = cp_stdin(pc, data, f"{c}:/in")
    assert res.returncode == 0, res.stderr.decode()
    assert listing(pc, c, "/in") == ["/in", "/in/abs", "/in/top", "/in/top/f", "/in/top/h", "/in/top/l"]
    assert pc.ok("exec", c, "cat", "/in/top/h").stdout == "content\n"
    assert pc.ok("exec", c, "cat", "/in/abs").stdout == "absolute names stay below\n"
    # Into something that is not a directory: Docker's words.
    res = cp_stdin(pc, data, f"{c}:/in/top/f")
    assert res.returncode == 125, res.stderr.decode()
    assert res.stderr.decode().strip() == f'pycontain: destination "{c}:/in/top/f" must be a directory'


def test_hostile_tar_on_stdin(pc: Pycontain, tmp_path: Path) -> None:
    c = running(pc)
    pc.ok("exec", c, "mkdir", "/in")
    host = tmp_path / "host"
    host.mkdir()
    pc.ok("exec", c, "ln", "-s", str(host), "/in/out")
    for data in (make_tar(("../escape", "file", "x")),
                 make_tar(("l", "sym", str(host)), ("l/escape", "file", "x")),
                 make_tar(("out/escape", "file", "x"))):
        res = cp_stdin(pc, data, f"{c}:/in")
        assert res.returncode == 125 and len(res.stderr.decode().strip().splitlines()) == 1, res.stderr.decode()
    assert not list(host.iterdir()), "a tar entry was written through a link to the host"
    assert "escape" not in pc.ok("exec", c, "ls", "/").stdout


def test_archive_keeps_owners(pc: Pycontain, tmp_path: Path) -> None:
    c = running(pc)
    src = tmp_path / "owned"
    src.write_text("x\n")
    os.chown(src, 1234, 567)
    pc.ok("cp", src, f"{c}:/plain")
    pc.ok("cp", "-a", src, f"{c}:/kept")
    assert pc.ok("exec", c, "stat", "-c", "%u:%g", "/plain", "/kept").stdout.split() == ["0:0", "1234:567"]
    res = cp_stdin(pc, make_tar(("t", "file", "t\n")), f"{c}:/")
    assert res.returncode == 0, res.stderr.decode()
    # Out: the tar keeps the container's owners; files on the host belong to who ran cp (root here).
    pc.ok("exec", c, "sh", "-c", "echo y > /mine && chown 1000:50 /mine")
    _, tar = tar_of(pc, f"{c}:/mine")
    member = tar.getmember("mine")
    assert (member.uid, member.gid) == (1000, 50)
    out = tmp_path / "mine"
    pc.ok("cp", "-a", f"{c}:/mine", out)
    assert (out.stat().st_uid, out.stat().st_gid) == (0, 0)


def test_follow_link(pc: Pycontain, tmp_path: Path) -> None:
    c = running(pc)
    pc.ok("exec", c, "sh", "-c", "echo target > /target && ln -s /target /link")
    pc.ok("cp", f"{c}:/link", tmp_path / "as-link")
    assert os.readlink(tmp_path / "as-link") == "/target"
    pc.ok("cp", "-L", f"{c}:/link", tmp_path)
    assert (tmp_path / "link").read_text() == "target\n" and not (tmp_path / "link").is_symlink()
    host_link = tmp_path / "hostlink"
    host_link.symlink_to(tmp_path / "as-link-target")
    (tmp_path / "as-link-target").write_text("host target\n")
    pc.ok("cp", host_link, f"{c}:/l1")
    pc.ok("cp", "--follow-link", host_link, f"{c}:/l2")
    assert pc.ok("exec", c, "readlink", "/l1").stdout.strip() == str(tmp_path / "as-link-target")
    assert pc.ok("exec", c, "cat", "/l2").stdout == "host target\n"


def test_errors_are_one_line_and_125(pc: Pycontain, tree: Path, tmp_path: Path) -> None:
    c = running(pc)
    file = tree / "a"
    cases = [
        (("cp", file, "nosuch:/x"), "no such container: nosuch"),
        (("cp", f"{c}:/nonexistent", tmp_path / "x"), f"Could not find the file /nonexistent in container {c}"),
        (("cp", file, f"{c}:/nonexistent/x"), f"Could not find the file /nonexistent in container {c}"),
        (("cp", tmp_path / "nofile", f"{c}:/x"), "no such file or directory"),
        (("cp", file, f"{c}:/etc/passwd/"), "not a directory"),
        (("cp", file, f"{c}:/newdir/"), "no such directory"),
        (("cp", tree, f"{c}:/etc/passwd"), "cannot copy directory"),
        (("cp", f"{c}:/etc/passwd", tmp_path / "nodir" / "x"), "no such file or directory"),
        (("cp", f"{c}:/etc", tree / "a"), "cannot copy directory"),
        (("cp", f"{c}:/etc/passwd", f"{c}:/x"), "copying between containers is not supported"),
        (("cp", file, tmp_path / "y"), "must specify at least one container"),
        (("cp", f"{c}:/proc/1/status", "-"), "proc filesystem"),
    ]
    for args, text in cases:
        res = pc(*args)
        assert_pycontain_error(res)
        assert text in res.stderr, describe(res)


# ---------------------------------------------------------------- links that point out of the container

def test_links_to_the_host_stay_inside(pc: Pycontain, tmp_path: Path) -> None:
    hostdir = tmp_path / "hostdir"
    hostdir.mkdir()
    (hostdir / "secret").write_text("host secret\n")
    c = running(pc)
    pc.ok("exec", c, "sh", "-c", f"ln -s / /x && ln -s {hostdir} /etc/linkdir && mkdir -p {hostdir} && "
          f"echo container > {hostdir}/secret && ln -s ../../../../../../..{hostdir} /rel")
    # /x/etc/passwd is the container's own /etc/passwd.
    pc.ok("exec", c, "sh", "-c", "echo 'container:x:7:7::/:/bin/sh' > /etc/passwd")
    _, tar = tar_of(pc, f"{c}:/x/etc/passwd")
    f = tar.extractfile("passwd")
    assert f is not None and f.read() == b"container:x:7:7::/:/bin/sh\n"
    for link in ("/etc/linkdir", "/rel"):
        _, tar = tar_of(pc, f"{c}:{link}/secret")
        f = tar.extractfile("secret")
        assert f is not None and f.read() == b"container\n"
    src = tmp_path / "dropped"
    src.write_text("dropped\n")
    for dst in ("/x/", "/etc/linkdir/", "/rel/", "/etc/linkdir/renamed"):
        pc.ok("cp", src, f"{c}:{dst}")
    assert sorted(p.name for p in hostdir.iterdir()) == ["secret"], "cp wrote into the host directory"
    assert (hostdir / "secret").read_text() == "host secret\n"
    assert not Path("/dropped").exists(), "cp wrote into the host's /"
    assert pc.ok("exec", c, "cat", "/dropped", f"{hostdir}/dropped", f"{hostdir}/renamed").stdout == "dropped\n" * 3


def test_links_in_a_stopped_container_stay_inside(pc: Pycontain, tmp_path: Path) -> None:
    hostdir = tmp_path / "hostdir"
    hostdir.mkdir()
    (hostdir / "secret").write_text("host secret\n")
    pc.ok("run", "--name", "s", "busybox", "sh", "-c", f"ln -s / /x && ln -s {hostdir} /linkdir && mkdir -p {hostdir}")
    res = pc("cp", "s:/linkdir/secret", tmp_path / "out")
    assert_pycontain_error(res)
    assert not (tmp_path / "out").exists()
    (tmp_path / "in").write_text("in\n")
    pc.ok("cp", tmp_path / "in", "s:/x/linkdir/")  # made inside the container: /linkdir's target
    assert sorted(p.name for p in hostdir.iterdir()) == ["secret"]
    names, _ = tar_of(pc, f"s:{hostdir}")
    assert sorted(names) == [hostdir.name, f"{hostdir.name}/in"]
    no_overlay_of(pc)


def test_userns_auto_owners(pc: Pycontain, tmp_path: Path) -> None:
    """--userns=auto: what is copied in belongs to the container's root (its range's base on the host),
    with -a ids are mapped into the range; the tar out shows the container's own ids."""
    src = tmp_path / "f"
    src.write_text("f\n")
    os.chown(src, 7, 8)
    pc.ok("run", "-d", "--name", "u", "--userns=auto", "busybox", "sleep", "1000")
    pc.ok("cp", src, "u:/plain")
    pc.ok("cp", "-a", src, "u:/kept")
    assert pc.ok("exec", "u", "stat", "-c", "%u:%g", "/plain", "/kept").stdout.split() == ["0:0", "7:8"]
    pc.ok("stop", "-t", "1", "u")
    pc.ok("cp", src, "u:/etc/stopped")
    _, tar = tar_of(pc, "u:/etc")
    owners = {m.name: (m.uid, m.gid) for m in tar.getmembers()}
    assert owners["etc"] == (0, 0) and owners["etc/stopped"] == (0, 0), owners
    pc.ok("start", "u")
    assert pc.ok("exec", "u", "stat", "-c", "%u:%g", "/etc", "/etc/stopped").stdout.split() == ["0:0", "0:0"]
    no_overlay_of(pc)


def test_sigkill_leaves_no_mount(pc: Pycontain) -> None:
    """A cp into a stopped container, SIGKILLed while its child has the overlay mounted (it waits on
    stdin): the child dies with it, and the mount namespace with the mount goes with the child."""
    pc.ok("create", "--name", "s", "busybox", "true")
    p = subprocess.Popen(pc.argv("cp", "-", "s:/"), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        def mounted_child() -> int | None:
            for task in Path(f"/proc/{p.pid}/task").iterdir():
                for child in (task / "children").read_text().split():
                    if "overlay" in Path(f"/proc/{child}/mountinfo").read_text():
                        return int(child)
            return None

        deadline = time.monotonic() + 20
        child = None
        while child is None and time.monotonic() < deadline:
            child = mounted_child()
            time.sleep(0.05)
        assert child is not None, "cp never mounted the stopped container's root in a child"
        no_overlay_of(pc)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=COMMAND_TIMEOUT)
        wait_for("the copying child to die with pycontain", lambda: not alive(child))
    finally:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=COMMAND_TIMEOUT)
        assert p.stdin is not None
        p.stdin.close()
    no_overlay_of(pc)


# ---------------------------------------------------------------- export

def test_export_running_and_stopped(pc: Pycontain, tmp_path: Path) -> None:
    """`export` (and `container export`): the whole filesystem as a tar, names relative to the root,
    the container's own changes in it, nothing of /proc; -o writes a file, a terminal is refused."""
    c = running(pc, "exp")
    pc.ok("exec", c, "sh", "-c", "echo mine > /mine && rm /bin/true")
    res = subprocess.run(pc.argv("export", c), capture_output=True, timeout=COMMAND_TIMEOUT)
    assert res.returncode == 0, res.stderr
    with tarfile.open(fileobj=io.BytesIO(res.stdout)) as tf:
        names = set(tf.getnames())
        mine = tf.extractfile("./mine")
        assert mine is not None and mine.read() == b"mine\n"
    assert "./bin/sh" in names and "./bin/true" not in names
    assert not any(n.startswith("./proc/") for n in names), sorted(n for n in names if n.startswith("./proc"))
    pc.ok("stop", "-t", "0", c)
    out = tmp_path / "fs.tar"
    pc.ok("container", "export", "-o", out, c)
    with tarfile.open(out) as tf:
        assert "./mine" in tf.getnames()
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []
    assert_pycontain_error(pc("export", "no-such-container"))
