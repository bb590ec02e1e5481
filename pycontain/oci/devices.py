"""Device nodes and device access as spec data: the default rules, `--device` and `--privileged`.

Two spec fields work together. linux.devices lists the nodes the runtime makes in the container's /dev
(path, type, major:minor, mode, owner); linux.resources.devices lists the cgroup rules that say which
devices the container's processes may open (r, w) or create (m). A node alone grants nothing: with
CAP_MKNOD a container can make a node for any major:minor, so the rules are what keeps it away from the
host's disks. The cgroup backends carry the rules out (v1: devices.allow/deny; v2: a BPF program).

The default rules are Docker's: deny everything, then allow the nodes every container's /dev has
(null 1:3, zero 1:5, full 1:7, random 1:8, urandom 1:9, tty 5:0, console 5:1, ptmx 5:2, the ptys 136:*),
and mknod of any character or block node (creating one opens nothing). Not allowed: /dev/net/tun
(10:200), which Docker's spec leaves out, and which runc allows on its own only for compatibility with a
mistake of its first commit (runc PRs 3468 and 4555); `--device /dev/net/tun` gives it. console 5:1 stays
although pycontain never makes that node (a container's /dev/console is its own pty): Docker and runc allow
it, and the executor appends the same list after every spec's rules, as runc does, so leaving it out here
would change nothing.

Each `--device` parses to {"device": linux.devices entry (+ "hostPath"), "rule": its allow rule}: the
shape ContainerConfig.security.devices keeps, and `inspect` shows. spec_fields() turns them into the two
spec fields.
"""

from __future__ import annotations

import os
import stat

from pycontain.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

# The nodes every container may use, as Docker's default spec and runc's built-in list allow them.
STANDARD = ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (136, None))
# What `--privileged` leaves out of the host's /dev (containerd and Docker skip the same): the
# container has its own ptys, shared memory and message queues, fd is a link, and console is the
# container's own terminal.
PRIVILEGED_SKIP_DIRS = ("pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev")
PRIVILEGED_SKIP_FILES = ("console",)
# The keys of a linux.devices entry (an entry here also carries "hostPath", for inspect).
NODE_KEYS = ("path", "type", "major", "minor", "fileMode", "uid", "gid")


def default_rules() -> list[dict[str, Any]]:
    """linux.resources.devices of a container: deny all, then the standard nodes and mknod."""
    return [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "access": "m"},
        {"allow": True, "type": "b", "access": "m"},
        *({"allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"} if minor is not None
          else {"allow": True, "type": "c", "major": major, "access": "rwm"} for major, minor in STANDARD),
    ]


