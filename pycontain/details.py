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


def security_opts(sec: Any) -> list[str]:
    """HostConfig.SecurityOpt as Docker shows it."""
    out = [f"seccomp={sec.seccomp}"] if sec.seccomp != "default" and not sec.privileged else []
    if sec.no_new_privs:
        out.append("no-new-privileges")
    return out


def userns_summary(lease: dict[str, Any] | None) -> dict[str, Any]:
    """The host ids the container's ids map to (--userns=auto), or the host's own."""
    if not lease:
        return {"Mode": "host"}
    return {"Mode": "auto", "UidMap": f"0:{lease['uid']}:{lease['size']}",
            "GidMap": f"0:{lease['gid']}:{lease['size']}"}


def seccomp_summary(sec: Any) -> dict[str, Any]:
    """The filter a container runs under: which profile, and how many rules it has for the container's
    capabilities (the rules the spec's linux.seccomp holds)."""
    from pycontain import oci as ocispec

    spec = ocispec.seccomp_spec(sec)
    if spec is None:
        return {"Profile": "unconfined", "Rules": 0}
    return {"Profile": sec.seccomp, "Rules": len(spec.get("syscalls") or ()),
            "Syscalls": sum(len(rule["names"]) for rule in spec.get("syscalls") or ()),
            "DefaultAction": spec.get("defaultAction")}


PROPAGATIONS = ("rprivate", "private", "rshared", "shared", "rslave", "slave")


def mount_summary(m: Any) -> dict[str, Any]:
    """One entry of "Mounts", as Docker shows it: a bind, a volume (by name, its _data as Source), a tmpfs."""
    out: dict[str, Any] = {"Type": m.kind}
    if m.kind == "volume":
        out["Name"] = m.name
    out["Source"] = m.source if m.kind != "tmpfs" else ""
    out["Destination"] = m.target
    if m.kind == "volume":
        out["Driver"] = "local"
    out["Mode"] = "ro" if m.readonly else ""
    out["RW"] = not m.readonly
    out["Propagation"] = next((o for o in m.options if o in PROPAGATIONS), "rprivate") if m.kind == "bind" else ""
    return out


def container(rec: state.Record) -> dict[str, Any]:
    from pycontain import cgroups
    from pycontain.clifmt import size
    from pycontain.network import bridged

    st, cfg, resolved = rec.read_state(), rec.config, rec.resolved
    sec = cfg.security
    status = rec.status(st)
    running = status == state.Status.RUNNING
    cg = cgroups.for_container(rec.id)
    return {
        "Id": rec.id,
        "Name": rec.name,
        "Created": rec.created,
        "Path": resolved.argv[0],
        "Args": list(resolved.argv[1:]),
        "State": {
            "Status": str(status),
            "Running": running,
            "Pid": (st.pid or 0) if running else 0,
            "ExitCode": st.exit_code,
            "Error": st.error or "",
            "OOMKilled": st.oom_killed,
            "StartedAt": st.started_at,
            "FinishedAt": st.finished_at,
        },
        "Image": rec.image_id,
        "ImageName": rec.image,
        "Config": {
            "Hostname": resolved.hostname, "User": resolved.user, "Env": list(resolved.env),
            "Cmd": list(cfg.command) or None, "Entrypoint": cfg.entrypoint, "WorkingDir": resolved.workdir,
            "Tty": cfg.tty, "OpenStdin": cfg.interactive,
        },
        "HostConfig": {
            "AutoRemove": cfg.remove, "ReadonlyRootfs": cfg.read_only, "NetworkMode": cfg.network,
            "PidsLimit": cfg.limits.pids,
            "Binds": [f"{m.name if m.kind == 'volume' else m.source}:{m.target}{':ro' if m.readonly else ''}"
                      for m in cfg.mounts if m.kind != "tmpfs"],
            "Tmpfs": {m.target: ",".join(m.options + (("ro",) if m.readonly else ())) for m in cfg.mounts
                      if m.kind == "tmpfs"} or None,
            "VolumesFrom": list(cfg.volumes_from) or None,
            "CapAdd": list(sec.cap_add) or None, "CapDrop": list(sec.cap_drop) or None,
            "Privileged": sec.privileged, "SecurityOpt": security_opts(sec),
            "Devices": [{"PathOnHost": d["device"].get("hostPath", ""), "PathInContainer": d["device"]["path"],
                         "CgroupPermissions": d["rule"].get("access", "")} for d in sec.devices],
            "Ulimits": [{"Name": u["type"][7:].lower(), "Soft": u["soft"], "Hard": u["hard"]} for u in sec.ulimits],
            "Sysctls": dict(sec.sysctls), "UsernsMode": "auto" if rec.meta().get("userns") else "host",
            "LogConfig": {"Type": "local", "Config": {"max-size": size(cfg.log_max_size, "flag"),
                                                      "max-file": str(cfg.log_max_files)}},
        },
        "Mounts": [mount_summary(m) for m in cfg.mounts],
        "GraphDriver": {"Name": "overlay", "Data": {
            "LowerDir": ":".join(reversed(rec.layers)), "UpperDir": f"{rec.storage}/upper",
            "WorkDir": f"{rec.storage}/work",
            "MergedDir": f"{rec.storage}/rootfs (inside the container's mount namespace)",
        }},
        "NetworkSettings": bridged.describe(rec.network),
        "Seccomp": seccomp_summary(sec),
        "UserNamespace": userns_summary(rec.meta().get("userns")),
        "LogPath": rec.log_path,
        "Cgroup": {"Version": cg.version, "Paths": cg.dirs()},
    }

