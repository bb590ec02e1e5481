"""The front end's half of the contract: an image config plus `run` flags, as a runtime-spec document.

Everything pycontain decides about a container (its mounts, namespaces, limits, capabilities, masked
paths) is written down here as spec data; the executor (pycontain/oci/) carries it out, and so can any
other OCI runtime (`pycontain run --runtime runc`). The document stays in memory when pycontain's own
executor runs it: no JSON on the start path.
"""

from __future__ import annotations

from pycontain.mounts import overlay_options
from pycontain.oci import spec as ocispec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pycontain.config import ContainerConfig, Limits, ResolvedConfig

# With --read-only, the places programs expect to write stay writable (as `podman run --read-only`).
READ_ONLY_TMPFS = ("/tmp", "/var/tmp", "/run")


def build(cid: str, cfg: ContainerConfig, res: ResolvedConfig, limits: Limits, storage: str,
          layers: list[str], etc_files: dict[str, str], own_executor: bool = True) -> dict[str, Any]:
    """The spec for one container. own_executor: pycontain's executor mounts the overlay itself (inside
    the container's mount namespace); another runtime gets a rootfs that is already mounted."""
    mounts = ocispec.default_mounts()
    for m in cfg.mounts:
        mounts.append({"destination": m.target, "type": "bind", "source": m.source,
                       "options": ["rbind", "ro"] if m.readonly else ["rbind"]})
    for target, source in etc_files.items():
        mounts.append({"destination": target, "type": "bind", "source": source, "options": ["bind"]})
    if cfg.read_only:
        for path in READ_ONLY_TMPFS:
            mounts.append({"destination": path, "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "nodev", "mode=1777", "size=65536k"]})
    namespaces = [{"type": t} for t in ("pid", "mount", "uts", "ipc", "cgroup")]
    if cfg.network != "host":
        namespaces.append({"type": "network"})
    caps = list(ocispec.DEFAULT_CAPS)
    annotations = {ocispec.USER_NAME: res.user}
    if own_executor:
        annotations[ocispec.OVERLAY] = overlay_options(layers, f"{storage}/upper", f"{storage}/work")
    return {
        "ociVersion": ocispec.OCI_VERSION,
        "process": {
            "terminal": cfg.tty,
            "user": {"uid": 0, "gid": 0},
            "args": list(res.argv),
            "env": list(res.env),
            "cwd": res.workdir,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": True,
        },
        "root": {"path": f"{storage}/rootfs", "readonly": cfg.read_only},
        "hostname": res.hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": f"/pycontain-{cid}",
            "resources": ocispec.resources_from(limits),
            "maskedPaths": list(ocispec.MASKED_PATHS),
            "readonlyPaths": list(ocispec.READONLY_PATHS),
        },
        "annotations": annotations,
    }
