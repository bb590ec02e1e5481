"""`pycontain inspect`: a container's or an image's details as Docker-shaped JSON."""

from __future__ import annotations

from pycontain import state
from pycontain.errors import ContainerNotFound, ImageNotFound, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


KINDS = ("container", "image", "network", "volume")


def describe(paths: state.Paths, ref: str, kind: str | None = None) -> dict[str, Any]:
    """`inspect REF`: a container's, an image's, a network's or a volume's details. Without a kind, as
    Docker's `inspect`: the first of those that answers to the name (containers first)."""
    if kind is not None and kind not in KINDS:
        raise UsageError(f"invalid --type {kind!r}: use container, image, network or volume")
    if kind in (None, "container"):
        try:
            return container(state.find(paths, ref))
        except ContainerNotFound:
            if kind:
                raise
    if kind in (None, "image"):
        from pycontain.images.store import Store

        store = Store(paths)
        try:
            return store.inspect(store.resolve(ref))
        except (ImageNotFound, UsageError):
            if kind:
                raise ImageNotFound(f"no such image: {ref}") from None
    if kind in (None, "network"):
        from pycontain.network import commands as netcmd
        from pycontain.network import ipam

        try:
            return netcmd.network_view(paths, ref)
        except ipam.NetworkNotFound:
            if kind:
                raise
    if kind in (None, "volume"):
        from pycontain import volumes

        vol = volumes.read(paths, ref)
        if vol is not None:
            return volumes.describe(paths, vol)
        if kind:
            raise volumes.VolumeNotFound(f"no such volume: {ref}")
    raise ContainerNotFound(f"no such container or image: {ref}")


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


# Go's zero time, which Docker prints for a moment that has not happened (StartedAt of a created container).
ZERO_TIME = "0001-01-01T00:00:00Z"
DEFAULT_SHM_SIZE = 64 << 20


def _image_config(rec: state.Record) -> dict[str, Any]:
    """The image's config section (for what a container inherits: ExposedPorts, Volumes, Labels, StopSignal,
    Healthcheck), or {} if the image is gone from the store (`rmi -f`)."""
    from pycontain.images.store import Store

    try:
        return dict(Store(rec.paths).config(rec.image_id).get("config") or {})
    except Exception:  # noqa: BLE001 - a missing or damaged image: inspect still shows the container
        return {}


def _state(rec: state.Record, img: dict[str, Any], raw_cfg: dict[str, Any]) -> dict[str, Any]:
    st = rec.read_state()
    raw = rec.state()
    status = rec.status(st)
    # Docker's words: a container still starting (its process not yet exec'd) is "created" there, as in
    # `ps`; a paused one is running too.
    running = status in (state.Status.RUNNING, state.Status.PAUSED)
    paused = status == state.Status.PAUSED
    restarting = status == state.Status.RESTARTING or bool(raw.get("restarting"))
    shown = "paused" if paused else "restarting" if restarting else \
        "created" if status == state.Status.STARTING else str(status)
    out: dict[str, Any] = {
        "Status": shown, "Running": running, "Paused": paused, "Restarting": restarting,
        "OOMKilled": st.oom_killed, "Dead": status == state.Status.DEAD,
        "Pid": (st.pid or 0) if running else 0,
        # Docker: 0 until the container has exited (created, running, restarting).
        "ExitCode": st.exit_code if st.exit_code is not None and not running else 0,
        "Error": st.error or "", "StartedAt": st.started_at or ZERO_TIME, "FinishedAt": st.finished_at or ZERO_TIME,
    }
    check = _healthcheck(img, raw_cfg)
    if check is not None:
        health: dict[str, Any] = raw["health"] if isinstance(raw.get("health"), dict) else {}
        out["Health"] = {
            "Status": health.get("status") or "starting",
            "FailingStreak": int(health.get("failing_streak") or 0),
            "Log": [{"Start": e.get("start", ""), "End": e.get("end", ""), "ExitCode": e.get("exit_code", 0),
                     "Output": e.get("output", "")} for e in health.get("log") or () if isinstance(e, dict)],
        }
    return out


def _healthcheck(img: dict[str, Any], raw_cfg: dict[str, Any]) -> dict[str, Any] | None:
    """The health check in force: the container's (--health-*), else the image's; None if there is none
    or it is disabled (--no-healthcheck: Test ["NONE"])."""
    check = raw_cfg.get("healthcheck") or img.get("Healthcheck")
    if not isinstance(check, dict) or not check.get("Test") or check["Test"][0] == "NONE":
        return None
    return check


