"""`info`, `version`, `system df [-v]`, `system prune`, `events`: what they print, and what prune removes
and keeps. Events are emitted here through pycontain.events.emit (the API the runtime calls)."""

from __future__ import annotations

import json
import os
import platform
import pty
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns_support import NetNs, NetPycontain
from support import SETTLE_TIMEOUT, Pycontain, assert_pycontain_error, describe, read_until, wait_exit

pytestmark = pytest.mark.usefixtures("no_leaks")
CGROUP_VERSION = "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


def fields(text: str) -> dict[str, str]:
    """`Key: value` lines (any indent) as a dict; the first of a repeated key wins."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(": ")
        if sep:
            out.setdefault(key, value.strip())
    return out


def table(text: str) -> list[list[str]]:
    """A Docker-style table (columns three or more spaces apart), header first."""
    return [re.split(r"\s{3,}", line.strip()) for line in text.strip().splitlines()]


def emit(pc: Pycontain, type_: str, action: str, actor: str, **attributes: str) -> None:
    """One event, written as runtime.py will write it."""
    code = ("import sys, json\nfrom pycontain.state import Paths\nfrom pycontain import events\n"
            "events.emit(Paths.from_root(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5]))")
    subprocess.run([sys.executable, "-c", code, str(pc.root), type_, action, actor, json.dumps(attributes)],
                   check=True, timeout=SETTLE_TIMEOUT)


def ids(pc: Pycontain, *args: str) -> set[str]:
    return set(pc.ok(*args).stdout.split())


# ---------------------------------------------------------------- info / version

def test_info_shows_dockers_fields(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "up", "busybox", "sleep", "1000")
    pc.ok("create", "--name", "made", "busybox", "true")
    pc.ok("run", "--name", "done", "busybox", "true")
    info = fields(pc.ok("info").stdout)
    assert (info["Containers"], info["Running"], info["Paused"], info["Stopped"]) == ("3", "1", "0", "2")
    assert info["Images"] == "1"
    assert info["Server Version"] == pc.ok("--version").stdout.split()[-1]
    assert info["Storage Driver"] == "overlay2"
    assert info["Backing Filesystem"] in ("extfs", "xfs", "btrfs", "tmpfs", "overlayfs", "zfs")
    assert info["Cgroup Driver"] == "cgroupfs" and info["Cgroup Version"] == CGROUP_VERSION
    assert info["Logging Driver"] == "json-file" and info["Default Runtime"] == "pycontain"
    assert info["Runtimes"].split()[0] == "pycontain"
    for other in ("runc", "crun"):
        assert (other in info["Runtimes"].split()) == (subprocess.run(["which", other], capture_output=True)
                                                        .returncode == 0)
    assert info["Kernel Version"] == os.uname().release and info["OSType"] == "linux"
    assert info["Architecture"] == os.uname().machine and info["Name"] == os.uname().nodename
    assert info["CPUs"] == str(len(os.sched_getaffinity(0)))
    assert re.fullmatch(r"[0-9.]+GiB", info["Total Memory"])
    assert info["Docker Root Dir"] == str(pc.root / "storage")
    os_release = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
    assert info["Operating System"] == os_release["PRETTY_NAME"].strip('"')
    out = pc.ok("info").stdout
    assert "\n Security Options:\n  seccomp\n   Profile: default\n" in out and "\n  cgroupns\n" in out
    assert pc.ok("system", "info").stdout.splitlines()[:12] == out.splitlines()[:12]
    pc.ok("pause", "up")
    info = fields(pc.ok("info").stdout)
    assert (info["Running"], info["Paused"], info["Stopped"]) == ("0", "1", "2")
    pc.ok("unpause", "up")


def test_info_names_registry_settings_without_touching_the_network(pc: Pycontain, tmp_path: Path) -> None:
    conf = tmp_path / "registries.json"
    conf.write_text(json.dumps({"registry-mirrors": ["https://mirror.invalid"], "insecure-registries": ["reg:5000"]}))
    res = subprocess.run(pc.argv("info"), capture_output=True, text=True, timeout=SETTLE_TIMEOUT,
                         env={**os.environ, "PYCONTAIN_REGISTRIES_CONFIG": str(conf)})
    assert res.returncode == 0, describe(res)
    assert "\n Registry Mirrors:\n  https://mirror.invalid\n" in res.stdout
    assert "\n Insecure Registries:\n  reg:5000\n  127.0.0.0/8\n" in res.stdout
    # a broken file is a warning on stderr, not a failed `info`
    conf.write_text("{nope")
    res = subprocess.run(pc.argv("info"), capture_output=True, text=True, timeout=SETTLE_TIMEOUT,
                         env={**os.environ, "PYCONTAIN_REGISTRIES_CONFIG": str(conf)})
    assert res.returncode == 0 and "WARNING:" in res.stderr and "Traceback" not in res.stderr, describe(res)


def test_info_does_not_import_the_pull_code(pc: Pycontain) -> None:
    code = ("import sys\nfrom pycontain import cli\nsys.argv = ['pycontain', '--root', sys.argv[1], 'info']\n"
            "import contextlib, io\nwith contextlib.redirect_stdout(io.StringIO()):\n    cli.main()\n"
            "print(sorted(m for m in sys.modules if m.startswith(('pycontain.images.pull', "
            "'pycontain.images.registry', 'pycontain.images.http', 'socket', 'ssl', 'http.'))))")
    res = subprocess.run([sys.executable, "-c", code, str(pc.root)], capture_output=True, text=True,
                         timeout=SETTLE_TIMEOUT)
    assert res.returncode == 0 and res.stdout.strip() == "[]", describe(res)


def test_version_shows_client_server_and_runtimes(pc: Pycontain) -> None:
    out = pc.ok("version").stdout
    client, _, server = out.partition("\nServer:\n")
    c = fields(client)
    assert c["Version"] == pc.ok("--version").stdout.split()[-1]
    assert c["API version"] == "1.43" and c["Python version"] == platform.python_version()
    assert c["OS/Arch"] == "linux/" + {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine,
                                                                                 os.uname().machine)
    assert re.fullmatch(r"[0-9a-f]{7,}|unknown", c["Git commit"])
    assert server.startswith(" Engine:\n  Version:")
    assert "API version:      1.43 (minimum version" in server
    runc = subprocess.run(["runc", "--version"], capture_output=True, text=True)
    if runc.returncode == 0:
        version = runc.stdout.split()[2]
        assert f"\n runc:\n  Version:          {version}\n" in server


# ---------------------------------------------------------------- system df

def test_df_counts_and_sizes(pc: Pycontain, alpine_tarball: Path) -> None:
    pc.ok("import", alpine_tarball, "alpine")
    pc.ok("run", "-d", "--name", "up", "-v", "named:/data", "busybox", "sh", "-c",
          "dd if=/dev/zero of=/data/f bs=1000 count=50 2>/dev/null; sleep 1000")
    pc.ok("run", "--name", "done", "-v", "/anon", "busybox", "sh", "-c",
          "dd if=/dev/zero of=/big bs=1000 count=200 2>/dev/null; dd if=/dev/zero of=/anon/f bs=1000 count=30")
    pc.wait_until_running("up")
    time.sleep(0.3)  # the running container's dd has written by then (it runs before the sleep)
    rows = {r[0]: r[1:] for r in table(pc.ok("system", "df").stdout)}
    assert rows["TYPE"] == ["TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    images = rows["Images"]
    assert images[:2] == ["2", "1"]  # alpine is not used by any container: reclaimable
    assert images[2].endswith("MB") and re.fullmatch(r"[0-9.]+MB \([0-9]+%\)", images[3])
    assert 40 <= int(images[3].split("(")[1].rstrip("%)")) <= 90
    assert rows["Containers"] == ["2", "1", "200kB", "200kB (100%)"]  # the stopped one's upper dir
    assert rows["Local Volumes"] == ["2", "2", "80kB", "0B (0%)"]  # a stopped container still uses its volume
    assert rows["Build Cache"] == ["0", "0", "0B", "0B"]
    verbose = pc.ok("system", "df", "-v").stdout
    assert "Images space usage:" in verbose and "Containers space usage:" in verbose
    assert "Local Volumes space usage:" in verbose and "Build cache usage: 0B" in verbose
    image_rows = {r[0]: r for r in table(verbose.split("Images space usage:")[1].split("Containers space")[0])}
    assert image_rows["busybox"][-1] == "2" and image_rows["alpine"][-1] == "0"
    vol_rows = {r[0]: r for r in table(verbose.split("Local Volumes space usage:")[1].split("Build cache")[0])}
    assert vol_rows["named"][1:] == ["1", "50kB"]
    ctr_rows = {r[-1]: r for r in table(verbose.split("Containers space usage:")[1].split("Local Volumes")[0])}
    assert ctr_rows["done"][0] == pc.inspect("done")["Id"][:12] and ctr_rows["done"][4] == "200kB"
    assert ctr_rows["up"][3] == "1" and ctr_rows["up"][6].startswith("Up ")


def test_df_and_prune_of_the_build_cache(pc: Pycontain, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN dd if=/dev/zero of=/f bs=1000 count=40 2>/dev/null\n")
    pc.ok("build", "-q", "-t", "built", ctx)
    rows = {r[0]: r[1:] for r in table(pc.ok("system", "df").stdout)}
    assert int(rows["Build Cache"][0]) >= 1 and rows["Build Cache"][2:] == ["0B", "0B"]  # its layer is the image's
    pc.ok("system", "prune", "-f")  # the image uses the cache's layer: the entry stays
    assert table(pc.ok("system", "df").stdout)[4][1] == rows["Build Cache"][0]
    pc.ok("rmi", "built")
    rows = {r[0]: r[1:] for r in table(pc.ok("system", "df").stdout)}
    assert rows["Build Cache"][2].startswith("40") and rows["Build Cache"][2].endswith("kB")
    res = pc.ok("system", "prune", "-f")
    assert "Deleted build cache objects:\n" in res.stdout and "Total reclaimed space: 40" in res.stdout, res.stdout
    rows = {r[0]: r[1:] for r in table(pc.ok("system", "df").stdout)}
    assert rows["Build Cache"] == ["0", "0", "0B", "0B"]
    assert pc.ok("run", "--rm", "busybox", "true").returncode == 0  # the base image's layers stayed


# ---------------------------------------------------------------- system prune

def test_prune_without_force_and_without_a_terminal_is_refused(pc: Pycontain) -> None:
    pc.ok("create", "--name", "stopped", "busybox", "true")
    res = pc("system", "prune")
    assert_pycontain_error(res)
    assert "add -f" in res.stderr and res.stdout == ""
    assert pc.ok("ps", "-a", "-q").stdout.strip()


def test_prune_asks_on_a_terminal_and_no_keeps_everything(pc: Pycontain) -> None:
    pc.ok("create", "--name", "stopped", "busybox", "true")
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execv(pc.argv()[0], pc.argv("system", "prune", "--volumes"))
        finally:
            os._exit(127)
    try:
        seen = read_until(fd, b"[y/N] ")
        os.write(fd, b"n\n")
        assert wait_exit(pid) == 0
    finally:
        os.close(fd)
    assert b"all stopped containers" in seen and b"all anonymous volumes" in seen
    assert pc.ok("ps", "-a", "-q").stdout.strip()


def test_prune_removes_stopped_containers_and_dangling_images_and_keeps_the_rest(
        pc: Pycontain, alpine_tarball: Path, busybox_tarball: Path) -> None:
    pc.ok("import", alpine_tarball, "alpine")
    pc.ok("import", "--change", "ENV ONLY_HERE=1", alpine_tarball, "dangling")  # an image of its own
    pc.ok("import", busybox_tarball, "dangling")  # the tag moves on: the first `dangling` image is <none>
    images_before = ids(pc, "images", "-q")
    pc.ok("run", "-d", "--name", "up", "-v", "keep:/data", "-v", "/anon-up", "busybox", "sleep", "1000")
    pc.ok("run", "--name", "done", "-v", "named:/n", "-v", "/anon", "alpine", "true")
    up_id = pc.inspect("up")["Id"]
    anon = set(pc.ok("volume", "ls", "-q").stdout.split()) - {"keep", "named"}
    assert len(anon) == 2
    res = pc.ok("system", "prune", "-f")
    assert res.stdout.startswith("Deleted Containers:\n" + pc_id(res.stdout, "Deleted Containers:"))
    assert "Deleted Images:\n" in res.stdout and "Total reclaimed space: " in res.stdout
    assert ids(pc, "ps", "-a", "-q") == {up_id[:12]}
    after = pc.ok("images").stdout
    assert "<none>" not in after and "alpine" in after and "busybox" in after and "dangling" in after
    assert len(ids(pc, "images", "-q")) == len(images_before) - 1
    # no --volumes: every volume stays; then --volumes takes the unused anonymous one only
    assert set(pc.ok("volume", "ls", "-q").stdout.split()) == {"keep", "named", *anon}
    res = pc.ok("system", "prune", "-f", "--volumes")
    gone = set(res.stdout.split("Deleted Volumes:\n")[1].split("\n\n")[0].split())
    assert len(gone) == 1 and gone < anon
    assert set(pc.ok("volume", "ls", "-q").stdout.split()) == {"keep", "named", *(anon - gone)}
    # -a: every image no container uses goes; the running container's image stays
    pc.ok("system", "prune", "-a", "-f")
    assert [line.split()[0] for line in pc.ok("images").stdout.splitlines()[1:]] == ["busybox"]
    assert pc.status("up") == "running"
    pc.ok("exec", "up", "true")


def pc_id(out: str, title: str) -> str:
    return out.split(f"{title}\n")[1].split("\n")[0]


def test_prune_removes_unused_networks_but_not_the_default_or_a_used_one(
        tmp_path: Path, busybox_tarball: Path) -> None:
    ns = NetNs()
    try:
        npc = NetPycontain(tmp_path / "netroot", ns)
        npc.ok("import", "--change", 'CMD ["sh"]', busybox_tarball, "busybox")
        npc.ok("network", "create", "used")
        npc.ok("network", "create", "spare")
        npc.ok("run", "-d", "--name", "on", "--network", "used", "busybox", "sleep", "1000")
        npc.ok("run", "--network", "pycontain", "busybox", "true")  # makes the default network
        res = npc.ok("system", "prune", "-f")
        assert res.stdout.split("Deleted Networks:\n")[1].split("\n\n")[0] == "spare", describe(res)
        names = {r[1] for r in table(npc.ok("network", "ls").stdout)[1:]}
        assert "used" in names and "spare" not in names and names & {"pycontain", "bridge"}
        npc.remove_all()
        npc.ok("system", "prune", "-f")
        names = {r[1] for r in table(npc.ok("network", "ls").stdout)[1:]}
        assert "used" not in names and names & {"pycontain", "bridge"}
    finally:
        ns.close()


# ---------------------------------------------------------------- events

@pytest.fixture
def follower(pc: Pycontain) -> Iterator[subprocess.Popen[str]]:
    p = pc.popen("events", "--filter", "type=container")
    time.sleep(0.5)  # `events` stands at the end of the journal; only what comes after is shown
    yield p
    if p.poll() is None:
        p.kill()
    p.communicate(timeout=SETTLE_TIMEOUT)


def test_events_follow_prints_new_events_in_dockers_format(pc: Pycontain, follower: subprocess.Popen[str]) -> None:
    cid = "c" * 64
    emit(pc, "image", "pull", "sha256:" + "a" * 64, name="alpine:latest")  # filtered out
    emit(pc, "container", "start", cid, name="web", image="alpine")
    assert follower.stdout is not None
    line = follower.stdout.readline()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z container start c{64} \(image=alpine, name=web\)\n",
                        line), line
    emit(pc, "container", "die", cid, name="web", image="alpine", exitCode="3")
    assert follower.stdout.readline().split()[1:4] == ["container", "die", cid]
    assert follower.poll() is None
    follower.send_signal(signal.SIGINT)  # Ctrl-C ends a follower quietly
    assert follower.wait(timeout=SETTLE_TIMEOUT) == 0
    assert follower.stderr is not None and follower.stderr.read() == ""


def fresh_journal(pc: Pycontain) -> None:
    """Forget the events of the fixture's own commands (its `import`): these tests count exact lines."""
    (pc.root / "run" / "events.jsonl").unlink(missing_ok=True)


