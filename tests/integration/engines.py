"""Real container engines (podman + conmon, containerd + its runc v2 shim) driving an OCI runtime.

The runtime under test is $PYCONTAIN_OCI_RUNTIME, by default /usr/local/bin/pycontain-oci; pointing it
at /usr/sbin/runc checks this harness itself. Everything an engine keeps lives under the test's
tmp_path (storage, state, sockets, config files), so the machine's own /etc/containers,
/var/lib/containers, /var/lib/containerd and /run/containerd are never read or written:

    Podman         podman with --root/--runroot and private containers.conf, storage.conf and
                   registries.conf (CONTAINERS_CONF, ...); its containers go under a cgroup parent of
                   their own, removed at teardown
    EngineNs       a network + mount namespace held open by a `sleep`, where podman may build its
                   bridge and firewall rules (and keep /run, /var/lib scratch state) out of the host's
    Containerd     a private containerd: own config, root, state, grpc socket, runc root and TMPDIR
    engine_leftovers   what an engine test may have left behind that leakcheck cannot see or attribute

Traffic only ever goes to 127.0.0.1 inside a namespace these helpers make; no image is pulled (podman
runs with --pull never, images come from `pycontain save`).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import leaks
import pytest
from support import COMMAND_TIMEOUT, Pycontain, describe, read_until, wait_for

RUNTIME = os.environ.get("PYCONTAIN_OCI_RUNTIME", "/usr/local/bin/pycontain-oci")
# The state root the runtime uses when the caller passes no --root (podman passes none): runc's is
# /run/runc; pycontain-oci's may be set here if it differs from the guess below.
RUNTIME_DEFAULT_ROOT = os.environ.get(
    "PYCONTAIN_OCI_DEFAULT_ROOT", "/run/runc" if os.path.basename(RUNTIME) == "runc" else "/run/pycontain-oci")
# Podman's default ulimits (nofile and nproc 1048576) need CAP_SYS_RESOURCE, which this machine's
# bounding set lacks: even runc cannot apply them. Modest ones that root can set anywhere.
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")
# docker-archive's `busybox:latest` is stored by podman as localhost/busybox.
PODMAN_IMAGE = "localhost/busybox:latest"
CTR_IMAGE = "docker.io/library/busybox:latest"
CGROUP_ROOT = Path("/sys/fs/cgroup")
# How long a reported leak must persist to count (see engine_no_leaks).
LEAK_RECHECK_SECONDS = 10
HEX_ID = re.compile(r"^[0-9a-f]{64}$")


def require_runtime() -> str:
    """The runtime path; a clear failure (never a skip) when it is not installed."""
    assert os.access(RUNTIME, os.X_OK), (
        f"{RUNTIME} is missing or not executable: install pycontain-oci (scripts/install), or set "
        "PYCONTAIN_OCI_RUNTIME=/usr/sbin/runc to check the harness itself")
    return RUNTIME


def run(argv: list[str], *, env: dict[str, str] | None = None, timeout: float = COMMAND_TIMEOUT,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    stdin = None if input is not None else subprocess.DEVNULL
    return subprocess.run(argv, env=env, input=input, stdin=stdin, capture_output=True, text=True,
                          timeout=timeout)


def ok(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    res = run(argv, **kw)
    assert res.returncode == 0, describe(res)
    return res


# ---------------------------------------------------------------- processes and cgroups

def cmdline(pid: int | str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _state(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


def processes_naming(text: str) -> list[str]:
    """Live processes whose command line contains text (conmon, shims, containerd, runtime calls)."""
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid() and text in cmdline(pid) and _state(pid) not in ("Z", "gone"):
            out.append(f"{pid} {cmdline(pid)[:200]}")
    return out


def processes_in_mount_ns_of(ns_link: str) -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/ns/mnt") == ns_link and _state(pid) not in ("Z", "gone"):
                    out.append(int(pid))
    return out


def cgroup_hierarchies() -> list[Path]:
    """The root of every cgroup hierarchy: each v1 controller (and named) mount, or the v2 root."""
    roots = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            if right.split()[0] in ("cgroup", "cgroup2"):
                roots.append(Path(left.split()[4]))
    return roots


def process_cgroup(pid: int, controller: str) -> str:
    """The cgroup path of pid for one v1 controller ("memory"), or the v2 path when controller is ""."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(",") or (not controller and controllers == ""):
            return path
    raise AssertionError(f"no {controller or 'v2'} cgroup for pid {pid}")


