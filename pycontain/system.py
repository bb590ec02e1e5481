"""`info`, `version`, `system df`, `system prune` and `events`: what pycontain holds and what happened.

Loaded only for these commands (cli.PLUGINS). `info` and `version` are meant to be quick: they read
files (records, the store's small JSON files, /proc, /etc/os-release) and never import the pull code
or touch the network. Sizes are Docker's: powers of 1000 with four significant digits (16.43MB), and
memory in powers of 1024 (7.748GiB).
"""

from __future__ import annotations

import os
import sys
import time

from pycontain import __version__, events, state
from pycontain.errors import PycontainError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from pycontain.images.store import Store
    from pycontain.state import Paths, Record, Status

FLAG, VALUE, MULTI = "flag", "value", "multi"
API_VERSION = "1.43"  # the Docker API level whose CLI behaviour pycontain follows (there is no daemon API)
MIN_API_VERSION = "1.12"
_FORMAT = (("--format",), "format", VALUE, "TEMPLATE", "a Go template, e.g. '{{json .}}'")

# Backing filesystems by statfs magic, named as Docker's `info` names them.
_FS_MAGIC = {0xEF53: "extfs", 0x58465342: "xfs", 0x9123683E: "btrfs", 0x01021994: "tmpfs", 0x794C7630: "overlayfs",
             0x2FC12FC1: "zfs", 0x6969: "nfs", 0xF2F52010: "f2fs", 0x858458F6: "ramfs", 0x73717368: "squashfs"}
_OTHER_RUNTIMES = ("runc", "crun")


# ---------------------------------------------------------------- small shared pieces

def _template(text: str) -> str:
    """--format as Docker takes it: `json` is `{{json .}}`."""
    return "{{json .}}" if text.strip() == "json" else text


def _render(text: str, data: Any) -> str:
    """--format applied to one value (info, version); a template error is one line (TemplateError)."""
    from pycontain import gotemplate

    return gotemplate.render(_template(text), data)


def _human(n: float) -> str:
    """Docker's HumanSize: powers of 1000, four significant digits (212B, 16.43MB)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000:
            return f"{n:.4g}{unit}"
        n /= 1000
    return f"{n:.4g}PB"


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(1 << 16)
    except OSError:
        return ""


def _records(paths: Paths) -> list[tuple[Record, Status]]:
    """Every readable container record with its status (RUNNING, PAUSED, RESTARTING, EXITED ...)."""
    from pycontain import state

    out = []
    for rec in state.all_records(paths):
        try:
            out.append((rec, rec.status()))
        except (OSError, ValueError):
            continue
    return out


def _active(status: Status) -> bool:
    """Docker counts a paused or restarting container as running (its State.Running is true)."""
    from pycontain import state

    return status in (state.RUNNING, state.PAUSED, state.RESTARTING)


def _no_args(pos: list[str], command: str) -> None:
    if pos:
        raise UsageError(f"`pycontain {command}` takes no arguments (got {pos[0]!r})")


# ---------------------------------------------------------------- info

def _backing_fs(path: str) -> str:
    """The filesystem the store lives on (its nearest existing directory), by statfs(2)'s magic."""
    from pycontain import syscalls

    while path != "/" and not os.path.isdir(path):
        path = os.path.dirname(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return "unknown"
    try:
        magic = syscalls.fstatfs_type(fd, path) & 0xFFFFFFFF
    except OSError:
        return "unknown"
    finally:
        os.close(fd)
    return _FS_MAGIC.get(magic, f"0x{magic:x}")


def _os_name() -> str:
    for line in _read_text("/etc/os-release").splitlines():
        key, _, value = line.partition("=")
        if key == "PRETTY_NAME":
            return value.strip().strip('"')
    return "Linux"


def _mem_total() -> int:
    for line in _read_text("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def registry_settings() -> tuple[list[str], list[str], str | None]:
    """(mirrors, insecure registries, a warning) from the environment and the registries file, as
    images/registry.py reads them for a pull; read here without importing the pull code."""
    from pycontain import jsonfast

    def split(text: str) -> list[str]:
        return [p.strip() for p in text.split(",") if p.strip()]

    mirrors = split(os.environ.get("PYCONTAIN_REGISTRY_MIRRORS", ""))
    insecure = split(os.environ.get("PYCONTAIN_INSECURE_REGISTRIES", ""))
    path = os.environ.get("PYCONTAIN_REGISTRIES_CONFIG", "/etc/pycontain/registries.json")
    warning = None
    try:
        with open(path, "rb") as f:
            conf = jsonfast.loads(f.read())
        if not isinstance(conf, dict):
            raise ValueError("not a JSON object")
        for key, into in (("registry-mirrors", mirrors), ("insecure-registries", insecure)):
            value = conf.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{key} is not a list of strings")
            into += value
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as e:
        warning = f"WARNING: {path} is unusable ({e}): pulls will fail until it is fixed"
    return mirrors, insecure, warning


def _runtimes() -> dict[str, str]:
    import shutil

    found = {"pycontain": sys.argv[0] if os.path.isabs(sys.argv[0]) else (shutil.which("pycontain") or "pycontain")}
    for name in _OTHER_RUNTIMES:
        path = shutil.which(name)
        if path:
            found[name] = path
    return found


def info_data(paths: Paths) -> dict[str, Any]:
    """`info` as Docker's API names it, for --format; the text layout is made from this too."""
    from pycontain import cgroups, config
    from pycontain.images.store import Store

    from pycontain.state import PAUSED

    counts = {"running": 0, "paused": 0, "stopped": 0}
    records = _records(paths)
    for _, status in records:
        counts["paused" if status == PAUSED else "running" if _active(status) else "stopped"] += 1
    uname = os.uname()
    mirrors, insecure, warning = registry_settings()
    security = ["name=seccomp,profile=default"]
    try:
        if config.default_mode() == "auto":
            security.append("name=userns")
    except PycontainError as e:
        warning = (warning + "; " if warning else "WARNING: ") + str(e)
    security.append("name=cgroupns")  # every container gets a cgroup namespace of its own
    runtimes = _runtimes()
    data: dict[str, Any] = {
        "ID": "", "Containers": len(records), "ContainersRunning": counts["running"],
        "ContainersPaused": counts["paused"], "ContainersStopped": counts["stopped"],
        "Images": len(Store(paths).image_ids()), "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", _backing_fs(paths.storage)], ["Supports d_type", "true"]],
        "LoggingDriver": "json-file", "CgroupDriver": "cgroupfs", "CgroupVersion": str(cgroups.detect()),
        "KernelVersion": uname.release, "OperatingSystem": _os_name(), "OSType": "linux",
        "Architecture": uname.machine, "NCPU": len(os.sched_getaffinity(0)), "MemTotal": _mem_total(),
        "Name": uname.nodename, "DockerRootDir": paths.storage, "ServerVersion": __version__,
        "Runtimes": {name: {"path": path} for name, path in runtimes.items()},
        "DefaultRuntime": os.environ.get("PYCONTAIN_RUNTIME") or "pycontain",
        "SecurityOptions": security,
        "RegistryConfig": {"Mirrors": mirrors, "InsecureRegistryCIDRs": ["127.0.0.0/8"],
                           "IndexConfigs": {r: {"Name": r, "Secure": False} for r in insecure}},
        "Warnings": [warning] if warning else [],
    }
    return data


