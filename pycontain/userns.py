"""User namespaces: the container's root is an unprivileged range of host ids (`--userns=auto`).

Docker calls it userns-remap, podman `--userns=auto`. Each container gets its own 65536 host uids and
gids, taken from the `pycontain` entries of /etc/subuid and /etc/subgid (scripts/install adds them):
container uid N is host uid BASE+N. Seen from the host, the container's processes run as BASE (>= 100000
on a standard setup) and a file they create in a bind mount belongs to BASE; inside, `id -u` is 0, with
capabilities that count only inside the container's own namespaces.

    mode(value)                   "auto" or "host": the --userns flag, else /etc/pycontain/config's
                                  `userns = auto|host` line (like Docker's userns-remap), else host
    allocate(paths, cid)          a Lease (one slot of 65536 ids), under the lock of the state root's
                                  userns/ directory; release(paths, cid) on rm; gc(paths) frees the lease
                                  of any container whose record is gone (its creator was SIGKILLed)
    apply(spec, lease)            adds the user namespace and its uidMappings/gidMappings to the spec
    prepare_storage(dir, lease)   the container's own /etc files and overlay upper/work dirs, chowned to
                                  the range's root (so container root owns them, as with a chowned copy)

Leases are per state root, like podman's --userns=auto per storage: two roots on one host may hand out
the same range. A lease lives as long as its container (create -> rm), not one run: the container's
upper directory keeps files owned by its range, so a restart must get the same one.

The image layers stay shared. The executor (parent side: layers_for) mounts each lower layer through an
idmapped mount whose mapping is the container's, so layers written once as host root appear owned by the
range, with nothing copied or chowned; see layers_for for what was measured on this kernel, and the
fallback (a chowned copy per container) when the filesystem cannot be idmapped.
"""

from __future__ import annotations

import errno
import os

# The mode a container gets (--userns, else the config file's default) is read on every create, so it
# lives in config.py, which every start imports anyway; this module is loaded only for a container
# that has a user namespace of its own.
from pycontain.config import CONFIG as CONFIG
from pycontain.config import CONFIG_ENV as CONFIG_ENV
from pycontain.config import default_mode as default_mode
from pycontain.config import mode as mode
from pycontain.config import read_config as read_config
from pycontain.errors import PycontainError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pycontain.state import Paths

OWNER = "pycontain"  # the name in /etc/subuid and /etc/subgid
SUBUID, SUBGID = "/etc/subuid", "/etc/subgid"
SIZE = 65536  # ids per container: uid 0..65535 inside, as Docker and podman map
# "off": never idmap the layers, always make the chowned copies (the fallback), e.g. to measure it.
IDMAP_ENV = "PYCONTAIN_IDMAP"


# ---------------------------------------------------------------- configuration

# ---------------------------------------------------------------- /etc/subuid, /etc/subgid

def subid_ranges(path: str, owner: str = OWNER) -> list[tuple[int, int]]:
    """The (start, count) ranges `owner` has in /etc/subuid or /etc/subgid (`name:start:count` lines)."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] == owner and parts[1].isdigit() and parts[2].isdigit():
            start, count = int(parts[1]), int(parts[2])
            if start > 0 and count > 0 and start + count <= 2**32 - 1:
                out.append((start, count))
    return out


def _slot_bases(ranges: list[tuple[int, int]]) -> list[int]:
    """The first id of each whole block of SIZE ids in the ranges, in file order (host uid 0 never)."""
    bases = []
    for start, count in ranges:
        for i in range(count // SIZE):
            bases.append(start + i * SIZE)
    return bases


def slots() -> tuple[list[int], list[int]]:
    """(uid bases, gid bases): slot N maps container ids to uid bases[N] and gid bases[N]."""
    uids, gids = _slot_bases(subid_ranges(SUBUID)), _slot_bases(subid_ranges(SUBGID))
    if not uids or not gids:
        missing = SUBUID if not uids else SUBGID
        raise PycontainError(f"--userns=auto: {missing} has no range of at least {SIZE} ids for {OWNER!r}; "
                             f"add a line like `{OWNER}:100000:{SIZE * 1024}` (scripts/install does)")
    n = min(len(uids), len(gids))
    return uids[:n], gids[:n]


# ---------------------------------------------------------------- leases

class Lease:
    """One container's range: container id N is host uid uid+N and host gid gid+N, for N < size."""

    __slots__ = ("slot", "uid", "gid", "size")

    def __init__(self, slot: int, uid: int, gid: int, size: int = SIZE) -> None:
        self.slot, self.uid, self.gid, self.size = slot, uid, gid, size

    def to_json(self) -> dict[str, int]:
        return {"slot": self.slot, "uid": self.uid, "gid": self.gid, "size": self.size}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Lease:
        return cls(int(data["slot"]), int(data["uid"]), int(data["gid"]), int(data.get("size", SIZE)))

    def uid_mappings(self) -> list[dict[str, int]]:
        return [{"containerID": 0, "hostID": self.uid, "size": self.size}]

    def gid_mappings(self) -> list[dict[str, int]]:
        return [{"containerID": 0, "hostID": self.gid, "size": self.size}]


