"""`pycontain pull`: manifest -> (platform's manifest) -> config -> layers, each verified and unpacked once.

    1. GET the manifest by tag or digest. A manifest list / OCI index is resolved to the entry for our
       platform (linux/amd64 unless --platform says otherwise), fetched by digest, and checked.
    2. GET the config blob; its sha256 is the image id. Its rootfs.diff_ids name the uncompressed layers.
    3. For each layer not already unpacked: GET the blob and, in one pass, hash it (must equal the
       manifest's digest), decompress it, hash the tar (must equal the config's diff_id) and unpack it
       into a temp dir (images/unpack.py: layers are untrusted). Both are renamed into place only when
       both digests match; anything else deletes the temp files and fails the pull.
    4. Store the config and manifest blobs, then move the tag (refs.json, atomically, under its lock).

A pull killed at any point leaves only `.tmp-<pid>-*` files, which the next pull (or `pycontain gc`)
removes; the store itself only ever gains complete, verified objects. Two concurrent pulls of the same
image serialise per layer on a lock named by the blob digest: the second finds the layer present.
"""

from __future__ import annotations

import os

from pycontain import faults, jsonfast
from pycontain.errors import ImageError, RegistryError, UsageError
from pycontain.images import reference, registry
from pycontain.images.budget import Budget, OverBudget
from pycontain.images.progress import Progress
from pycontain.images.store import Image, Store, check_config, sha256
from pycontain.state import Paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pycontain.images.store import Reader

LAYER_TYPES = {
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.zstd",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
}
MAX_CONFIG_BYTES = 8 << 20
PARALLEL_DOWNLOADS = 3
_MACHINES = {"x86_64": ("amd64", ""), "aarch64": ("arm64", "v8"), "armv7l": ("arm", "v7"),
             "armv6l": ("arm", "v6"), "i686": ("386", ""), "ppc64le": ("ppc64le", ""), "s390x": ("s390x", ""),
             "riscv64": ("riscv64", "")}


def _machine() -> str:
    return os.uname().machine


def parse_platform(text: str | None) -> tuple[str, str, str]:
    """`linux/arm64/v8` -> (os, architecture, variant); None -> this host's platform."""
    if not text:
        arch, variant = _MACHINES.get(_machine(), (_machine(), ""))
        return "linux", arch, ""
    parts = text.lower().split("/")
    if len(parts) == 1:
        parts = ["linux", *parts]
    if not 2 <= len(parts) <= 3 or not all(parts):
        raise UsageError(f"invalid --platform {text!r}: expected OS/ARCH[/VARIANT], e.g. linux/arm64/v8")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else ""


def choose_platform(index: dict[str, Any], wanted: tuple[str, str, str], name: str) -> dict[str, Any]:
    """The index entry for wanted (os, arch, variant); an empty wanted variant accepts any."""
    entries = index.get("manifests")
    if not isinstance(entries, list):
        raise RegistryError(f"the manifest list of {name} has no manifests")
    candidates, seen = [], []
    for entry in entries:
        p = entry.get("platform") if isinstance(entry, dict) else None
        p = p if isinstance(p, dict) else {}
        # Untrusted: anything that is not a string names no platform.
        os_, arch, variant = (v if isinstance(v, str) else "" for v in (p.get("os"), p.get("architecture"),
                                                                        p.get("variant")))
        if os_ == "unknown":
            continue  # build attestations, not runnable images
        seen.append("/".join(x for x in (os_, arch, variant) if x))
        if os_ == wanted[0] and arch == wanted[1] and (not wanted[2] or variant == wanted[2]):
            candidates.append(entry)
    if not candidates:
        want = "/".join(x for x in wanted if x)
        raise ImageError(f"{name} has no image for {want} (it has: {', '.join(seen) or 'none'}); "
                         "choose one with --platform")
    # Without a requested variant prefer the host's usual one (arm64 -> v8), then the first listed.
    host_variant = _MACHINES.get(_machine(), ("", ""))[1]
    candidates.sort(key=lambda e: e["platform"].get("variant", "") not in ("", host_variant))
    return dict(candidates[0])


def _check_descriptor(desc: Any, what: str) -> dict[str, Any]:
    if not isinstance(desc, dict) or not isinstance(desc.get("digest"), str) \
            or not reference.is_digest(desc["digest"]):
        raise RegistryError(f"{what} has a missing or unsupported digest (only sha256 is supported)")
    if not isinstance(desc.get("size", 0), int) or desc.get("size", 0) < 0:
        raise RegistryError(f"{what} has an invalid size")
    return desc