def _info_text(d: dict[str, Any]) -> list[str]:
    from pycontain.clifmt import size

    lines = ["Client:", f" Version:    {__version__}", " Context:    default", "", "Server:",
             f" Containers: {d['Containers']}", f"  Running: {d['ContainersRunning']}",
             f"  Paused: {d['ContainersPaused']}", f"  Stopped: {d['ContainersStopped']}",
             f" Images: {d['Images']}", f" Server Version: {d['ServerVersion']}", f" Storage Driver: {d['Driver']}"]
    lines += [f"  {k}: {v}" for k, v in d["DriverStatus"]]
    lines += [f" Logging Driver: {d['LoggingDriver']}", f" Cgroup Driver: {d['CgroupDriver']}",
              f" Cgroup Version: {d['CgroupVersion']}", " Plugins:", "  Volume: local", "  Network: bridge host null",
              "  Log: json-file", f" Runtimes: {' '.join(d['Runtimes'])}", f" Default Runtime: {d['DefaultRuntime']}",
              " Security Options:"]
    for option in d["SecurityOptions"]:
        fields = dict(f.partition("=")[::2] for f in option.split(","))
        lines.append(f"  {fields.pop('name', option)}")
        lines += [f"   {k.title()}: {v}" for k, v in fields.items()]
    lines += [f" Kernel Version: {d['KernelVersion']}", f" Operating System: {d['OperatingSystem']}",
              f" OSType: {d['OSType']}", f" Architecture: {d['Architecture']}", f" CPUs: {d['NCPU']}",
              f" Total Memory: {size(d['MemTotal'], 'iec')}", f" Name: {d['Name']}",
              f" Docker Root Dir: {d['DockerRootDir']}", " Debug Mode: false", " Experimental: false"]
    registry = d["RegistryConfig"]
    lines += [" Insecure Registries:", *(f"  {r}" for r in [*registry["IndexConfigs"],
                                                          *registry["InsecureRegistryCIDRs"]])]
    if registry["Mirrors"]:
        lines += [" Registry Mirrors:", *(f"  {m}" for m in registry["Mirrors"])]
    lines.append(" Live Restore Enabled: false")
    return lines


