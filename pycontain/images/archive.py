"""`save` and `load`: images as a docker-archive tar, the format of `docker save` and `skopeo copy docker-archive:`.

    manifest.json            [{"Config": "<config hex>.json", "RepoTags": ["alpine:3.20"],
                               "Layers": ["<diff id hex>/layer.tar", ...]}, ...]
    <config hex>.json        the image config, byte for byte (its sha256 is the image id)
    <diff id hex>/layer.tar  each layer uncompressed (its sha256 is the config's diff_id)

`load` reads what `save` writes and what skopeo writes (layers named `<hex>.tar`, possibly compressed),
and OCI image layouts in a tar (`oci-archive`, what `docker save` of Docker 25+, buildx and skopeo make):

    oci-layout               {"imageLayoutVersion": "1.0.0"}
    index.json               an OCI index: manifests (or nested indexes), each may name its image in an
                             annotation (io.containerd.image.name, or org.opencontainers.image.ref.name
                             when that is a whole reference rather than a bare tag)
    blobs/sha256/<hex>       manifests, configs and layers by digest; each is checked against it

An OCI image without a name is loaded untagged and its id printed, as Docker does.
Nothing from the archive is extracted to disk by name: manifest.json is the index, each layer is read as
a stream and goes through the same verified, untrusted-input unpacking as a pulled layer.
"""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
import tempfile

from pycontain import faults, jsonfast
from pycontain.errors import ImageError, UsageError
from pycontain.images import reference
from pycontain.images.budget import Budget, OverBudget
from pycontain.images.store import Store, check_config, decompressor
from pycontain.safefile import write_atomically
from pycontain.state import Paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any

    from pycontain.images.store import Reader

MAX_JSON_BYTES = 8 << 20


def _layer_stream(store: Store, diff_id: str) -> tuple[Reader, Any, IO[bytes]]:
    info = store.layer_info(diff_id)
    blob = info.get("blob")
    if not isinstance(blob, str) or not store.has_blob(blob):
        raise ImageError(f"layer {diff_id[7:19]} has no stored tarball (unpacked by an older pycontain); "
                         "pull, load or import the image again before saving it")
    f = open(store.blob_path(blob), "rb")
    plain, proc = decompressor(str(info.get("compression", "none")), f)
    return plain, proc, f


def _diff_size(store: Store, diff_id: str) -> int:
    size = store.layer_info(diff_id).get("diff_size")
    if isinstance(size, int):
        return size
    plain, proc, f = _layer_stream(store, diff_id)  # an older layer record: count it once
    total = 0
    with f:
        while chunk := plain.read(1 << 20):
            total += len(chunk)
    if proc is not None:
        proc.wait()
    return total


def save(paths: Paths, names: list[str], output: str | None) -> None:
    store = Store(paths)
    entries: dict[str, dict[str, Any]] = {}
    for name in names:
        image = store.resolve(name)
        entry = entries.setdefault(image.id, {"Config": f"{image.id[7:]}.json", "RepoTags": [],
                                              "Layers": [f"{d[7:]}/layer.tar" for d in
                                                         image.config.get("rootfs", {}).get("diff_ids", [])]})
        try:
            ref = reference.parse(name)
        except UsageError:
            ref = None
        if ref is not None and ref.tag and str(ref) in store.refs():
            entry["RepoTags"].append(ref.familiar)
    if output is None:
        _write(store, entries, sys.stdout.buffer, "w|")
        sys.stdout.flush()
        return
    # The output is often in a directory other users can write to (their home, /tmp): never open it by
    # name. A new O_EXCL|O_NOFOLLOW temp file beside it is renamed over it (safefile.py says why).
    # 0o666 less the umask, as open(2) would have made it: the archive holds nothing secret.
    with write_atomically(output, mode=0o666) as f:
        _write(store, entries, f, "w")


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tf.addfile(info, io.BytesIO(data))