def test_events_window_and_filters(pc: Pycontain) -> None:
    fresh_journal(pc)
    emit(pc, "container", "create", "1" * 64, name="a", image="busybox")
    emit(pc, "volume", "create", "vol1", driver="local")
    mid = time.time()
    time.sleep(0.05)
    emit(pc, "container", "start", "1" * 64, name="a", image="busybox")
    emit(pc, "network", "create", "n" * 64, name="net1", type="bridge")
    start = time.monotonic()
    everything = pc.ok("events", "--since", "1h", "--until", "0s").stdout.splitlines()
    assert time.monotonic() - start < SETTLE_TIMEOUT
    assert [line.split()[1:3] for line in everything] == [["container", "create"], ["volume", "create"],
                                                          ["container", "start"], ["network", "create"]]
    since_mid = pc.ok("events", "--since", f"{mid:.6f}", "--until", "0s").stdout.splitlines()
    assert [line.split()[2] for line in since_mid] == ["start", "create"]
    until_mid = pc.ok("events", "--until", f"{mid:.6f}").stdout.splitlines()
    assert [line.split()[1] for line in until_mid] == ["container", "volume"]

    def select(*flt: str) -> list[str]:
        args = [a for f in flt for a in ("--filter", f)]
        return [" ".join(line.split()[1:3]) for line in
                pc.ok("events", "--since", "1h", "--until", "0s", *args).stdout.splitlines()]

    assert select("event=create") == ["container create", "volume create", "network create"]
    assert select("type=container", "event=start") == ["container start"]
    assert select("container=a") == ["container create", "container start"]
    assert select("image=busybox") == ["container create", "container start"]
    assert select("volume=vol1") == ["volume create"]
    assert select("network=net1", "network=other") == ["network create"]
    assert select("type=image") == []