def _lease_dir(paths: Paths) -> str:
    return paths.userns


def _locked(paths: Paths) -> int:
    """The lease directory's lock, held (flock) until the returned descriptor is closed."""
    import fcntl

    d = _lease_dir(paths)
    os.makedirs(d, 0o700, exist_ok=True)
    fd = os.open(f"{d}/lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _leases(paths: Paths) -> dict[int, str]:
    """slot -> container id of every lease file (`<slot>` holding the id)."""
    out = {}
    d = _lease_dir(paths)
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return {}
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"{d}/{name}") as f:
                out[int(name)] = f.read(200).strip()
        except FileNotFoundError:
            continue
    return out


def _stale(paths: Paths, cid: str) -> bool:
    """A lease whose container record is gone: its container was removed, or its creator was killed
    before the record existed (allocate runs only after the record's directory is made)."""
    return not cid or "/" in cid or not os.path.isdir(paths.record(cid))


def allocate(paths: Paths, cid: str) -> Lease:
    """The lowest free slot for container `cid` (whose record directory exists already). Stale leases
    are freed on the way, so a SIGKILLed create never holds a range for long."""
    uids, gids = slots()
    lock = _locked(paths)
    try:
        taken = set()
        for slot, owner in _leases(paths).items():
            if owner == cid:
                return Lease(slot, uids[slot], gids[slot]) if slot < len(uids) else _refuse(slot)
            if _stale(paths, owner):
                _unlink(f"{_lease_dir(paths)}/{slot}")
            else:
                taken.add(slot)
        for slot in range(len(uids)):
            if slot not in taken:
                from pycontain.safefile import replace_file

                replace_file(f"{_lease_dir(paths)}/{slot}", cid.encode(), 0o600, False)
                return Lease(slot, uids[slot], gids[slot])
    finally:
        os.close(lock)
    raise PycontainError(f"--userns=auto: all {len(uids)} ranges of {SIZE} ids in {SUBUID} are in use by other "
                         f"containers; remove some, or give {OWNER!r} a larger range")


def _refuse(slot: int) -> Lease:
    raise PycontainError(f"--userns=auto: this container's range (slot {slot}) is no longer in {SUBUID}")


def release(paths: Paths, cid: str) -> None:
    """Free the lease of container `cid` (rm). Nothing to do if it has none."""
    d = _lease_dir(paths)
    if not os.path.isdir(d):
        return
    lock = _locked(paths)
    try:
        for slot, owner in _leases(paths).items():
            if owner == cid:
                _unlink(f"{d}/{slot}")
    finally:
        os.close(lock)


def gc(paths: Paths) -> list[str]:
    """Free the leases of containers whose records are gone (their creator or `rm` was killed)."""
    d = _lease_dir(paths)
    if not os.path.isdir(d):
        return []
    done = []
    lock = _locked(paths)
    try:
        for slot, owner in _leases(paths).items():
            if _stale(paths, owner):
                _unlink(f"{d}/{slot}")
                done.append(f"released user namespace range {slot} (container {owner[:12] or '?'})")
    finally:
        os.close(lock)
    return done


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# ---------------------------------------------------------------- the spec

def apply(spec: dict[str, Any], lease: Lease | dict[str, Any] | None) -> dict[str, Any]:
    """Add a new user namespace with the lease's mappings to a front-end spec (in place; returned).
    The executor then idmaps the image layers and chowns upper/work (executor.plan)."""
    if lease is None:
        return spec
    if isinstance(lease, dict):
        lease = Lease.from_json(lease)
    linux = spec.setdefault("linux", {})
    namespaces = linux.setdefault("namespaces", [])
    if not any(ns.get("type") == "user" for ns in namespaces):
        namespaces.insert(0, {"type": "user"})
    linux["uidMappings"] = lease.uid_mappings()
    linux["gidMappings"] = lease.gid_mappings()
    return spec


