"""`pycontain inspect`: a container's or an image's details as Docker-shaped JSON."""

from __future__ import annotations

from pycontain import state
from pycontain.errors import ContainerNotFound, ImageNotFound, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def describe(paths: state.Paths, ref: str) -> dict[str, Any]:
    try:
        return container(state.find(paths, ref))
    except ContainerNotFound:
        pass
    from pycontain.images.store import Store

    store = Store(paths)
    try:
        image = store.resolve(ref)
    except (ImageNotFound, UsageError):
        raise ContainerNotFound(f"no such container or image: {ref}") from None
    return store.inspect(image)


def container(rec: state.Record) -> dict[str, Any]:
    from pycontain import cgroups
    from pycontain.clifmt import size
    from pycontain.network import bridged

    meta, st, cfg = rec.meta(), rec.state(), rec.config
    status = rec.status()
    resolved = meta["resolved"]
    cg = cgroups.for_container(rec.id)
    return {
        "Id": rec.id,
        "Name": meta["name"],
        "Created": meta["created"],
        "Path": resolved["argv"][0],
        "Args": resolved["argv"][1:],
        "State": {
            "Status": status,
            "Running": status == "running",
            "Pid": st.get("pid", 0) if status == "running" else 0,
            "ExitCode": st.get("exit_code"),
            "Error": st.get("error") or "",
            "OOMKilled": bool(st.get("oom_killed")),
            "StartedAt": st.get("started_at"),
            "FinishedAt": st.get("finished_at"),
        },
        "Image": meta["image_id"],
        "ImageName": meta["image"],
        "Config": {
            "Hostname": resolved["hostname"], "User": resolved["user"], "Env": resolved["env"],
            "Cmd": list(cfg.command) or None, "Entrypoint": cfg.entrypoint, "WorkingDir": resolved["workdir"],
            "Tty": cfg.tty, "OpenStdin": cfg.interactive,
        },
        "HostConfig": {
            "AutoRemove": cfg.remove, "ReadonlyRootfs": cfg.read_only, "NetworkMode": cfg.network,
            "PidsLimit": cfg.limits.pids,
            "Binds": [f"{m.source}:{m.target}{':ro' if m.readonly else ''}" for m in cfg.mounts],
            "LogConfig": {"Type": "local", "Config": {"max-size": size(cfg.log_max_size, "flag"),
                                                      "max-file": str(cfg.log_max_files)}},
        },
        "Mounts": [{"Type": "bind", "Source": m.source, "Destination": m.target, "RW": not m.readonly}
                   for m in cfg.mounts],
        "GraphDriver": {"Name": "overlay", "Data": {
            "LowerDir": ":".join(reversed(meta["layers"])), "UpperDir": f"{rec.storage}/upper",
            "WorkDir": f"{rec.storage}/work",
            "MergedDir": f"{rec.storage}/rootfs (inside the container's mount namespace)",
        }},
        "NetworkSettings": bridged.describe(meta.get("network")),
        "LogPath": rec.log_path,
        "Cgroup": {"Version": cg.version, "Paths": cg.dirs()},
    }

