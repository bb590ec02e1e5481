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

from pycontain import faults, jsonfast
from pycontain.errors import ImageError, ImageNotFound, PycontainError, UsageError
from pycontain.images import reference
from pycontain.safefile import create_new, replace_file
from pycontain.state import Paths, atomic_write_json, read_json, rmtree, tree_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import IO, Any, Protocol

    from pycontain.images.budget import Budget

    class Reader(Protocol):
        """Anything with read(n): a file, an HTTP response, a decompressor, a hashing wrapper."""

        def read(self, n: int = -1, /) -> bytes: ...


class DamagedStore(ImageError):
    """refs.json (the tags) does not parse: a disk error, a hand edit. Every command that needs the tags
    says so in one line, `images` lists the images untagged and names the damage, and `gc` repairs the
    file (Store.repair_refs), recovering every tag still legible in it."""


# A `"reference": "sha256:<hex>"` pair: what repair_refs salvages from a refs.json that no longer parses.
_REF_PAIR = r'"([^"\\]{1,255})"\s*:\s*"(sha256:[0-9a-f]{64})"'


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
        self.paths = paths
        self.root = paths.images
        self.blobs = f"{self.root}/blobs/sha256"
        self.layers = f"{self.root}/layers"
        self.refs_file = f"{self.root}/refs.json"

    # -- reading --
    def refs(self) -> dict[str, str]:
        """refs.json: reference -> image id. DamagedStore if it does not parse (never {} then: a write based
        on that would drop every tag); an entry that is not a string and an image id is left out."""
        try:
            data = read_json(self.refs_file)
        except FileNotFoundError:
            return {}
        except ValueError as e:
            raise DamagedStore(f"the image tags file {self.refs_file} is damaged ({e}); `pycontain gc` repairs it") \
                from None
        if not isinstance(data, dict):
            raise DamagedStore(f"the image tags file {self.refs_file} is damaged (not a JSON object); "
                               "`pycontain gc` repairs it")
        return {r: i for r, i in data.items() if isinstance(i, str) and i.startswith("sha256:")}

    def _bad_entry(self, ref: object, image_id: object) -> str | None:
        """Why a refs.json entry is unusable (None: it is fine, perhaps once written in normal form)."""
        if not isinstance(ref, str) or not isinstance(image_id, str):
            return "is not a reference and an image id"
        try:
            reference.parse(ref)
        except UsageError:
            return "is not a valid image reference"
        if not reference.is_digest(image_id):
            return f"names {image_id!r}, which is not an image id"
        if not os.path.isfile(self.blob_path(image_id)):
            return f"names image {image_id[7:19]}, which is not in the store"
        return None

    def problems(self) -> list[str]:
        """Damage in the tags, one line each, for `images` to name; `gc` repairs it (repair_refs)."""
        try:
            data = read_json(self.refs_file)
        except FileNotFoundError:
            return []
        except ValueError as e:
            return [f"the image tags file {self.refs_file} is damaged ({e}): images are listed untagged; "
                    "`pycontain gc` repairs it"]
        if not isinstance(data, dict):
            return [f"the image tags file {self.refs_file} is damaged (not a JSON object): images are listed "
                    "untagged; `pycontain gc` repairs it"]
        return [f"tag {r!r} in {self.refs_file} {why}; `pycontain gc` removes it"
                for r, i in data.items() if (why := self._bad_entry(r, i))]

    def repair_refs(self) -> list[str]:
        """`gc`: make refs.json whole again. Entries naming a stored image are kept (in normal form), the
        rest dropped; from a file that no longer parses, every legible `"ref": "sha256:..."` pair is
        recovered, and the damaged file is kept beside it as refs.json.damaged for a human to read."""
        if not os.path.exists(self.refs_file):
            return []
        done = []
        with open(f"{self.root}/lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with open(self.refs_file, "rb") as f:
                raw = f.read()
            try:
                data = jsonfast.loads(raw)
            except ValueError:
                data = None
            if isinstance(data, dict):
                entries = list(data.items())
            else:
                import re

                entries = re.findall(_REF_PAIR, raw.decode(errors="replace"))
                replace_file(f"{self.refs_file}.damaged", raw)
                done.append(f"repaired the damaged image tags file {self.refs_file} (a copy of it is in "
                            f"refs.json.damaged): {len(entries)} tag(s) recovered")
            fixed: dict[str, str] = {}
            for r, i in entries:
                why = self._bad_entry(r, i)
                if why is None:
                    fixed[str(reference.parse(r))] = i
                else:
                    done.append(f"removed tag {r!r} from {self.refs_file}: it {why}")
            if fixed != data:
                atomic_write_json(self.refs_file, fixed)
        return done

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

    def inspect(self, image: Image) -> dict[str, Any]:
        """Docker-shaped `inspect` JSON of an image (for details.py): Docker's fields with Docker's types, so
        scripts written for `docker image inspect` read it, then pycontain's own (Layers: the blob each
        layer came from; LayerDirs: the unpacked directories, lowest first)."""
        config = image.config
        diff_ids = list(config.get("rootfs", {}).get("diff_ids", []))
        tags = sorted(reference.parse(r).familiar for r, i in self.refs().items()
                      if i == image.id and reference.parse(r).tag)
        meta = self.meta(image.id)
        dirs = list(image.layers)
        return {
            "Id": image.id, "RepoTags": tags, "RepoDigests": meta.get("repo_digests", []),
            # Docker's Parent is the local parent image of a classic build: pycontain keeps no such link.
            "Parent": "", "Comment": config.get("comment", "") or _last_comment(config),
            "Created": config.get("created") or ZERO_TIME, "DockerVersion": "",
            "Author": config.get("author", ""), "Config": config.get("config", {}),
            "Architecture": config.get("architecture") or "", "Variant": config.get("variant"),
            "Os": config.get("os") or "", "Size": self.image_size(config),
            "GraphDriver": {"Name": "overlay2", "Data": {
                # Docker's names: the top layer is UpperDir, the ones below it LowerDir (top first).
                "LowerDir": ":".join(reversed(dirs[:-1])) if len(dirs) > 1 else None,
                "UpperDir": dirs[-1] if dirs else None, "MergedDir": None, "WorkDir": None}},
            "RootFS": {"Type": config.get("rootfs", {}).get("type", "layers"), "Layers": diff_ids},
            "Metadata": {"LastTagTime": meta.get("last_tag_time") or ZERO_TIME},
            "History": config.get("history", []),
            "Layers": [self.layer_info(d).get("blob") for d in diff_ids], "LayerDirs": dirs,
        }

    def _by_id_prefix(self, name: str, refs: dict[str, str]) -> str | None:
        hexpart = name.removeprefix("sha256:")
        if len(hexpart) < 4 or not all(c in "0123456789abcdef" for c in hexpart):
            return None
        # Every stored image, untagged ones too (`<none>` in `images`, runnable by id as in Docker).
        found = {i for i in self.image_ids() if i.split(":", 1)[1].startswith(hexpart)}
        return found.pop() if len(found) == 1 else None

    def images(self) -> list[tuple[str, str, dict[str, Any], int]]:
        """(familiar repo, tag, config, size in bytes) for every tag, then `<none>` rows for untagged images."""
        out = []
        tagged = set()
        try:
            refs = self.refs()
        except DamagedStore:
            refs = {}  # `images` names the damage (problems()): every image is listed, untagged
        parsed = {}
        for ref, image_id in refs.items():
            try:
                parsed[ref] = (reference.parse(ref), image_id)
            except UsageError:
                continue  # named by problems(), removed by gc
        for _ref, (r, image_id) in sorted(parsed.items()):
            try:
                config = jsonfast.loads(self.blob(image_id))
            except (OSError, ValueError):
                continue
            if r.digest and not r.tag and any(i == image_id and o.repository == r.repository and o.tag
                                              for o, i in parsed.values()):
                continue  # pulled by digest and also tagged: the tag row says it
            tagged.add(image_id)
            out.append((r.familiar_repository, r.tag or "<none>", config | {"id": image_id}, self.image_size(config)))
        for image_id in sorted(self.image_ids() - tagged):
            try:
                config = jsonfast.loads(self.blob(image_id))
            except (OSError, ValueError):
                continue
            out.append(("<none>", "<none>", config | {"id": image_id}, self.image_size(config)))
        return out

    def _layer_size(self, diff_id: str) -> int:
        try:
            return int(read_json(f"{self.layers}/{diff_id.split(':', 1)[1]}.json")["size"])
        except (OSError, ValueError, KeyError):
            return 0

    def layer_info(self, diff_id: str) -> dict[str, Any]:
        """What the store knows about an unpacked layer: size, and the blob (and compression) it came from."""
        try:
            return dict(read_json(f"{self.layers}/{diff_id.split(':', 1)[1]}.json"))
        except (OSError, ValueError):
            return {}

    def has_layer(self, diff_id: str) -> bool:
        return os.path.isdir(f"{self.layers}/{diff_id.split(':', 1)[1]}")

    def has_blob(self, digest: str) -> bool:
        return os.path.isfile(self.blob_path(digest))

    def blob_path(self, digest: str) -> str:
        return f"{self.blobs}/{digest.split(':', 1)[1]}"

    def meta(self, image_id: str) -> dict[str, Any]:
        """Per-image facts that are not in the config: the manifest it was pulled with, repo digests."""
        try:
            return dict(read_json(f"{self.root}/meta/{image_id.split(':', 1)[1]}.json"))
        except (OSError, ValueError):
            return {}

    def image_ids(self) -> set[str]:
        """Every image in the store, tagged or not (untagged ones are `<none>`, removed by `image prune`)."""
        try:
            ids = set(self.refs().values())
        except DamagedStore:
            ids = set()  # the images are still there, each with its meta file
        try:
            ids |= {f"sha256:{n[:-5]}" for n in os.listdir(f"{self.root}/meta") if n.endswith(".json")}
        except FileNotFoundError:
            pass
        return {i for i in ids if os.path.exists(self.blob_path(i))}

    def config(self, image_id: str) -> dict[str, Any]:
        try:
            return dict(jsonfast.loads(self.blob(image_id)))
        except (OSError, ValueError) as e:
            raise ImageError(f"image {image_id[7:19]} is damaged in the store ({e}); pull or load it again") from None

    def image_size(self, config: dict[str, Any]) -> int:
        return sum(self._layer_size(d) for d in config.get("rootfs", {}).get("diff_ids", []))

    # -- writing --
    def ensure(self) -> None:
        """Make the store's directories: every writer (here, load, pull) calls this before writing."""
        for d in (self.blobs, self.layers, f"{self.root}/meta", f"{self.root}/locks"):
            os.makedirs(d, mode=0o700, exist_ok=True)

    def put_blob(self, data: bytes) -> str:
        self.ensure()
        digest = sha256(data)[7:]
        path = f"{self.blobs}/{digest}"
        if not os.path.exists(path):
            tmp = f"{self.blobs}/.tmp-{os.getpid()}-{time.monotonic_ns()}"
            with os.fdopen(create_new(tmp), "wb") as f:
                f.write(data)
            os.rename(tmp, path)
        return f"sha256:{digest}"

    def lock(self, name: str, shared: bool = False) -> int:
        """flock a file under images/locks; returns the fd (closing it releases the lock).

        `gc` is taken shared by everything that adds to the store (pull, load, import) and exclusively
        by what deletes (rmi, prune), so a layer is never collected between being unpacked and tagged.
        `<digest hex>` serialises the download of one blob: a second concurrent pull waits, then finds
        the layer present instead of fetching it again.
        """
        self.ensure()
        fd = os.open(f"{self.root}/locks/{name}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        return fd

    def add_layer(self, stream: Reader, expect_digest: str | None = None, expect_diff_id: str | None = None,
                  on_bytes: Callable[[int], None] | None = None, what: str = "layer",
                  budget: Budget | None = None, known_size: int = 0) -> tuple[str, str, int]:
        """Store a layer tarball's blob and unpack it once. Returns (blob digest, diff id, size).

        One pass over the stream: the compressed bytes are hashed and copied to a temp blob while they
        are decompressed, hashed again (the diff id) and unpacked into a temp dir. Only when both hashes
        are what the manifest and config promise are the two renamed into place; otherwise both temps
        are deleted, so a bad or truncated download never becomes part of the store.

        budget (images/budget.py) is the image's: both streams are charged to it as they are read, and
        known_size (a lower bound of what the layer will take, e.g. its blob size) must fit first.
        """
        from pycontain.images.budget import Budget
        from pycontain.images.unpack import unpack

        self.ensure()
        if budget is None:
            budget = Budget(self.root, what)
        budget.before_layer(known_size, what)
        if on_bytes is None:
            on_stored = budget.stored
        else:
            def on_stored(n: int, progress: Callable[[int], None] = on_bytes) -> None:
                budget.stored(n)
                progress(n)
        stamp = f"{os.getpid()}-{time.monotonic_ns()}"
        tmp_blob, tmp_dir = f"{self.blobs}/.tmp-{stamp}", f"{self.layers}/.tmp-{stamp}"
        os.mkdir(tmp_dir, 0o755)
        proc = None
        try:
            with os.fdopen(create_new(tmp_blob), "wb") as blob_out:
                compressed = _HashingReader(stream, tee=blob_out, on_bytes=on_stored)
                try:
                    compression = _compression(compressed.peek(4))
                    plain, proc = decompressor(compression, compressed)
                    diff = _HashingReader(plain, on_bytes=budget.unpacked_bytes)
                    unpack(diff, tmp_dir)
                    diff.drain()
                    if proc is not None:
                        _finish_zstd(proc)
                    compressed.drain()
                    faults.phase("layer.unpacked")
                except Exception as e:  # gzip/zlib/zstd: bad CRC, bad data, truncated stream
                    refused = getattr(proc, "feed_error", None)
                    if isinstance(refused, PycontainError):
                        raise refused from None  # the zstd feeder stopped (OverBudget): the real cause
                    if isinstance(e, PycontainError):
                        raise
                    if isinstance(e, OSError) and e.errno is not None:
                        raise  # a real I/O error (disk full ...): say it as it is
                    raise ImageError(f"{what} {(expect_digest or '')[:19]} failed verification: it does not "
                                     f"decompress ({e}); the download was deleted, pull again") from None
            blob_digest, diff_id = f"sha256:{compressed.hexdigest()}", f"sha256:{diff.hexdigest()}"
            if expect_digest and blob_digest != expect_digest:
                raise ImageError(f"{what} {expect_digest[:19]} failed verification: its content hashes to "
                                 f"{blob_digest[:19]}; the download was deleted, pull again")
            if expect_diff_id and diff_id != expect_diff_id:
                raise ImageError(f"{what} {blob_digest[:19]} unpacks to {diff_id[:19]}, but the image config says "
                                 f"{expect_diff_id[:19]}; the image is inconsistent, its layer was deleted")
            new_blob = not self.has_blob(blob_digest)
            os.rename(tmp_blob, self.blob_path(blob_digest))
            if new_blob:
                budget.added_blobs.append(blob_digest)
            size = tree_size(tmp_dir)
            final = f"{self.layers}/{diff_id[7:]}"
            if os.path.exists(final):
                rmtree(tmp_dir)  # another import unpacked the same layer first
            else:
                atomic_write_json(f"{final}.json", {"size": size, "blob": blob_digest, "compression": compression,
                                                    "diff_size": diff.count})
                try:
                    os.rename(tmp_dir, final)
                    budget.added_layers.append(diff_id)
                except OSError:  # lost a race with another writer of the same layer: theirs is as good
                    rmtree(tmp_dir)
            return blob_digest, diff_id, size
        except BaseException:
            if proc is not None:
                proc.kill()
                proc.wait()
            rmtree(tmp_dir)
            if os.path.exists(tmp_blob):
                os.unlink(tmp_blob)
            raise

    def tag(self, ref: reference.Reference, image_id: str) -> None:
        self.retag({str(ref): image_id})

    def retag(self, add: dict[str, str], remove: tuple[str, ...] = ()) -> dict[str, str]:
        """Change refs.json under its lock; returns the refs as they were before."""
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        with open(f"{self.root}/lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            before = self.refs()
            refs = dict(before)
            for r in remove:
                refs.pop(r, None)
            refs.update(add)
            if refs != before:  # an up-to-date pull changes nothing: no write, no fsync
                atomic_write_json(self.refs_file, refs)
            return before

    def write_meta(self, image_id: str, **facts: Any) -> None:
        self.ensure()
        before = self.meta(image_id)
        meta = dict(before)
        for key, value in facts.items():
            if key == "repo_digests":
                value = sorted(set(meta.get("repo_digests", [])) | set(value))
            meta[key] = value
        if meta != before or not os.path.exists(f"{self.root}/meta/{image_id[7:]}.json"):
            atomic_write_json(f"{self.root}/meta/{image_id[7:]}.json", meta)

    def import_tarball(self, path: str, name: str, changes: list[str] = ()) -> str:  # type: ignore[assignment]
        """`docker import`: a root filesystem tarball becomes a one-layer image tagged `name`."""
        ref = reference.parse(name)
        config_section = apply_changes({}, changes)
        self.refs()  # damaged tags (DamagedStore): say so now, before a layer is stored that nothing would tag
        try:
            f = open(path, "rb")
        except OSError as e:
            raise UsageError(f"cannot read {path}: {e.strerror}") from None
        from pycontain.images.budget import Budget

        gc_fd = self.lock("gc", shared=True)
        try:
            with f:
                # The tarball's size is what its blob copy takes, at least: it must fit before unpacking.
                _, diff_id, _ = self.add_layer(f, budget=Budget(self.root, f"image {ref.familiar}"),
                                               known_size=os.fstat(f.fileno()).st_size)
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            config = {
                "created": created,
                "architecture": "amd64",
                "os": "linux",
                "config": config_section,
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                "history": [{"created": created, "created_by": f"pycontain import {os.path.basename(path)}"}],
            }
            faults.phase("import.stored")
            image_id = self.put_blob(jsonfast.dumps(config).encode())
            self.write_meta(image_id)
            self.tag(ref, image_id)
        finally:
            os.close(gc_fd)
        return image_id

    # -- removing --
    def containers_using(self, paths: Paths) -> dict[str, list[tuple[str, bool, list[str]]]]:
        """image id -> [(container name, running?, its layer dirs)] from the container records."""
        from pycontain import state

        out: dict[str, list[tuple[str, bool, list[str]]]] = {}
        for rec in state.all_records(paths):
            try:
                rec.meta()  # read once, inside the guard: the accessors below use it
                running = rec.status() == state.Status.RUNNING or rec.is_locked()
            except (OSError, ValueError):
                continue
            out.setdefault(rec.image_id, []).append((str(rec.meta().get("name", rec.short_id)), running, rec.layers))
        return out

    def delete_image(self, image_id: str) -> None:
        """Forget an image (its tags must be gone); its layers go at the next collect_garbage."""
        for path in (f"{self.root}/meta/{image_id[7:]}.json", self.blob_path(image_id)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def collect_garbage(self, paths: Paths) -> list[str]:
        """Delete blobs and layers no image and no container uses. Caller holds the `gc` lock exclusively."""
        keep_layers, keep_blobs = self._in_use(paths)
        removed = []
        for name in _listdir(self.layers):
            base = name[:-5] if name.endswith(".json") else name
            if len(base) == 64 and base not in keep_layers:
                rmtree(f"{self.layers}/{name}")
                removed.append(f"sha256:{base}")
        for name in _listdir(self.blobs):
            if len(name) == 64 and name not in keep_blobs:
                os.unlink(f"{self.blobs}/{name}")
        self._drop_locks(keep_layers | keep_blobs)
        return sorted(set(removed))

    def discard_unused(self, paths: Paths, budget: Budget, gc_fd: int) -> None:
        """After a refused image (OverBudget): remove the layers and blobs it added that nothing uses.

        gc_fd is the caller's shared `gc` lock. It is turned exclusive without waiting, because only
        then is no other pull between unpacking a layer and tagging the image that needs it; if another
        writer holds the store, its leftovers wait for `image prune` instead. (A failed non-blocking
        conversion drops the shared lock, which the caller is about to release anyway.)
        """
        try:
            fcntl.flock(gc_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        keep_layers, keep_blobs = self._in_use(paths)
        for diff_id in budget.added_layers:
            if diff_id[7:] not in keep_layers:
                rmtree(f"{self.layers}/{diff_id[7:]}")
                rmtree(f"{self.layers}/{diff_id[7:]}.json")
        for digest in budget.added_blobs:
            if digest[7:] not in keep_blobs:
                rmtree(self.blob_path(digest))
        self._drop_locks(keep_layers | keep_blobs)

    def _drop_locks(self, keep: set[str]) -> None:
        """Per-blob/per-layer lock files of what is gone: safe while `gc` is held exclusively, since then
        no pull or load holds one."""
        for name in _listdir(f"{self.root}/locks"):
            if len(name) == 64 and name not in keep:
                os.unlink(f"{self.root}/locks/{name}")

    def _in_use(self, paths: Paths) -> tuple[set[str], set[str]]:
        """(layer hexes, blob hexes) some image or container needs."""
        keep_layers: set[str] = set()
        keep_blobs: set[str] = set()
        for image_id in self.image_ids():
            keep_blobs.add(image_id[7:])
            meta = self.meta(image_id)
            for key in ("manifest", "index"):
                if meta.get(key):
                    keep_blobs.add(str(meta[key])[7:])
            try:
                diff_ids = self.config(image_id).get("rootfs", {}).get("diff_ids", [])
            except ImageError:
                continue
            keep_layers.update(d[7:] for d in diff_ids)
        for users in self.containers_using(paths).values():
            keep_layers.update(os.path.basename(d) for _, _, layers in users for d in layers)
        keep_layers.update(self._cached_layers())
        for layer in keep_layers:
            blob = self.layer_info(f"sha256:{layer}").get("blob")
            if isinstance(blob, str):
                keep_blobs.add(blob[7:])
        return keep_layers, keep_blobs

    def _cached_layers(self) -> set[str]:
        """Layers the build cache (images/cache/<key>.json, build/builder.py) names: kept until `builder
        prune` drops the entries, so that `image prune` and `rmi` leave a Dockerfile's cache alone."""
        keep = set()
        for name in _listdir(f"{self.root}/cache"):
            try:
                with open(f"{self.root}/cache/{name}", "rb") as f:
                    diff_id = jsonfast.loads(f.read()).get("diff_id")
            except (OSError, ValueError, AttributeError):
                continue
            if isinstance(diff_id, str) and diff_id.startswith("sha256:"):
                keep.add(diff_id[7:])
        return keep

    def gc_temp(self) -> list[str]:
        """Remove half-written blobs, layers and JSON files left by an import, pull or load that was killed.

        Temp names carry their writer's pid: `.tmp-<pid>-...` (blobs, layer dirs, load's spool) and
        `.<name>.tmp-<pid>-...` (atomic_write_json, through safefile.py).
        """
        removed = []
        for d in (self.blobs, self.layers, self.root, f"{self.root}/meta", f"{self.root}/cache"):
            for entry in _listdir(d):
                if entry.startswith(".") and ".tmp-" in entry \
                        and not _pid_alive(entry.rsplit(".tmp-", 1)[1].split("-", 1)[0]):
                    rmtree(f"{d}/{entry}")
                    removed.append(f"{d}/{entry}")
        return removed


def check_config(config: dict[str, Any], what: str) -> None:
    """The parts of an untrusted image config that `run` reads (config.with_image_defaults): each of the
    wrong type is refused here, as the image enters the store (pull, load), in one ImageError, rather than
    failing every `run` of it later."""
    section = config.get("config")
    if section is None:
        return
    if not isinstance(section, dict):
        raise ImageError(f"the config of {what} is broken: its `config` is not an object")
    for key in ("Entrypoint", "Cmd", "Env"):
        value = section.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise ImageError(f"the config of {what} is broken: config.{key} is not a list of strings")
    for key in ("WorkingDir", "User"):
        if section.get(key) is not None and not isinstance(section[key], str):
            raise ImageError(f"the config of {what} is broken: config.{key} is not a string")


def sha256(data: bytes) -> str:
    """"sha256:<hex>" of a small document (manifest, config). CPython's built-in sha256 module: hashlib
    first loads OpenSSL (~10 ms here), which pays off only for layers (add_layer uses hashlib)."""
    try:
        from _sha256 import sha256 as builtin  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        try:
            from _sha2 import sha256 as builtin  # type: ignore[import-not-found,no-redef,unused-ignore]
        except ImportError:
            from hashlib import sha256 as builtin  # type: ignore[assignment,unused-ignore]
    return "sha256:" + str(builtin(data).hexdigest())


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _compression(head: bytes) -> str:
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return "zstd"
    return "none"


def decompressor(compression: str, src: Reader) -> tuple[Reader, Any]:
    """A reader of the uncompressed tar, and (for the zstd command) the process to wait for.

    zstd uses the `zstandard` package when it is installed, else Debian's `zstd` command fed by a
    thread (the tar reader must see a stream, and we keep hashing the compressed bytes ourselves).
    """
    if compression == "gzip":
        import gzip

        return gzip.GzipFile(fileobj=src, mode="rb"), None  # type: ignore[call-overload]
    if compression != "zstd":
        return src, None
    try:
        import zstandard
    except ImportError:
        return _zstd_command(src)
    return zstandard.ZstdDecompressor().stream_reader(src, read_across_frames=True), None


def _zstd_command(src: Reader) -> tuple[Reader, Any]:
    import shutil
    import subprocess
    import threading

    exe = shutil.which("zstd")
    if exe is None:
        raise ImageError("this image has zstd-compressed layers: install the `zstd` package "
                         "(apt-get install zstd) or the zstandard Python package, then pull again")
    # Its own complaint about a bad stream would be a second line on the user's terminal: the error
    # pycontain raises (_finish_zstd, or the tar reader's) is the one line that says it.
    proc = subprocess.Popen([exe, "-dcq"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def feed() -> None:
        assert proc.stdin is not None
        try:
            while chunk := src.read(1 << 20):
                proc.stdin.write(chunk)
        except (OSError, ValueError):
            pass  # zstd exited (bad input) or we are unwinding; its exit status tells
        except PycontainError as e:  # the budget refused the layer: add_layer reports it, not a thread traceback
            proc.feed_error = e  # type: ignore[attr-defined]
        finally:
            try:
                proc.stdin.close()
            except OSError:
                pass

    proc.feeder = threading.Thread(target=feed, daemon=True)  # type: ignore[attr-defined]
    proc.feeder.start()  # type: ignore[attr-defined]
    return proc.stdout, proc  # type: ignore[return-value]


def _finish_zstd(proc: Any) -> None:
    proc.feeder.join()
    if isinstance(getattr(proc, "feed_error", None), PycontainError):
        raise proc.feed_error
    if proc.wait() != 0:
        raise ImageError("a zstd layer failed to decompress (the zstd command reported an error); pull again")


# The instructions `commit -c` and `import -c` take (Docker's list): the ones that only change the config.
CHANGE_INSTRUCTIONS = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER", "VOLUME",
                       "WORKDIR")


def apply_changes(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """Docker's `--change` / `-c` instructions applied to an image's `config` section (a new dict).

    Each is one Dockerfile line, read by the reference parser (the `dockerfile` package), so quoting,
    JSON and shell forms are the Dockerfile's: CMD, ENTRYPOINT (which clears an inherited Cmd unless a
    CMD came first, as in a Dockerfile), ENV (KEY=VALUE pairs or the legacy `KEY VALUE`), EXPOSE
    (PORT[/PROTO], ranges), LABEL, ONBUILD (the trigger is stored), STOPSIGNAL, USER, VOLUME, WORKDIR
    (a relative one goes under the current one). Anything else is refused in one UsageError.
    """
    out = dict(config)
    cmd_set = False
    for change in changes:
        cmd = _parse_change(change)
        word, values = cmd.cmd.upper(), list(cmd.value)

        def bad(why: str, change: str = change) -> UsageError:
            return UsageError(f"invalid --change {change!r}: {why}")

        if word in ("CMD", "ENTRYPOINT"):
            if not cmd.json and not (values and values[0]):
                raise bad(f"{word} needs a command")
            out[word.capitalize()] = _exec_form(values, cmd.json)
            if word == "CMD":
                cmd_set = True
            elif not cmd_set:
                out.pop("Cmd", None)
        elif word in ("ENV", "LABEL"):
            if len(values) < 2 or len(values) % 2 or not all(values[::2]):
                raise bad(f"{word} needs KEY=VALUE")
            pairs = [(_unquote(k), _unquote(v)) for k, v in zip(values[::2], values[1::2], strict=True)]
            if word == "ENV":
                env = list(out.get("Env") or [])
                for key, value in pairs:
                    env = [e for e in env if e.split("=", 1)[0] != key] + [f"{key}={value}"]
                out["Env"] = env
            else:
                out["Labels"] = dict(out.get("Labels") or {}) | dict(pairs)
        elif word == "EXPOSE":
            ports = dict(out.get("ExposedPorts") or {})
            for spec in values:
                ports.update(dict.fromkeys(_ports(spec, bad), {}))
            if not values or not values[0]:
                raise bad("EXPOSE needs a port")
            out["ExposedPorts"] = ports
        elif word == "VOLUME":
            paths = [v for v in values if v]
            if not paths:
                raise bad("VOLUME needs a path")
            out["Volumes"] = dict(out.get("Volumes") or {}) | dict.fromkeys(paths, {})
        elif word in ("USER", "STOPSIGNAL", "WORKDIR", "ONBUILD"):
            value = " ".join(values).strip() if word != "ONBUILD" else cmd.original.strip()[len(word):].strip()
            if not value:
                raise bad(f"{word} needs a value")
            if word == "USER":
                out["User"] = value
            elif word == "STOPSIGNAL":
                from pycontain.config import parse_signal

                parse_signal(value)  # a signal this host knows, or the container could never be stopped by it
                out["StopSignal"] = value
            elif word == "WORKDIR":
                out["WorkingDir"] = os.path.normpath(os.path.join(out.get("WorkingDir") or "/", value))
            else:
                trigger = (cmd.sub_cmd or "").upper()
                if trigger in ("ONBUILD", "FROM", "MAINTAINER") or not trigger:
                    raise bad(f"ONBUILD cannot take {trigger or 'nothing'}")
                out["OnBuild"] = list(out.get("OnBuild") or []) + [value]
        else:
            raise bad(f"{word} is not a change commit/import can make (they take: {', '.join(CHANGE_INSTRUCTIONS)})")
    return out


def _parse_change(change: str) -> Any:
    import dockerfile  # type: ignore[import-not-found,unused-ignore]  # untyped (a cffi wrapper of the Go parser)

    text = change.strip()
    if not text or "\n" in text:
        raise UsageError(f"invalid --change {change!r}: expected one Dockerfile instruction")
    try:
        parsed = dockerfile.parse_string(text)
    except dockerfile.GoParseError as e:
        raise UsageError(f"invalid --change {change!r}: {e}") from None
    if len(parsed) != 1:
        raise UsageError(f"invalid --change {change!r}: expected one Dockerfile instruction")
    return parsed[0]


def _unquote(word: str) -> str:
    """A Dockerfile word without its quotes and backslash escapes (ENV and LABEL values)."""
    out, quote, i = [], "", 0
    while i < len(word):
        c = word[i]
        if c == "\\" and i + 1 < len(word) and quote != "'":
            out.append(word[i + 1])
            i += 2
            continue
        if c in "'\"" and quote in ("", c):
            quote = "" if quote else c
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _ports(spec: str, bad: Callable[[str], UsageError]) -> list[str]:
    port, _, proto = spec.partition("/")
    proto = proto.lower() or "tcp"
    low, _, high = port.partition("-")
    if proto not in ("tcp", "udp", "sctp") or not low.isdigit() or (high and not high.isdigit()):
        raise bad(f"invalid port {spec!r}: expected PORT[-PORT][/tcp|udp|sctp]")
    first, last = int(low), int(high or low)
    if not 0 < first <= last <= 65535:
        raise bad(f"invalid port {spec!r}: ports are 1 to 65535")
    return [f"{p}/{proto}" for p in range(first, last + 1)]


def _exec_form(values: list[str], json_form: bool) -> list[str]:
    """CMD/ENTRYPOINT as the image stores them: the JSON array as given, the shell form under /bin/sh -c
    (text the parser could not read as JSON is the shell form, as in a Dockerfile)."""
    return list(values) if json_form else ["/bin/sh", "-c", values[0]]


class _HashingReader:
    """A read-only stream that hashes (and optionally copies) everything read through it."""

    def __init__(self, src: Reader, tee: IO[bytes] | None = None,
                 on_bytes: Callable[[int], None] | None = None) -> None:
        import hashlib

        self.src, self.tee, self.on_bytes = src, tee, on_bytes
        self.hash = hashlib.sha256()
        self.count = 0
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
        self.count += len(chunk)
        if self.tee is not None:
            self.tee.write(chunk)
        if self.on_bytes is not None and chunk:
            self.on_bytes(len(chunk))

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


def _pid_alive(pid: str) -> bool:
    return pid.isdigit() and os.path.exists(f"/proc/{pid}")


# Go's zero time.Time, which Docker prints for a date it does not know.
ZERO_TIME = "0001-01-01T00:00:00Z"


def _last_comment(config: dict[str, Any]) -> str:
    """Docker's image Comment: the comment of the newest history entry (`commit -m`, `import -m`)."""
    history = config.get("history") or []
    last = history[-1] if history and isinstance(history[-1], dict) else {}
    return str(last.get("comment", ""))