def prepare_storage(storage: str, lease: Lease | dict[str, Any] | None) -> None:
    """At create: the container's own files, made by the host's root, handed to the range's root: the
    overlay's upper and work directories (empty yet) and the /etc files (hosts, resolv.conf, hostname)
    the container may rewrite. Not recursive: nothing else in there belongs to the container."""
    if lease is None:
        return
    if isinstance(lease, dict):
        lease = Lease.from_json(lease)
    for sub in ("upper", "work", "etc"):
        path = f"{storage}/{sub}"
        if os.path.isdir(path):
            os.chown(path, lease.uid, lease.gid, follow_symlinks=False)
    try:
        names = os.listdir(f"{storage}/etc")
    except FileNotFoundError:
        names = []
    for name in names:
        os.chown(f"{storage}/etc/{name}", lease.uid, lease.gid, follow_symlinks=False)


# ---------------------------------------------------------------- the executor's side (parent, before clone)

def map_text(mappings: list[dict[str, int]]) -> str:
    """uidMappings/gidMappings as /proc/PID/uid_map lines."""
    return "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in mappings)


def host_id(mappings: list[dict[str, int]], inside: int) -> int | None:
    """The host id that container id `inside` maps to, or None if unmapped."""
    for m in mappings:
        if m["containerID"] <= inside < m["containerID"] + m["size"]:
            return m["hostID"] + inside - m["containerID"]
    return None


def parse_overlay(options: str) -> tuple[list[str], dict[str, str]]:
    """`lowerdir=a:b,upperdir=u,workdir=w,...` as (lowerdirs, the other options)."""
    lower: list[str] = []
    rest: dict[str, str] = {}
    for opt in options.split(","):
        key, _, value = opt.partition("=")
        if key == "lowerdir":
            lower = value.split(":")
        else:
            rest[key] = value
    return lower, rest


def overlay_text(lower: list[str], rest: dict[str, str]) -> str:
    return ",".join([f"lowerdir={':'.join(lower)}", *(f"{k}={v}" if v else k for k, v in rest.items())])


def layers_for(options: str, bundle: str, uid_mappings: list[dict[str, int]], gid_mappings: list[dict[str, int]],
               userns_fd: int | None = None) -> tuple[str, list[tuple[str, int]], str]:
    """The overlay of an image for a container in a user namespace: (overlay options, idmapped mounts to
    place, how). Runs in the parent, as the host's root, before clone.

    Preferred, "idmapped": for each lower layer, open_tree(OPEN_TREE_CLONE) + mount_setattr(
    MOUNT_ATTR_IDMAP, a user namespace with the container's mapping): a detached mount on which the
    layer's files (root-owned on disk) appear owned by the container's range. The child then places each
    one over its own layer directory, inside its own mount namespace (mounts.setup_rootfs), and mounts
    the overlay on the unchanged paths. The layer store is never written: every container of an image
    shares the same files on disk.

    Measured on this kernel (6.18, ext4): giving overlayfs the detached mounts directly as
    lowerdir=/proc/self/fd/N fails with EPERM when the overlay is mounted in the container's user
    namespace: overlayfs clones each layer's mount (clone_private_mount), which for a detached mount
    needs CAP_SYS_ADMIN over the anonymous mount namespace it lives in, and that one belongs to the
    host's root. Once move_mount has placed them in the container's own mount namespace, the same
    mounts work (lowerdir=/proc/self/fd/N of the now attached mount). Making an idmapped mount needs
    CAP_SYS_ADMIN over the layer's filesystem, so only the parent can; the mounts are inherited by the
    child (made before clone). A user namespace to carry the mapping costs 0.06 ms (syscalls.userns_fd:
    a CLONE_VM child holds it while its maps are written), open_tree 0.01 ms and mount_setattr 0.003 ms
    a layer. Everything a user namespace adds to `run --rm busybox true` (lease, chowns, maps, idmapped
    layer, bound device nodes): median 22.7 -> 23.8 ms. The upper and work directories are not
    idmapped: files the container writes land on disk with their host ids (>= the range's base), as in
    a bind mount, and the directories themselves are chowned to the range's root (prepare_storage, and
    again here: cheap and idempotent).

    Fallback, "copy" (the layers' filesystem or mount refuses idmapping, or $PYCONTAIN_IDMAP=off): each
    layer copied once per container into BUNDLE/idcopy/N (cp -a, then every entry chowned into the
    range, set-id bits restored), reused by later starts of the same container and removed with it.
    Measured here (ext4): 35-60 ms for the busybox layer (287 entries, 2.0 MB) and 125-220 ms for
    alpine 3.20's (517 entries, 8.1 MB), at the container's first start, plus that much disk per
    container and 5-25 ms to delete it at rm; `run --rm` end to end went from 24 to 123 ms (busybox)
    and from 25 to 339 ms (alpine).
    """
    lower, rest = parse_overlay(options)
    root_uid, root_gid = host_id(uid_mappings, 0), host_id(gid_mappings, 0)
    for key in ("upperdir", "workdir"):
        path = rest.get(key)
        if path and root_uid is not None and root_gid is not None:
            st = os.lstat(path)
            if (st.st_uid, st.st_gid) != (root_uid, root_gid):
                os.chown(path, root_uid, root_gid, follow_symlinks=False)
    if os.environ.get(IDMAP_ENV) != "off":
        try:
            return options, idmapped_layers(lower, uid_mappings, gid_mappings, userns_fd), "idmapped"
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.EPERM, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
    if not uid_mappings:
        raise PycontainError("the image layers cannot be idmapped here, and a joined user namespace gives no "
                             "mapping to copy them with")
    copies = [chowned_copy(layer, f"{bundle}/idcopy", i, uid_mappings, gid_mappings) for i, layer in enumerate(lower)]
    return overlay_text(copies, rest), [], "copy"


