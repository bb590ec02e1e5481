"""`pycontain push`: upload an image's blobs, then its manifest, to a registry.

    for each layer blob, then the config:  HEAD /v2/<repo>/blobs/<digest>  -> 200: already there
                                           else POST .../blobs/uploads/ + PUT <Location>?digest=...
    then                                   PUT /v2/<repo>/manifests/<tag>

An image pulled from a registry is pushed with the manifest it came with (so its digest is unchanged,
as with Docker) when every blob that manifest names is in the store; otherwise (imported or loaded
images) an OCI manifest is written for the blobs the store does have.
"""

from __future__ import annotations

import os

from pycontain import jsonfast
from pycontain.errors import ImageError, UsageError
from pycontain.images import reference, registry
from pycontain.images.progress import Progress
from pycontain.images.store import Store, sha256
from pycontain.state import Paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
             "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
             "none": "application/vnd.oci.image.layer.v1.tar"}


def manifest_for(store: Store, image_id: str, config: dict[str, Any]) -> tuple[bytes, str]:
    """(manifest bytes, media type) to publish image_id with."""
    meta = store.meta(image_id)
    if meta.get("manifest") and store.has_blob(meta["manifest"]):
        data = store.blob(meta["manifest"])
        doc = jsonfast.loads(data)
        if all(store.has_blob(d["digest"]) for d in [doc["config"], *doc.get("layers", [])]):
            return data, str(doc.get("mediaType") or registry.OCI_MANIFEST)
    layers = []
    for diff_id in config.get("rootfs", {}).get("diff_ids", []):
        info = store.layer_info(diff_id)
        blob = info.get("blob")
        if not isinstance(blob, str) or not store.has_blob(blob):
            raise ImageError(f"layer {diff_id[7:19]} has no stored tarball (unpacked by an older pycontain); "
                             "pull, load or import the image again before pushing it")
        layers.append({"mediaType": OCI_LAYER.get(str(info.get("compression")), OCI_LAYER["none"]),
                       "digest": blob, "size": os.path.getsize(store.blob_path(blob))})
    doc = {"schemaVersion": 2, "mediaType": registry.OCI_MANIFEST,
           "config": {"mediaType": OCI_CONFIG, "digest": image_id,
                      "size": os.path.getsize(store.blob_path(image_id))},
           "layers": layers}
    return jsonfast.dumps(doc).encode(), registry.OCI_MANIFEST


class _Counting:
    def __init__(self, f: IO[bytes], on_bytes: Any) -> None:
        self.f, self.on_bytes = f, on_bytes

    def read(self, n: int = -1) -> bytes:
        chunk = self.f.read(n)
        self.on_bytes(len(chunk))
        return chunk

    def seek(self, pos: int) -> int:
        return self.f.seek(pos)


def push(paths: Paths, name: str, settings: registry.Settings, progress: Progress) -> str:
    ref = reference.parse(name)
    if ref.digest:
        raise UsageError(f"cannot push {name}: push a tag, not a digest")
    store = Store(paths)
    image = store.resolve(name)
    data, media_type = manifest_for(store, image.id, image.config)
    doc = jsonfast.loads(data)
    client = registry.Registry(paths, ref.domain, ref.path, settings, push=True)
    progress.line(f"The push refers to repository [{ref.repository}]")
    # Find a working endpoint (https, or http for loopback/insecure) before the first upload.
    client.ping_endpoints()
    for desc in [*doc.get("layers", []), doc["config"]]:
        digest = desc["digest"]
        bar = progress.layer(digest, desc.get("size"), "Preparing")
        if client.blob_exists(digest):
            bar.update("Layer already exists")
            continue
        path = store.blob_path(digest)
        with open(path, "rb") as f:
            client.upload_blob(digest, _Counting(f, bar.advance), os.path.getsize(path))  # type: ignore[arg-type]
        bar.update("Pushed")
    announced = client.put_manifest(ref.tag or "latest", data, media_type)
    digest = sha256(data)
    if announced and announced != digest:
        raise ImageError(f"registry {ref.domain} stored the manifest as {announced}, expected {digest}")
    store.write_meta(image.id, repo_digests=[f"{ref.repository}@{digest}"])
    progress.line(f"{ref.tag}: digest: {digest} size: {len(data)}")
    return f"{ref.repository}@{digest}"
