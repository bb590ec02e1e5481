"""Helpers for the hand-written bundle tests of `pycontain-oci` (test_oci_bundles.py).

Each test writes its own config.json (never `pycontain-oci spec`'s, except the test of `spec` itself),
so every field a test names is one it set. The runtime is driven as podman and containerd drive runc:
`create` with its stdio on files (the container's init inherits them, so pipes would keep a
subprocess.run waiting for the container), then `start`, the init reaped by this process (a
subreaper), then `delete`.
"""

from __future__ import annotations

import copy
import ctypes
import errno
import json
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import leaks
from support import CGROUP_ROOT, COMMAND_TIMEOUT, SETTLE_TIMEOUT, describe

# Other test sessions (the engine tests run podman and containerd concurrently) keep their objects under
# their own pytest basetemp.
PYTEST_BASETEMP = re.compile(r"/tmp/pytest-of-[^/]+/pytest-[0-9]+/")
ID_PREFIX = "ocib-"
OCI = shutil.which("pycontain-oci") or "/usr/local/bin/pycontain-oci"
PR_SET_CHILD_SUBREAPER = 36
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Capability numbers (<linux/capability.h>) of the names the tests use.
CAP_BITS = {"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_FOWNER": 3, "CAP_KILL": 5, "CAP_SETGID": 6,
            "CAP_SETUID": 7, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_RAW": 13, "CAP_SYS_CHROOT": 18}
BASE_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
             "CAP_NET_BIND_SERVICE"]
NAMESPACES = ("pid", "network", "ipc", "uts", "mount")


def become_subreaper() -> None:
    """Orphans below this process come to it: a container's init outlives `create` (its parent), and
    must be waited for by someone, as conmon and the containerd shim do."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def reap_children() -> list[int]:
    """Collect every child that has already exited (inits of containers that were killed meanwhile)."""
    reaped: list[int] = []
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped.append(pid)


def new_id() -> str:
    """A container id no other session on this machine uses (default cgroups are named after it)."""
    return f"{ID_PREFIX}{uuid.uuid4().hex[:12]}"


def own_leaks(snapshot: Path, basetemp: Path) -> list[str]:
    """The repo's leak check (leaks.leaks_since), less what is positively another session's: objects
    under another pytest basetemp, and cgroups not named after this file's containers (every id and
    cgroupsPath here starts with ID_PREFIX; Oci.cleanup checks those cgroups by name besides)."""
    base = str(basetemp.resolve()) + "/"
    own = []
    for line in leaks.leaks_since(snapshot, basetemp):
        kind, _, obj = line[len("leaked "):].partition(": ")
        if kind == "cgroup" and ID_PREFIX not in obj:
            continue
        if base not in obj and any(m.group(0) != base for m in PYTEST_BASETEMP.finditer(obj)):
            continue
        own.append(line)
    return own


def cap_mask(names: list[str]) -> int:
    mask = 0
    for name in names:
        mask |= 1 << CAP_BITS[name]
    return mask


def mounts() -> list[dict[str, Any]]:
    """The usual filesystems of a Linux container, as spec mounts."""
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ]


def base_config(args: list[str]) -> dict[str, Any]:
    """A plain, complete config.json: root's default capabilities, the usual mounts, new namespaces."""
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": [PATH_ENV],
            "cwd": "/",
            "capabilities": {kind: list(BASE_CAPS) for kind in ("bounding", "effective", "permitted")},
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "ocitest",
        "mounts": mounts(),
        "linux": {
            "namespaces": [{"type": t} for t in NAMESPACES],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
        },
    }


class Bundle:
    """A bundle directory: rootfs/ (a copy of the busybox rootfs) and config.json (`config`, written
    by write())."""

    def __init__(self, path: Path, rootfs_source: Path, args: list[str]) -> None:
        self.path = path
        self.rootfs = path / "rootfs"
        path.mkdir(parents=True)
        shutil.copytree(rootfs_source, self.rootfs, symlinks=True)
        self.config = base_config(args)

    @property
    def process(self) -> dict[str, Any]:
        proc: dict[str, Any] = self.config["process"]
        return proc

    @property
    def linux(self) -> dict[str, Any]:
        linux: dict[str, Any] = self.config["linux"]
        return linux

    def write(self) -> Bundle:
        (self.path / "config.json").write_text(json.dumps(self.config, indent=2))
        return self

    def edit(self) -> dict[str, Any]:
        """A deep copy of the config, to break in ways the tests of bad bundles need."""
        return copy.deepcopy(self.config)