def cmd_info(paths: Paths, opts: dict[str, Any], pos: list[str]) -> int:
    _no_args(pos, "info")
    data = info_data(paths)
    if opts["format"] is not None:
        print(_render(opts["format"], data))
        return 0
    print("\n".join(_info_text(data)))
    for warning in data["Warnings"]:
        print(warning, file=sys.stderr)
    return 0


# ---------------------------------------------------------------- version

def _git_commit() -> tuple[str, str]:
    """(short commit, its date) of the source tree pycontain runs from, if it is a git checkout."""
    import subprocess

    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.exists(f"{top}/.git"):
        return "", ""
    try:
        out = subprocess.run(["git", "-C", top, "log", "-1", "--format=%h%x00%cd",
                              "--date=format:%a %b %e %H:%M:%S %Y"],
                             capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "", ""
    commit, _, date = out.partition("\0")
    return commit, date


def _runtime_version(path: str) -> tuple[str, str]:
    """(version, commit) from `runc --version` / `crun --version`."""
    import subprocess

    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return "", ""
    version = commit = ""
    for line in out.splitlines():
        words = line.split()
        if len(words) >= 3 and words[1] == "version" and not version:
            version = words[2]
        elif words[:1] == ["commit:"] and len(words) > 1:
            commit = words[1]
    return version, commit


def version_data() -> dict[str, Any]:
    import platform

    commit, built = _git_commit()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    common = {"Version": __version__, "ApiVersion": API_VERSION, "GitCommit": commit or "unknown",
              "GoVersion": "n/a", "PythonVersion": platform.python_version(), "Os": "linux", "Arch": arch,
              "BuildTime": built or "unknown"}
    components = [{"Name": "Engine", "Version": __version__,
                   "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
                               "GitCommit": common["GitCommit"], "PythonVersion": common["PythonVersion"],
                               "Os": "linux", "Arch": arch, "BuildTime": common["BuildTime"],
                               "KernelVersion": os.uname().release, "Experimental": "false"}}]
    for name, path in _runtimes().items():
        if name != "pycontain":
            version, rcommit = _runtime_version(path)
            components.append({"Name": name, "Version": version or "unknown", "Details": {"GitCommit": rcommit}})
    return {"Client": {**common, "Platform": {"Name": "pycontain"}, "DefaultAPIVersion": API_VERSION,
                       "Context": "default"},
            "Server": {**common, "Platform": {"Name": "pycontain"}, "MinAPIVersion": MIN_API_VERSION,
                       "KernelVersion": os.uname().release, "Components": components}}


def cmd_version(paths: Paths, opts: dict[str, Any], pos: list[str]) -> int:
    _no_args(pos, "version")
    data = version_data()
    if opts["format"] is not None:
        print(_render(opts["format"], data))
        return 0
    c = data["Client"]
    lines = ["Client:", f" Version:           {c['Version']}", f" API version:       {c['ApiVersion']}",
             " Go version:        n/a", f" Python version:    {c['PythonVersion']}",
             f" Git commit:        {c['GitCommit']}", f" Built:             {c['BuildTime']}",
             f" OS/Arch:           {c['Os']}/{c['Arch']}", " Context:           default", "", "Server:"]
    for comp in data["Server"]["Components"]:
        det = comp["Details"]
        lines.append(f" {comp['Name']}:")
        lines.append(f"  Version:          {comp['Version']}")
        if comp["Name"] == "Engine":
            lines += [f"  API version:      {det['ApiVersion']} (minimum version {det['MinAPIVersion']})",
                      "  Go version:       n/a", f"  Python version:   {det['PythonVersion']}",
                      f"  Git commit:       {det['GitCommit']}", f"  Built:            {det['BuildTime']}",
                      f"  OS/Arch:          {det['Os']}/{det['Arch']}", "  Experimental:     false"]
        else:
            lines.append(f"  GitCommit:        {det['GitCommit'] or 'unknown'}")
    print("\n".join(lines))
    return 0


# ---------------------------------------------------------------- system df

