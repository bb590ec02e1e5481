"""Volumes: named and anonymous, copy-up from the image, --mount, --tmpfs, --volumes-from, rm -v, prune."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from support import Pycontain, assert_pycontain_error, describe

pytestmark = pytest.mark.usefixtures("no_leaks")


def fails(res: subprocess.CompletedProcess[str], words: str) -> None:
    """pycontain's error contract (exit 125, one `pycontain:` line), and the line says `words`."""
    assert_pycontain_error(res, 125)
    assert words in res.stderr, describe(res)


def volume_names(pc: Pycontain, *flags: str) -> list[str]:
    return pc.ok("volume", "ls", "-q", *flags).stdout.split()


def host_mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(str(path))]


def image_with(pc: Pycontain, tmp_path: Path, name: str, volumes: list[str],
               files: dict[str, tuple[bytes, int, int, int]], links: dict[str, str]) -> None:
    """busybox plus one more layer (files: path -> (content, mode, uid, gid); links: path -> target) and
    config.Volumes, written as a docker-archive and loaded: an image as `docker build` makes one."""
    saved = tmp_path / "busybox.tar"
    pc.ok("save", "-o", saved, "busybox")
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tf:
        dirs = sorted({os.path.dirname(p) for p in files} - {""})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o750
            info.uid, info.gid = 4321, 8765
            tf.addfile(info)
        for path, (data, mode, uid, gid) in files.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.uid, info.gid = len(data), mode, uid, gid
            tf.addfile(info, io.BytesIO(data))
        for path, target in links.items():
            info = tarfile.TarInfo(path)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
    blob = layer.getvalue()
    diff_id = hashlib.sha256(blob).hexdigest()
    out = tmp_path / f"{name}.tar"
    with tarfile.open(saved) as src, tarfile.open(out, "w") as dst:
        manifest = json.loads(src.extractfile("manifest.json").read())  # type: ignore[union-attr]
        config = json.loads(src.extractfile(manifest[0]["Config"]).read())  # type: ignore[union-attr]
        config["config"]["Volumes"] = {v: {} for v in volumes}
        config["rootfs"]["diff_ids"].append(f"sha256:{diff_id}")
        config.setdefault("history", []).append({"created_by": "test layer"})
        config_bytes = json.dumps(config).encode()
        config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
        layers = manifest[0]["Layers"] + [f"{diff_id}/layer.tar"]
        for member in src.getmembers():
            if member.isfile() and member.name in manifest[0]["Layers"]:
                dst.addfile(member, src.extractfile(member))
        for entry, data in ((f"{diff_id}/layer.tar", blob), (config_name, config_bytes),
                            ("manifest.json", json.dumps([{"Config": config_name, "RepoTags": [f"{name}:latest"],
                                                           "Layers": layers}]).encode())):
            info = tarfile.TarInfo(entry)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    pc.ok("load", "-i", out)


def test_named_volume_keeps_data_across_containers(pc: Pycontain) -> None:
    pc.ok("run", "--rm", "-v", "data:/data", "busybox", "sh", "-c", "echo kept > /data/f")
    assert volume_names(pc) == ["data"]
    assert pc.ok("run", "--rm", "-v", "data:/srv", "busybox", "cat", "/srv/f").stdout == "kept\n"
    info = json.loads(pc.ok("volume", "inspect", "data").stdout)[0]
    assert {k: info[k] for k in ("Name", "Driver", "Scope", "Labels", "Options")} == {
        "Name": "data", "Driver": "local", "Scope": "local", "Labels": None, "Options": None}
    assert Path(info["Mountpoint"], "f").read_text() == "kept\n"
    assert info["Mountpoint"].startswith(str(pc.root))


def test_volume_create_ls_inspect_rm(pc: Pycontain) -> None:
    assert pc.ok("volume", "create", "--label", "team=a", "v1").stdout == "v1\n"
    anon = pc.ok("volume", "create").stdout.strip()
    assert len(anon) == 64 and all(c in "0123456789abcdef" for c in anon)
    assert sorted(volume_names(pc)) == sorted([anon, "v1"])
    assert volume_names(pc, "--filter", "label=team=a") == ["v1"]
    assert volume_names(pc, "--filter", "name=v") == ["v1"]
    assert "DRIVER" in pc.ok("volume", "list").stdout
    res = pc("volume", "inspect", "v1", "nope")
    assert res.returncode == 125 and "no such volume: nope" in res.stderr
    assert json.loads(res.stdout)[0]["Labels"] == {"team": "a"}
    fails(pc("volume", "create", "bad/name"), "invalid volume name")
    fails(pc("volume", "create", "-o", "type=nfs", "n"), "unsupported volume options")
    fails(pc("volume"), "create|ls|inspect|rm|prune")
    fails(pc("volume", "rm", "nope"), "no such volume")
    pc.ok("volume", "rm", "-f", "nope")
    pc.ok("volume", "remove", "v1", anon)
    assert volume_names(pc) == []