class Container:
    """One container made by Oci.create: its id, init pid and the files its stdio went to."""

    def __init__(self, oci: Oci, cid: str, bundle: Bundle, pid: int, out: Path, err: Path) -> None:
        self.oci, self.id, self.bundle, self.pid = oci, cid, bundle, pid
        self.out_file, self.err_file = out, err
        self.exit_code: int | None = None

    def state(self) -> dict[str, Any]:
        res = self.oci.ok("state", self.id)
        data: dict[str, Any] = json.loads(res.stdout)
        return data

    def status(self) -> str:
        return str(self.state()["status"])

    def start(self) -> None:
        self.oci.ok("start", self.id)

    def wait(self, timeout: float = SETTLE_TIMEOUT) -> int:
        """Reap the init (this process is its subreaper); its exit code, 128+N for a signal."""
        if self.exit_code is None:
            self.exit_code = wait_exit(self.pid, timeout)
        return self.exit_code

    def output(self) -> str:
        return self.out_file.read_text()

    def errors(self) -> str:
        return self.err_file.read_text()

    def delete(self, *flags: str) -> None:
        self.oci.ok("delete", *flags, self.id)

    def run_to_end(self) -> tuple[int, str]:
        """start, wait for the process, delete: (exit code, what it wrote on stdout)."""
        self.start()
        code = self.wait()
        assert self.status() == "stopped"
        self.delete()
        return code, self.output()