class Usage:
    """What `system df` reports, gathered once: images, containers, volumes, build cache."""

    def __init__(self, paths: Paths) -> None:
        from pycontain.images.store import Store

        self.paths = paths
        self.store = Store(paths)
        self.records = _records(paths)
        self.layer_sizes: dict[str, int] = {}  # diff id -> bytes, each layer once
        self.images: list[tuple[str, list[str]]] = []  # (image id, its diff ids)
        for image_id in sorted(self.store.image_ids()):
            try:
                diff_ids = [str(d) for d in self.store.config(image_id).get("rootfs", {}).get("diff_ids") or ()]
            except PycontainError:
                continue
            self.images.append((image_id, diff_ids))
            for d in diff_ids:
                self._size_of(d)
        # image id -> its containers (any state); running ones keep their image's layers in use
        self.users: dict[str, list[str]] = {}
        for rec, _ in self.records:
            self.users.setdefault(rec.image_id, []).append(rec.id)
        self.container_sizes = {rec.id: state.tree_size(f"{rec.storage}/upper", links_once=True)
                                for rec, _ in self.records}

    def _size_of(self, diff_id: str) -> int:
        if diff_id not in self.layer_sizes:
            size = self.store.layer_info(diff_id).get("size")
            self.layer_sizes[diff_id] = size if isinstance(size, int) else 0
        return self.layer_sizes[diff_id]

    # -- images --
    def image_rows(self) -> tuple[int, int, int, int]:
        """(total, active, size, reclaimable): every layer counted once; reclaimable is what no image that
        a container uses holds."""
        active = [(i, d) for i, d in self.images if self.users.get(i)]
        held = {d for _, ds in active for d in ds}
        total = sum(self.layer_sizes[d] for d in {d for _, ds in self.images for d in ds})
        return len(self.images), len(active), total, total - sum(self.layer_sizes[d] for d in held)

    # -- volumes --
    def volumes(self) -> list[tuple[str, int, int]]:
        """(name, containers using it, bytes) for every volume."""
        if not os.path.isdir(f"{self.paths.storage}/volumes"):
            return []
        from pycontain import volumes

        users = volumes.users(self.paths)
        return [(name, len(users.get(name, [])),
                 state.tree_size(volumes.data_dir(self.paths, name), links_once=True))
                for name in volumes.names(self.paths)]

    # -- build cache --
    def cache(self) -> list[tuple[str, dict[str, Any], int, bool]]:
        """(key, entry, bytes only it keeps, shared with an image?) for every build cache entry."""
        from pycontain import jsonfast

        d = f"{self.store.root}/cache"
        try:
            names = sorted(n for n in os.listdir(d) if n.endswith(".json") and not n.startswith("."))
        except FileNotFoundError:
            return []
        image_layers = {x for _, ds in self.images for x in ds}
        out = []
        counted: set[str] = set()
        for name in names:
            try:
                with open(f"{d}/{name}", "rb") as f:
                    entry = jsonfast.loads(f.read())
            except (OSError, ValueError):
                entry = {}
            entry = entry if isinstance(entry, dict) else {}
            diff_id = entry.get("diff_id")
            shared = isinstance(diff_id, str) and diff_id in image_layers
            size = 0
            if isinstance(diff_id, str) and not shared and diff_id not in counted and self.store.has_layer(diff_id):
                counted.add(diff_id)
                size = self._size_of(diff_id)
            out.append((name[:-5], entry, size, shared))
        return out


def _reclaim(reclaimable: int, total: int, percent: bool = True) -> str:
    if percent and total > 0:
        return f"{_human(reclaimable)} ({reclaimable * 100 // total}%)"
    return _human(reclaimable)


def cmd_df(paths: Paths, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain.clifmt import table

    _no_args(pos, "system df")
    u = Usage(paths)
    n_images, n_active, images_size, images_free = u.image_rows()
    running = {rec.id for rec, status in u.records if _active(status)}
    ctr_size = sum(u.container_sizes.values())
    ctr_free = sum(s for cid, s in u.container_sizes.items() if cid not in running)
    vols = u.volumes()
    vol_size = sum(s for _, _, s in vols)
    vol_free = sum(s for _, links, s in vols if not links)
    cache = u.cache()
    cache_size = sum(s for _, _, s, _ in cache)
    rows = [("Images", n_images, n_active, images_size, _reclaim(images_free, images_size)),
            ("Containers", len(u.records), len(running), ctr_size, _reclaim(ctr_free, ctr_size)),
            ("Local Volumes", len(vols), sum(1 for _, links, _ in vols if links), vol_size,
             _reclaim(vol_free, vol_size)),
            ("Build Cache", len(cache), 0, cache_size, _reclaim(cache_size, cache_size, percent=False))]
    if opts["format"] is not None:
        from pycontain import gotemplate

        if opts["verbose"]:
            raise UsageError("system df: --format applies to the summary; give -v or --format, not both")
        data = [{"Type": kind, "TotalCount": str(total), "Active": str(active), "Size": _human(size),
                 "Reclaimable": free} for kind, total, active, size, free in rows]
        headers = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
                   "Reclaimable": "RECLAIMABLE"}
        for line in gotemplate.table(_template(opts["format"]), data, headers):
            print(line)
        return 0
    if not opts["verbose"]:
        table(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
              [[kind, str(total), str(active), _human(size), free] for kind, total, active, size, free in rows])
        return 0
    _df_verbose(u, running, vols, cache, cache_size)
    return 0