def _write(store: Store, entries: dict[str, dict[str, Any]], out: IO[bytes], mode: str) -> None:
    written: set[str] = set()
    with tarfile.open(fileobj=out, mode=mode, format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
        for image_id, entry in entries.items():
            _add_bytes(tf, entry["Config"], store.blob(image_id))
            for layer in entry["Layers"]:
                if layer in written:
                    continue
                written.add(layer)
                diff_id = "sha256:" + layer.split("/", 1)[0]
                info = tarfile.TarInfo(layer)
                info.size, info.mode = _diff_size(store, diff_id), 0o644
                plain, proc, f = _layer_stream(store, diff_id)
                with f:
                    tf.addfile(info, plain)
                if proc is not None:
                    proc.wait()
        _add_bytes(tf, "manifest.json", jsonfast.dumps(list(entries.values())).encode())


def load(paths: Paths, path: str | None) -> list[str]:
    """Load every image in a docker-archive; returns the names (or ids) loaded."""
    store = Store(paths)
    if path is None:
        store.ensure()
        # tarfile needs to seek (manifest.json may come last): spool stdin next to the store.
        with tempfile.NamedTemporaryFile(dir=store.root, prefix=f".tmp-{os.getpid()}-") as spool:
            shutil.copyfileobj(sys.stdin.buffer, spool, 1 << 20)
            spool.flush()
            return _load(store, spool.name, "stdin")
    return _load(store, path, path)


def _member(tf: tarfile.TarFile, name: str, what: str) -> IO[bytes]:
    try:
        f = tf.extractfile(name.removeprefix("./"))
    except KeyError:
        f = None
    if f is None:
        raise ImageError(f"{what} names {name!r}, which is not a file in the archive; the archive is damaged")
    return f


def _read_json(tf: tarfile.TarFile, name: str, what: str) -> tuple[bytes, Any]:
    data = _member(tf, name, what).read(MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        raise ImageError(f"{name} in {what} is larger than {MAX_JSON_BYTES >> 20} MiB; refusing it")
    try:
        return data, jsonfast.loads(data)
    except ValueError:
        raise ImageError(f"{name} in {what} is not valid JSON") from None


def _load(store: Store, path: str, what: str) -> list[str]:
    try:
        tf = tarfile.open(path, "r:")
    except FileNotFoundError:
        raise UsageError(f"cannot read {path}: no such file") from None
    except (tarfile.TarError, OSError) as e:
        raise ImageError(f"{what} is not a tar archive ({e}); `pycontain load` reads `docker save` output "
                         "and OCI archives") from None
    loaded: list[str] = []
    store.refs()  # damaged tags (DamagedStore): say so before storing layers that nothing would tag
    gc_fd = store.lock("gc", shared=True)
    try:
        with tf:
            if _has(tf, "index.json") and not _has(tf, "manifest.json"):
                for entry in _oci_entries(tf, what):
                    loaded += _load_image(store, tf, entry, what, gc_fd)
                return loaded
            _, manifest = _read_json(tf, "manifest.json", f"archive {what}")
            if not isinstance(manifest, list) or not manifest:
                raise ImageError(f"manifest.json in {what} lists no images")
            for entry in manifest:
                loaded += _load_image(store, tf, entry, what, gc_fd)
    finally:
        os.close(gc_fd)
    return loaded


def _has(tf: tarfile.TarFile, name: str) -> bool:
    try:
        tf.getmember(name)
    except KeyError:
        try:
            tf.getmember("./" + name)
        except KeyError:
            return False
    return True


OCI_MANIFESTS = ("application/vnd.oci.image.manifest.v1+json",
                 "application/vnd.docker.distribution.manifest.v2+json")
OCI_INDEXES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")


def _oci_blob(tf: tarfile.TarFile, desc: Any, what: str, kind: str) -> tuple[str, bytes, Any]:
    """(digest, bytes, JSON) of a small blob a descriptor names, its content checked against the digest."""
    import hashlib

    digest = desc.get("digest") if isinstance(desc, dict) else None
    if not isinstance(digest, str) or not reference.is_digest(digest):
        raise ImageError(f"{kind} in {what} has a missing or unsupported digest (only sha256 is supported)")
    try:
        data, doc = _read_json(tf, f"blobs/sha256/{digest[7:]}", f"archive {what}")
    except ImageError as e:
        if _has(tf, f"blobs/sha256/{digest[7:]}"):
            raise
        raise ImageError(f"{kind} {digest[:19]} is not in {what}; the archive is damaged") from e
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise ImageError(f"{kind} {digest[:19]} in {what} does not match its digest; the archive is damaged")
    return digest, data, doc


def _oci_name(desc: dict[str, Any]) -> str | None:
    """The image's name from the index's annotations, if it names a whole reference."""
    notes = desc.get("annotations")
    if not isinstance(notes, dict):
        return None
    for key in ("io.containerd.image.name", "org.opencontainers.image.ref.name"):
        name = notes.get(key)
        # A bare ref.name ("3.20", "latest") is a tag of nothing in particular: no name.
        if isinstance(name, str) and (":" in name or "/" in name):
            try:
                ref = reference.parse(name)
            except UsageError:
                continue
            if ref.tag:
                return ref.familiar
    return None


def _oci_entries(tf: tarfile.TarFile, what: str) -> list[dict[str, Any]]:
    """The images of an OCI layout as manifest.json-like entries (Config, Layers, RepoTags, digests)."""
    _, index = _read_json(tf, "index.json", f"archive {what}")
    descs = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(descs, list) or not descs:
        raise ImageError(f"index.json in {what} lists no images")
    out: list[dict[str, Any]] = []
    for desc in descs:
        if not isinstance(desc, dict):
            raise ImageError(f"index.json in {what} has an entry that is not an object")
        name = _oci_name(desc)
        kind = desc.get("mediaType")
        _, _, doc = _oci_blob(tf, desc, what, "a manifest")
        if not isinstance(doc, dict):
            raise ImageError(f"a manifest in {what} is not a JSON object")
        if kind in OCI_INDEXES or (kind is None and "manifests" in doc):
            from pycontain.images.pull import choose_platform, parse_platform

            child = choose_platform(doc, parse_platform(None), f"the image in {what}")
            _, _, doc = _oci_blob(tf, child, what, "a manifest")
            if not isinstance(doc, dict):
                raise ImageError(f"a manifest in {what} is not a JSON object")
        elif kind is not None and kind not in OCI_MANIFESTS:
            continue  # not an image (an artifact, a signature): Docker skips those too
        config_desc = doc.get("config")
        layers = doc.get("layers")
        if not isinstance(layers, list) or not isinstance(config_desc, dict):
            raise ImageError(f"a manifest in {what} has no config or layers; the archive is damaged")
        digests = []
        for layer in layers:
            d = layer.get("digest") if isinstance(layer, dict) else None
            if not isinstance(d, str) or not reference.is_digest(d):
                raise ImageError(f"a layer in {what} has a missing or unsupported digest")
            digests.append(d)
        config_digest = config_desc.get("digest")
        if not isinstance(config_digest, str) or not reference.is_digest(config_digest):
            raise ImageError(f"the config of an image in {what} has a missing or unsupported digest")
        out.append({"Config": f"blobs/sha256/{config_digest[7:]}", "ConfigDigest": config_digest,
                    "Layers": [f"blobs/sha256/{d[7:]}" for d in digests], "LayerDigests": digests,
                    "RepoTags": [name] if name else []})
    if not out:
        raise ImageError(f"index.json in {what} names no container image")
    return out


def _load_image(store: Store, tf: tarfile.TarFile, entry: Any, what: str, gc_fd: int) -> list[str]:
    if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) \
            or not isinstance(entry.get("Layers"), list):
        raise ImageError(f"manifest.json in {what} has an entry without Config or Layers")
    config_bytes, config = _read_json(tf, entry["Config"], f"archive {what}")
    if "ConfigDigest" in entry:  # an OCI layout names blobs by digest: the content must match
        import hashlib

        if "sha256:" + hashlib.sha256(config_bytes).hexdigest() != entry["ConfigDigest"]:
            raise ImageError(f"the config {entry['ConfigDigest'][:19]} in {what} does not match its digest; "
                             "the archive is damaged")
    blob_digests = entry.get("LayerDigests") or [None] * len(entry["Layers"])
    if isinstance(config, dict):
        check_config(config, f"an image in {what}")
    rootfs = config.get("rootfs") if isinstance(config, dict) else None
    diff_ids = rootfs.get("diff_ids", []) if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or len(diff_ids) != len(entry["Layers"]):
        found = len(diff_ids) if isinstance(diff_ids, list) else 0
        raise ImageError(f"the config of an image in {what} lists {found} layers, its manifest "
                         f"{len(entry['Layers'])}; the archive is damaged")
    tags = entry.get("RepoTags") or []
    budget = Budget(store.root, f"image {tags[0] if tags and isinstance(tags[0], str) else 'in ' + what}")
    try:
        for layer, diff_id, blob_digest in zip(entry["Layers"], diff_ids, blob_digests):
            if not isinstance(layer, str) or not isinstance(diff_id, str) or not reference.is_digest(diff_id):
                raise ImageError(f"an image in {what} has an invalid layer entry {layer!r}")
            if store.has_layer(diff_id):
                continue
            lock_fd = store.lock(diff_id[7:])
            try:
                if not store.has_layer(diff_id):
                    member = _member(tf, layer, f"manifest.json of {what}")
                    # The member's size (the layer's, or its compressed size) must fit before unpacking.
                    store.add_layer(member, expect_digest=blob_digest, expect_diff_id=diff_id,
                                    what=f"layer {layer}", budget=budget,
                                    known_size=tf.getmember(layer.removeprefix("./")).size)
            finally:
                os.close(lock_fd)
    except OverBudget:
        store.discard_unused(store.paths, budget, gc_fd)  # a refused image leaves no layers behind
        raise
    faults.phase("load.stored")
    image_id = store.put_blob(config_bytes)
    store.write_meta(image_id)
    names = []
    for tag in entry.get("RepoTags") or []:
        ref = reference.parse(str(tag))
        store.tag(ref, image_id)
        faults.phase("load.tagged")
        names.append(ref.familiar)
    return names or [image_id]
