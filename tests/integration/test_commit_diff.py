"""`diff` and `commit` through the real command on Alpine: Docker's A/C/D lines, a committed image that
runs with the container's changes, `-c` changes, pausing a running container, and failures that leave
the store as it was."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from images_support import store_files
from support import ALPINE_TARBALL, Pycontain, assert_pycontain_error, leakcheck_snapshot, leaks_since

pytest_plugins = ("images_support",)

# Adds, changes, deletes; `rm -rf` of a directory; a directory removed and made again (opaque).
SCRIPT = ("echo new > /root/new && chown 12:34 /root/new && chmod 4750 /root/new && echo more >> /etc/motd"
          " && rm /etc/issue && rm -rf /media/cdrom && rm -rf /usr/share/apk && mkdir -p /usr/share/apk/fresh"
          " && echo f > /usr/share/apk/fresh/file && mkdir /srv/made")

EXPECTED_DIFF = [
    "C /etc", "D /etc/issue", "C /etc/motd",
    "C /media", "D /media/cdrom",
    "C /root", "A /root/new",
    "C /srv", "A /srv/made",
    "C /usr", "C /usr/share", "D /usr/share/apk", "A /usr/share/apk/fresh", "A /usr/share/apk/fresh/file",
]


def diff_ids(info: dict[str, Any]) -> list[str]:
    rootfs = info["RootFS"]
    return list(rootfs.get("Layers") or rootfs.get("diff_ids") or [])


@pytest.fixture
def alp(pcr: Pycontain) -> Pycontain:
    os.environ.setdefault("PYCONTAIN_NETWORK", "none")
    os.environ.setdefault("PYCONTAIN_PULL", "never")
    pcr.ok("import", "-c", 'CMD ["/bin/sh"]', ALPINE_TARBALL, "alpine")
    return pcr


def test_diff_lists_dockers_lines(alp: Pycontain) -> None:
    alp.ok("run", "--name", "c1", "alpine", "sh", "-c", SCRIPT)
    assert alp.ok("diff", "c1").stdout.splitlines() == EXPECTED_DIFF
    assert alp.ok("container", "diff", "c1").stdout.splitlines() == EXPECTED_DIFF
    alp.ok("run", "--name", "quiet", "alpine", "true")
    assert alp.ok("diff", "quiet").stdout == ""  # pycontain's /etc/resolv.conf mount point is not a change
    assert_pycontain_error(alp("diff", "nosuch"))


def test_commit_makes_an_image_with_the_changes(alp: Pycontain) -> None:
    alp.ok("run", "--name", "c1", "-e", "FROM_RUN=1", "-w", "/root", "alpine", "sh", "-c", SCRIPT)
    image_id = alp.ok("commit", "-m", "my message", "-a", "Jane <j@example.com>", "c1", "mine:1").stdout.strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    out = alp.ok("run", "--rm", "mine:1", "sh", "-c",
                 "stat -c '%a %u %g' /root/new; cat /root/new /usr/share/apk/fresh/file; tail -1 /etc/motd;"
                 " ls /etc/issue /media/cdrom /usr/share/apk/keys 2>&1; ls -d /srv/made; pwd; echo $FROM_RUN").stdout
    lines = out.splitlines()
    assert lines[:4] == ["4750 12 34", "new", "f", "more"], out
    assert sum("No such file" in line for line in lines) == 3, out
    assert lines[-3:] == ["/srv/made", "/root", "1"], out
    history = alp.ok("history", "--no-trunc", "mine:1").stdout.splitlines()
    assert SCRIPT in history[1] and "my message" in history[1] and image_id in history[1]
    info = alp.inspect("mine:1")
    assert info["Author"] == "Jane <j@example.com>" and info["Config"]["Cmd"] == ["sh", "-c", SCRIPT]
    assert len(diff_ids(info)) == 2
    # the committed image runs the container's command, as Docker's does
    assert alp.ok("run", "--rm", "--entrypoint", "cat", "mine:1", "/etc/motd").stdout.endswith("more\n")


def test_commit_changes_take_effect_and_bad_ones_are_refused(alp: Pycontain) -> None:
    alp.ok("run", "--name", "c1", "alpine", "true")
    alp.ok("commit", "-c", 'CMD ["/bin/echo","hi"]', "-c", "ENV A=b", "-c", "LABEL x=y", "-c", "EXPOSE 80",
           "-c", "WORKDIR /tmp", "c1", "changed")
    assert alp.ok("run", "--rm", "changed").stdout == "hi\n"
    assert alp.ok("run", "--rm", "changed", "sh", "-c", "echo $A; pwd").stdout == "b\n/tmp\n"
    config = alp.inspect("changed")["Config"]
    assert config["Labels"] == {"x": "y"} and config["ExposedPorts"] == {"80/tcp": {}}
    before = store_files(alp.root)
    for bad in ("RUN echo hi", "FOO bar", "ENV", "EXPOSE nope"):
        assert_pycontain_error(alp("commit", "-c", bad, "c1", "bad"))
    assert_pycontain_error(alp("commit", "nosuch", "x:1"))
    assert_pycontain_error(alp("commit", "c1", "Bad::Name"))
    assert store_files(alp.root) == before


def test_empty_container_still_gets_a_layer(alp: Pycontain) -> None:
    alp.ok("run", "--name", "c1", "alpine", "true")
    alp.ok("commit", "c1", "same")
    layers = diff_ids(alp.inspect("same"))
    assert len(layers) == 2 and layers[-1] == \
        "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"


def test_commit_of_a_running_container_pauses_and_thaws_it(alp: Pycontain, tmp_path: Path) -> None:
    snap = leakcheck_snapshot(tmp_path / "leaks.json")
    alp.ok("run", "-d", "--name", "r1", "alpine", "sh", "-c",
           "echo first > /made; i=0; while true; do i=$((i+1)); echo $i > /tick; sleep 0.05; done")
    alp.wait_until_running("r1")
    time.sleep(0.3)
    alp.ok("commit", "r1", "live:1")
    alp.ok("commit", "--pause=false", "r1", "live:2")
    alp.ok("commit", "-p", "r1", "live:3")
    first = alp.ok("exec", "r1", "cat", "/tick").stdout
    time.sleep(0.3)
    assert alp.ok("exec", "r1", "cat", "/tick").stdout != first, "the container must keep running after commit"
    assert alp.status("r1") == "running"
    assert alp.ok("run", "--rm", "live:1", "cat", "/made").stdout == "first\n"
    alp.remove_all()
    freezer = Path("/sys/fs/cgroup/freezer")
    if freezer.is_dir():  # cgroup v1: the freezer cgroup a pause made (as `pause` does) goes with the container
        assert not [d for d in os.listdir(freezer) if d.startswith("pycontain-") and len(d) == 74]
    assert leaks_since(snap, tmp_path) == []


def test_a_failed_commit_leaves_nothing(alp: Pycontain, monkeypatch: pytest.MonkeyPatch) -> None:
    alp.ok("run", "--name", "c1", "alpine", "sh", "-c", "head -c 3000000 /dev/urandom > /big")
    before = store_files(alp.root)
    # Over the image budget (images/budget.py): refused while the layer is being written.
    monkeypatch.setenv("PYCONTAIN_MAX_IMAGE_BYTES", "1000000")
    assert_pycontain_error(alp("commit", "c1", "big:1"))
    monkeypatch.delenv("PYCONTAIN_MAX_IMAGE_BYTES")
    assert store_files(alp.root) == before
    # Killed (SIGKILL) with its temp blob and copy on disk: `gc` removes them.
    monkeypatch.setenv("PYCONTAIN_FAULT", "commit.layer")
    res = alp("commit", "--pause=false", "c1", "big:2")
    monkeypatch.delenv("PYCONTAIN_FAULT")
    assert res.returncode in (-9, 137), res
    assert [f for f in store_files(alp.root) if ".tmp-" in f]
    alp.ok("gc")
    assert store_files(alp.root) == before


def test_commit_of_a_paused_container_leaves_it_paused(alp: Pycontain) -> None:
    alp.ok("run", "-d", "--name", "p1", "alpine", "sh", "-c", "echo x > /x; sleep 100")
    alp.wait_until_running("p1")
    alp.ok("pause", "p1")
    alp.ok("commit", "p1", "paused:1")
    assert alp.status("p1") == "paused"
    alp.ok("unpause", "p1")
    assert alp.status("p1") == "running"
    assert alp.ok("run", "--rm", "paused:1", "cat", "/x").stdout == "x\n"
    alp.remove_all()
