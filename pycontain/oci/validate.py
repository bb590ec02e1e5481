"""Checks of an untrusted bundle: `check` refuses, with one line naming the field, anything the executor
would otherwise trip over halfway through a start. Also the default config.json `pycontain-oci spec`
writes. Only pycontain-oci imports this; `pycontain run` trusts the spec its own front end built.
"""

from __future__ import annotations

from pycontain.config import DEFAULT_PATH
from pycontain.oci import (CAPABILITIES, array, field_error, DEFAULT_CAPS, HOOKS, MASKED_PATHS, NAMESPACES, OCI_VERSION,
                                READONLY_PATHS, RLIMITS, SpecError, default_mounts)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def default_spec(rootfs: str = "rootfs", args: list[str] | None = None, terminal: bool = True) -> dict[str, Any]:
    """What `pycontain-oci spec` writes: a complete, secure starting point to edit."""
    caps = list(DEFAULT_CAPS)
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": terminal,
            "user": {"uid": 0, "gid": 0},
            "args": args or ["sh"],
            "env": [f"PATH={DEFAULT_PATH}", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": rootfs, "readonly": True},
        "hostname": "pycontain",
        "mounts": default_mounts(),
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }


def _obj(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise field_error(field, "must be an object")
    return value


def _strings(value: Any, field: str) -> list[str]:
    items = array(value, field)
    for item in items:
        if not isinstance(item, str) or "\0" in item:
            raise field_error(field, "must be an array of strings")
    return items


def _int(value: Any, field: str, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise field_error(field, "must be an integer")
    if (low is not None and value < low) or (high is not None and value > high):
        raise field_error(field, f"{value} is out of range")
    return value


def _abs(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        raise field_error(field, "must be an absolute path")
    return value


def check(spec: Any, need_process: bool = True) -> dict[str, Any]:
    """Refuse, with one line naming the field, a document the executor cannot carry out safely."""
    if not isinstance(spec, dict):
        raise SpecError("config.json: the document must be a JSON object")
    version = spec.get("ociVersion")
    if not isinstance(version, str) or not version.startswith("1."):
        raise field_error("ociVersion", f"{version!r} is not a 1.x runtime-spec version")
    root = _obj(spec.get("root"), "root")
    if not isinstance(root.get("path"), str) or not root["path"]:
        raise field_error("root.path", "is required")
    process = spec.get("process")
    if process is None:
        if need_process:
            raise field_error("process", "is required to create a container")
    else:
        check_process(process, "process")
    if spec.get("hostname") is not None and not isinstance(spec["hostname"], str):
        raise field_error("hostname", "must be a string")
    for i, m in enumerate(array(spec.get("mounts"), "mounts")):
        m = _obj(m, f"mounts[{i}]")
        _abs(m.get("destination"), f"mounts[{i}].destination")
        if m.get("type") is not None and not isinstance(m["type"], str):
            raise field_error(f"mounts[{i}].type", "must be a string")
        if m.get("source") is not None and not isinstance(m["source"], str):
            raise field_error(f"mounts[{i}].source", "must be a string")
        _strings(m.get("options"), f"mounts[{i}].options")
    hooks = _obj(spec.get("hooks"), "hooks")
    for kind, entries in hooks.items():
        if kind not in HOOKS:
            raise field_error(f"hooks.{kind}", f"unknown hook (expected one of {', '.join(HOOKS)})")
        for i, hook in enumerate(array(entries, f"hooks.{kind}")):
            hook = _obj(hook, f"hooks.{kind}[{i}]")
            _abs(hook.get("path"), f"hooks.{kind}[{i}].path")
            _strings(hook.get("args"), f"hooks.{kind}[{i}].args")
            _strings(hook.get("env"), f"hooks.{kind}[{i}].env")
            if hook.get("timeout") is not None:
                _int(hook["timeout"], f"hooks.{kind}[{i}].timeout", 1)
    annotations = _obj(spec.get("annotations"), "annotations")
    for key, value in annotations.items():
        if not isinstance(value, str):
            raise field_error(f"annotations.{key}", "must be a string")
    linux = _obj(spec.get("linux"), "linux")
    seen = set()
    user_path = None
    for i, ns in enumerate(array(linux.get("namespaces"), "linux.namespaces")):
        ns = _obj(ns, f"linux.namespaces[{i}]")
        kind = str(ns.get("type"))
        if kind not in NAMESPACES:
            raise field_error(f"linux.namespaces[{i}].type", f"{kind!r} is not a namespace type")
        if kind in seen:
            raise field_error("linux.namespaces", f"{kind} is listed twice")
        seen.add(kind)
        if ns.get("path") is not None:
            _abs(ns["path"], f"linux.namespaces[{i}].path")
            if kind == "user":
                user_path = ns["path"]
    if "mount" not in seen:
        raise field_error("linux.namespaces", "a mount namespace is required (pivot_root would change the host's root)")
    for key in ("uidMappings", "gidMappings"):
        check_mappings(linux.get(key), f"linux.{key}")
    if "user" not in seen and (linux.get("uidMappings") or linux.get("gidMappings")):
        raise field_error("linux.uidMappings", "mappings need a user namespace (linux.namespaces has no user entry)")
    if "user" in seen and not user_path and not (linux.get("uidMappings") and linux.get("gidMappings")):
        raise field_error("linux.namespaces", "a new user namespace needs linux.uidMappings and linux.gidMappings")
    if "time" in seen:
        raise field_error("linux.namespaces", "time namespaces are not supported by pycontain-oci")
    if linux.get("cgroupsPath") is not None and not isinstance(linux["cgroupsPath"], str):
        raise field_error("linux.cgroupsPath", "must be a string")
    for key in ("maskedPaths", "readonlyPaths"):
        for p in _strings(linux.get(key), f"linux.{key}"):
            _abs(p, f"linux.{key}")
    for key, value in _obj(linux.get("sysctl"), "linux.sysctl").items():
        if not isinstance(value, str):
            raise field_error(f"linux.sysctl.{key}", "must be a string")
    for i, dev in enumerate(array(linux.get("devices"), "linux.devices")):
        dev = _obj(dev, f"linux.devices[{i}]")
        _abs(dev.get("path"), f"linux.devices[{i}].path")
        if dev.get("type") not in ("c", "b", "u", "p"):
            raise field_error(f"linux.devices[{i}].type", "must be c, b, u or p")
        for n in ("major", "minor"):
            if dev.get("type") != "p" or dev.get(n) is not None:
                _int(dev.get(n), f"linux.devices[{i}].{n}", 0)
    check_resources(linux.get("resources"), "linux.resources")
    # linux.seccomp is checked (and compiled) by oci/seccomp.py when the executor plans the container.
    propagation = linux.get("rootfsPropagation")
    if propagation not in (None, "", "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable",
                           "runbindable"):
        raise field_error("linux.rootfsPropagation", f"{propagation!r} is not a propagation mode")
    return spec


# The kernel takes at most 340 lines in a uid_map or gid_map (since 4.15).
MAX_MAPPINGS = 340


def check_mappings(value: Any, field: str) -> list[dict[str, int]]:
    """linux.uidMappings or gidMappings: containerID, hostID and size each an id range of 32-bit ids,
    no two ranges overlapping inside or on the host (the kernel refuses those too, less clearly)."""
    entries = array(value, field)
    if len(entries) > MAX_MAPPINGS:
        raise field_error(field, f"{len(entries)} mappings: the kernel takes at most {MAX_MAPPINGS}")
    ranges: dict[str, list[tuple[int, int]]] = {"containerID": [], "hostID": []}
    for i, m in enumerate(entries):
        m = _obj(m, f"{field}[{i}]")
        size = _int(m.get("size"), f"{field}[{i}].size", 1, 2**32 - 1)
        for key in ("containerID", "hostID"):
            start = _int(m.get(key), f"{field}[{i}].{key}", 0, 2**32 - 2)
            if start + size > 2**32 - 1:
                raise field_error(f"{field}[{i}]", f"{key} {start} + size {size} passes the last id (4294967294)")
            for other_start, other_size in ranges[key]:
                if start < other_start + other_size and other_start < start + size:
                    raise field_error(f"{field}[{i}].{key}", f"the range {start}+{size} overlaps another mapping's")
            ranges[key].append((start, size))
    return entries


def check_process(process: Any, field: str) -> dict[str, Any]:
    process = _obj(process, field)
    args = _strings(process.get("args"), f"{field}.args")
    if not args or not args[0]:
        raise field_error(f"{field}.args", "must name a program")
    _strings(process.get("env"), f"{field}.env")
    _abs(process.get("cwd"), f"{field}.cwd")
    user = _obj(process.get("user"), f"{field}.user")
    for key in ("uid", "gid"):
        _int(user.get(key, 0), f"{field}.user.{key}", 0, 2**32 - 2)
    for gid in array(user.get("additionalGids"), f"{field}.user.additionalGids"):
        _int(gid, f"{field}.user.additionalGids", 0, 2**32 - 2)
    if user.get("umask") is not None:
        _int(user["umask"], f"{field}.user.umask", 0, 0o777)
    for kind, names in _obj(process.get("capabilities"), f"{field}.capabilities").items():
        for name in _strings(names, f"{field}.capabilities.{kind}"):
            if not name.startswith("CAP_") or name[4:] not in CAPABILITIES:
                raise field_error(f"{field}.capabilities.{kind}", f"unknown capability {name!r}")
    for i, rl in enumerate(array(process.get("rlimits"), f"{field}.rlimits")):
        rl = _obj(rl, f"{field}.rlimits[{i}]")
        if not isinstance(rl.get("type"), str) or rl["type"] not in RLIMITS:  # a list would be unhashable
            raise field_error(f"{field}.rlimits[{i}].type", f"unknown rlimit {rl.get('type')!r}")
        for key in ("hard", "soft"):
            _int(rl.get(key), f"{field}.rlimits[{i}].{key}", 0, 2**64 - 1)
        if rl["soft"] > rl["hard"]:
            raise field_error(f"{field}.rlimits[{i}]", "soft is above hard")
    for key in ("terminal", "noNewPrivileges"):
        if process.get(key) is not None and not isinstance(process[key], bool):
            raise field_error(f"{field}.{key}", "must be true or false")
    if process.get("oomScoreAdj") is not None:
        _int(process["oomScoreAdj"], f"{field}.oomScoreAdj", -1000, 1000)
    size = _obj(process.get("consoleSize"), f"{field}.consoleSize")
    for key in ("height", "width"):
        if key in size:
            _int(size[key], f"{field}.consoleSize.{key}", 0, 65535)
    out: dict[str, Any] = process
    return out


def check_resources(value: Any, field: str) -> dict[str, Any]:
    res = _obj(value, field)
    memory = _obj(res.get("memory"), f"{field}.memory")
    for key in ("limit", "reservation", "swap", "kernel", "kernelTCP"):
        if memory.get(key) is not None:
            _int(memory[key], f"{field}.memory.{key}", -1)
    cpu = _obj(res.get("cpu"), f"{field}.cpu")
    for key in ("shares", "quota", "period", "realtimeRuntime", "realtimePeriod"):
        if cpu.get(key) is not None:
            _int(cpu[key], f"{field}.cpu.{key}", -1)
    for key in ("cpus", "mems"):
        if cpu.get(key) is not None and (not isinstance(cpu[key], str) or not set(cpu[key]) <= set("0123456789,-")):
            raise field_error(f"{field}.cpu.{key}", "must be a list like 0-1,3")
    if memory.get("swappiness") is not None:
        _int(memory["swappiness"], f"{field}.memory.swappiness", 0, 100)
    network = _obj(res.get("network"), f"{field}.network")
    if network.get("classID") is not None:
        _int(network["classID"], f"{field}.network.classID", 0, 2**32 - 1)
    for i, prio in enumerate(array(network.get("priorities"), f"{field}.network.priorities")):
        prio = _obj(prio, f"{field}.network.priorities[{i}]")
        if not isinstance(prio.get("name"), str) or not prio["name"] or "/" in prio["name"]:
            raise field_error(f"{field}.network.priorities[{i}].name", "must be an interface name")
        _int(prio.get("priority"), f"{field}.network.priorities[{i}].priority", 0, 2**32 - 1)
    pids = _obj(res.get("pids"), f"{field}.pids")
    if pids.get("limit") is not None:
        _int(pids["limit"], f"{field}.pids.limit")
    for i, dev in enumerate(array(res.get("devices"), f"{field}.devices")):
        dev = _obj(dev, f"{field}.devices[{i}]")
        if not isinstance(dev.get("allow"), bool):
            raise field_error(f"{field}.devices[{i}].allow", "must be true or false")
        if dev.get("type", "a") not in ("a", "c", "b"):
            raise field_error(f"{field}.devices[{i}].type", "must be a, c or b")
        if not set(dev.get("access") or "rwm") <= set("rwm"):
            raise field_error(f"{field}.devices[{i}].access", "must be made of r, w and m")
        for key in ("major", "minor"):
            if dev.get(key) is not None:
                _int(dev[key], f"{field}.devices[{i}].{key}", -1)
    return res