class _Limited:
    """At most `size` bytes of a response; a short body is reported as a lost connection."""

    def __init__(self, src: Reader, size: int | None, what: str) -> None:
        self.src, self.left, self.size, self.what = src, size, size or 0, what

    def read(self, n: int = -1) -> bytes:
        try:
            return self._read(n)
        except OSError as e:  # reset, timeout, truncated chunk
            raise RegistryError(f"download of {self.what} failed: {e}; the partial data was deleted, "
                                "pull again") from None

    def _read(self, n: int) -> bytes:
        if self.left is None:
            return self.src.read(n)
        if self.left <= 0:
            return b""
        n = self.left if n < 0 else min(n, self.left)
        chunk = self.src.read(n)
        if not chunk:
            raise RegistryError(f"download of {self.what} ended after {self.size - self.left} of {self.size} "
                                "bytes (connection lost?); the partial data was deleted, pull again")
        self.left -= len(chunk)
        faults.phase("pull.layer")
        return chunk

    def readable(self) -> bool:
        return True


class Puller:
    def __init__(self, paths: Paths, settings: registry.Settings, progress: Progress,
                 platform: str | None = None) -> None:
        self.paths, self.settings, self.progress = paths, settings, progress
        self.store = Store(paths)
        self.platform = parse_platform(platform)

    def pull(self, name: str, announce: str | None = None) -> tuple[str, reference.Reference]:
        """Pull name; returns (image id, the reference it is stored under).

        announce: a line to print before the progress, once the registry has the image (so a pull that
        fails to find it is exactly one error line).
        """
        ref = reference.parse(name)
        self.store.refs()  # damaged tags (DamagedStore): say so before downloading what nothing would tag
        self.store.gc_temp()
        client = registry.Registry(self.paths, ref.domain, ref.path, self.settings)
        try:
            return self._pull(client, ref, announce)
        finally:
            # The kept-alive connections. getattr: stand-ins for Registry in the fuzz tests have no close().
            close = getattr(client, "close", None)
            if close is not None:
                close()

    def _pull(self, client: registry.Registry, ref: reference.Reference,
              announce: str | None) -> tuple[str, reference.Reference]:
        top_digest, manifest, manifest_bytes = self._manifest(client, ref)
        # Only now: a pull that fails to find the image says so in one line, with nothing before it.
        if announce:
            self.progress.line(announce)
        self.progress.line(f"{ref.tag or ref.digest}: Pulling from {ref.familiar_repository}")
        config_desc = _check_descriptor(manifest.get("config"), f"the manifest of {ref.familiar}")
        image_id = config_desc["digest"]
        layers = manifest.get("layers")
        if not isinstance(layers, list):
            raise RegistryError(f"the manifest of {ref.familiar} lists no layers")
        layers = [_check_descriptor(d, f"layer {i} of {ref.familiar}") for i, d in enumerate(layers)]
        for d in layers:
            kind = d.get("mediaType")
            if kind and (not isinstance(kind, str) or kind not in LAYER_TYPES):
                raise ImageError(f"{ref.familiar} has a layer of unsupported type {kind!r}")
        budget = Budget(self.store.root, f"image {ref.familiar}")
        gc_fd = self.store.lock("gc", shared=True)
        try:
            config = self._config(client, image_id, ref, budget)
            check_config(config, ref.familiar)
            rootfs = config.get("rootfs")
            diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
            if not isinstance(diff_ids, list) or len(diff_ids) != len(layers) \
                    or not all(isinstance(d, str) and reference.is_digest(d) for d in diff_ids):
                found = len(diff_ids) if isinstance(diff_ids, list) else 0
                raise ImageError(f"the config of {ref.familiar} lists {found} layer digests for "
                                 f"{len(layers)} layers; the image is broken")
            try:
                fetched = self._layers(client, layers, diff_ids, budget)
            except OverBudget:
                self.store.discard_unused(self.paths, budget, gc_fd)  # a refused image leaves no layers
                raise
            faults.phase("pull.blobs")
            manifest_digest = sha256(manifest_bytes)
            if not self.store.has_blob(manifest_digest):
                self.store.put_blob(manifest_bytes)
            facts: dict[str, Any] = {"manifest": manifest_digest,
                                     "repo_digests": [f"{ref.repository}@{top_digest}"]}
            if top_digest != manifest_digest:
                facts["index"] = top_digest
            self.store.write_meta(image_id, **facts)
            before = self.store.retag({str(ref): image_id})
            faults.phase("pull.ref")
        finally:
            os.close(gc_fd)
        self.progress.line(f"Digest: {top_digest}")
        fresh = fetched or before.get(str(ref)) != image_id
        self.progress.line(f"Status: {'Downloaded newer image' if fresh else 'Image is up to date'} "
                           f"for {ref.familiar}")
        return image_id, ref

    def _manifest(self, client: registry.Registry, ref: reference.Reference) -> tuple[str, dict[str, Any], bytes]:
        data, media_type, header_digest = client.manifest(ref.digest or ref.tag or "latest")
        digest = sha256(data)
        if ref.digest and digest != ref.digest:
            raise RegistryError(f"registry {ref.domain} sent a manifest whose digest is {digest}, "
                                f"not the {ref.digest} asked for; refusing it")
        if header_digest and header_digest.startswith("sha256:") and header_digest != digest:
            raise RegistryError(f"registry {ref.domain}: manifest of {ref.familiar} does not match the digest "
                                f"the registry announced ({header_digest[:19]}); refusing it")
        top_digest = digest
        doc = _json(data, f"the manifest of {ref.familiar}")
        media_type = _media_type(doc, media_type)
        if media_type in registry.INDEX_TYPES or (not media_type and "manifests" in doc):
            entry = choose_platform(doc, self.platform, ref.familiar)
            child = _check_descriptor(entry, f"the manifest list of {ref.familiar}")["digest"]
            data, media_type, _ = client.manifest(child)
            if sha256(data) != child:
                raise RegistryError(f"registry {ref.domain} sent a manifest for {child[:19]} with other content; "
                                    "refusing it")
            doc = _json(data, f"the manifest of {ref.familiar}")
            media_type = _media_type(doc, media_type)
        if doc.get("schemaVersion") != 2 or (media_type and media_type not in registry.MANIFEST_TYPES):
            kind = repr(media_type) if media_type else f"schema {doc.get('schemaVersion')!r}"
            raise ImageError(f"{ref.familiar} uses manifest type {kind}, which pycontain does not support "
                             "(Docker schema 2 and OCI are)")
        return top_digest, doc, data

    def _config(self, client: registry.Registry, digest: str, ref: reference.Reference,
                budget: Budget) -> dict[str, Any]:
        if self.store.has_blob(digest):
            return self.store.config(digest)
        data = client.blob(digest).body(MAX_CONFIG_BYTES)
        if sha256(data) != digest:
            raise RegistryError(f"the config of {ref.familiar} failed verification (content is not {digest[:19]})")
        config = _json(data, f"the config of {ref.familiar}")
        self.store.put_blob(data)
        budget.added_blobs.append(digest)
        return config

    def _layers(self, client: registry.Registry, layers: list[dict[str, Any]], diff_ids: list[str],
                budget: Budget) -> bool:
        todo = []
        for desc, diff_id in zip(layers, diff_ids):
            if self.store.has_layer(diff_id):
                self.progress.layer(desc["digest"], desc.get("size"), "Already exists")
            else:
                todo.append((desc, diff_id))
        if len(todo) <= 1:
            for desc, diff_id in todo:
                self._layer(client, desc, diff_id, budget)
            return bool(todo)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(PARALLEL_DOWNLOADS) as pool:
            futures = [pool.submit(self._layer, client, d, i, budget) for d, i in todo]
            try:
                for f in futures:
                    f.result()
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        return True

    def _layer(self, client: registry.Registry, desc: dict[str, Any], diff_id: str, budget: Budget) -> None:
        digest = desc["digest"]
        size = desc.get("size") or None
        bar = self.progress.layer(digest, size, "Pulling fs layer")
        lock_fd = self.store.lock(digest[7:])
        try:
            if self.store.has_layer(diff_id):  # a concurrent pull got it while we waited for the lock
                bar.update("Already exists")
                return
            resp = client.blob(digest)
            try:
                self.store.add_layer(_Limited(resp, size, f"layer {digest[7:19]}"), expect_digest=digest,
                                     expect_diff_id=diff_id, on_bytes=bar.advance, what="layer",
                                     budget=budget, known_size=size or 0)
            finally:
                resp.close()
            bar.update("Pull complete")
        except BaseException:
            bar.update("Failed")
            raise
        finally:
            os.close(lock_fd)


def _media_type(doc: dict[str, Any], header: str) -> str:
    """The document's own mediaType, else the Content-Type it came with; untrusted, so only a string."""
    own = doc.get("mediaType")
    return own if isinstance(own, str) and own else header


def _json(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = jsonfast.loads(data)
    except ValueError:
        raise RegistryError(f"{what} is not valid JSON") from None
    if not isinstance(doc, dict):
        raise RegistryError(f"{what} is not a JSON object")
    return doc


def pull_for_run(store: Store, name: str) -> Image:
    """`run`/`create` with a pull (the image is missing, or --pull always): progress on stderr, as Docker.

    Docker's order: a missing image is announced before the registry is asked, so a misspelt name
    reads "Unable to find image 'x:latest' locally" and then the registry's answer. An image that is
    here (--pull always) is not announced: the pull itself says "Image is up to date" or downloads.
    """
    import sys

    from pycontain.errors import ImageNotFound

    try:
        store.resolve(name)
    except ImageNotFound:
        print(f"Unable to find image '{reference.parse(name).familiar}' locally", file=sys.stderr, flush=True)
    Puller(store.paths, registry.Settings(), Progress(stream=sys.stderr)).pull(name)
    return store.resolve(name)