def parse_device(text: str) -> list[dict[str, Any]]:
    """`--device HOST[:CONTAINER[:rwm]]` (also HOST:rwm) as entries {"device", "rule"}: one for a device
    node, one per device node below HOST for a directory (as Docker does: `--device /dev/snd`). The
    node's type, numbers, mode and owner are the host's; the permissions default to rwm."""
    parts = text.split(":")
    if not text or len(parts) > 3 or not parts[0]:
        raise UsageError(f"invalid --device {text!r}: expected HOST[:CONTAINER[:PERMISSIONS]], "
                         "e.g. /dev/sdb:/dev/xvdb:rw")
    host, target, access = parts[0], "", "rwm"
    if len(parts) == 3:
        target, access = parts[1], parts[2]
        if not _valid_access(access):
            raise UsageError(f"invalid --device {text!r}: permissions {access!r} must be r, w and m, each at "
                             "most once")
    elif len(parts) == 2:
        # HOST:rwm or HOST:CONTAINER, told apart as Docker does: a valid permission string is one.
        if _valid_access(parts[1]):
            access = parts[1]
        else:
            target = parts[1]
    target = target or host
    if len(parts) == 2 and target.isalpha():
        raise UsageError(f"invalid --device {text!r}: permissions {target!r} must be r, w and m, each at most once "
                         "(or give an absolute container path)")
    if not target.startswith("/"):
        raise UsageError(f"invalid --device {text!r}: the container path {target!r} must be absolute")
    if ".." in target.split("/") or os.path.normpath(target) in ("/", "//"):
        raise UsageError(f"invalid --device {text!r}: {target!r} is not a path for a device node")
    target = os.path.normpath(target)
    source = os.path.abspath(host)
    try:
        st = os.stat(source)  # follows a link, as Docker does (/dev/disk/by-id/... -> /dev/sdb)
    except OSError as e:
        raise UsageError(f"invalid --device {text!r}: {source}: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        found = []
        for path in _walk(os.path.realpath(source)):
            node = _node(path, os.path.join(target, os.path.relpath(path, os.path.realpath(source))))
            if node is not None:
                found.append(_with_rule(node, access))
        if not found:
            raise UsageError(f"invalid --device {text!r}: no character or block devices in {source}")
        return found
    node = _node(source, target, follow=True)
    if node is None:
        raise UsageError(f"invalid --device {text!r}: {source} is not a character or block device")
    return [_with_rule(node, access)]


def privileged_devices() -> list[dict[str, Any]]:
    """Every character and block device of the host's /dev, at the same path, as `--privileged` gives
    them (Docker's list: /dev/pts, shm, mqueue and console are the container's own). The rule of each
    allows rwm; spec_fields gives a privileged container the single rule "allow all" anyway."""
    return [_with_rule(node, "rwm") for path in _walk("/dev", PRIVILEGED_SKIP_DIRS, PRIVILEGED_SKIP_FILES)
            if (node := _node(path, path)) is not None]


def spec_fields(devices: Iterable[dict[str, Any]], privileged: bool = False) -> tuple[list[dict[str, Any]],
                                                                                   list[dict[str, Any]]]:
    """(linux.devices, linux.resources.devices) of a container given `devices` (parse_device's entries):
    the default rules plus an allow rule per device, or with `privileged` the host's devices and one rule
    that allows every device. A later entry for the same container path replaces an earlier one."""
    chosen = list(devices)
    nodes: dict[str, dict[str, Any]] = {}
    for entry in (privileged_devices() if privileged else []) + chosen:
        node = entry["device"]
        nodes[node["path"]] = {k: node[k] for k in NODE_KEYS if k in node}
    if privileged:
        rules = [{"allow": True, "access": "rwm"}]
    else:
        rules = default_rules() + [dict(entry["rule"]) for entry in chosen]
    return list(nodes.values()), rules


def _valid_access(access: str) -> bool:
    return bool(access) and set(access) <= set("rwm") and len(set(access)) == len(access)


def _node(path: str, target: str, follow: bool = False) -> dict[str, Any] | None:
    """The linux.devices entry of the host node `path` made at `target`, or None if it is no
    character or block device (or has gone)."""
    try:
        st = os.stat(path, follow_symlinks=follow)
    except OSError:
        return None
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        return None
    return {"path": target, "type": kind, "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
            "fileMode": stat.S_IMODE(st.st_mode) & 0o777, "uid": st.st_uid, "gid": st.st_gid, "hostPath": path}


def _with_rule(node: dict[str, Any], access: str) -> dict[str, Any]:
    return {"device": node, "rule": {"allow": True, "type": node["type"], "major": node["major"],
                                     "minor": node["minor"], "access": access}}


def _walk(top: str, skip_dirs: tuple[str, ...] = (), skip_files: tuple[str, ...] = ()) -> list[str]:
    """The paths below `top`, links not followed, in a stable order."""
    out: list[str] = []
    try:
        entries = sorted(os.scandir(top), key=lambda e: e.name)
    except OSError:
        return out
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            if entry.name not in skip_dirs:
                out += _walk(entry.path, skip_dirs, skip_files)
        elif entry.name not in skip_files:
            out.append(entry.path)
    return out
