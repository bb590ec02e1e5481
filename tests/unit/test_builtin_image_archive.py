"""rootfs/build.py --docker-archive: the built-in image has the same id on every build (issue 13:
reinstalling must not leave the previous busybox dangling as <none>)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

BUILD = Path(__file__).resolve().parents[2] / "rootfs" / "build.py"
BUSYBOX = "/bin/busybox"

pytestmark = pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="needs Debian's busybox-static")


def build(out: Path, *extra: str, epoch: str | None = None) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    if epoch is not None:
        env["SOURCE_DATE_EPOCH"] = epoch
    subprocess.run([sys.executable, str(BUILD), "--docker-archive", str(out), *extra], check=True,
                   capture_output=True, env=env, timeout=120)


def test_two_builds_are_byte_identical_and_name_one_image(tmp_path: Path) -> None:
    build(tmp_path / "a.tar")
    build(tmp_path / "b.tar")
    a, b = (hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in ("a.tar", "b.tar"))
    assert a == b
    with tarfile.open(tmp_path / "a.tar") as tf:
        def read(name: str) -> bytes:
            f = tf.extractfile(name)
            assert f is not None
            return f.read()

        [entry] = json.loads(read("manifest.json"))
        assert entry["RepoTags"] == ["busybox:latest"]
        config_bytes = read(entry["Config"])
        layer = read(entry["Layers"][0])
        # Unset SOURCE_DATE_EPOCH: the busybox binary's mtime dates everything (fixed per package).
        epoch = int(os.stat("/bin/busybox").st_mtime)
        assert {m.mtime for m in tf.getmembers()} == {epoch} and {m.uid for m in tf.getmembers()} == {0}
    config = json.loads(config_bytes)
    assert entry["Config"] == hashlib.sha256(config_bytes).hexdigest() + ".json"  # the id is the config's digest
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    assert config["config"] == {"Cmd": ["sh"]}
    assert config["created"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def test_the_epoch_and_tag_are_the_only_inputs_besides_busybox(tmp_path: Path) -> None:
    build(tmp_path / "a.tar")
    build(tmp_path / "b.tar", epoch="1700000000")
    build(tmp_path / "c.tar", "--tag", "mybox:1")
    blobs = [(tmp_path / n).read_bytes() for n in ("a.tar", "b.tar", "c.tar")]
    assert len(set(blobs)) == 3