def memory_limit_of(pid: int) -> int:
    """The memory limit of pid's cgroup as the host sees it (v1 memory.limit_in_bytes or v2 memory.max)."""
    v1 = CGROUP_ROOT / "memory"
    if v1.is_dir() and (v1 / "memory.limit_in_bytes").exists():
        path = process_cgroup(pid, "memory")
        return int((v1 / path.lstrip("/") / "memory.limit_in_bytes").read_text())
    path = process_cgroup(pid, "")
    text = (CGROUP_ROOT / path.lstrip("/") / "memory.max").read_text().strip()
    return -1 if text == "max" else int(text)


class CgroupParent:
    """A cgroup parent of the test's own (`pycontain-ocitest-<hex>`) for an engine's containers.

    Engines never remove a parent they created (podman leaves `<parent>/conmon` too): those are the
    engine's own persistent objects, so teardown removes them. Anything else still inside is a
    container cgroup the runtime failed to remove, and is reported. The `pycontain-` prefix also makes
    leaks.py (which attributes only cgroups named so) count the parent itself as this test's leak.
    """

    ENGINE_OWN = ("conmon",)
    PREFIX = "pycontain-ocitest-"
    made: set[str] = set()  # every parent this pytest session made (for engine_no_leaks)

    def __init__(self) -> None:
        self.name = f"{self.PREFIX}{secrets.token_hex(4)}"
        CgroupParent.made.add(self.name)
        self.path = "/" + self.name

    def dirs(self) -> list[Path]:
        return [h / self.name for h in cgroup_hierarchies() if (h / self.name).is_dir()]

    def leftovers(self) -> list[str]:
        """Container cgroups still under the parent (whatever is not the engine's own)."""
        out = []
        for d in self.dirs():
            for child in d.iterdir():
                if child.is_dir() and child.name not in self.ENGINE_OWN:
                    out.append(str(child))
        return out

    def remove(self) -> list[str]:
        """Remove the parent and the engine's own children; returns what could not be removed."""
        failed: list[str] = []
        for d in self.dirs():
            for name in self.ENGINE_OWN:
                _rmdir_settled(d / name, failed)
            if any(child.is_dir() for child in d.iterdir()):
                # Its container cgroups are reported by leftovers(); once reported, the empty ones are
                # removed anyway so that a failing runtime does not leave this machine littered.
                failed.append(f"cgroup {d}: not empty")
                for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                    with contextlib.suppress(OSError):
                        sub.rmdir()
                with contextlib.suppress(OSError):
                    d.rmdir()
                continue
            _rmdir_settled(d, failed)
        return failed


def _rmdir_settled(path: Path, failed: list[str]) -> None:
    """rmdir a cgroup; it is busy (EBUSY) for a moment after its last process exits."""
    deadline = time.monotonic() + 5
    while path.is_dir():
        try:
            path.rmdir()
        except OSError as exc:
            if time.monotonic() > deadline:
                procs = (path / "cgroup.procs").read_text().split() if (path / "cgroup.procs").exists() else []
                failed.append(f"cgroup {path}: {exc.strerror} (processes: {' '.join(procs) or 'none'})")
                return
            time.sleep(0.05)


def runtime_state_entries(root: str | Path) -> set[str]:
    try:
        return set(os.listdir(root))
    except FileNotFoundError:
        return set()


# ---------------------------------------------------------------- a namespace for podman's networks

