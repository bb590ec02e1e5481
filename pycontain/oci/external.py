"""`pycontain run --runtime runc|crun|PATH`: the same front end, another OCI runtime as the executor.

This is the proof that the spec is the whole contract: the front end writes the document it would
hand its own executor to a bundle's config.json and drives the other runtime with the runc command
line, as conmon does:

    unshare(CLONE_NEWNS) + mount overlay   the rootfs exists only in this supervisor's private mount
                                           namespace (and the container's copy of it): nothing to
                                           unmount on the host, whatever dies
    PR_SET_CHILD_SUBREAPER                 the container's init, orphaned when `create` exits, becomes
                                           our child: we wait for it and get its real exit status
    RUNTIME create --bundle --pid-file     stdio: our pipes (or --console-socket for -t)
    network attach (veth into its netns)   then RUNTIME start, relay, wait, RUNTIME delete --force

The image's user database is read here, in a child chrooted into the rootfs, because a runtime-spec
process.user is numeric.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess

from pycontain import explain, network, security, syscalls
from pycontain.errors import CommandNotExecutable, CommandNotFound, PycontainError
from pycontain import oci as ocispec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pycontain.state import Record

class External:
    """One container run by another OCI runtime; each step's undo goes on the caller's stack."""

    def __init__(self, rec: Record, runtime: str) -> None:
        self.rec = rec
        self.runtime = runtime
        self.root = f"{rec.paths.state}/runtimes/{os.path.basename(runtime)}"
        self.bundle = f"{rec.dir}/bundle"
        self.log = f"{self.bundle}/runtime.log"

    def command(self, *args: str) -> list[str]:
        return [self.runtime, "--root", self.root, "--log", self.log, "--log-format", "json", *args]

    def prepare(self) -> None:
        """Private mount namespace, overlay rootfs, the spec with a numeric user: the bundle."""
        rec, cfg, res = self.rec, self.rec.config, self.rec.resolved
        syscalls.unshare(syscalls.CLONE_NEWNS)
        syscalls.mount("none", "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
        if os.path.basename(self.runtime).startswith("crun") and _is_hybrid():
            # crun refuses a hybrid cgroup host whose cgroup2 hierarchy holds any controller, and only
            # looks at /sys/fs/cgroup/unified to decide: in this private namespace it is an empty tmpfs.
            syscalls.mount("tmpfs", "/sys/fs/cgroup/unified", "tmpfs", 0, "size=64k")
        rootfs = f"{rec.storage}/rootfs"
        syscalls.mount("overlay", rootfs, "overlay", 0,
                       ocispec.overlay_options(rec.layers, f"{rec.storage}/upper", f"{rec.storage}/work"))
        explain.say("unshare(CLONE_NEWNS) + mount(overlay): the rootfs exists only in this supervisor's "
                    f"private mount namespace, for {os.path.basename(self.runtime)} to use")
        spec = ocispec.container_spec(rec.id, cfg, res, rec.limits(), rec.storage, rec.layers, rec.etc_files,
                                      own_executor=False)
        uid, gid, groups, home = _lookup_user(rootfs, res.user)
        process = spec["process"]
        process["user"] = {"uid": uid, "gid": gid, "additionalGids": [g for g in groups if g != gid]}
        if not any(e.startswith("HOME=") for e in process["env"]):
            process["env"].append(f"HOME={home}")
        if uid != 0:  # as Docker: a non-root user has the capabilities only in its bounding set
            process["capabilities"] = {"bounding": process["capabilities"]["bounding"]}
        spec["annotations"].pop(ocispec.USER_NAME, None)
        os.makedirs(self.bundle, 0o700, exist_ok=True)
        os.makedirs(self.root, 0o700, exist_ok=True)
        with open(f"{self.bundle}/config.json", "w") as f:
            json.dump(spec, f)
        syscalls.set_child_subreaper()

    def create(self, stdio: tuple[int, ...], tty: bool) -> tuple[int, int | None]:
        """RUNTIME create; returns the init's pid and, with tty, the pty master."""
        pid_file = f"{self.bundle}/init.pid"
        args = ["create", "--bundle", self.bundle, "--pid-file", pid_file]
        listener = None
        bundle_fd = None
        if tty:
            # A socket path may be at most 107 bytes, and the bundle's path can be longer: bound through
            # /proc/self/fd/N of the bundle directory, and named relative to it for the runtime, which
            # runs with the bundle as its working directory.
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            bundle_fd = os.open(self.bundle, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            listener.bind(f"/proc/self/fd/{bundle_fd}/console.sock")
            listener.listen(1)
            args += ["--console-socket", "console.sock"]
        try:
            null = os.open("/dev/null", os.O_RDWR)
            try:
                fds = stdio if stdio else (null, null, null)
                res = subprocess.run(self.command(*args, self.rec.id), stdin=fds[0], stdout=fds[1],
                                     stderr=subprocess.PIPE if tty else fds[2], close_fds=True, cwd=self.bundle)
            finally:
                os.close(null)
            if res.returncode != 0:
                raise _runtime_error(self.runtime, self.log, "create")
            with open(pid_file) as f:
                pid = int(f.read().strip())
            master = None
            if listener is not None:
                listener.settimeout(10)
                conn, _ = listener.accept()
                with conn:
                    _, received, _, _ = socket.recv_fds(conn, 1024, 1)
                master = received[0] if received else None
        finally:
            if listener is not None:
                listener.close()
            if bundle_fd is not None:
                os.close(bundle_fd)
        explain.say(f"{os.path.basename(self.runtime)} create -> init pid {pid}, waiting before execve")
        return pid, master

    def start(self) -> None:
        if subprocess.run(self.command("start", self.rec.id), stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
            raise _runtime_error(self.runtime, self.log, "start")

    def delete(self) -> None:
        subprocess.run(self.command("delete", "--force", self.rec.id), stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def supervise(rec: Record, runtime: str, pipes: Any, undo: Any) -> tuple[int, int | None]:
    """Create and start the container with `runtime`; returns the init's pid and the pty master (-t)."""
    ext = External(rec, runtime)
    ext.prepare()
    # The overlay lives in this process's private mount namespace: unmounted before `rm` deletes its dirs.
    undo.callback(syscalls.umount2, f"{rec.storage}/rootfs", syscalls.MNT_DETACH)
    undo.callback(ext.delete)
    pid, master = ext.create(pipes.child if pipes else (), rec.config.tty)
    if pipes:
        pipes.close_child_ends()
    if rec.network:
        undo.callback(network.detach, rec.paths, rec.network, rec.id)
        network.attach(rec.paths, rec.network, pid)
    ext.start()
    return pid, master


def gc(rec: Record) -> None:
    """A killed supervisor left the runtime's record behind: let the runtime delete it."""
    runtime = rec.config.runtime
    if runtime and os.access(runtime, os.X_OK):
        External(rec, runtime).delete()


def _is_hybrid() -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split(" - ")[1].startswith("cgroup2 ") and " /sys/fs/cgroup/unified " in line
                   for line in f if " - " in line)


def _lookup_user(rootfs: str, user: str) -> tuple[int, int, list[int], str]:
    """-u resolved in the image's own /etc/passwd and /etc/group, by a child chrooted into the rootfs."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            os.chroot(rootfs)
            os.chdir("/")
            u = security.resolve_user(user)
            os.write(w, json.dumps([u.uid, u.gid, u.groups, u.home]).encode())
            code = 0
        except BaseException as e:  # noqa: BLE001 - reported to the parent as one line
            os.write(w, json.dumps(str(e)).encode())
        finally:
            os._exit(code)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    answer = json.loads(data or b'"the user lookup failed"')
    if os.waitstatus_to_exitcode(status) != 0 or not isinstance(answer, list):
        raise PycontainError(str(answer))
    return int(answer[0]), int(answer[1]), [int(g) for g in answer[2]], str(answer[3])


def _runtime_error(runtime: str, log: str, step: str) -> PycontainError:
    """The runtime's last error line (its --log, JSON), as the error of the matching kind."""
    message = f"{os.path.basename(runtime)} {step} failed"
    try:
        with open(log) as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("level") == "error" and entry.get("msg"):
                    message = f"{os.path.basename(runtime)} {step}: {entry['msg']}"
    except OSError:
        pass
    lowered = message.lower()
    if "executable file not found" in lowered or "no such file or directory" in lowered:
        return CommandNotFound(message)
    if "permission denied" in lowered:
        return CommandNotExecutable(message)
    return PycontainError(message)

