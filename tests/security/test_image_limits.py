"""What an image can make root do while reading and unpacking it: never hang, never exhaust memory or disk.

    /etc/passwd, /etc/group   read as root inside the container for `-u USER`: a FIFO must not hang
                              `exec`, a huge (sparse) file must not be read into memory
    layers                    a per-image cap on unpacked bytes (many small gzip bombs, each under the
                              per-layer cap), and a free-space reserve on the store's filesystem; a refused
                              image leaves the store exactly as it was

The caps are made small for the tests with PYCONTAIN_MAX_IMAGE_BYTES and PYCONTAIN_MIN_FREE_BYTES, and
the free-space tests use a small tmpfs of their own as the state root.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from images_support import LocalRegistry, store_files
from support import Pycontain, assert_pycontain_error, describe

# The registry fixtures (fresh_registry, pcr).
pytest_plugins = ("images_support",)

MiB = 1 << 20


# ---------------------------------------------------------------- /etc/passwd read as root

def test_exec_as_a_user_does_not_hang_on_a_fifo_passwd(pc: Pycontain, no_leaks: None) -> None:
    """would have caught: 3009c56 (open()+read() of a FIFO /etc/passwd blocked `exec -u` forever)."""
    pc.ok("run", "-d", "--name", "c", "busybox", "sleep", "1000")
    pc.ok("exec", "c", "sh", "-c", "rm /etc/passwd; mkfifo /etc/passwd")
    res = pc("exec", "-u", "nobody", "c", "true")  # the COMMAND_TIMEOUT of pc() is the hang guard
    assert_pycontain_error(res)
    assert "/etc/passwd is not a regular file" in res.stderr, describe(res)


def test_exec_as_a_user_does_not_read_a_huge_passwd_into_memory(pc: Pycontain, no_leaks: None) -> None:
    """would have caught: 3009c56 (the whole file was read: a sparse 1 GiB /etc/passwd, more with a
    bigger one, in the memory of the process that enters the container)."""
    pc.ok("run", "-d", "--name", "c", "--memory", "64m", "busybox", "sleep", "1000")
    pc.ok("exec", "c", "sh", "-c", "rm /etc/passwd; truncate -s 1G /etc/passwd")
    res = pc("exec", "-u", "nobody", "c", "true")
    assert_pycontain_error(res)
    assert "/etc/passwd is larger than 4 MiB" in res.stderr, describe(res)


def test_a_passwd_that_links_to_a_file_in_the_image_is_read(pc: Pycontain, no_leaks: None) -> None:
    """An ordinary link inside the image is followed (after pivot_root it cannot lead out)."""
    pc.ok("run", "-d", "--name", "c", "busybox", "sleep", "1000")
    pc.ok("exec", "c", "sh", "-c", "mv /etc/passwd /etc/passwd.real; ln -s passwd.real /etc/passwd")
    assert pc.ok("exec", "-u", "app", "c", "id", "-u").stdout.strip() == "1000"


def test_a_passwd_that_links_to_a_descriptor_is_refused(pc: Pycontain, no_leaks: None) -> None:
    """/proc/self/fd/N of the joining process would be one of pycontain's host descriptors."""
    pc.ok("run", "-d", "--name", "c", "busybox", "sleep", "1000")
    pc.ok("exec", "c", "sh", "-c", "rm /etc/passwd; ln -s /proc/self/fd/3 /etc/passwd")
    res = pc("exec", "-u", "nobody", "c", "true")
    assert_pycontain_error(res)
    assert "cannot read the image's /etc/passwd" in res.stderr, describe(res)
    # Without -u the container runs as root all the same: the file only supplies $HOME.
    assert pc.ok("exec", "c", "id", "-u").stdout.strip() == "0"


# ---------------------------------------------------------------- building images

def layer_tar(name: str, size: int) -> bytes:
    """An uncompressed layer holding one file of `size` zero bytes (gzip shrinks it to almost nothing)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo(name)
        info.size, info.mode = size, 0o644
        tf.addfile(info, io.BytesIO(bytes(size)))
    return buf.getvalue()


def diff_id(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def image_config(raws: list[bytes]) -> bytes:
    return json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                       "rootfs": {"type": "layers", "diff_ids": [diff_id(r) for r in raws]}}).encode()


def docker_archive(path: Path, tag: str, raws: list[bytes]) -> Path:
    """A `docker save`-shaped archive whose layers are gzip bombs in miniature."""
    config = image_config(raws)
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    layer_names = [f"{diff_id(r)[7:]}/layer.tar" for r in raws]
    with tarfile.open(path, "w") as tf:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        add(config_name, config)
        for name, raw in zip(layer_names, raws):
            add(name, gzip.compress(raw, mtime=0))
        add("manifest.json", json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": layer_names}]).encode())
    return path


def three_small_bombs() -> list[bytes]:
    """Three layers of 2 MiB each: every one far under the per-layer cap, 6 MiB together."""
    return [layer_tar(f"bomb{i}", 2 * MiB) for i in range(3)]


def stored_objects(root: Path) -> list[str]:
    """The store's blobs, layers (and their temp files), image records and tags."""
    return [f for f in store_files(root) if f.startswith(("blobs/sha256/", "layers/", "meta/", "refs.json", "."))]