class Oci:
    """`pycontain-oci --root ROOT ...` for one test, with the bundles and containers it made."""

    def __init__(self, tmp: Path, rootfs_source: Path) -> None:
        self.tmp = tmp
        self.root = tmp / "oci-root"
        self.rootfs_source = rootfs_source
        self.cgroup_names: list[str] = []  # every cgroup a container of this test had: gone at the end
        self._n = 0

    def __call__(self, *args: str | os.PathLike[str], input: str | None = None, global_args: tuple[str, ...] = (),
                 timeout: float = COMMAND_TIMEOUT, **kw: Any) -> subprocess.CompletedProcess[str]:
        argv = [OCI, *global_args, "--root", str(self.root), *map(str, args)]
        if input is None and "stdin" not in kw:
            kw["stdin"] = subprocess.DEVNULL
        if "stdout" not in kw:
            kw["capture_output"] = True
        return subprocess.run(argv, input=input, text=True, timeout=timeout, **kw)

    def ok(self, *args: str | os.PathLike[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        res = self(*args, **kw)
        assert res.returncode == 0, describe(res)
        return res

    def bundle(self, args: list[str]) -> Bundle:
        self._n += 1
        return Bundle(self.tmp / f"bundle{self._n}", self.rootfs_source, args)

    def create(self, bundle: Bundle, cid: str | None = None, *flags: str) -> Container:
        """`create --bundle B --pid-file P [flags] ID`, which must succeed; the pid file is checked."""
        cid = cid or new_id()
        bundle.write()
        self.cgroup_names.append(bundle.linux.get("cgroupsPath") or f"pycontain-{cid}")
        pid_file = self.tmp / f"{cid}.pid"
        out, err = self.tmp / f"{cid}.out", self.tmp / f"{cid}.err"
        with open(out, "w") as o, open(err, "w") as e:
            res = self("create", "--bundle", bundle.path, "--pid-file", pid_file, *flags, cid, stdout=o, stderr=e)
        assert res.returncode == 0, f"create exited {res.returncode}: {err.read_text()}"
        pid = int(pid_file.read_text())
        return Container(self, cid, bundle, pid, out, err)

    def run_bundle(self, bundle: Bundle) -> tuple[int, str]:
        """create, start, wait, delete: the process's (exit code, stdout)."""
        c = self.create(bundle)
        try:
            return c.run_to_end()
        except AssertionError:
            raise AssertionError(f"stderr of the container: {c.errors()}") from None

    def create_fails(self, bundle_path: Path, cid: str | None = None, code: int = 125) -> str:
        """`create` must fail with the runtime's error contract; the one error line; nothing left behind."""
        cid = cid or new_id()
        self.cgroup_names.append(f"pycontain-{cid}")
        res = self("create", "--bundle", bundle_path, "--pid-file", self.tmp / f"{cid}.pid", cid)
        line = error_line(res, code)
        assert not (self.root / cid).exists(), f"a failed create left its state directory: {line}"
        assert not (self.tmp / f"{cid}.pid").exists(), f"a failed create wrote the pid file: {line}"
        assert cgroup_dirs(f"pycontain-{cid}") == [], f"a failed create left its cgroup: {line}"
        return line

    def cleanup(self) -> list[str]:
        """Delete whatever the test left, reap the inits; what was still there (and should not be)."""
        problems = []
        if self.root.is_dir():
            for entry in sorted(self.root.iterdir()):
                if entry.name == "@seccomp-cache":  # compiled filters, kept on purpose for the next start
                    continue
                problems.append(f"state directory left: {entry}")
                self("delete", "--force", entry.name)
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while True:
            reap_children()
            if not any(cgroup_dirs(name) for name in self.cgroup_names) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        for name in self.cgroup_names:
            problems += [f"cgroup left: {d}" for d in cgroup_dirs(name)]
        return problems


def error_line(res: subprocess.CompletedProcess[str], code: int = 125) -> str:
    """The runtime's error contract: exactly one line on stderr, no traceback, and exit status 125 (its own
    error), or 127/126 when the container's program is missing or cannot be executed."""
    assert res.returncode != 0, describe(res)
    assert "Traceback" not in res.stderr, describe(res)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr:\n{describe(res)}"
    assert res.returncode == code, f"expected exit status {code}:\n{describe(res)}"
    return lines[0]


def cgroup_dirs(name: str) -> list[Path]:
    """The host directories of cgroup `name` (a path below the root), in every hierarchy that has it."""
    name = name.strip("/")
    found = []
    for hierarchy in [CGROUP_ROOT, *CGROUP_ROOT.iterdir()]:
        d = hierarchy / name
        if hierarchy.is_dir() and d.is_dir():
            found.append(d)
    return found


def wait_exit(pid: int, timeout: float = SETTLE_TIMEOUT) -> int:
    """Wait for a child (an init this subreaper adopted); its exit code, 128+N for a signal.

    Every other exited child is reaped meanwhile, as a subreaper must: a process `exec --detach` started
    is adopted here too, and while it is an unreaped zombie the kernel keeps the init of its PID
    namespace from finishing its exit (zap_pid_ns_processes waits for the whole namespace).
    """
    deadline = time.monotonic() + timeout
    killed = False
    while True:
        try:
            done, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            raise AssertionError(f"{pid} is not a child of this (subreaper) process") from None
        if done == pid:
            if killed:
                raise AssertionError(f"process {pid} did not exit within {timeout}s (killed)")
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code
        if done:
            continue
        if time.monotonic() > deadline:
            if killed:
                raise AssertionError(f"process {pid} did not exit even after SIGKILL")
            os.kill(pid, 9)
            killed = True
            deadline += SETTLE_TIMEOUT
        time.sleep(0.02)


class ConsoleSocket:
    """The --console-socket server an engine runs: the runtime connects and sends the pty master."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(1)
        self.sock.settimeout(SETTLE_TIMEOUT)

    def receive_master(self) -> int:
        conn, _ = self.sock.accept()
        with conn:
            conn.settimeout(SETTLE_TIMEOUT)
            _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        assert len(fds) == 1, "the runtime sent no descriptor over the console socket"
        return fds[0]

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)


def read_all(fd: int, timeout: float = SETTLE_TIMEOUT) -> bytes:
    """Everything from a pty master until its slave side is closed everywhere (EIO)."""
    import select

    buf = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError as e:
            if e.errno == errno.EIO:
                return buf
            raise
        if not chunk:
            return buf
        buf += chunk
    raise AssertionError(f"the terminal never closed; read so far: {buf!r}")
