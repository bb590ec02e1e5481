"""The container's filesystem: overlay layers, --read-only, bind mounts (-v) and symlinks in images."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

import pytest
from support import Pycontain, image_file

pytestmark = pytest.mark.usefixtures("no_leaks")


def layers_of(pc: Pycontain, ref: str) -> tuple[Path, list[Path]]:
    data = pc.inspect(ref)["GraphDriver"]["Data"]
    lower = [Path(p) for p in data["LowerDir"].split(":")]
    assert lower and all(p.is_dir() for p in lower), data
    return Path(data["UpperDir"]), lower


def test_writes_land_in_upperdir_never_in_image_layers(pc: Pycontain) -> None:
    pc.ok("run", "--name", "w", "busybox", "sh", "-c", "echo data > /new-file; echo more >> /etc/passwd")
    upper, lowers = layers_of(pc, "w")
    assert (upper / "new-file").read_text() == "data\n"
    assert (upper / "etc/passwd").read_text().endswith("more\n")
    for lower in lowers:
        assert not (lower / "new-file").exists()
        assert "more" not in (lower / "etc/passwd").read_text()


def test_deleting_an_image_file_leaves_a_whiteout_and_the_layer_untouched(
        pc: Pycontain, busybox_tarball: Path) -> None:
    original = image_file(busybox_tarball, "etc/os-release")
    pc.ok("run", "--name", "d", "busybox", "rm", "/etc/os-release")
    upper, lowers = layers_of(pc, "d")
    # overlayfs(5): a whiteout is a character device with device number 0/0
    st = os.lstat(upper / "etc/os-release")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert any((lower / "etc/os-release").read_bytes() == original for lower in lowers)
    # and a new container from the same image still has the file
    res = pc.ok("run", "--rm", "busybox", "cat", "/etc/os-release")
    assert res.stdout.encode() == original


def test_read_only_root_refuses_writes_but_tmp_is_writable(pc: Pycontain) -> None:
    res = pc("run", "--rm", "--read-only", "busybox", "sh", "-c",
             "touch /etc/x; echo etc=$?; touch /tmp/x && echo tmp=$?")
    assert res.stdout.split() == ["etc=1", "tmp=0"], res.stderr
    assert "Read-only file system" in res.stderr


def test_bind_mount_shares_a_host_directory_read_write(pc: Pycontain, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "from-host").write_text("hello from the host\n")
    res = pc.ok("run", "--rm", "-v", f"{shared}:/data", "busybox", "sh", "-c",
                "cat /data/from-host; echo hello from the container > /data/from-container")
    assert res.stdout == "hello from the host\n"
    assert (shared / "from-container").read_text() == "hello from the container\n"


def test_read_only_bind_mount_refuses_writes(pc: Pycontain, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "from-host").write_text("visible\n")
    res = pc("run", "--rm", "-v", f"{shared}:/data:ro", "busybox", "sh", "-c",
             "cat /data/from-host; echo nope > /data/from-container")
    assert res.returncode != 0
    assert res.stdout == "visible\n"
    assert "Read-only file system" in res.stderr
    assert not (shared / "from-container").exists()


def test_bind_mount_of_a_single_file(pc: Pycontain, tmp_path: Path) -> None:
    config = tmp_path / "app.conf"
    config.write_text("setting=1\n")
    res = pc.ok("run", "--rm", "-v", f"{config}:/etc/app.conf:ro", "busybox", "cat", "/etc/app.conf")
    assert res.stdout == "setting=1\n"


def test_image_symlink_cannot_redirect_a_mount_target_to_the_host(
        pc: Pycontain, evil_tarball: Path, tmp_path: Path) -> None:
    pc.ok("import", "--change", 'CMD ["sh"]', evil_tarball, "evil")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "marker").write_text("mounted\n")
    name = f"evil-target-{uuid.uuid4().hex[:12]}"
    host_tmp = Path("/tmp") / name
    try:
        # /evil -> / in the image: the target must resolve inside the container's root, i.e. /tmp/NAME there
        res = pc.ok("run", "--name", "e", "-v", f"{shared}:/evil/tmp/{name}", "evil",
                    "cat", f"/tmp/{name}/marker")
        assert res.stdout == "mounted\n"
        assert not host_tmp.exists(), f"the mount target escaped the rootfs onto the host: {host_tmp}"
        upper, _ = layers_of(pc, "e")
        assert (upper / "tmp" / name).is_dir()
    finally:
        if host_tmp.is_dir():
            host_tmp.rmdir()