def _df_verbose(u: Usage, running: set[str], vols: list[tuple[str, int, int]],
                cache: list[tuple[str, dict[str, Any], int, bool]], cache_size: int) -> None:
    from pycontain.clifmt import ago, table

    layer_images: dict[str, int] = {}
    for _, ds in u.images:
        for d in set(ds):
            layer_images[d] = layer_images.get(d, 0) + 1
    diff_ids = dict(u.images)
    rows = []
    for repo, tag, config, _ in u.store.images():
        mine = set(diff_ids.get(config["id"], ()))
        size = sum(u.layer_sizes.get(d, 0) for d in mine)
        shared = sum(u.layer_sizes.get(d, 0) for d in mine if layer_images.get(d, 0) > 1)
        rows.append([repo, tag, config["id"][7:19], ago(str(config.get("created", ""))) + " ago", _human(size),
                     _human(shared), _human(size - shared), str(len(u.users.get(config["id"], [])))])
    print("Images space usage:\n")
    table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS"], rows)
    rows = []
    for rec, status in sorted(u.records, key=lambda r: r[0].created, reverse=True):
        try:
            command = " ".join(rec.resolved.argv)
            local_volumes = sum(1 for m in rec.config.mounts if m.kind == "volume")
        except (OSError, ValueError):
            command, local_volumes = "", 0
        command = f'"{command[:20]}…"' if len(command) > 20 else f'"{command}"'
        rows.append([rec.short_id, rec.image, command, str(local_volumes), _human(u.container_sizes[rec.id]),
                     ago(rec.created) + " ago", _status(rec, status), rec.name])
    print("\nContainers space usage:\n")
    table(["CONTAINER ID", "IMAGE", "COMMAND", "LOCAL VOLUMES", "SIZE", "CREATED", "STATUS", "NAMES"], rows)
    print("\nLocal Volumes space usage:\n")
    table(["VOLUME NAME", "LINKS", "SIZE"], [[name, str(links), _human(size)] for name, links, size in vols])
    print(f"\nBuild cache usage: {_human(cache_size)}\n")
    table(["CACHE ID", "CACHE TYPE", "SIZE", "CREATED", "SHARED"],
          [[key[:12], "regular" if entry.get("diff_id") else "frontend", _human(size),
            ago(str(entry.get("created", ""))) + " ago", str(shared).lower()] for key, entry, size, shared in cache])


def _status(rec: Record, status: Status) -> str:
    """ps's STATUS words: Up 3 minutes (Paused), Exited (0) 3 minutes ago, Created."""
    from pycontain import state
    from pycontain.clifmt import ago

    try:
        st = rec.read_state()
    except (OSError, ValueError):
        return str(status)
    if status in (state.RUNNING, state.PAUSED):
        return f"Up {ago(st.started_at or '')}" + (" (Paused)" if status == state.PAUSED else "")
    if status in (state.EXITED, state.RESTARTING):
        word = "Exited" if status == state.EXITED else "Restarting"
        return f"{word} ({st.exit_code}) {ago(st.finished_at or '')} ago"
    return str(status).capitalize()


# ---------------------------------------------------------------- system prune

def _layers_bytes(store: Store) -> int:
    """Bytes of every unpacked layer in the store (what deleting images and cache frees)."""
    from pycontain import jsonfast

    total = 0
    try:
        names = os.listdir(store.layers)
    except FileNotFoundError:
        return 0
    for name in names:
        if name.endswith(".json") and len(name) == 69:
            try:
                with open(f"{store.layers}/{name}", "rb") as f:
                    size = jsonfast.loads(f.read()).get("size")
            except (OSError, ValueError, AttributeError):
                continue
            total += size if isinstance(size, int) else 0
    return total


def _prune_containers(paths: Paths) -> tuple[list[str], int]:
    from pycontain import runtime

    removed = runtime.prune(paths)  # `container prune`'s own: every stopped container no one holds
    return [cid for cid, _ in removed], sum(size for _, size in removed)


def _networks_prune(paths: Paths) -> list[str]:
    from pycontain.network.commands import prune

    return prune(paths)


def _prune_volumes(paths: Paths) -> tuple[list[str], int]:
    """Anonymous volumes no container uses (Docker 23+: named ones stay; `volume prune -a` takes them)."""
    if not os.path.isdir(f"{paths.storage}/volumes"):
        return [], 0
    from pycontain import volumes

    removed, freed = [], 0
    fd = volumes.lock(paths)
    try:
        used = volumes.users(paths)
        for name in volumes.names(paths):
            vol = volumes.read(paths, name)
            if vol is None or name in used or not vol.get("anonymous"):
                continue
            freed += state.tree_size(volumes.vdir(paths, name), links_once=True)
            volumes.delete(paths, name)
            removed.append(name)
    finally:
        os.close(fd)
    return removed, freed


def _confirm(opts: dict[str, Any]) -> bool:
    items = ["all stopped containers", "all networks not used by at least one container"]
    if opts["volumes"]:
        items.append("all anonymous volumes not used by at least one container")
    items.append("all images without at least one container associated to them" if opts["all"]
                 else "all dangling images")
    items.append("all build cache" if opts["all"] else "unused build cache")
    from pycontain.clifmt import confirm

    return confirm("WARNING! This will remove:\n" + "".join(f"  - {i}\n" for i in items),
                   "system prune removes " + ", ".join(items) + ";")