# ---------------------------------------------------------------- per-image cap

def test_load_refuses_an_image_over_the_per_image_cap_and_leaves_the_store_as_it_was(
        pc: Pycontain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_leaks: None) -> None:
    """would have caught: 3009c56 (only each layer was capped: three layers under it made any total)."""
    archive = docker_archive(tmp_path / "bombs.tar", "bombs:latest", three_small_bombs())
    before = store_files(pc.root)
    monkeypatch.setenv("PYCONTAIN_MAX_IMAGE_BYTES", str(5 * MiB))
    res = pc("load", "-i", archive)
    assert_pycontain_error(res)
    assert "unpacks to more than 5.0 MiB" in res.stderr and "decompression bomb" in res.stderr, describe(res)
    assert store_files(pc.root) == before, "a refused image left layers, blobs or temp files in the store"
    assert "bombs" not in pc.ok("images").stdout
    # The same archive within the cap loads: it was refused for its size, nothing else.
    monkeypatch.setenv("PYCONTAIN_MAX_IMAGE_BYTES", str(7 * MiB))
    pc.ok("load", "-i", archive)
    assert "bombs" in pc.ok("images").stdout


def test_pull_refuses_an_image_over_the_per_image_cap_and_leaves_the_store_as_it_was(
        pcr: Pycontain, fresh_registry: LocalRegistry, monkeypatch: pytest.MonkeyPatch,
        assert_leak_free: Callable[[], None]) -> None:
    """would have caught: 3009c56 (the same through a registry, where the layers unpack in parallel)."""
    raws = three_small_bombs()
    repo = "bombs/three"
    blobs = [gzip.compress(r, mtime=0) for r in raws]
    config = image_config(raws)
    fresh_registry.put_manifest(repo, "latest", {
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                   "digest": fresh_registry.put_blob(repo, config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(b),
                    "digest": fresh_registry.put_blob(repo, b)} for b in blobs]})
    name = f"{fresh_registry.host}/{repo}"
    monkeypatch.setenv("PYCONTAIN_MAX_IMAGE_BYTES", str(5 * MiB))
    res = pcr("pull", "-q", name)
    assert_pycontain_error(res, after_progress=True)
    assert "unpacks to more than 5.0 MiB" in res.stderr, describe(res)
    assert stored_objects(pcr.root) == [], "a refused image left blobs, layers or temp files in the store"
    assert pcr.ok("images", "-q").stdout == ""
    monkeypatch.setenv("PYCONTAIN_MAX_IMAGE_BYTES", str(7 * MiB))
    pcr.ok("pull", "-q", name)
    assert_leak_free()


# ---------------------------------------------------------------- free space

@pytest.fixture
def small_root(tmp_path: Path) -> Iterator[Pycontain]:
    """pycontain whose state root is a 32 MiB tmpfs of its own (root-only), unmounted afterwards."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m,mode=0700", "pycontain-test-small", str(mnt)],
                   check=True)
    p = Pycontain(mnt)
    try:
        yield p
    finally:
        p.remove_all()
        subprocess.run(["umount", str(mnt)], check=True)


def rootfs_tarball(path: Path, size: int) -> Path:
    """An `import`-able tarball: one file of `size` zero bytes, gzip'd to almost nothing."""
    path.write_bytes(gzip.compress(layer_tar("big", size), mtime=0))
    return path


def test_unpacking_keeps_the_free_space_reserve(small_root: Pycontain, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """would have caught: 3009c56 (a layer could use the store's filesystem down to its last block:
    here 20 MiB of 32 would have fitted, leaving less than the 16 MiB reserve)."""
    monkeypatch.setenv("PYCONTAIN_MIN_FREE_BYTES", str(16 * MiB))
    res = small_root("import", rootfs_tarball(tmp_path / "big.tar.gz", 20 * MiB), "big")
    assert_pycontain_error(res)
    assert "no space for" in res.stderr and "16.0 MiB kept free" in res.stderr, describe(res)
    assert stored_objects(small_root.root) == [], "a refused image left blobs, layers or temp files"
    # The store is intact and usable: a small image still goes in.
    small_root.ok("import", rootfs_tarball(tmp_path / "small.tar.gz", 1 * MiB), "small")
    assert "small" in small_root.ok("images").stdout


def test_an_image_bigger_than_the_filesystem_is_refused_before_it_fills_it(
        small_root: Pycontain, tmp_path: Path, assert_leak_free: Callable[[], None]) -> None:
    """would have caught: 3009c56 (unpacking ran into ENOSPC, having filled the filesystem; now it stops
    at the default reserve, 5% of the filesystem, with its own one-line error)."""
    res = small_root("import", rootfs_tarball(tmp_path / "huge.tar.gz", 40 * MiB), "huge")
    assert_pycontain_error(res)
    assert "no space for" in res.stderr, describe(res)
    assert stored_objects(small_root.root) == [], "a refused image left blobs, layers or temp files"
    small_root.ok("import", rootfs_tarball(tmp_path / "small.tar.gz", 1 * MiB), "small")
    assert_leak_free()