def _port_key(p: Any) -> str:
    return f"{p.container_port}/{p.protocol}"


def _exposed(img: dict[str, Any], cfg: Any, raw_cfg: dict[str, Any]) -> list[str]:
    """Config.ExposedPorts: the image's, --expose, and every -p container port (as Docker)."""
    out = dict.fromkeys(img.get("ExposedPorts") or {})
    for spec in raw_cfg.get("expose") or ():
        out[spec if "/" in str(spec) else f"{spec}/tcp"] = None
    for p in cfg.ports:
        out[_port_key(p)] = None
    return list(out)


def container(rec: state.Record) -> dict[str, Any]:
    from pycontain import cgroups
    from pycontain.clifmt import size
    from pycontain.network import bridged, ipam

    cfg, resolved = rec.config, rec.resolved
    raw_cfg = dict(rec.meta().get("config") or {})  # keys this version's ContainerConfig may not know yet
    sec = cfg.security
    img = _image_config(rec)
    limits = rec.limits()
    cg = cgroups.for_container(rec.id)
    exposed = _exposed(img, cfg, raw_cfg)
    if cfg.entrypoint is not None:  # --entrypoint drops the image's Cmd, as in Docker
        entrypoint: list[str] | None = list(cfg.entrypoint) or None
        cmd = list(cfg.command) or None
    else:
        entrypoint = list(img.get("Entrypoint") or []) or None
        cmd = list(cfg.command or img.get("Cmd") or []) or None
    restart: dict[str, Any] = raw_cfg["restart"] if isinstance(raw_cfg.get("restart"), dict) else {}
    port_bindings: dict[str, list[dict[str, str]]] = {}
    for p in cfg.ports:
        port_bindings.setdefault(_port_key(p), []).append(
            {"HostIp": p.host_ip, "HostPort": str(p.host_port) if p.host_port else ""})
    stop_timeout = raw_cfg.get("stop_timeout")
    labels = {**(img.get("Labels") or {}), **(raw_cfg.get("labels") or {})}
    volumes: dict[str, Any] = {path: {} for path in img.get("Volumes") or {}}
    binds = [f"{m.name if m.kind == 'volume' else m.source}:{m.target}{':ro' if m.readonly else ''}"
             for m in cfg.mounts if m.kind != "tmpfs"]
    return {
        "Id": rec.id,
        "Created": rec.created,
        "Path": resolved.argv[0],
        "Args": list(resolved.argv[1:]),
        "State": _state(rec, img, raw_cfg),
        "Image": rec.image_id,
        "ResolvConfPath": rec.etc_files.get("/etc/resolv.conf", ""),
        "HostnamePath": rec.etc_files.get("/etc/hostname", ""),
        "HostsPath": rec.etc_files.get("/etc/hosts", ""),
        "LogPath": rec.log_path,
        "Name": f"/{rec.name}",
        "RestartCount": int(rec.state().get("restart_count") or 0),
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "",
        "ExecIDs": None,
        "HostConfig": {
            "Binds": binds or None,
            "ContainerIDFile": str(raw_cfg.get("cidfile") or ""),
            "LogConfig": {"Type": str(raw_cfg.get("log_driver") or "json-file"),
                          "Config": {"max-size": size(cfg.log_max_size, "flag"), "max-file": str(cfg.log_max_files)}},
            "NetworkMode": ipam.display(cfg.network),
            "PortBindings": port_bindings,
            "RestartPolicy": {"Name": str(restart.get("name") or "no"),
                              "MaximumRetryCount": int(restart.get("max_retries") or 0)},
            "AutoRemove": cfg.remove,
            "VolumeDriver": "",
            "VolumesFrom": list(cfg.volumes_from) or None,
            "CapAdd": list(sec.cap_add) or None, "CapDrop": list(sec.cap_drop) or None,
            "Dns": list(raw_cfg.get("dns") or []), "DnsOptions": list(raw_cfg.get("dns_options") or []),
            "DnsSearch": list(raw_cfg.get("dns_search") or []),
            "ExtraHosts": list(raw_cfg.get("add_hosts") or []) or None,
            "GroupAdd": list(raw_cfg.get("group_add") or []) or None,
            "IpcMode": str(raw_cfg.get("ipc") or "private"),
            "Cgroup": "", "Links": None, "OomScoreAdj": 0,
            "PidMode": str(raw_cfg.get("pid") or ""),
            "Privileged": sec.privileged,
            "PublishAllPorts": bool(raw_cfg.get("publish_all")),
            "ReadonlyRootfs": cfg.read_only,
            "SecurityOpt": security_opts(sec) or None,
            "Tmpfs": {m.target: ",".join(m.options + (("ro",) if m.readonly else ())) for m in cfg.mounts
                      if m.kind == "tmpfs"} or None,
            "UTSMode": str(raw_cfg.get("uts") or ""),
            "UsernsMode": "auto" if rec.meta().get("userns") else "host",
            "ShmSize": int(raw_cfg.get("shm_size") or DEFAULT_SHM_SIZE),
            "Runtime": cfg.runtime or "pycontain",
            "Isolation": "",
            "CpuShares": limits.cpu_shares or 0,
            "Memory": limits.memory or 0,
            # --cpus is NanoCpus, --cpu-quota is CpuQuota (the other one 0), as Docker keeps them
            "NanoCpus": round(limits.cpus * 1e9) if limits.cpus and not limits.cpu_quota else 0,
            "CgroupParent": "",
            "BlkioWeight": limits.blkio_weight or 0,
            "CpuPeriod": limits.cpu_period or 0,
            "CpuQuota": limits.cpu_quota or 0,
            "CpusetCpus": limits.cpuset_cpus or "", "CpusetMems": limits.cpuset_mems or "",
            "Devices": [{"PathOnHost": d["device"].get("hostPath", ""), "PathInContainer": d["device"]["path"],
                         "CgroupPermissions": d["rule"].get("access", "")} for d in sec.devices],
            "MemoryReservation": limits.memory_reservation or 0,
            "MemorySwap": limits.memory_swap or 0,
            "MemorySwappiness": limits.memory_swappiness,
            "OomKillDisable": bool(limits.oom_kill_disable),
            "PidsLimit": limits.pids,
            "Ulimits": [{"Name": u["type"][7:].lower(), "Soft": u["soft"], "Hard": u["hard"]} for u in sec.ulimits],
            "Sysctls": dict(sec.sysctls),
            "Init": raw_cfg["init"] if isinstance(raw_cfg.get("init"), bool) else None,
        },
        "GraphDriver": {"Name": "overlay2", "Data": {
            "LowerDir": ":".join(reversed(rec.layers)), "UpperDir": f"{rec.storage}/upper",
            # Mounted only inside the container's own mount namespace: this path is empty on the host.
            "MergedDir": f"{rec.storage}/rootfs", "WorkDir": f"{rec.storage}/work",
        }},
        "Mounts": [mount_summary(m) for m in cfg.mounts],
        "Config": {
            "Hostname": resolved.hostname, "Domainname": "", "User": resolved.user,
            "AttachStdin": cfg.interactive, "AttachStdout": not cfg.detach, "AttachStderr": not cfg.detach,
            "ExposedPorts": dict.fromkeys(exposed, {}) or None,
            "Tty": cfg.tty, "OpenStdin": cfg.interactive, "StdinOnce": cfg.interactive and not cfg.detach,
            "Env": list(resolved.env), "Cmd": cmd,
            "Healthcheck": _healthcheck(img, raw_cfg),
            "Image": cfg.image or rec.image,
            "Volumes": volumes or None,
            "WorkingDir": resolved.workdir, "Entrypoint": entrypoint, "OnBuild": None,
            "Labels": labels,
            "StopSignal": str(raw_cfg.get("stop_signal") or img.get("StopSignal") or "SIGTERM"),
            "StopTimeout": int(stop_timeout) if stop_timeout is not None else None,
        },
        "NetworkSettings": bridged.describe(rec.network, ipam.display(cfg.network), _extra_networks(rec),
                                            exposed, rec.name),
        # pycontain's own, after Docker's fields
        "ImageName": rec.image,
        "Seccomp": seccomp_summary(sec),
        "UserNamespace": userns_summary(rec.meta().get("userns")),
        "Cgroup": {"Version": cg.version, "Paths": cg.dirs()},
    }


def _extra_networks(rec: state.Record) -> dict[str, dict[str, Any]]:
    """Networks `network connect` added to a running container (network/connect.py)."""
    from pycontain.network import connect

    return connect.extras(rec.paths, rec.id)