def idmapped_layers(lower: list[str], uid_mappings: list[dict[str, int]], gid_mappings: list[dict[str, int]],
                    userns_fd: int | None = None) -> list[tuple[str, int]]:
    """(layer path, detached idmapped mount of it) for each layer; the caller closes the descriptors."""
    from pycontain import syscalls

    own = userns_fd is None
    ns = syscalls.userns_fd(map_text(uid_mappings), map_text(gid_mappings)) if own else userns_fd
    assert ns is not None
    out: list[tuple[str, int]] = []
    try:
        for layer in lower:
            tree = syscalls.open_tree(syscalls.AT_FDCWD, layer, syscalls.OPEN_TREE_CLONE | os.O_CLOEXEC, layer)
            try:
                # Read-only too: nothing the container can reach should ever write to a shared layer.
                syscalls.mount_setattr_idmap(tree, ns, layer, syscalls.MOUNT_ATTR_RDONLY)
            except BaseException:
                os.close(tree)
                raise
            out.append((layer, tree))
    except BaseException:
        for _, fd in out:
            os.close(fd)
        raise
    finally:
        if own:
            os.close(ns)
    return out


def chowned_copy(layer: str, into: str, index: int, uid_mappings: list[dict[str, int]],
                 gid_mappings: list[dict[str, int]]) -> str:
    """The fallback: a copy of `layer` whose owners are shifted into the mapping, made once (a rename
    publishes it whole) and reused by the container's later starts."""
    dest = f"{into}/{index}"
    if os.path.isdir(dest):
        return dest
    os.makedirs(into, 0o700, exist_ok=True)
    tmp = f"{into}/.tmp-{index}-{os.getpid()}"
    import subprocess

    from pycontain.state import rmtree

    rmtree(tmp)
    res = subprocess.run(["cp", "-a", "--reflink=auto", "--", layer, tmp], capture_output=True, text=True)
    if res.returncode != 0:
        rmtree(tmp)
        raise PycontainError(f"cannot copy image layer {layer} for the container's user namespace: "
                             f"{res.stderr.strip() or 'cp failed'}")
    try:
        _shift_tree(tmp, uid_mappings, gid_mappings)
        os.rename(tmp, dest)
    except BaseException:
        rmtree(tmp)
        raise
    return dest


def _shift_tree(top: str, uid_mappings: list[dict[str, int]], gid_mappings: list[dict[str, int]]) -> None:
    """chown every entry below `top` from its image ids to the host ids they map to (unmapped ones stay
    and show as nobody); chown clears set-id bits, which are put back."""
    stack = [top]
    while stack:
        path = stack.pop()
        st = os.lstat(path)
        uid, gid = host_id(uid_mappings, st.st_uid), host_id(gid_mappings, st.st_gid)
        os.chown(path, st.st_uid if uid is None else uid, st.st_gid if gid is None else gid, follow_symlinks=False)
        kind = st.st_mode & 0o170000
        if st.st_mode & 0o6000 and kind != 0o120000:
            os.chmod(path, st.st_mode & 0o7777)
        if kind == 0o040000:
            with os.scandir(path) as it:
                stack.extend(entry.path for entry in it)
