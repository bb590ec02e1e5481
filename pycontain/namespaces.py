"""clone(2) into new namespaces, setns(2) into existing ones, and the parent<->child handshake.

The handshake is two pipes (and a socket pair for a terminal):

    go pipe      parent -> child   one byte "g" once the parent has put the child in its cgroup;
                                   EOF instead means the parent died: the child exits.
    status pipe  child -> parent   close-on-exec. EOF with no data means execve succeeded;
                                   otherwise one line "EXIT_CODE\\tmessage" says what failed.
    console      child -> parent   with -t, the pty master the child opened inside the container's
                                   own devpts, passed with SCM_RIGHTS.

Everything the child needs is computed and imported by the parent before clone: after clone the child
only makes kernel calls and execs (no imports, no threads, no locks).
"""

from __future__ import annotations

import _signal
import fcntl
import os
import select

import prctl

from pycontain import explain, security, syscalls
from pycontain.errors import CommandNotExecutable, CommandNotFound, PycontainError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn

RUN_FLAGS = syscalls.CLONE_NEWPID | syscalls.CLONE_NEWNS | syscalls.CLONE_NEWUTS | syscalls.CLONE_NEWIPC
SIGKILL = 9
TIOCSCTTY = 0x540E


class Process:
    """The program to execve and how: shared by `run` (as PID 1) and `exec` (joining)."""

    __slots__ = ("argv", "env", "user", "workdir", "tty", "interactive", "stdout_fd")

    def __init__(self, argv: tuple[str, ...], env: tuple[str, ...], user: str, workdir: str,
                 tty: bool = False, interactive: bool = False, stdout_fd: int | None = None) -> None:
        self.argv, self.env, self.user, self.workdir = argv, env, user, workdir
        self.tty, self.interactive = tty, interactive
        self.stdout_fd = stdout_fd  # detached: the log file; None: inherit the caller's stdout/stderr


class Child:
    """The parent's handle on a cloned child."""

    def __init__(self, pid: int, go_w: int, status_r: int, console: object | None) -> None:
        self.pid = pid
        self._go_w = go_w
        self._status_r = status_r
        self._console = console
        self.master_fd: int | None = None

    def go(self) -> None:
        os.write(self._go_w, b"g")

    def wait_exec(self) -> None:
        """Block until the child has exec'd (returns) or failed (raises the matching error)."""
        if self._console is not None:
            import socket

            sock: socket.socket = self._console  # type: ignore[assignment]
            try:
                _, fds, _, _ = socket.recv_fds(sock, 1, 1)
            except OSError:
                fds = []
            sock.close()
            self.master_fd = fds[0] if fds else None
        chunks = []
        while chunk := os.read(self._status_r, 4096):
            chunks.append(chunk)
        os.close(self._status_r)
        self.close()
        if chunks:
            code, _, message = b"".join(chunks).decode(errors="replace").partition("\t")
            raise {127: CommandNotFound, 126: CommandNotExecutable}.get(int(code), PycontainError)(message)

    def close(self) -> None:
        if self._go_w >= 0:
            os.close(self._go_w)
            self._go_w = -1


def spawn(flags: int, prepare: Callable[[], None], proc: Process) -> Child:
    """clone(flags); the child waits for go, runs `prepare` (namespace setup), then execs `proc`."""
    go_r, go_w = os.pipe()
    status_r, status_w = os.pipe()
    parent_sock = child_sock = None
    if proc.tty:
        import socket

        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = syscalls.clone(flags)
    if pid == 0:
        os.close(go_w)
        os.close(status_r)
        if parent_sock is not None:
            parent_sock.close()
        _child(go_r, status_w, child_sock, prepare, proc)
    os.close(go_r)
    os.close(status_w)
    if child_sock is not None:
        child_sock.close()
    explain.say(f"clone({syscalls.flags_name(flags) if flags else 'fork'}) -> pid {pid} on the host")
    return Child(pid, go_w, status_r, parent_sock)


def _child(go_r: int, status_w: int, sock: object, prepare: Callable[[], None], proc: Process) -> NoReturn:
    code = 125
    try:
        # The process that enters a container must not expose its memory or /proc/self/exe to it
        # (CVE-2019-5736): not dumpable until execve replaces this Python image.
        prctl.set_dumpable(False)
        prctl.set_pdeathsig(SIGKILL)  # if the supervisor dies, so does the container
        if os.read(go_r, 1) != b"g":
            os._exit(125)
        prepare()
        _finish_and_exec(go_r, status_w, sock, proc)
    except BaseException as e:  # noqa: BLE001 - everything goes back to the parent as one line
        code = getattr(e, "exit_code", 125)
        if isinstance(e, OSError) and getattr(e, "_exec", False):
            code = 127 if isinstance(e, FileNotFoundError) else 126
        if isinstance(e, OSError) and e.strerror:
            message = e.strerror + (f": {e.filename}" if e.filename else "")
        else:
            message = str(e) or type(e).__name__
        try:
            os.write(status_w, f"{code}\t{message}".encode())
        finally:
            os._exit(code)