def test_copy_up_fills_an_empty_volume_from_the_image_once(pc: Pycontain, alpine_tarball: Path) -> None:
    pc.ok("import", alpine_tarball, "alpine")
    res = pc.ok("run", "--rm", "-v", "etc:/etc", "alpine", "cat", "/etc/alpine-release")
    assert res.stdout.startswith("3.20")
    data = Path(json.loads(pc.ok("volume", "inspect", "etc").stdout)[0]["Mountpoint"])
    assert (data / "alpine-release").is_file() and (data / "apk").is_dir()
    assert data.stat().st_mode & 0o7777 == 0o755
    shadow = data / "shadow"
    assert (shadow.stat().st_mode & 0o777, shadow.stat().st_gid) == (0o640, 42)  # owners and modes kept
    # not again: the volume has content now, and the container's change stays
    pc.ok("run", "--rm", "-v", "etc:/etc", "alpine", "rm", "/etc/alpine-release")
    res = pc("run", "--rm", "-v", "etc:/etc", "alpine", "cat", "/etc/alpine-release")
    assert res.returncode == 1
    # nocopy: an empty volume stays empty
    assert pc.ok("run", "--rm", "-v", "empty:/etc/apk:nocopy", "alpine", "ls", "/etc/apk").stdout == ""


def test_image_volumes_get_anonymous_volumes_filled_from_a_two_layer_image(
        pc: Pycontain, tmp_path: Path) -> None:
    image_with(pc, tmp_path, "withvol", ["/vol", "/empty"],
               {"vol/hello": (b"from the image\n", 0o640, 1234, 5678)}, {})
    out = pc.ok("run", "--name", "c", "withvol", "sh", "-c",
                "cat /vol/hello; stat -c '%a %u %g' /vol /vol/hello; echo new > /vol/new").stdout
    assert out == "from the image\n750 4321 8765\n640 1234 5678\n"
    mounts = {m["Destination"]: m for m in pc.inspect("c")["Mounts"]}
    assert set(mounts) == {"/vol", "/empty"}
    vol = mounts["/vol"]
    assert vol["Type"] == "volume" and vol["Driver"] == "local" and vol["RW"] and len(vol["Name"]) == 64
    assert Path(vol["Source"], "new").read_text() == "new\n"
    labels = json.loads(pc.ok("volume", "inspect", vol["Name"]).stdout)[0]["Labels"]
    assert labels == {"com.docker.volume.anonymous": ""}
    # -v at the same path replaces the image's anonymous volume
    pc.ok("run", "--rm", "-v", "mine:/vol", "withvol", "true")
    assert sorted(volume_names(pc)) == sorted([mounts["/vol"]["Name"], mounts["/empty"]["Name"], "mine"])


def test_read_only_volume(pc: Pycontain) -> None:
    res = pc("run", "--rm", "-v", "ro:/data:ro", "busybox", "touch", "/data/x")
    assert res.returncode == 1 and "Read-only file system" in res.stderr
    res = pc("run", "--rm", "--mount", "source=ro,target=/data,readonly", "busybox", "touch", "/data/x")
    assert res.returncode == 1 and "Read-only file system" in res.stderr


def test_volume_in_use_cannot_be_removed(pc: Pycontain) -> None:
    pc.ok("create", "--name", "holder", "-v", "busy:/data", "busybox", "true")
    for args in (("volume", "rm", "busy"), ("volume", "rm", "-f", "busy")):
        res = pc(*args)
        fails(res, "volume busy is in use by container holder")
    pc.ok("volume", "prune", "-f", "-a")
    assert volume_names(pc) == ["busy"]
    pc.ok("rm", "holder")
    pc.ok("volume", "rm", "busy")


def test_rm_v_and_run_rm_remove_anonymous_volumes_only(pc: Pycontain) -> None:
    pc.ok("run", "--rm", "-v", "/anon", "-v", "named:/named", "busybox", "true")
    assert volume_names(pc) == ["named"]
    pc.ok("run", "--name", "c", "-v", "/anon", "-v", "named:/named", "busybox", "true")
    anon = [m["Name"] for m in pc.inspect("c")["Mounts"] if m["Destination"] == "/anon"][0]
    assert sorted(volume_names(pc)) == sorted([anon, "named"])
    pc.ok("rm", "-v", "c")
    assert volume_names(pc) == ["named"]
    # plain rm keeps them (Docker too); prune then removes the anonymous one, -a the named one as well
    pc.ok("run", "--name", "d", "-v", "/anon", "busybox", "true")
    pc.ok("rm", "d")
    assert len(volume_names(pc, "--filter", "dangling=true")) == 2
    res = pc("volume", "prune")
    fails(res, "add -f")
    out = pc.ok("volume", "prune", "-f").stdout
    assert "Deleted Volumes:" in out and "Total reclaimed space" in out
    assert volume_names(pc) == ["named"]
    pc.ok("volume", "prune", "-f", "--all")
    assert volume_names(pc) == []


