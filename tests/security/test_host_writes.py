"""Files pycontain writes as root at paths a user can influence are never written through a planted link.

The attack: root runs `pycontain save -o DIR/x.tar` into a directory a local user can write to (their
home, a shared sticky directory). pycontain used to write `x.tar.tmp-<pid>` with a plain open(), so the
user plants a symlink at that predictable name pointing at a file of root's choosing, and root
truncates and overwrites it. The planted links below are created just before pycontain starts: the
shell that plants them knows its own pid ($$) and then execs pycontain, which keeps that pid.

fs.protected_symlinks (off on some systems, and only for sticky world-writable directories) would hide
the bug, so the links are owned by the user who owns the directory, as in the home-directory case.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import tarfile
from pathlib import Path

from images_support import LocalRegistry
from support import COMMAND_TIMEOUT, Pycontain, describe

# The registry fixtures (registry, pcr, ...).
pytest_plugins = ("images_support",)

NOBODY = 65534
VICTIM_TEXT = b"root:$6$precious-hash:19000:0:99999:7:::\n"


def victim_file(tmp_path: Path) -> Path:
    """A root-owned file standing in for /etc/shadow."""
    victim = tmp_path / "victim"
    victim.write_bytes(VICTIM_TEXT)
    victim.chmod(0o640)
    return victim


def assert_untouched(victim: Path) -> None:
    st = victim.stat()
    assert victim.read_bytes() == VICTIM_TEXT, "root wrote through the planted link into the victim file"
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_uid == 0


def user_dir(path: Path, sticky: bool) -> Path:
    """A directory a local user can write to: a shared sticky /tmp-like one, or the user's own."""
    path.mkdir()
    if sticky:
        path.chmod(0o1777)
    else:
        os.chown(path, NOBODY, NOBODY)
        path.chmod(0o755)
    return path


def run_with_planted_links(pc: Pycontain, links: list[str], victim: Path, *args: str,
                           input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Plant `link -> victim` (owned by the unprivileged user) for each link, where `{pid}` in a
    link's name becomes the pid pycontain will run as, then exec `pycontain --root ROOT args...`."""
    plant = "".join(f'ln -s "$1" "{link.replace("{pid}", "$$")}" && chown -h {NOBODY} '
                    f'"{link.replace("{pid}", "$$")}" && ' for link in links)
    script = plant + 'shift && exec "$@"'
    return subprocess.run(["sh", "-c", script, "sh", str(victim), *pc.argv(*args)], input=input,
                          stdin=None if input is not None else subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=COMMAND_TIMEOUT)


def assert_is_busybox_archive(path: Path) -> None:
    st = os.lstat(path)
    assert stat.S_ISREG(st.st_mode), "the output is not a regular file"
    with tarfile.open(path) as tf:
        f = tf.extractfile("manifest.json")
        assert f is not None
        manifest = json.loads(f.read())
    assert manifest[0]["RepoTags"] == ["busybox:latest"], manifest


def test_save_into_a_shared_dir_does_not_follow_links_planted_at_its_temp_and_output_names(
        pc: Pycontain, tmp_path: Path) -> None:
    """would have caught: 3009c56 (save opened `x.tar.tmp-<pid>` with open(): root overwrote the victim)."""
    shared = user_dir(tmp_path / "shared", sticky=True)
    victim = victim_file(tmp_path)
    out = shared / "x.tar"
    res = run_with_planted_links(pc, [f"{out}.tmp-{{pid}}", str(out)], victim, "save", "-o", str(out), "busybox")
    assert res.returncode == 0, describe(res)
    assert_untouched(victim)
    assert_is_busybox_archive(out)
    # Nothing of ours is left beside it; the planted temp-name link is the attacker's, left as it was.
    leftovers = sorted(p.name for p in shared.iterdir() if p.name != "x.tar")
    assert all(os.path.islink(shared / n) and os.readlink(shared / n) == str(victim) for n in leftovers), leftovers


def test_save_into_a_users_home_does_not_follow_a_link_planted_at_its_temp_name(
        pc: Pycontain, tmp_path: Path) -> None:
    """would have caught: 3009c56 (`sudo pycontain save -o ~alice/x.tar`: alice owns the directory, so
    fs.protected_symlinks does not apply even where it is on)."""
    home = user_dir(tmp_path / "home-of-nobody", sticky=False)
    victim = victim_file(tmp_path)
    out = home / "x.tar"
    res = run_with_planted_links(pc, [f"{out}.tmp-{{pid}}"], victim, "save", "-o", str(out), "busybox")
    assert res.returncode == 0, describe(res)
    assert_untouched(victim)
    assert_is_busybox_archive(out)


def test_save_replaces_a_symlink_at_the_output_name_instead_of_writing_through_it(
        pc: Pycontain, tmp_path: Path) -> None:
    """The contract of safefile.write_atomically: rename(2) replaces a link at the target, never its
    target. (3009c56 already renamed into place, so this pins behaviour rather than catching a bug there.)"""
    shared = user_dir(tmp_path / "shared", sticky=True)
    victim = victim_file(tmp_path)
    out = shared / "x.tar"
    out.symlink_to(victim)
    pc.ok("save", "-o", out, "busybox")
    assert_untouched(victim)
    assert_is_busybox_archive(out)
    assert sorted(p.name for p in shared.iterdir()) == ["x.tar"], "a temp file was left behind"


def test_a_failed_save_leaves_neither_output_nor_temp_file(pc: Pycontain, tmp_path: Path) -> None:
    """An unknown image fails before the archive is complete: nothing appears in the directory."""
    shared = user_dir(tmp_path / "shared", sticky=True)
    res = pc("save", "-o", shared / "x.tar", "busybox", "no-such-image")
    assert res.returncode == 125, describe(res)
    assert list(shared.iterdir()) == []


def test_login_does_not_write_credentials_through_a_link_planted_at_the_temp_name(
        pcr: Pycontain, registry: LocalRegistry, tmp_path: Path) -> None:
    """would have caught: 3009c56 (auth.json was written via `.auth.json.<pid>.tmp`, opened O_TRUNC
    without O_EXCL|O_NOFOLLOW, then chmod'ed by name: a link there received the credentials).

    The state root itself is root-only (test_root_dir.py), so this is defence in depth: the writer must
    not depend on nobody ever having put a link inside it."""
    storage = pcr.root / "storage"
    storage.mkdir(mode=0o700, parents=True)
    pcr.root.chmod(0o700)
    victim = victim_file(tmp_path)
    res = run_with_planted_links(pcr, [f"{storage}/.auth.json.{{pid}}.tmp"], victim,
                                 "login", "-u", "alice", "--password-stdin", registry.host, input="pw\n")
    assert res.returncode == 0, describe(res)
    assert_untouched(victim)
    auth = storage / "auth.json"
    st = os.lstat(auth)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    entry = json.loads(auth.read_bytes())["auths"][registry.host]
    assert base64.b64decode(entry["auth"]) == b"alice:pw"