def _finish_and_exec(go_r: int, status_w: int, sock: object, proc: Process) -> NoReturn:
    user = security.resolve_user(proc.user)
    try:
        os.chdir(proc.workdir)
    except OSError as e:
        raise PycontainError(f"cannot use working directory {proc.workdir}: {e.strerror}") from None
    if proc.tty:
        _attach_pty(sock)
    else:
        os.setsid()  # out of the caller's process group: the terminal's Ctrl-C goes to pycontain, which forwards it
        if not proc.interactive:
            _dup_onto(os.open("/dev/null", os.O_RDONLY), 0)
        if proc.stdout_fd is not None:
            os.dup2(proc.stdout_fd, 1)
            os.dup2(proc.stdout_fd, 2)
    env = list(proc.env)
    if not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={user.home}")
    security.drop_privileges(user)
    prctl.set_pdeathsig(SIGKILL)  # changing uid cleared it
    if _parent_gone(go_r):
        os._exit(125)
    # CVE-2024-21626: no descriptor of the host's (a directory fd, the cgroupfs) may survive into the
    # container, where /proc/self/fd/N would lead back out. Only the close-on-exec status pipe is kept.
    syscalls.close_range(3, status_w - 1) if status_w > 3 else None
    syscalls.close_range(status_w + 1)
    if not os.getcwd().startswith("/"):
        raise PycontainError("the working directory is outside the container")
    # Python ignores SIGPIPE and SIGXFSZ for itself; a container's program expects the defaults.
    for signum in (_signal.SIGPIPE, _signal.SIGXFSZ, _signal.SIGINT, _signal.SIGTERM):
        _signal.signal(signum, _signal.SIG_DFL)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
    explain.say(f"execve({proc.argv[0]}): the container's program replaces pycontain's child")
    try:
        _execvpe(proc.argv[0], list(proc.argv), dict(e.split("=", 1) for e in env if "=" in e))
    except OSError as e:
        e._exec = True  # type: ignore[attr-defined]
        if isinstance(e, FileNotFoundError):
            where = "no such file in the container" if "/" in proc.argv[0] else \
                "executable file not found in the container's $PATH"
            e.strerror = f"{proc.argv[0]}: {where}"
        else:
            e.strerror = f"{proc.argv[0]}: cannot execute: {e.strerror}"
        e.filename = None
        raise


def _execvpe(file: str, argv: list[str], env: dict[str, str]) -> NoReturn:
    """execvp(3) semantics, searching the *container's* PATH (os.execvpe would import warnings here,
    after pivot_root, where the host's Python library is out of reach)."""
    if "/" in file:
        os.execve(file, argv, env)
    denied: OSError | None = None
    for directory in (env.get("PATH") or "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin").split(":"):
        try:
            os.execve(f"{directory or '.'}/{file}", argv, env)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError as e:
            denied = denied or e
    raise denied or FileNotFoundError(2, "not found", file)


def _attach_pty(sock: object) -> None:
    """Open a pty inside the container's devpts, send the master to the parent, make the slave our terminal."""
    import socket  # already imported by spawn() in the parent: this is a dictionary lookup

    master, slave = os.openpty()
    socket.send_fds(sock, [b"m"], [master])  # type: ignore[arg-type]
    os.close(master)
    sock.close()  # type: ignore[attr-defined]
    os.setsid()
    fcntl.ioctl(slave, TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def _dup_onto(fd: int, target: int) -> None:
    os.dup2(fd, target)
    os.close(fd)


def _parent_gone(go_r: int) -> bool:
    poller = select.poll()
    poller.register(go_r, select.POLLIN)
    return bool(poller.poll(0))  # the parent never writes again: readiness can only be its EOF


class Joiner:
    """For `exec`: the container's namespaces, opened now; calling it setns()es into them (in the child).

    The PID namespace is joined by the caller itself before clone (setns on a PID namespace only
    affects children), and the mount namespace last, since it changes root and cwd.
    """

    def __init__(self, pid: int, kinds: tuple[str, ...] = ("cgroup", "ipc", "uts", "net", "mnt")) -> None:
        self.kinds = kinds
        self.fds: dict[str, int] = {}
        try:
            for kind in kinds:
                self.fds[kind] = os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
        except BaseException:
            self.close()
            raise

    def __call__(self) -> None:
        for kind in self.kinds:
            syscalls.setns(self.fds[kind], syscalls.NAMESPACE_FLAGS[kind])
        explain.say(f"setns({', '.join(self.kinds)}): joined the container's namespaces")

    def close(self) -> None:
        for fd in self.fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = {}
