"""Volumes: directories pycontain keeps for containers, apart from any one container's layers.

    {storage}/volumes/.lock            one flock: volume changes, and each `create` that uses volumes
    {storage}/volumes/NAME/volume.json name, created, labels, options, driver "local", anonymous
    {storage}/volumes/NAME/_data       what containers see (bound like any -v host path)
    {storage}/volumes/NAME/creating    an anonymous volume whose container is not written yet (its id)
    {storage}/volumes/NAME/users/ID    containers running with a tmpfs-typed volume mounted on _data

A volume is made whole in a temp directory and renamed into place, so a reader (or a killed writer)
never sees half of one. `create` holds the lock from making the container's volumes until its record
is written: `volume rm` and `prune`, which take the same lock, then see every container that uses a
volume. Images never hold volume data: rmi, image prune and gc leave this directory alone (gc only
finishes what a killed pycontain left half-made here).

Loaded only when a container has a volume (or `volume ...` runs): `run` without one never imports it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import sys

from pycontain import state
from pycontain.config import BindMount, parse_tmpfs, valid_volume_name
from pycontain.errors import PycontainError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pycontain.config import ContainerConfig
    from pycontain.state import Paths, Record

ANONYMOUS_LABEL = "com.docker.volume.anonymous"  # how Docker 23+ marks them (inspect shows it)
DRIVER_MOUNT = "driver-mount"  # a mount's option: its volume is tmpfs-typed, mounted on _data while in use
FLAG, VALUE, MULTI = "flag", "value", "multi"


class VolumeNotFound(PycontainError):
    """No volume of that name."""


class VolumeInUse(PycontainError):
    """A container (running or not) still uses the volume."""


def root(paths: Paths) -> str:
    return f"{paths.storage}/volumes"


def vdir(paths: Paths, name: str) -> str:
    return f"{root(paths)}/{name}"


def data_dir(paths: Paths, name: str) -> str:
    return f"{root(paths)}/{name}/_data"


def lock(paths: Paths) -> int:
    """The volumes' exclusive lock (an fd; closing it releases the lock)."""
    os.makedirs(root(paths), 0o700, exist_ok=True)
    fd = os.open(f"{root(paths)}/.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def read(paths: Paths, name: str) -> dict[str, Any] | None:
    if not valid_volume_name(name):
        return None
    try:
        data = state.read_json(f"{vdir(paths, name)}/volume.json")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except ValueError:
        raise PycontainError(f"volume {name} has a damaged volume.json") from None
    return data if isinstance(data, dict) else None


def names(paths: Paths) -> list[str]:
    try:
        entries = os.listdir(root(paths))
    except FileNotFoundError:
        return []
    return sorted(e for e in entries if not e.startswith(".") and os.path.exists(f"{root(paths)}/{e}/volume.json"))


# ---------------------------------------------------------------- driver options

def check_options(options: dict[str, str]) -> None:
    """The local driver's -o options: type=tmpfs [o=size=..,mode=..], or type=none o=bind device=/dir.
    Anything else (nfs, a block device) needs a mount pycontain does not make: refused, one line."""
    if not options:
        return
    unknown = set(options) - {"type", "device", "o"}
    if unknown:
        raise UsageError(f"invalid volume option {sorted(unknown)[0]!r}: the local driver takes type, device and o")
    kind = options.get("type", "")
    if kind == "tmpfs":
        if options.get("device", "tmpfs") != "tmpfs":
            raise UsageError("invalid volume options: type=tmpfs takes no device (or device=tmpfs)")
        parse_tmpfs("/x:" + options["o"] if options.get("o") else "/x")
        return
    if kind in ("none", "bind") and "bind" in options.get("o", "").split(","):
        device = options.get("device", "")
        if not device.startswith("/") or not os.path.isdir(device):
            raise UsageError(f"invalid volume options: device={device!r} must be an existing absolute host directory")
        rest = [w for w in options["o"].split(",") if w not in ("bind", "rbind", "rw", "ro")]
        if rest:
            raise UsageError(f"invalid volume options: o={options['o']!r}: a bind volume takes only bind, rw, ro")
        return
    given = " ".join(f"{k}={v}" for k, v in sorted(options.items()))
    raise UsageError(f"unsupported volume options {given}: the local driver here mounts only type=tmpfs "
                     "[o=size=..,mode=..] and type=none o=bind device=/host/dir")


def _bind_device(vol: dict[str, Any]) -> str | None:
    opts = vol.get("options") or {}
    return os.path.realpath(opts["device"]) if opts.get("type") in ("none", "bind") and opts.get("device") else None


def _is_tmpfs(vol: dict[str, Any]) -> bool:
    return (vol.get("options") or {}).get("type") == "tmpfs"


# ---------------------------------------------------------------- making and removing (lock held)

def ensure(paths: Paths, name: str, labels: dict[str, str] | None = None, options: dict[str, str] | None = None,
           anonymous: bool = False, creator: str | None = None) -> tuple[dict[str, Any], bool]:
    """The volume NAME, made if missing; (its record, whether this call made it). Caller holds lock()."""
    existing = read(paths, name)
    if existing is not None:
        return existing, False
    check_options(options or {})
    vol = {"name": name, "driver": "local", "created": state.now(), "labels": dict(labels or {}),
           "options": dict(options or {}), "anonymous": anonymous}
    tmp = f"{root(paths)}/.tmp-{os.getpid()}-{os.urandom(6).hex()}"
    os.mkdir(tmp, 0o700)
    try:
        os.mkdir(f"{tmp}/_data", 0o755)
        if creator:
            with open(f"{tmp}/creating", "x") as f:
                f.write(creator)
        state.atomic_write_json(f"{tmp}/volume.json", vol)
        os.rename(tmp, vdir(paths, name))
    except OSError as e:
        state.rmtree(tmp)
        if e.errno in (errno.EEXIST, errno.ENOTEMPTY) and read(paths, name) is not None:
            return read(paths, name) or vol, False  # made meanwhile by a pycontain that did not lock
        raise
    from pycontain import events

    events.emit(paths, "volume", "create", name, {"driver": "local"})
    return vol, True


def delete(paths: Paths, name: str) -> None:
    """Remove a volume that no container uses (caller holds lock() and checked that)."""
    d = vdir(paths, name)
    data = f"{d}/_data"
    if os.path.ismount(data):
        _umount(data)
    gone = f"{root(paths)}/.tmp-{os.getpid()}-rm-{os.urandom(4).hex()}"
    os.rename(d, gone)  # gone at once by its name; the files follow
    state.rmtree(gone)
    from pycontain import events

    events.emit(paths, "volume", "destroy", name, {"driver": "local"})


def users(paths: Paths) -> dict[str, list[Record]]:
    """Volume name -> the containers (any state) whose mounts name it."""
    out: dict[str, list[Record]] = {}
    for rec in state.all_records(paths):
        try:
            mounts = rec.config.mounts
        except (OSError, ValueError):
            continue
        for m in mounts:
            if m.kind == "volume" and m.name:
                out.setdefault(m.name, []).append(rec)
    return out


def _in_use_error(name: str, recs: list[Record]) -> VolumeInUse:
    rec = recs[0]
    more = f" and {len(recs) - 1} other(s)" if len(recs) > 1 else ""
    return VolumeInUse(f"volume {name} is in use by container {rec.name} ({rec.short_id}){more}: "
                       "remove the container first")


# ---------------------------------------------------------------- a container's volumes (runtime.create)

class Prepared:
    """What prepare() made: the lock held until the container's record is written, and the anonymous
    volumes whose `creating` mark commit() removes then."""

    def __init__(self, fd: int, made: list[str]) -> None:
        self.fd, self.made = fd, made

    def commit(self, paths: Paths) -> None:
        for name in self.made:
            try:
                os.unlink(f"{vdir(paths, name)}/creating")
            except FileNotFoundError:
                pass
        self.release()

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def prepare(paths: Paths, cfg: ContainerConfig, image_config: dict[str, Any], layers: list[str] | tuple[str, ...],
            rec: Record, undo: Any, lease: Any = None) -> tuple[ContainerConfig, Prepared]:
    """The container's mounts with every volume resolved: --volumes-from copied in, the image's VOLUME
    paths given anonymous volumes, each volume made on first use (and filled from the image once, while
    it is empty), its host directory in `source`. Runs in create's undo scope: a failure removes the
    anonymous volumes made here, never a named one (Docker keeps those too).

    lease: the container's uid range (--userns=auto). A volume made or filled now is handed to that
    range (owners shifted, as Docker's userns-remap does), or its root could not write to it; a volume
    that exists already keeps its owners (another range's container may be using it)."""
    fd = lock(paths)
    prepared = Prepared(fd, [])
    undo.callback(prepared.release)
    mounts = list(cfg.mounts)
    targets = {m.target for m in mounts}
    for spec in cfg.volumes_from:
        ref, _, mode = spec.partition(":")
        other = state.find(paths, ref)
        for m in other.config.mounts:
            if m.kind == "tmpfs" or m.target in targets:
                continue  # the container's own mounts win, as in Docker; a tmpfs is no one's to share
            targets.add(m.target)
            mounts.append(m.replace(readonly=m.readonly if not mode else mode == "ro",
                                    options=tuple(o for o in m.options if o != "nocopy") + ("nocopy",)))
    image_volumes = (image_config.get("config") or {}).get("Volumes") or {}
    for path in sorted(image_volumes) if isinstance(image_volumes, dict) else ():
        target = os.path.normpath(path) if isinstance(path, str) and path.startswith("/") else None
        if target and target != "/" and "\0" not in target and target not in targets:
            targets.add(target)
            mounts.append(BindMount("", target, False, kind="volume"))
    out = []
    for m in mounts:
        if m.kind != "volume" or m.source:
            out.append(m)
            continue
        name = m.name or os.urandom(32).hex()
        labels: dict[str, str] = {}
        options: dict[str, str] = {}
        keep: list[str] = []
        for word in m.options:
            key, _, value = word.partition("=")
            if key in ("volume-label", "volume-opt"):
                k, _, v = value.partition("=")
                (labels if key == "volume-label" else options)[k] = v
            else:
                keep.append(word)
        vol, made = ensure(paths, name, labels, options, anonymous=not m.name, creator=None if m.name else rec.id)
        if made and not m.name:
            prepared.made.append(name)
            undo.callback(_discard, paths, name)
        source = _bind_device(vol) or data_dir(paths, name)
        if _is_tmpfs(vol):
            keep.append(DRIVER_MOUNT)
        elif source == data_dir(paths, name):
            copied = "nocopy" not in keep and copy_up(paths, name, layers, f"{rec.storage}/rootfs", m.target)
            if lease is not None and (made or copied):
                hand_to_range(source, lease.uid, lease.gid, lease.size)
        out.append(BindMount(source, m.target, m.readonly, kind="volume", name=name, options=tuple(keep)))
    return cfg.replace(mounts=tuple(out)), prepared


def hand_to_range(top: str, uid: int, gid: int, size: int) -> None:
    """chown everything below `top` from the image's ids to the range's (id N -> base + N, for N < size;
    ids outside the range stay, and show as nobody inside). chown clears set-id bits: they are put back."""
    stack = [top]
    while stack:
        path = stack.pop()
        st = os.lstat(path)
        os.chown(path, uid + st.st_uid if st.st_uid < size else st.st_uid,
                 gid + st.st_gid if st.st_gid < size else st.st_gid, follow_symlinks=False)
        if st.st_mode & 0o6000 and not stat.S_ISLNK(st.st_mode):
            os.chmod(path, st.st_mode & 0o7777)
        if stat.S_ISDIR(st.st_mode):
            with os.scandir(path) as it:
                stack.extend(entry.path for entry in it)


def _discard(paths: Paths, name: str) -> None:
    if os.path.isdir(vdir(paths, name)):
        delete(paths, name)


def copy_up(paths: Paths, name: str, layers: list[str] | tuple[str, ...], mountpoint: str, target: str) -> bool:
    """Docker's copy-up: an empty volume mounted where the image has a directory gets that directory's
    content (owners, modes, xattrs, links as links), once.

    The image's view is its layers as a read-only overlay, mounted on the container's (still empty)
    rootfs directory in a private mount namespace of a child process, so the host never holds the mount;
    the path is resolved inside that root with openat2(RESOLVE_IN_ROOT) as the executor resolves mount
    targets, so a link in the image at `target` (/data -> /etc) names the image's /etc, never the host's.
    `cp -a` copies into a fresh directory that is then renamed over the empty _data: nothing a
    container writes into the volume meanwhile can redirect the copy."""
    data = data_dir(paths, name)
    try:
        if os.listdir(data):
            return False
    except FileNotFoundError:
        return False
    if not layers:
        return False
    fresh = f"{vdir(paths, name)}/.copy-{os.getpid()}"
    state.rmtree(fresh)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = _copy_child(list(layers), mountpoint, target, fresh)
        except BaseException as e:  # noqa: BLE001 - the child ends here, reporting one line
            os.write(2, f"pycontain: copying the image's {target} into volume {name[:12]}: {e}\n".encode())
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 3:  # nothing there to copy (missing, or not a directory)
        return False
    if code != 0:
        state.rmtree(fresh)
        raise PycontainError(f"could not fill volume {name[:12]} from the image's {target} (cp exited {code})")
    try:
        os.rename(fresh, data)  # replaces the empty _data; fails if something appeared in it meanwhile
    except OSError as e:
        state.rmtree(fresh)
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        return False
    return True


def _copy_child(layers: list[str], mountpoint: str, target: str, fresh: str) -> int:
    from pycontain import mounts, syscalls
    from pycontain.oci import overlay_options

    syscalls.unshare(syscalls.CLONE_NEWNS)
    syscalls.mount("none", "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
    if len(layers) == 1:
        top = layers[0]  # overlayfs needs two lower layers without an upper one; one layer is the image
    else:
        lower = overlay_options(layers, "", "").split(",")[0]
        syscalls.mount("overlay", mountpoint, "overlay", syscalls.MS_RDONLY, lower)
        top = mountpoint
    root_fd = os.open(top, mounts.PATH_FLAGS | os.O_DIRECTORY)
    try:
        fd = mounts.open_in_root(root_fd, target)
    except FileNotFoundError:
        return 3
    if not stat.S_ISDIR(os.fstat(fd).st_mode):
        return 3
    os.set_inheritable(fd, True)
    os.execv("/bin/cp", ["cp", "-a", "--", f"/proc/self/fd/{fd}/.", fresh])
    return 1


def after_remove(paths: Paths, cid: str, mounts: tuple[BindMount, ...], anonymous: bool) -> None:
    """A container's record is gone: a tmpfs-typed volume it was the last user of is unmounted (its
    supervisor may have been killed before it could), and with `rm -v` or `--rm` (anonymous=True) its
    anonymous volumes that no other container uses are removed. Named volumes always stay."""
    names = [m.name for m in mounts if m.kind == "volume" and m.name]
    fd = lock(paths)
    try:
        for m in mounts:
            if DRIVER_MOUNT in m.options:
                _leave(paths, m.name, cid)
        if anonymous and names:
            used = users(paths)
            for name in names:
                vol = read(paths, name)
                if vol is not None and vol.get("anonymous") and name not in used:
                    delete(paths, name)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- tmpfs-typed volumes (runtime._supervise)

def acquire(paths: Paths, cfg: ContainerConfig, cid: str) -> None:
    """Before the container starts: each tmpfs-typed volume it uses is mounted on its _data (on the host,
    so that every container using it shares one tmpfs), and this container is listed as a user."""
    from pycontain import syscalls
    from pycontain.mounts import MOUNT_FLAGS

    fd = lock(paths)
    try:
        for m in cfg.mounts:
            if DRIVER_MOUNT not in m.options:
                continue
            vol = read(paths, m.name)
            if vol is None:
                raise VolumeNotFound(f"volume {m.name} is gone: remove the container")
            os.makedirs(f"{vdir(paths, m.name)}/users", 0o700, exist_ok=True)
            with open(f"{vdir(paths, m.name)}/users/{cid}", "w"):
                pass
            data = data_dir(paths, m.name)
            if not os.path.ismount(data):
                o = (vol.get("options") or {}).get("o", "")
                spec = parse_tmpfs("/x:" + o if o else "/x")
                flags, words = syscalls.MS_NOSUID | syscalls.MS_NODEV, []
                for word in spec.options + (("ro",) if spec.readonly else ()):
                    if word in MOUNT_FLAGS:
                        bit, clear = MOUNT_FLAGS[word]
                        flags = flags & ~bit if clear else flags | bit
                    else:
                        words.append(word)
                syscalls.mount("tmpfs", data, "tmpfs", flags, ",".join(words) or None)
    finally:
        os.close(fd)


def release(paths: Paths, cfg: ContainerConfig, cid: str) -> None:
    """After the container stopped: it is no longer a user; a tmpfs nobody uses any more is unmounted."""
    fd = lock(paths)
    try:
        for m in cfg.mounts:
            if DRIVER_MOUNT in m.options:
                _leave(paths, m.name, cid)
    finally:
        os.close(fd)


def _leave(paths: Paths, name: str, cid: str) -> None:
    """Container cid no longer uses the mount-typed volume `name`: unmount it if nobody else does."""
    try:
        os.unlink(f"{vdir(paths, name)}/users/{cid}")
    except FileNotFoundError:
        pass
    _unmount_if_unused(paths, name)


def _unmount_if_unused(paths: Paths, name: str) -> bool:
    """Drop users whose supervisor is gone (SIGKILL); unmount the tmpfs once none is left."""
    udir = f"{vdir(paths, name)}/users"
    try:
        ids = os.listdir(udir)
    except FileNotFoundError:
        ids = []
    alive = 0
    for cid in ids:
        rec = state.Record(paths, cid)
        if os.path.exists(rec.dir) and rec.is_locked():
            alive += 1
        else:
            os.unlink(f"{udir}/{cid}")
    data = data_dir(paths, name)
    if alive or not os.path.ismount(data):
        return False
    _umount(data)
    return True


def _umount(path: str) -> None:
    from pycontain import syscalls

    try:
        syscalls.umount2(path, 0)
    except OSError:
        syscalls.umount2(path, syscalls.MNT_DETACH)


def gc(paths: Paths) -> list[str]:
    """What a killed pycontain left here: half-made volumes, the anonymous volumes of a `create` that
    died before its record was written, tmpfs mounts no running container uses."""
    if not os.path.isdir(root(paths)):
        return []
    done = []
    fd = lock(paths)  # no `create` is between making volumes and writing its record while we hold it
    try:
        for entry in os.listdir(root(paths)):
            path = f"{root(paths)}/{entry}"
            # Only temp names: a volume directory is renamed into place whole, so one without its
            # volume.json is not ours to judge (someone's data; `volume ls` does not list it).
            if entry.startswith(".tmp-"):
                state.rmtree(path)
                done.append(f"removed half-made volume data {path}")
        used = users(paths)
        for name in names(paths):
            d = vdir(paths, name)
            for entry in os.listdir(d):
                if entry.startswith(".copy-"):
                    state.rmtree(f"{d}/{entry}")
            try:
                with open(f"{d}/creating") as f:
                    creator = f.read().strip()
            except FileNotFoundError:
                creator = None
            if creator is not None:
                vol = read(paths, name) or {}
                if vol.get("anonymous") and name not in used and not os.path.exists(
                        f"{paths.record(creator)}/config.json"):
                    delete(paths, name)
                    done.append(f"removed anonymous volume {name[:12]} of a container that was never made")
                    continue
                os.unlink(f"{d}/creating")
            if os.path.isdir(f"{d}/users") and _unmount_if_unused(paths, name):
                done.append(f"unmounted the tmpfs of volume {name} (no running container uses it)")
    finally:
        os.close(fd)
    return done


# ---------------------------------------------------------------- `pycontain volume ...`

def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid {flag} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def cmd_volume(paths: Paths, opts: dict[str, Any], pos: list[str]) -> int:
    what = f"unknown volume command {pos[0]!r}" if pos else "a volume command is needed"
    raise UsageError(f"{what}: use pycontain volume create|ls|inspect|rm|prune (see `pycontain volume CMD --help`)")


def cmd_create(paths: Paths, opts: dict[str, Any], pos: list[str]) -> int:
    if len(pos) > 1:
        raise UsageError("usage: pycontain volume create [OPTIONS] [NAME]")
    if (opts["driver"] or "local") != "local":
        raise UsageError(f"invalid --driver {opts['driver']!r}: only the local driver exists here")
    name = pos[0] if pos else os.urandom(32).hex()
    if not valid_volume_name(name):
        raise UsageError(f"invalid volume name {name!r}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")
    labels, options = _pairs(opts["label"], "--label"), _pairs(opts["opt"], "--opt")
    check_options(options)
    fd = lock(paths)
    try:
        vol, made = ensure(paths, name, labels, options)
    finally:
        os.close(fd)
    if not made and (labels and vol.get("labels") != labels or options and vol.get("options") != options):
        raise UsageError(f"volume {name} already exists with other labels or options")
    print(name)
    return 0


def describe(paths: Paths, vol: dict[str, Any]) -> dict[str, Any]:
    labels = dict(vol.get("labels") or {})
    if vol.get("anonymous"):
        labels[ANONYMOUS_LABEL] = ""
    return {"CreatedAt": vol.get("created", ""), "Driver": vol.get("driver", "local"), "Labels": labels or None,
            "Mountpoint": data_dir(paths, vol["name"]), "Name": vol["name"], "Options": vol.get("options") or None,
            "Scope": "local"}


def _matches(paths: Paths, vol: dict[str, Any], filters: list[tuple[str, str]], used: dict[str, Any]) -> bool:
    labels = describe(paths, vol)["Labels"] or {}
    for key, value in filters:
        if key == "dangling" and (vol["name"] not in used) != (value in ("true", "1")):
            return False
        if key == "name" and value not in vol["name"]:
            return False
        if key == "driver" and value != vol.get("driver", "local"):
            return False
        if key == "label":
            k, eq, v = value.partition("=")
            if k not in labels or (eq and labels[k] != v):
                return False
    return True


def _filters(items: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or key not in ("dangling", "name", "label", "driver") or (
                key == "dangling" and value not in ("true", "false", "1", "0")):
            raise UsageError(f"invalid --filter {item!r}: use dangling=true|false, name=TEXT, label=KEY[=VALUE] "
                             "or driver=local")
        out.append((key, value))
    return out


def cmd_ls(paths: Paths, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain.clifmt import table

    if pos:
        raise UsageError("usage: pycontain volume ls [-q] [--filter KEY=VALUE]")
    filters = _filters(opts["filter"])
    used = users(paths) if any(k == "dangling" for k, _ in filters) else {}
    vols = [v for v in (read(paths, n) for n in names(paths)) if v is not None and _matches(paths, v, filters, used)]
    if opts["quiet"]:
        for v in vols:
            print(v["name"])
    elif opts.get("format"):
        from pycontain.clifmt import print_formatted

        print_formatted(opts["format"], [_ls_row(paths, v) for v in vols], LS_HEADERS)
    else:
        table(["DRIVER", "VOLUME NAME"], [[v.get("driver", "local"), v["name"]] for v in vols])
    return 0


# `volume ls --format` placeholders and their table headers, as Docker's.
LS_HEADERS = {"Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE", "Mountpoint": "MOUNTPOINT",
              "Labels": "LABELS", "Links": "LINKS", "Size": "SIZE", "CreatedAt": "CREATED AT"}


def _ls_row(paths: Paths, vol: dict[str, Any]) -> dict[str, Any]:
    d = describe(paths, vol)
    labels = ",".join(f"{k}={v}" for k, v in sorted((d["Labels"] or {}).items()))
    # Links and Size cost a walk of every container and volume: Docker shows N/A unless asked (system df -v).
    return {"Name": d["Name"], "Driver": d["Driver"], "Scope": d["Scope"], "Mountpoint": d["Mountpoint"],
            "Labels": labels, "Links": "N/A", "Size": "N/A", "CreatedAt": d["CreatedAt"]}


def cmd_inspect(paths: Paths, opts: dict[str, Any], pos: list[str]) -> int:
    import json

    if not pos:
        raise UsageError("expected a volume name")
    fmt = opts.get("format")
    tmpl = None
    if fmt and fmt != "json":
        from pycontain import gotemplate

        tmpl = gotemplate.parse(fmt)  # a bad template fails before anything is looked up
    out, code = [], 0
    for name in pos:
        vol = read(paths, name)
        if vol is None:
            print(f"pycontain: no such volume: {name}", file=sys.stderr)
            code = VolumeNotFound.exit_code
            continue
        out.append(describe(paths, vol))
    if tmpl is None:
        print(json.dumps(out, indent=4))
    else:
        sys.stdout.write("".join(tmpl.execute(v) + "\n" for v in out))
    return code


def cmd_rm(paths: Paths, opts: dict[str, Any], pos: list[str]) -> int:
    if not pos:
        raise UsageError("expected a volume name")
    code = 0
    fd = lock(paths)
    try:
        used = users(paths)
        for name in pos:
            try:
                if read(paths, name) is None:
                    if opts["force"]:
                        continue  # -f: a missing volume is no error (Docker's rule)
                    raise VolumeNotFound(f"no such volume: {name}")
                if name in used:  # even with -f, as Docker: data a container relies on is never removed
                    raise _in_use_error(name, used[name])
                delete(paths, name)
                print(name)
            except PycontainError as e:
                print(f"pycontain: {e}", file=sys.stderr)
                code = e.exit_code
    finally:
        os.close(fd)
    return code


def cmd_prune(paths: Paths, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain.clifmt import size

    if pos:
        raise UsageError("usage: pycontain volume prune [-f] [-a] [--filter label=..]")
    filters = _filters(opts["filter"])
    if not opts["force"]:
        from pycontain.clifmt import confirm

        what = "all local volumes" if opts["all"] else "anonymous local volumes"
        if not confirm(f"WARNING! This will remove {what} not used by at least one container.",
                       f"volume prune deletes the data of {what} that no container uses"):
            return 0
    removed, reclaimed = [], 0
    fd = lock(paths)
    try:
        used = users(paths)
        for name in names(paths):
            vol = read(paths, name)
            if vol is None or name in used or not (opts["all"] or vol.get("anonymous")):
                continue
            if not _matches(paths, vol, filters, used):
                continue
            reclaimed += state.tree_size(vdir(paths, name), links_once=True)
            delete(paths, name)
            removed.append(name)
    finally:
        os.close(fd)
    if removed:
        print("Deleted Volumes:")
        for name in removed:
            print(name)
        print()
    print(f"Total reclaimed space: {size(reclaimed)}")
    return 0


_FILTER = (("--filter", "-f"), "filter", MULTI, "KEY=VALUE", "dangling=true|false, name=TEXT, label=KEY[=VALUE]")
COMMANDS: dict[str, tuple[list[Any], str, str]] = {
    "volume": ([], "COMMAND", "manage volumes: create, ls, inspect, rm, prune"),
    "volume create": ([(("-d", "--driver"), "driver", VALUE, "DRIVER", "the volume driver: local (the only one)"),
                       (("--label",), "label", MULTI, "K=V", "a label on the volume"),
                       (("-o", "--opt"), "opt", MULTI, "K=V",
                        "a driver option: type=tmpfs [o=size=..], or type=none o=bind device=/host/dir")],
                      "[NAME]", "create a volume (a random name when none is given) and print its name"),
    "volume ls": ([(("-q", "--quiet"), "quiet", FLAG, "", "only names"), _FILTER,
                   (("--format",), "format", VALUE, "TEMPLATE",
                    "a Go template (.Name .Driver .Scope .Mountpoint .Labels), `table ...`, or json")],
                  "", "list volumes"),
    "volume inspect": ([(("-f", "--format"), "format", VALUE, "TEMPLATE", "a Go template, or json")],
                       "VOLUME...", "show volumes' details as JSON"),
    "volume rm": ([(("-f", "--force"), "force", FLAG, "", "no error for a volume that does not exist")],
                  "VOLUME...", "remove volumes no container uses"),
    "volume prune": ([(("-f", "--force"), "force", FLAG, "", "do not ask for confirmation"),
                      (("-a", "--all"), "all", FLAG, "", "all unused volumes, not only anonymous ones"),
                      ((_FILTER[0][0],), *_FILTER[1:])], "", "remove unused anonymous volumes"),
}
HANDLERS = {"volume": cmd_volume, "volume create": cmd_create, "volume ls": cmd_ls, "volume inspect": cmd_inspect,
            "volume rm": cmd_rm, "volume prune": cmd_prune}