def test_events_until_in_the_future_follows_then_ends(pc: Pycontain) -> None:
    fresh_journal(pc)
    p = pc.popen("events", "--until", "%.3f" % (time.time() + 1.5))
    time.sleep(0.5)
    emit(pc, "container", "kill", "k" * 64, name="x", signal="15")
    out, err = p.communicate(timeout=SETTLE_TIMEOUT)
    assert p.returncode == 0, err
    assert out.split()[1:4] == ["container", "kill", "k" * 64]


@pytest.mark.parametrize("args", [
    ["info", "extra"], ["version", "--client-only"], ["system", "df", "--bogus"], ["system", "prune", "-x"],
    ["system", "frob"], ["system"], ["events", "--since", "yesterday"], ["events", "--until", "10x"],
    ["events", "--filter", "colour=red"], ["events", "--filter", "type=daemonx"], ["events", "--filter"],
    ["system", "events", "extra"],
])
def test_bad_input_is_one_line(pc: Pycontain, args: list[str]) -> None:
    assert_pycontain_error(pc(*args, timeout=SETTLE_TIMEOUT))


# ---------------------------------------------------------------- --format

def test_format_on_info_version_df_and_events(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "up", "busybox", "sleep", "1000")
    out = pc.ok("info", "--format", "{{.ServerVersion}}|{{.CgroupVersion}}|{{.DockerRootDir}}|{{.ContainersRunning}}")
    assert out.stdout == f"{pc.ok('--version').stdout.split()[-1]}|{CGROUP_VERSION}|{pc.root / 'storage'}|1\n"
    info = json.loads(pc.ok("info", "--format", "{{json .}}").stdout)
    assert info["Driver"] == "overlay2" and info["OSType"] == "linux" and "pycontain" in info["Runtimes"]
    assert json.loads(pc.ok("info", "--format", "json").stdout) == info
    assert pc.ok("version", "--format", "{{.Server.Version}} {{.Client.ApiVersion}}").stdout.split()[1] == "1.43"
    version = json.loads(pc.ok("version", "--format", "{{json .}}").stdout)
    assert version["Server"]["Components"][0]["Name"] == "Engine"
    rows = [json.loads(line) for line in pc.ok("system", "df", "--format", "{{json .}}").stdout.splitlines()]
    assert [(r["Type"], r["TotalCount"], r["Active"]) for r in rows] == [
        ("Images", "1", "1"), ("Containers", "1", "1"), ("Local Volumes", "0", "0"), ("Build Cache", "0", "0")]
    assert table(pc.ok("system", "df", "--format", "table {{.Type}}\\t{{.TotalCount}}").stdout)[:2] == [
        ["TYPE", "TOTAL"], ["Images", "1"]]
    fresh_journal(pc)
    emit(pc, "container", "die", "d" * 64, name="web", image="busybox", exitCode="3")
    out = pc.ok("events", "--since", "1h", "--until", "0s", "--format",
                "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}")
    assert out.stdout == "container die web 3\n"
    event = json.loads(pc.ok("events", "--since", "1h", "--until", "0s", "--format", "{{json .}}").stdout)
    assert (event["status"], event["id"], event["from"], event["Type"], event["Action"]) == (
        "die", "d" * 64, "busybox", "container", "die")
    assert event["Actor"]["Attributes"]["exitCode"] == "3" and event["time"] == event["timeNano"] // 10**9
    for args in (["info", "--format", "{{.X"], ["version", "--format", "{{nofunc .}}"],
                 ["system", "df", "--format", "{{"], ["events", "--format", "{{end}}"],
                 ["system", "df", "-v", "--format", "json"]):
        res = pc(*args, timeout=SETTLE_TIMEOUT)
        assert_pycontain_error(res)


def test_commands_write_their_events(pc: Pycontain) -> None:
    """What pycontain itself does shows in `events`: a container's life, an image tag and untag, a volume."""
    start = str(int(time.time()) - 1)
    assert pc("run", "--name", "ev", "-v", "evvol:/data", "busybox", "sh", "-c", "exit 3").returncode == 3
    pc.ok("tag", "busybox", "evtag:1")
    pc.ok("rmi", "evtag:1")
    pc.ok("rm", "ev")
    pc.ok("volume", "rm", "evvol")
    until = str(int(time.time()) + 1)
    lines = pc.ok("events", "--since", start, "--until", until, "--format",  # a volume's name is its ID
                  "{{.Type}} {{.Action}} {{or .Actor.Attributes.name .Actor.ID}}").stdout.splitlines()
    for expected in ("container create ev", "container start ev", "container die ev", "image tag evtag:1",
                     "image untag evtag:1", "container destroy ev", "volume create evvol", "volume destroy evvol"):
        assert expected in lines, lines
    die = pc.ok("events", "--since", start, "--until", until, "--filter", "event=die", "--format",
                "{{.Actor.Attributes.exitCode}}").stdout
    assert die == "3\n", die