class EngineNs:
    """A new network namespace and a private mount namespace, held by `sleep`; commands join both.

    Not `ip netns add/exec`: `ip netns exec` remounts /sys for the new namespace, which drops the
    cgroup mounts under /sys/fs/cgroup (runc then fails "no cgroup mount found"), and `ip netns add`
    leaves a self bind mount of /run/netns on the host. Inside, fresh tmpfs over /run and /var/lib
    take what podman's network stack keeps on the host's paths (netns bind mounts in /run/netns, CNI
    IPAM leases and cache in /var/lib/cni, /run/cni) without creating anything on the host's disk.
    Killing the holder takes the namespaces, the bridge, the veths and the firewall rules with it.
    """

    SETUP = ("ip link set lo up && mount -t tmpfs -o mode=0755 tmpfs /run "
             "&& mount -t tmpfs -o mode=0755 tmpfs /var/lib && echo ready && exec sleep infinity")

    def __init__(self) -> None:
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--mount", "--propagation", "private", "--", "sh", "-c", self.SETUP],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.holder.stdout is not None
        line = self.holder.stdout.readline()
        if line.strip() != "ready":
            self.holder.kill()
            _, err = self.holder.communicate(timeout=COMMAND_TIMEOUT)
            raise AssertionError(f"the test's namespace could not be set up: {line}{err}")
        self.pid = self.holder.pid
        assert os.readlink(f"/proc/{self.pid}/ns/net") != os.readlink("/proc/self/ns/net")
        self.mnt = os.readlink(f"/proc/{self.pid}/ns/mnt")

    def argv(self, *args: str | os.PathLike[str]) -> list[str]:
        return ["nsenter", f"--target={self.pid}", "--net", "--mount", "--", *map(str, args)]

    def close(self) -> list[str]:
        """Kill the holder; returns processes still inside the namespace (there should be none)."""
        others = [p for p in processes_in_mount_ns_of(self.mnt) if p != self.pid]
        self.holder.kill()
        self.holder.communicate(timeout=COMMAND_TIMEOUT)
        return [f"{p} {cmdline(p)[:200]}" for p in others]


# ---------------------------------------------------------------- podman