def cmd_prune(paths: Paths, opts: dict[str, Any], pos: list[str]) -> int:
    from pycontain.build import builder
    from pycontain.images import remove
    from pycontain.images.store import Store

    _no_args(pos, "system prune")
    if not opts["force"] and not _confirm(opts):
        return 0
    containers, freed = _prune_containers(paths)
    networks = _networks_prune(paths)
    volumes, volume_bytes = _prune_volumes(paths) if opts["volumes"] else ([], 0)
    freed += volume_bytes
    store = Store(paths)
    before = _layers_bytes(store)
    image_lines = remove.prune(paths, opts["all"])
    cache_lines = builder.prune(paths, opts["all"])
    freed += before - _layers_bytes(store)
    for title, lines in (("Deleted Containers", containers), ("Deleted Networks", networks),
                         ("Deleted Volumes", volumes),
                         ("Deleted Images", [line[0].lower() + line[1:] for line in image_lines]),
                         ("Deleted build cache objects",
                          [line for line in cache_lines if not line.startswith("removed 0 ")])):
        if lines:
            print(f"{title}:")
            print("\n".join(lines))
            print()
    print(f"Total reclaimed space: {_human(max(freed, 0))}")
    return 0


# ---------------------------------------------------------------- events: reading the journal (events.py writes it)

def _parse(line: bytes) -> dict[str, Any] | None:
    from pycontain import jsonfast

    try:
        event = jsonfast.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None  # a line cut by a crash or a full disk: skipped, as the rest is still good
    if not isinstance(event, dict) or not isinstance(event.get("time"), int):
        return None
    attrs = event.get("attributes")
    return {"time": event["time"], "type": str(event.get("type", "")), "action": str(event.get("action", "")),
            "id": str(event.get("id", "")),
            "attributes": {str(k): str(v) for k, v in attrs.items()} if isinstance(attrs, dict) else {}}


