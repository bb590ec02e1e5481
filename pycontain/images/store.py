"""The image store: content-addressed blobs, layers unpacked once, tags in one small file.

    images/blobs/sha256/<hex>      compressed layer tarballs and image configs, named by their digest
    images/layers/<diff-id hex>/   each layer unpacked once (tmp dir + rename), shared read-only as an
                                   overlayfs lowerdir by every container that uses it
    images/refs.json               "docker.io/library/alpine:3.20" -> image id (the config's digest)

An image is its config (OCI image config JSON); its id is the sha256 of that config, as in Docker.
Writers take `images/lock` (flock) around refs.json; layers and blobs need no lock because their names
are their content.

Reading (the `run` path) imports only json: hashlib alone costs ~10 ms to load OpenSSL on this VM, so
the modules that write (hashlib, gzip, tarfile) are imported inside the functions that write.
"""

from __future__ import annotations

import fcntl
import os
import time

from pycontain import jsonfast
from pycontain.errors import ImageError, ImageNotFound, UsageError
from pycontain.images import reference
from pycontain.state import Paths, atomic_write_json, read_json, rmtree

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any


class Image:
    __slots__ = ("id", "config", "layers", "ref")

    def __init__(self, id: str, config: dict[str, Any], layers: tuple[str, ...], ref: str) -> None:
        self.id = id  # "sha256:<hex>"
        self.config = config
        self.layers = layers  # unpacked layer directories, lowest first
        self.ref = ref

    @property
    def short_id(self) -> str:
        return self.id.split(":", 1)[1][:12]