def test_detached_run_rm_removes_its_anonymous_volume(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--rm", "--name", "bg", "-v", "/anon", "busybox", "true")
    pc("wait", "bg")
    for _ in range(200):
        if not volume_names(pc):
            break
    assert volume_names(pc) == []


def test_volumes_from_shares_volumes_and_binds(pc: Pycontain, tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "h").write_text("bound\n")
    pc.ok("create", "--name", "src", "-v", "/anon", "-v", "shared:/shared", "-v", f"{host}:/host",
          "--tmpfs", "/t", "busybox", "true")
    out = pc.ok("run", "--rm", "--volumes-from", "src", "busybox", "sh", "-c",
                "cat /host/h; echo via-from > /shared/f; echo a > /anon/a; test -d /t || echo no-tmpfs").stdout
    assert out == "bound\nno-tmpfs\n"
    res = pc("run", "--rm", "--volumes-from", "src:ro", "busybox", "touch", "/shared/g")
    assert res.returncode == 1 and "Read-only file system" in res.stderr
    assert pc.ok("run", "--rm", "-v", "shared:/s", "busybox", "cat", "/s/f").stdout == "via-from\n"
    # --rm of the second container did not take the first one's anonymous volume
    anon = [m["Name"] for m in pc.inspect("src")["Mounts"] if m["Destination"] == "/anon"][0]
    assert anon in volume_names(pc)
    fails(pc("run", "--rm", "--volumes-from", "nosuch", "busybox", "true"), "nosuch")
    pc.ok("rm", "-v", "src")
    assert volume_names(pc) == ["shared"]


def test_tmpfs_size_is_enforced_and_options_apply(pc: Pycontain) -> None:
    res = pc("run", "--rm", "--tmpfs", "/t:size=1m", "busybox", "sh", "-c",
             "dd if=/dev/zero of=/t/f bs=1k count=2048 2>&1; echo dd=$?; grep ' /t ' /proc/mounts")
    assert "No space left on device" in res.stdout and "dd=1" in res.stdout, describe(res)
    assert "noexec" in res.stdout and "nosuid" in res.stdout and "nodev" in res.stdout
    res = pc.ok("run", "--rm", "--mount", "type=tmpfs,target=/m,tmpfs-size=2m,tmpfs-mode=0700", "busybox",
                "sh", "-c", "stat -c %a /m; grep ' /m ' /proc/mounts")
    assert res.stdout.startswith("700\n") and "size=2048k" in res.stdout
    assert "noexec" not in pc.ok("run", "--rm", "--tmpfs", "/x:exec", "busybox", "grep", " /x ", "/proc/mounts").stdout


@pytest.mark.parametrize("args, words", [
    (["--mount", "type=bind,target=/x"], "needs a source"),
    (["--mount", "type=bind,source=/no/such/path,target=/x"], "bind source path does not exist"),
    (["--mount", "type=tmpfs,source=a,target=/x"], "takes no source"),
    (["--mount", "type=volume,source=v"], "target is required"),
    (["--mount", "type=ufs,target=/x"], "type must be"),
    (["-v", "./rel:/x"], "neither an absolute host path nor a volume name"),
    (["--tmpfs", "/x:bogus"], "unknown tmpfs option"),
    (["-v", "a:/x", "--tmpfs", "/x"], "duplicate mount point"),
])
def test_mount_errors(pc: Pycontain, args: list[str], words: str) -> None:
    res = pc("run", "--rm", *args, "busybox", "true")
    fails(res, words)
    assert volume_names(pc) == []


def test_a_symlink_in_the_image_at_the_target_stays_inside_the_root(pc: Pycontain, tmp_path: Path) -> None:
    image_with(pc, tmp_path, "linky", [], {}, {"data": "/etc", "up": "../../../../../../var"})
    before = Path("/etc/hostname").read_bytes()
    out = pc.ok("run", "--rm", "-v", "sym:/data", "-v", "up:/up", "linky", "sh", "-c",
                "echo planted > /data/planted; echo planted > /up/volume-test; cat /etc/planted").stdout
    assert out == "planted\n"
    assert Path("/etc/hostname").read_bytes() == before
    assert not Path("/var/volume-test").exists() and not Path("/etc/planted").exists()
    data = Path(json.loads(pc.ok("volume", "inspect", "sym").stdout)[0]["Mountpoint"])
    assert (data / "planted").read_text() == "planted\n"
    assert (data / "passwd").is_file()  # copied up from the image's /etc, where the link leads in the image
    up = Path(json.loads(pc.ok("volume", "inspect", "up").stdout)[0]["Mountpoint"])
    assert (up / "volume-test").read_text() == "planted\n"


def test_tmpfs_typed_volume_is_mounted_while_used(pc: Pycontain) -> None:
    pc.ok("volume", "create", "-o", "type=tmpfs", "-o", "o=size=1m", "mem")
    pc.ok("run", "-d", "--name", "a", "-v", "mem:/m", "busybox", "sleep", "60")
    pc.wait_until_running("a")
    pc.ok("run", "--rm", "-v", "mem:/m", "busybox", "sh", "-c", "echo shared > /m/f")
    assert pc.ok("exec", "a", "cat", "/m/f").stdout == "shared\n"
    res = pc("exec", "a", "dd", "if=/dev/zero", "of=/m/big", "bs=1k", "count=2048")
    assert res.returncode == 1 and "No space left" in res.stderr
    assert len(host_mounts_under(pc.root)) == 1
    pc.ok("rm", "-f", "a")
    assert host_mounts_under(pc.root) == []
    assert pc.ok("run", "--rm", "-v", "mem:/m", "busybox", "ls", "/m").stdout == ""  # a tmpfs starts empty


def test_gc_unmounts_a_tmpfs_volume_after_the_monitor_is_killed(
        pc: Pycontain, assert_leak_free: Callable[[], None]) -> None:
    pc.ok("volume", "create", "-o", "type=tmpfs", "mem")
    pc.ok("run", "-d", "--name", "k", "-v", "mem:/m", "busybox", "sleep", "60")
    pid = pc.wait_until_running("k")["State"]["Pid"]
    with open(f"/proc/{pid}/status") as f:
        monitor = int(next(line.split()[1] for line in f if line.startswith("PPid:")))
    os.kill(monitor, signal.SIGKILL)
    assert len(host_mounts_under(pc.root)) == 1
    pc.ok("gc")
    assert host_mounts_under(pc.root) == []
    assert_leak_free()


def test_bind_typed_volume_shows_its_device(pc: Pycontain, tmp_path: Path) -> None:
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "x").write_text("on the device\n")
    pc.ok("volume", "create", "-o", "type=none", "-o", "o=bind", "-o", f"device={dev}", "bv")
    assert pc.ok("run", "--rm", "-v", "bv:/b", "busybox", "cat", "/b/x").stdout == "on the device\n"
    pc.ok("volume", "rm", "bv")
    assert (dev / "x").exists()  # removing the volume never removes the user's directory