class Reader:
    """Reads the journal from its oldest event, then whatever is appended, across rotations."""

    def __init__(self, paths: Paths) -> None:
        self.path = events.journal(paths)
        self.fd: int | None = None
        self.ino = -1
        self.pending = b""

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _open_current(self) -> bool:
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return False
        self.ino = os.fstat(self.fd).st_ino
        self.pending = b""
        return True

    def backlog(self) -> list[dict[str, Any]]:
        """Every event in the journal now, oldest first (the reader then stands at its end)."""
        self._open_current()
        data = b""
        try:
            with open(f"{self.path}.1", "rb") as f:
                # The current file may have been rotated between the open above and here: then .1 is
                # the file already open, and reading it twice would repeat every event.
                if os.fstat(f.fileno()).st_ino != self.ino:
                    data = f.read()
        except FileNotFoundError:
            pass
        events = [e for line in data.splitlines() if (e := _parse(line))]
        events += self.poll()
        events.sort(key=lambda e: int(e["time"]))  # a writer that held the old file may have added to .1 late
        return events

    def poll(self) -> list[dict[str, Any]]:
        """The events appended since the last call."""
        out: list[dict[str, Any]] = []
        if self.fd is None and not self._open_current():
            return out
        out += self._read_rest()
        try:
            current: int | None = os.stat(self.path).st_ino
        except FileNotFoundError:
            current = None  # renamed to .1 and not made again yet: the next emit makes it
        if current == self.ino:
            return out
        # Rotated since the last poll, perhaps more than once.
        out += self._read_rest()  # what was appended to our file before it was renamed
        seen = self.ino
        self.close()
        try:
            older = os.open(f"{self.path}.1", os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            older = -1
        if older >= 0 and os.fstat(older).st_ino != seen:
            # A part that came and went between two polls: read it whole.
            self.fd, self.ino, self.pending = older, os.fstat(older).st_ino, b""
            out += self._read_rest()
            if current is None:
                return out  # stay on it until the journal exists again
            self.close()
        elif older >= 0:
            os.close(older)
        if current is not None and self._open_current():
            out += self._read_rest()
        return out

    def _read_rest(self) -> list[dict[str, Any]]:
        assert self.fd is not None
        chunks = [self.pending]
        while chunk := os.read(self.fd, 1 << 16):
            chunks.append(chunk)
        data = b"".join(chunks)
        complete, _, self.pending = data.rpartition(b"\n")  # a line still being written waits
        return [e for line in complete.splitlines() if (e := _parse(line))]


def follow(paths: Paths, since: int | None, until: int | None, interval: float = 0.1) -> Iterator[dict[str, Any]]:
    """The journal's events from `since` to `until` (ns), then new ones as they come until `until`
    (None: until interrupted). As Docker's: with neither bound, only events from now on."""
    reader = Reader(paths)
    low = since or 0

    def wanted(event: dict[str, Any]) -> bool:
        return bool(event["time"] >= low and (until is None or event["time"] <= until))

    try:
        backlog = reader.backlog()
        if since is not None or until is not None:
            yield from filter(wanted, backlog)
        while until is None or time.time_ns() <= until:
            time.sleep(interval)
            yield from filter(wanted, reader.poll())
        yield from filter(wanted, reader.poll())  # written just before `until`, read just after it
    finally:
        reader.close()


# ---------------------------------------------------------------- events: filters and formats

EVENT_TYPES = ("container", "image", "volume", "network")
FILTER_KEYS = ("type", "event", "container", "image", "volume", "network", "label")


def parse_filters(items: list[str]) -> dict[str, list[str]]:
    """--filter KEY=VALUE: the same key given again widens (OR), different keys narrow (AND), as Docker."""
    out: dict[str, list[str]] = {}
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq or not value:
            raise UsageError(f"invalid --filter {item!r}: expected KEY=VALUE")
        if key not in FILTER_KEYS:
            raise UsageError(f"invalid --filter {item!r}: filter by " + ", ".join(FILTER_KEYS))
        if key == "type" and value not in EVENT_TYPES:
            raise UsageError(f"invalid --filter {item!r}: the types are " + ", ".join(EVENT_TYPES))
        out.setdefault(key, []).append(value)
    return out


def _names(event: dict[str, Any]) -> set[str]:
    """What an event's actor answers to: its id (and short id) and its name."""
    actor = event["id"]
    names = {actor, actor.removeprefix("sha256:")[:12]}
    if event["attributes"].get("name"):
        names.add(event["attributes"]["name"])
    return names


def matches(event: dict[str, Any], filters: dict[str, list[str]]) -> bool:
    attrs = event["attributes"]
    for key, values in filters.items():
        if key == "type":
            ok = event["type"] in values
        elif key == "event":
            ok = event["action"] in values
        elif key == "label":
            ok = any(attrs.get(k) == v if eq else k in attrs for k, eq, v in (x.partition("=") for x in values))
        elif key == "image":
            # Docker: an image's own events, and the events of containers made from it.
            ok = (event["type"] == "image" and bool(_names(event) & set(values))) or attrs.get("image") in values
        else:  # container, volume, network: that kind of object, by name or id
            ok = event["type"] == key and any(
                n in _names(event) or (len(n) >= 4 and event["id"].startswith(n)) for n in values)
        if not ok:
            return False
    return True


def stamp(ns: int) -> str:
    """2026-11-30T14:00:00.000000000Z: RFC 3339 with nanoseconds, in UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"


def text(event: dict[str, Any]) -> str:
    """Docker's line: `TIME TYPE ACTION ID (k=v, k=v)`, the attributes sorted by key."""
    attrs = event["attributes"]
    tail = f" ({', '.join(f'{k}={attrs[k]}' for k in sorted(attrs))})" if attrs else ""
    return f"{stamp(event['time'])} {event['type']} {event['action']} {event['id']}{tail}"


def docker_shape(event: dict[str, Any]) -> dict[str, Any]:
    """The event as Docker's API gives it to --format templates (.Type, .Action, .Actor.Attributes ...)."""
    shaped: dict[str, Any] = {}
    if event["type"] in ("container", "image"):  # the older fields Docker still fills for these two
        shaped["Status"] = event["action"]
        shaped["ID"] = event["id"]
        shaped["From"] = event["attributes"].get("image", "")
    shaped.update({"Type": event["type"], "Action": event["action"],
                   "Actor": {"ID": event["id"], "Attributes": dict(event["attributes"])},
                   "Scope": "local", "Time": event["time"] // 1_000_000_000, "TimeNano": event["time"]})
    return shaped


def docker_json(event: dict[str, Any]) -> dict[str, Any]:
    """The event as Docker's `--format '{{json .}}'` prints it: its JSON names (status, id, from, scope,
    time, timeNano are lower-case there, unlike the template's field names)."""
    shaped = docker_shape(event)
    names = {"Status": "status", "ID": "id", "From": "from", "Scope": "scope", "Time": "time", "TimeNano": "timeNano"}
    return {names.get(k, k): v for k, v in shaped.items()}


# ---------------------------------------------------------------- events: --since / --until

_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(text: str) -> float | None:
    """A Go duration (10m, 1h30m, 1.5h, 300ms) in seconds; None if it is not one."""
    if not text or not text[0].isdigit() and text[0] != ".":
        return None
    total, i = 0.0, 0
    while i < len(text):
        j = i
        while j < len(text) and (text[j].isdigit() or text[j] == "."):
            j += 1
        k = j
        while k < len(text) and not (text[k].isdigit() or text[k] == "."):
            k += 1
        number, unit = text[i:j], text[j:k]
        if unit not in _DURATION_UNITS:
            return None
        try:
            total += float(number) * _DURATION_UNITS[unit]
        except ValueError:
            return None
        i = k
    return total


def parse_time(value: str, flag: str, now_ns: int | None = None) -> int:
    """--since / --until as Docker takes them, in ns: a Unix time (1700000000[.5]), a duration before now
    (10m, 1h30m), or an RFC 3339 date or date-time (2026-11-30, 2026-11-30T14:00:00[.5][Z|+01:00]; no zone:
    local time)."""
    import calendar

    now_ns = time.time_ns() if now_ns is None else now_ns
    value = value.strip()
    whole, dot, frac = value.partition(".")
    if whole.isdigit() and (not dot or frac.isdigit()):
        return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9] if dot else 0)
    seconds = _duration(value)
    if seconds is not None:
        return now_ns - int(seconds * 1e9)
    body, offset = value, None
    if body.endswith(("Z", "z")):
        body, offset = body[:-1], 0
    elif len(body) > 6 and body[-6] in "+-" and body[-3] == ":" and "T" in body:
        sign = 1 if body[-6] == "+" else -1
        try:
            offset = sign * (int(body[-5:-3]) * 3600 + int(body[-2:]) * 60)
        except ValueError:
            offset = None
        body = body[:-6]
    body, _, frac = body.partition(".")
    for form in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H", "%Y-%m-%d"):
        try:
            parsed = time.strptime(body, form)
        except ValueError:
            continue
        if frac and not frac.isdigit():
            break
        secs = calendar.timegm(parsed) - offset if offset is not None else int(time.mktime(parsed))
        return secs * 1_000_000_000 + int((frac + "000000000")[:9] if frac else 0)
    raise UsageError(f"invalid {flag} {value!r}: use a date-time (2026-11-30T14:00:00Z), a Unix time or a "
                     "duration before now (10m, 1h30m)")


# ---------------------------------------------------------------- events

def cmd_events(paths: Paths, opts: dict[str, Any], pos: list[str]) -> int:
    _no_args(pos, "events")
    since = parse_time(opts["since"], "--since") if opts["since"] is not None else None
    until = parse_time(opts["until"], "--until") if opts["until"] is not None else None
    filters = parse_filters(opts["filter"])
    template = None
    as_json = False
    if opts["format"] is not None:
        from pycontain import gotemplate

        # Parsed before the first event comes, so that a bad template fails at once.
        fmt = gotemplate.docker_format(_template(opts["format"]))
        template = gotemplate.parse(fmt)
        as_json = fmt.replace(" ", "") == "{{json.}}"  # Docker's JSON names, not the template's field names
    try:
        for event in follow(paths, since, until):
            if not matches(event, filters):
                continue
            if template is None:
                line = text(event)
            elif as_json:
                line = gotemplate.go_json(docker_json(event))
            else:
                line = template.execute(docker_shape(event))
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a follower ends: not an error
    return 0


def cmd_system(paths: Paths, opts: dict[str, Any], pos: list[str]) -> int:
    what = f"unknown system command {pos[0]!r}" if pos else "a system command is needed"
    raise UsageError(f"{what}: use pycontain system info|df|prune|events (see `pycontain system CMD --help`)")


_INFO = ([_FORMAT], "", "show system-wide information")
_EVENTS = ([(("--since",), "since", VALUE, "TIME", "events from this time on (2026-11-30T14:00:00Z, a Unix time, 10m)"),
            (("--until",), "until", VALUE, "TIME", "stop at this time (same forms as --since)"),
            (("-f", "--filter"), "filter", MULTI, "KEY=VALUE",
             "type=container|image|volume|network, event=ACTION, container=, image=, volume=, network=, label="),
            _FORMAT], "", "show events as they happen (and past ones with --since/--until)")
COMMANDS: dict[str, tuple[list[Any], str, str]] = {
    "info": _INFO,
    "system info": _INFO,
    "version": ([_FORMAT], "", "show the versions of pycontain and of the OCI runtimes beside it"),
    "system": ([], "COMMAND", "manage pycontain: info, df, prune, events"),
    "system df": ([(("-v", "--verbose"), "verbose", FLAG, "", "list every image, container, volume and cache entry"),
                   _FORMAT], "", "show disk usage"),
    "system prune": ([(("-a", "--all"), "all", FLAG, "", "every unused image and all build cache, not only dangling"),
                      (("--volumes",), "volumes", FLAG, "", "unused anonymous volumes too"),
                      (("-f", "--force"), "force", FLAG, "", "do not ask for confirmation")], "",
                     "remove stopped containers, unused networks, dangling images and build cache"),
    "events": _EVENTS,
    "system events": _EVENTS,
}
HANDLERS = {"info": cmd_info, "system info": cmd_info, "version": cmd_version, "system": cmd_system,
            "system df": cmd_df, "system prune": cmd_prune, "events": cmd_events, "system events": cmd_events}