class Store:
    def __init__(self, paths: Paths) -> None:
        self.root = paths.images
        self.blobs = f"{self.root}/blobs/sha256"
        self.layers = f"{self.root}/layers"
        self.refs_file = f"{self.root}/refs.json"

    # -- reading --
    def refs(self) -> dict[str, str]:
        try:
            return dict(read_json(self.refs_file))
        except FileNotFoundError:
            return {}

    def blob(self, digest: str) -> bytes:
        with open(f"{self.blobs}/{digest.split(':', 1)[1]}", "rb") as f:
            return f.read()

    def resolve(self, name: str) -> Image:
        """An image by reference (`alpine`, `alpine:3.20`, `host:5000/x`) or by (a prefix of) its id."""
        refs = self.refs()
        image_id = None
        try:
            ref = reference.parse(name)
            image_id = refs.get(str(ref))
        except UsageError:
            ref = None
        if image_id is None:
            image_id = self._by_id_prefix(name, refs)
        if image_id is None:
            if ref is None:
                raise UsageError(f"invalid image reference {name!r}")
            raise ImageNotFound(
                f"image {ref.familiar} is not in the store; add it with `pycontain import TARBALL {ref.familiar}` "
                "(`pycontain images` lists what is there)"
            )
        try:
            config = jsonfast.loads(self.blob(image_id))
        except (OSError, ValueError) as e:
            raise ImageError(f"image {name} is damaged in the store ({e}); import it again") from None
        layers = tuple(f"{self.layers}/{d.split(':', 1)[1]}" for d in config.get("rootfs", {}).get("diff_ids", []))
        for layer in layers:
            if not os.path.isdir(layer):
                raise ImageError(f"image {name} is missing layer {os.path.basename(layer)[:12]}; import it again")
        return Image(id=image_id, config=config, layers=layers, ref=ref.familiar if ref else image_id)

    def _by_id_prefix(self, name: str, refs: dict[str, str]) -> str | None:
        hexpart = name.removeprefix("sha256:")
        if len(hexpart) < 4 or not all(c in "0123456789abcdef" for c in hexpart):
            return None
        found = {i for i in refs.values() if i.split(":", 1)[1].startswith(hexpart)}
        return found.pop() if len(found) == 1 else None

    def images(self) -> list[tuple[str, str, dict[str, Any], int]]:
        """(familiar repo, tag, config, size in bytes) for every tag."""
        out = []
        for ref, image_id in sorted(self.refs().items()):
            try:
                config = jsonfast.loads(self.blob(image_id))
            except (OSError, ValueError):
                continue
            r = reference.parse(ref)
            size = sum(self._layer_size(d) for d in config.get("rootfs", {}).get("diff_ids", []))
            out.append((r.familiar_repository, r.tag or "<none>", config | {"id": image_id}, size))
        return out

    def _layer_size(self, diff_id: str) -> int:
        try:
            return int(read_json(f"{self.layers}/{diff_id.split(':', 1)[1]}.json")["size"])
        except (OSError, ValueError, KeyError):
            return 0

    # -- writing --
    def _ensure(self) -> None:
        for d in (self.blobs, self.layers):
            os.makedirs(d, mode=0o700, exist_ok=True)

    def put_blob(self, data: bytes) -> str:
        import hashlib

        self._ensure()
        digest = hashlib.sha256(data).hexdigest()
        path = f"{self.blobs}/{digest}"
        if not os.path.exists(path):
            tmp = f"{self.blobs}/.tmp-{os.getpid()}-{digest}"
            with open(tmp, "wb") as f:
                f.write(data)
            os.rename(tmp, path)
        return f"sha256:{digest}"

    def add_layer(self, stream: IO[bytes]) -> tuple[str, str, int]:
        """Store a layer tarball's blob and unpack it once. Returns (blob digest, diff id, size)."""
        import gzip

        from pycontain.images.unpack import unpack

        self._ensure()
        tmp_blob = f"{self.blobs}/.tmp-{os.getpid()}-{time.monotonic_ns()}"
        tmp_dir = f"{self.layers}/.tmp-{os.getpid()}-{time.monotonic_ns()}"
        os.mkdir(tmp_dir, 0o755)
        try:
            with open(tmp_blob, "wb") as blob_out:
                compressed = _HashingReader(stream, tee=blob_out)
                head = compressed.peek(4)
                if head[:2] == b"\x1f\x8b":
                    plain: IO[bytes] = gzip.GzipFile(fileobj=compressed, mode="rb")  # type: ignore[assignment]
                elif head[:4] == b"\x28\xb5\x2f\xfd":
                    raise ImageError("zstd-compressed layers are not supported by this version")
                else:
                    plain = compressed  # type: ignore[assignment]
                diff = _HashingReader(plain)
                unpack(diff, tmp_dir)
                diff.drain()
                compressed.drain()
            blob_digest, diff_id = compressed.hexdigest(), diff.hexdigest()
            os.rename(tmp_blob, f"{self.blobs}/{blob_digest}")
            size = _tree_size(tmp_dir)
            final = f"{self.layers}/{diff_id}"
            if os.path.exists(final):
                rmtree(tmp_dir)  # another import unpacked the same layer first
            else:
                atomic_write_json(f"{self.layers}/{diff_id}.json", {"size": size})
                os.rename(tmp_dir, final)
            return f"sha256:{blob_digest}", f"sha256:{diff_id}", size
        except BaseException:
            rmtree(tmp_dir)
            if os.path.exists(tmp_blob):
                os.unlink(tmp_blob)
            raise

    def tag(self, ref: reference.Reference, image_id: str) -> None:
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        with open(f"{self.root}/lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            refs = self.refs()
            refs[str(ref)] = image_id
            atomic_write_json(self.refs_file, refs)

    def import_tarball(self, path: str, name: str, changes: list[str] = ()) -> str:  # type: ignore[assignment]
        """`docker import`: a root filesystem tarball becomes a one-layer image tagged `name`."""
        ref = reference.parse(name)
        config_section = apply_changes({}, changes)
        try:
            f = open(path, "rb")
        except OSError as e:
            raise UsageError(f"cannot read {path}: {e.strerror}") from None
        with f:
            _, diff_id, _ = self.add_layer(f)
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        config = {
            "created": created,
            "architecture": "amd64",
            "os": "linux",
            "config": config_section,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": created, "created_by": f"pycontain import {os.path.basename(path)}"}],
        }
        image_id = self.put_blob(jsonfast.dumps(config).encode())
        self.tag(ref, image_id)
        return image_id

    def gc_temp(self) -> list[str]:
        """Remove half-written blobs and layers left by an import that was killed."""
        removed = []
        for d in (self.blobs, self.layers):
            if not os.path.isdir(d):
                continue
            for entry in os.listdir(d):
                if entry.startswith(".tmp-") and not _pid_alive(entry.split("-")[1]):
                    rmtree(f"{d}/{entry}")
                    removed.append(f"{d}/{entry}")
        return removed


def apply_changes(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """`--change 'CMD ["/bin/sh"]'` and friends (CMD, ENTRYPOINT, ENV, WORKDIR, USER)."""
    out = dict(config)
    for change in changes:
        word, _, rest = change.strip().partition(" ")
        word, rest = word.upper(), rest.strip()
        if word in ("CMD", "ENTRYPOINT"):
            out[word.capitalize()] = _exec_form(rest) if rest else None
        elif word == "ENV":
            key, sep, value = rest.partition("=")
            if not sep:
                key, _, value = rest.partition(" ")
            if not key:
                raise UsageError(f"invalid --change {change!r}: ENV needs KEY=VALUE")
            out["Env"] = [e for e in out.get("Env", []) if e.split("=", 1)[0] != key] + [f"{key}={value}"]
        elif word == "WORKDIR" and rest.startswith("/"):
            out["WorkingDir"] = rest
        elif word == "USER" and rest:
            out["User"] = rest
        else:
            raise UsageError(f"invalid --change {change!r}: supported are CMD, ENTRYPOINT, ENV, WORKDIR /abs, USER")
    return out


def _exec_form(text: str) -> list[str]:
    if text.startswith("["):
        try:
            value = jsonfast.loads(text)
        except ValueError:
            raise UsageError(f"invalid JSON array {text!r}") from None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UsageError(f"invalid exec form {text!r}: expected a JSON array of strings")
        return value
    return ["/bin/sh", "-c", text]


class _HashingReader:
    """A read-only stream that hashes (and optionally copies) everything read through it."""

    def __init__(self, src: IO[bytes], tee: IO[bytes] | None = None) -> None:
        import hashlib

        self.src, self.tee = src, tee
        self.hash = hashlib.sha256()
        self._peeked = b""

    def peek(self, n: int) -> bytes:
        while len(self._peeked) < n:
            chunk = self.src.read(n - len(self._peeked))
            if not chunk:
                break
            self._consume(chunk)
            self._peeked += chunk
        return self._peeked

    def _consume(self, chunk: bytes) -> None:
        self.hash.update(chunk)
        if self.tee is not None:
            self.tee.write(chunk)

    def read(self, n: int = -1) -> bytes:
        if self._peeked:
            out, self._peeked = self._peeked[: n if n >= 0 else None], self._peeked[n if n >= 0 else len(self._peeked):]
            return out
        chunk = self.src.read(n)
        self._consume(chunk)
        return chunk

    def drain(self) -> None:
        while self.read(1 << 20):
            pass

    def hexdigest(self) -> str:
        return self.hash.hexdigest()

    def readable(self) -> bool:
        return True


def _tree_size(path: str) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def _pid_alive(pid: str) -> bool:
    return pid.isdigit() and os.path.exists(f"/proc/{pid}")