class Podman:
    """podman with everything under one directory; `ns` runs every command inside an EngineNs."""

    def __init__(self, base: Path, runtime: str, ns: EngineNs | None = None) -> None:
        self.base = base
        self.runtime = runtime
        self.ns = ns
        self.cgroup = CgroupParent()
        self.root, self.tmp = base / "root", base / "tmp"
        # podman refuses a runroot longer than 50 characters (conmon's sockets live there), which a
        # pytest tmp_path is: a short directory of its own in /tmp, removed by cleanup().
        self.runroot = Path(tempfile.mkdtemp(prefix="pcoci-runroot-", dir="/tmp"))
        for d in (self.root, self.tmp, base / "networks", base / "volumes"):
            d.mkdir(parents=True, exist_ok=True)
        (base / "containers.conf").write_text(f"""\
[containers]
# no network unless a test asks for one: root podman's default is a bridge (a host-wide cni-podman0)
netns = "none"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{base}/events.log"
tmp_dir = "{self.tmp}"
volume_path = "{base}/volumes"
static_dir = "{self.root}/libpod"
[network]
network_config_dir = "{base}/networks"
""")
        (base / "storage.conf").write_text(f"""\
[storage]
driver = "overlay"
graphroot = "{self.root}"
runroot = "{self.runroot}"
""")
        # No registry to search: nothing here may ever be looked up on the network.
        (base / "registries.conf").write_text('unqualified-search-registries = []\nshort-name-mode = "disabled"\n')
        self.env = {**os.environ, "CONTAINERS_CONF": str(base / "containers.conf"),
                    "CONTAINERS_STORAGE_CONF": str(base / "storage.conf"),
                    "CONTAINERS_REGISTRIES_CONF": str(base / "registries.conf"),
                    # podman's own temp files (conmon puts its console sockets in /tmp whatever this says)
                    "TMPDIR": str(self.tmp)}
        self.ids: set[str] = set()
        self.popens: list[subprocess.Popen[Any]] = []
        self.state_before = runtime_state_entries(RUNTIME_DEFAULT_ROOT)

    def argv(self, *args: str | os.PathLike[str]) -> list[str]:
        cmd = ["podman", "--root", str(self.root), "--runroot", str(self.runroot), "--tmpdir", str(self.tmp),
               "--cgroup-manager", "cgroupfs", "--runtime", self.runtime, *map(str, args)]
        return self.ns.argv(*cmd) if self.ns else cmd

    def run_args(self, *args: str) -> list[str]:
        """`run` with what every container here needs: no pull, modest ulimits, our cgroup parent."""
        return ["run", "--pull", "never", "--cgroup-parent", self.cgroup.path, *ULIMITS, *args]

    def __call__(self, *args: str | os.PathLike[str], timeout: float = COMMAND_TIMEOUT,
                 input: str | None = None) -> subprocess.CompletedProcess[str]:
        return run(self.argv(*args), env=self.env, timeout=timeout, input=input)

    def ok(self, *args: str | os.PathLike[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        res = self(*args, **kw)
        assert res.returncode == 0, describe(res)
        return res

    def popen(self, *args: str | os.PathLike[str], **kw: Any) -> subprocess.Popen[Any]:
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        p: subprocess.Popen[Any] = subprocess.Popen(self.argv(*args), env=self.env, **kw)
        self.popens.append(p)
        return p

    def load(self, archive: Path) -> None:
        """`podman load` of a docker-archive. Copying an image updates c/image's blob-info cache, which
        for root is always /var/lib/containers/cache: the load runs in a private mount namespace with a
        tmpfs over /var/lib, so the host's copy is neither created nor written."""
        argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                'mount -t tmpfs tmpfs /var/lib && exec "$@"', "sh", *self.argv("load", "-q", "-i", archive)]
        res = ok(argv, env=self.env, timeout=120)
        assert PODMAN_IMAGE in res.stdout, describe(res)

    def known_ids(self) -> set[str]:
        res = self("ps", "-a", "--no-trunc", "--format", "{{.ID}}")
        self.ids |= {i for i in res.stdout.split() if HEX_ID.match(i)}
        return self.ids

    def helpers(self) -> list[str]:
        """conmon, `podman container cleanup` and runtime calls of this podman (they name its root)."""
        return processes_naming(str(self.root))

    def inspect(self, ref: str, fmt: str) -> str:
        return self.ok("inspect", "--format", fmt, ref).stdout.strip()

    def cleanup(self) -> list[str]:
        """Remove every container and the engine's own objects; returns anything left behind."""
        for p in self.popens:
            if p.poll() is None:
                p.kill()
            p.communicate(timeout=COMMAND_TIMEOUT)
        ids = sorted(self.known_ids())
        problems = []
        if ids:
            res = self("rm", "-f", "-t", "0", *ids)
            if res.returncode != 0:
                problems.append(f"podman rm -f failed: {describe(res)}")
        # conmon and `podman container cleanup` finish asynchronously after rm returns.
        with contextlib.suppress(AssertionError):
            wait_for("podman's helpers to exit", lambda: not self.helpers())
        problems += [f"process {p}" for p in self.helpers()]
        problems += [f"container cgroup {c}" for c in self.cgroup.leftovers()]
        problems += self.cgroup.remove()
        problems += [f"mount {m}" for m in mounts_under(self.base)]
        problems += [f"runtime state {RUNTIME_DEFAULT_ROOT}/{e}"
                     for e in runtime_state_entries(RUNTIME_DEFAULT_ROOT) - self.state_before if e in ids]
        shutil.rmtree(self.runroot, ignore_errors=True)
        return problems


def mounts_under(base: Path) -> list[str]:
    prefix = str(base) + "/"
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split(" - ", 1)[0].split()[4]
            if point.startswith(prefix):
                out.append(point)
    return out


# ---------------------------------------------------------------- containerd

class Containerd:
    """A private containerd for one test.

    Its own config (root, state, grpc/ttrpc sockets under base; plugins that would probe the machine or
    write elsewhere disabled: CRI, /opt, aufs/btrfs/devmapper/zfs snapshotters, tracing), started in a
    private mount namespace with a tmpfs over /run: containerd 1.6's shims always put their sockets in
    /run/containerd/s, which would otherwise be the host's. The runtime's state goes to `--runc-root`
    under base, TMPDIR (the shim's pty sockets, runc-process files) too. Containers use a cgroup parent
    of the test's own.
    """

    NAMESPACE = "test"
    DISABLED = ("io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
                "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
                "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp",
                "io.containerd.internal.v1.tracing")

    def __init__(self, base: Path, runtime: str) -> None:
        self.base = base
        self.runtime = runtime
        self.cgroup = CgroupParent()
        self.socket = base / "containerd.sock"
        self.fifo = base / "fifo"
        self.runc_root = base / "runc-root"
        self.tmp = base / "tmp"
        for d in (base / "root", base / "state", self.fifo, self.runc_root, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        disabled = ", ".join(f'"{p}"' for p in self.DISABLED)
        self.config = base / "config.toml"
        self.config.write_text(f"""\
version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = [{disabled}]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.snapshotter.v1.overlayfs"]
  root_path = ""
""")
        self.log = open(base / "containerd.log", "wb")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "TMPDIR": str(self.tmp)}
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
             'mount -t tmpfs -o mode=0755 tmpfs /run && mkdir /run/containerd && exec containerd --config "$1"',
             "sh", str(self.config)],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        try:
            wait_for("containerd's socket", lambda: self.proc.poll() is not None or self("version").returncode == 0)
        except AssertionError:
            self.stop()
            raise
        assert self.proc.poll() is None, f"containerd exited: {(base / 'containerd.log').read_text()[-3000:]}"
        self.mnt = os.readlink(f"/proc/{self.proc.pid}/ns/mnt")
        self.ids: set[str] = set()
        self.popens: list[subprocess.Popen[Any]] = []

    def argv(self, *args: str | os.PathLike[str]) -> list[str]:
        return ["ctr", "--address", str(self.socket), "-n", self.NAMESPACE, *map(str, args)]

    def __call__(self, *args: str | os.PathLike[str], timeout: float = COMMAND_TIMEOUT,
                 input: str | None = None) -> subprocess.CompletedProcess[str]:
        return run(self.argv(*args), timeout=timeout, input=input)

    def ok(self, *args: str | os.PathLike[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        res = self(*args, **kw)
        assert res.returncode == 0, describe(res)
        return res

    def run_args(self, cid: str, *flags: str) -> list[str]:
        """`ctr run` for our runtime, with IO fifos, runtime state and cgroup under this test."""
        self.ids.add(cid)
        return ["run", "--runc-binary", self.runtime, "--runc-root", str(self.runc_root),
                "--fifo-dir", str(self.fifo), "--cgroup", f"{self.cgroup.path}/{cid}", *flags]

    def popen(self, *args: str | os.PathLike[str], **kw: Any) -> subprocess.Popen[Any]:
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        p: subprocess.Popen[Any] = subprocess.Popen(self.argv(*args), **kw)
        self.popens.append(p)
        return p

    def import_image(self, archive: Path) -> None:
        res = self.ok("images", "import", archive, timeout=120)
        assert CTR_IMAGE in self.ok("images", "ls", "-q").stdout.split(), describe(res)

    def tasks(self) -> dict[str, tuple[int, str]]:
        """`ctr task ls`: id -> (pid, status)."""
        out = {}
        for line in self.ok("task", "ls").stdout.splitlines()[1:]:
            cid, pid, status = line.split()
            out[cid] = (int(pid), status)
        return out

    def task_pids(self, cid: str) -> list[int]:
        """`ctr task ps` (the runtime's `ps --format json`): the container's host PIDs."""
        rows = self.ok("task", "ps", cid).stdout.splitlines()[1:]
        return sorted(int(row.split()[0]) for row in rows)

    def wait_pids(self, cid: str, count: int) -> list[int]:
        """task_pids once the container has count processes (its own start is asynchronous)."""
        def check() -> list[int] | None:
            pids = self.task_pids(cid)
            return pids if len(pids) == count else None
        return list(wait_for(f"{count} processes in task {cid}", check))

    def wait_status(self, cid: str, status: str) -> int:
        def check() -> int | None:
            task = self.tasks().get(cid)
            return task[0] if task and task[1] == status else None
        return int(wait_for(f"task {cid} to be {status}", check))

    def shims(self) -> list[str]:
        """This containerd's shims (each names its socket; `ctr --address` does too, hence the filter)."""
        return [p for p in processes_naming(f"-address {self.socket}") if "containerd-shim" in p]

    def remove_all(self) -> list[str]:
        """Kill and delete every task, remove every container; returns what failed."""
        problems = []
        for p in self.popens:
            if p.poll() is None:
                p.kill()
            p.communicate(timeout=COMMAND_TIMEOUT)
        for cid, (_, status) in self.tasks().items():
            if status != "STOPPED":
                self("task", "kill", "-a", "-s", "SIGKILL", cid)
                with contextlib.suppress(AssertionError):
                    self.wait_status(cid, "STOPPED")
            res = self("task", "delete", cid)
            if res.returncode != 0:
                problems.append(f"ctr task delete {cid} failed: {describe(res)}")
        containers = self.ok("containers", "ls", "-q").stdout.split()
        if containers:
            res = self("containers", "rm", *containers)
            if res.returncode != 0:
                problems.append(f"ctr containers rm failed: {describe(res)}")
        return problems

    def leftovers(self) -> list[str]:
        """With no task left, nothing of a container may remain: shim, processes, cgroups, runtime state."""
        with contextlib.suppress(AssertionError):
            wait_for("the shims to exit", lambda: not self.shims())
        out = [f"shim {s}" for s in self.shims()]
        out += [f"container cgroup {c}" for c in self.cgroup.leftovers()]
        for ns_dir in self.runc_root.iterdir() if self.runc_root.is_dir() else []:
            out += [f"runtime state {ns_dir / e}" for e in os.listdir(ns_dir)]
        out += [f"process {p}" for p in processes_in_mount_ns_of(self.mnt)
                if p != self.proc.pid]
        return out

    def stop(self) -> list[str]:
        """Stop containerd, then any shim of it that is still running (reported); remove our cgroups."""
        problems = []
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=COMMAND_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=COMMAND_TIMEOUT)
        self.log.close()
        # A shim outlives containerd by design; stopping "containerd and its shims" means these too.
        for line in self.shims():
            pid = int(line.split()[0])
            problems.append(f"still running after containerd stopped: {line}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        mnt = getattr(self, "mnt", None)
        if mnt:
            with contextlib.suppress(AssertionError):
                wait_for("the private mount namespace to empty", lambda: not processes_in_mount_ns_of(mnt))
            problems += [f"process {p} {cmdline(p)[:200]}" for p in processes_in_mount_ns_of(mnt)]
        problems += self.cgroup.remove()
        return problems


def which(tool: str) -> str:
    path = shutil.which(tool)
    assert path, f"{tool} is not installed: scripts/install --test-deps"
    return path


# ---------------------------------------------------------------- fixtures (test modules load this
# file with `pytest_plugins = ["engines"]`)

@pytest.fixture
def engine_no_leaks(pc: Pycontain, leak_snapshot: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """conftest's no_leaks, with two more attribution rules (for processes and /tmp names).

    leaks.py counts a process in another PID namespace as this test's unless it can place it (by an
    overlay root in a state root, or its ancestry). Other sessions on this machine run containers whose
    processes it cannot place (a bind-mounted root, reparented to PID 1): one appearing while an engine
    test runs would fail that test. Every container an engine test starts is in the test's own
    `pycontain-ocitest-<hex>` cgroup parent, with its root under the test's tmp_path: a process that is
    in neither is someone else's. Likewise for /tmp names that none of this can have made (`_foreign`).
    Everything else is judged exactly as no_leaks does.
    """
    yield
    pc.remove_all()
    base = str(tmp_path_factory.getbasetemp().resolve()) + "/"

    def found() -> list[str]:
        return [line for line in leaks.leaks_since(leak_snapshot, tmp_path_factory.getbasetemp())
                if not _foreign(line, base)]

    # The same machine's other sessions (a benchmark's `pycontain-t1` cgroup, say) make short-lived
    # objects that leaks.py cannot tell from ours; it drops whatever is gone when it looks, so a
    # report is confirmed by looking again a little later. What this test left stays.
    leftovers = found()
    deadline = time.monotonic() + LEAK_RECHECK_SECONDS
    while leftovers and time.monotonic() < deadline:
        time.sleep(1)
        leftovers = found()
    assert not leftovers, "the engine test left host objects behind:\n" + "\n".join(leftovers)


def _foreign(line: str, base: str) -> bool:
    """A leakcheck line that is provably another session's (see engine_no_leaks)."""
    kind, _, obj = line[len("leaked "):].partition(": ")
    if kind == "tmp":
        # leakcheck lists every /tmp name containing "pycontain". These tests make nothing in /tmp
        # outside their pytest basetemp but podman's short runroot (pcoci-runroot-*, removed at
        # teardown); the runtime's own temp files would be named pycontain*. Other sessions' files
        # (`st.pycontain`, say, a snapshot someone else took) are not.
        return not obj.startswith("pycontain")
    if kind != "process":
        return False
    pid = obj.split()[0]
    try:
        other_pid_ns = os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
        root = os.readlink(f"/proc/{pid}/root")
        cgroups = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False  # gone: leaks.py already drops what no longer exists
    return (other_pid_ns and not (root + "/").startswith(base) and base not in cmdline(pid)
            and not any(f"/{name}/" in cgroups for name in CgroupParent.made))


@pytest.fixture
def oci_runtime() -> str:
    return require_runtime()


@pytest.fixture
def busybox_archive(pc: Pycontain, tmp_path: Path) -> Path:
    """The `pc` fixture's busybox image as a docker-archive tar (`pycontain save`), for the engines."""
    out = tmp_path / "busybox-archive.tar"
    pc.ok("save", "-o", out, "busybox")
    return out


@pytest.fixture
def podman(engine_no_leaks: None, oci_runtime: str, busybox_archive: Path, tmp_path: Path) -> Iterator[Podman]:
    """Podman on the host's network stack (containers get --network none), busybox loaded.
    Depends on engine_no_leaks so that its teardown (removing podman's objects) runs before the leak check."""
    which("podman")
    engine = Podman(tmp_path / "podman", oci_runtime)
    try:
        engine.load(busybox_archive)
        yield engine
    finally:
        problems = engine.cleanup()
    assert not problems, "podman left objects behind:\n" + "\n".join(problems)


@pytest.fixture
def podman_in_netns(engine_no_leaks: None, oci_runtime: str, busybox_archive: Path,
                    tmp_path: Path) -> Iterator[tuple[Podman, EngineNs]]:
    """Podman whose every command runs in a network + mount namespace made for the test: its bridge,
    veths, CNI state and iptables rules exist only there, and go with it."""
    which("podman")
    ns = EngineNs()
    problems: list[str] = []
    try:
        engine = Podman(tmp_path / "podman", oci_runtime, ns=ns)
        try:
            engine.load(busybox_archive)
            yield engine, ns
        finally:
            problems += engine.cleanup()
    finally:
        problems += [f"process left in the test's namespace: {p}" for p in ns.close()]
    assert not problems, "podman left objects behind:\n" + "\n".join(problems)


@pytest.fixture
def containerd(engine_no_leaks: None, oci_runtime: str, busybox_archive: Path, tmp_path: Path) -> Iterator[Containerd]:
    """A private containerd with busybox imported; at teardown every task is killed and deleted, and
    containerd and its shims are stopped (a shim still running then is reported as a leak)."""
    which("containerd")
    which("ctr")
    engine = Containerd(tmp_path / "containerd", oci_runtime)
    problems: list[str] = []
    try:
        engine.import_image(busybox_archive)
        yield engine
    finally:
        try:
            problems += engine.remove_all()
            problems += engine.leftovers()
        finally:
            problems += engine.stop()
    assert not problems, "containerd left objects behind:\n" + "\n".join(problems)


# A command for `-t` tests: it proves a terminal, reads a typed line back and exits 3.
PTY_SCRIPT = "test -t 0 && test -t 1 && echo IS-A-TTY; tty; read line; echo got:$line; exit 3"


def assert_runs_in_a_pty(start: Callable[[int], subprocess.Popen[bytes]]) -> None:
    """start(slave) launches an engine's `-t` run of PTY_SCRIPT on a real pty; the container must see a
    terminal, get what is typed, and its exit status must come back."""
    import pty

    master, slave = pty.openpty()
    try:
        proc = start(slave)
        os.close(slave)
        slave = -1
        out = read_until(master, b"/dev/pts/")  # `tty` prints the name after the test -t line
        assert b"IS-A-TTY" in out, out
        os.write(master, b"hello\r")
        out += read_until(master, b"got:hello")
        assert proc.wait(timeout=COMMAND_TIMEOUT) == 3, out
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