def test_rmi_and_gc_never_delete_volume_data(pc: Pycontain) -> None:
    pc.ok("run", "--rm", "-v", "keep:/k", "busybox", "sh", "-c", "echo precious > /k/f")
    pc.ok("rmi", "busybox")
    pc.ok("gc")
    data = Path(json.loads(pc.ok("volume", "inspect", "keep").stdout)[0]["Mountpoint"])
    assert (data / "f").read_text() == "precious\n"


def test_parallel_creates_of_one_named_volume(pc: Pycontain) -> None:
    procs = [pc.popen("run", "--rm", "-v", "race:/r", "busybox", "sh", "-c", f"echo {i} > /r/{i}") for i in range(8)]
    assert [p.wait(timeout=60) for p in procs] == [0] * 8, [p.communicate() for p in procs]
    assert volume_names(pc) == ["race"]
    assert pc.ok("run", "--rm", "-v", "race:/r", "busybox", "ls", "/r").stdout.split() == [str(i) for i in range(8)]


def test_gc_removes_what_a_killed_create_left(pc: Pycontain) -> None:
    root = pc.root / "storage" / "volumes"
    pc.ok("volume", "create", "v")
    # a killed create: a half-made temp volume, and an anonymous volume whose container never got written
    (root / ".tmp-999999-abc" / "_data").mkdir(parents=True)
    orphan = root / ("f" * 64)
    (orphan / "_data").mkdir(parents=True)
    (orphan / "volume.json").write_text(json.dumps({"name": "f" * 64, "anonymous": True, "driver": "local"}))
    (orphan / "creating").write_text("0" * 64)
    out = pc.ok("gc").stdout
    assert "half-made" in out and "never made" in out
    assert sorted(os.listdir(root)) == [".lock", "v"]


def test_a_volume_made_for_a_userns_container_belongs_to_its_range(pc: Pycontain) -> None:
    out = pc.ok("run", "--rm", "--userns=auto", "-v", "u:/data", "busybox", "sh", "-c",
                "touch /data/x && stat -c '%u %g' /data/x /data").stdout
    assert out == "0 0\n0 0\n"  # the container's root owns the volume it made
    data = Path(json.loads(pc.ok("volume", "inspect", "u").stdout)[0]["Mountpoint"])
    assert data.stat().st_uid != 0 and (data / "x").stat().st_uid == data.stat().st_uid
