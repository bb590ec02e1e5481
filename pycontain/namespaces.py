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
import errno
import fcntl
import os
import select
import stat

from pycontain import explain, security, syscalls
from pycontain.oci import capability_mask
from pycontain.errors import CommandNotExecutable, CommandNotFound, PycontainError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

RUN_FLAGS = syscalls.CLONE_NEWPID | syscalls.CLONE_NEWNS | syscalls.CLONE_NEWUTS | syscalls.CLONE_NEWIPC
# Signals a foreground supervisor passes on to the container's process, as `docker run` does.
FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGUSR1, _signal.SIGUSR2)
SIGKILL = 9
TIOCSCTTY = 0x540E


HELPER = os.path.join(os.path.dirname(__file__), "exec_helper")
HELPER_MAGIC = "--pycontain-exec"
# <linux/memfd.h>, <linux/fcntl.h>
MFD_EXEC = 0x0010  # Linux 6.3+: say so explicitly, or vm.memfd_noexec may refuse to execute it
F_ADD_SEALS = 1033
F_SEAL_ALL = 0x1 | 0x2 | 0x4 | 0x8  # SEAL, SHRINK, GROW, WRITE
# <asm-generic/ioctls.h>: lock/unlock a pty, and open its peer (the slave) from the master itself.
TIOCSPTLCK = 0x40045431
TIOCGPTPEER = 0x5441
TIOCSWINSZ = 0x5414
PTMX = (5, 2)


class Process:
    """The program to execve and how: shared by `run` (as PID 1), `exec` (joining) and pycontain-oci.

    stdio: the child's ends of the supervisor's pipes for fds 0, 1, 2 (stdio.Pipes); with tty, a pty
    made inside the container replaces them; empty: the caller's own 0, 1, 2 are the container's (an
    OCI runtime's caller, conmon or a containerd shim, hands over exactly those).
    user: a name (or uid) to look up in the image's /etc/passwd, the front end's `-u`; ids instead:
    the spec's numeric uid, gid and additional gids. caps: (bounding, effective, permitted,
    inheritable, ambient) bit masks; None is pycontain's default set.
    oci: the caller does not stay (pycontain-oci create/exec --detach): no parent-death signal, and no
    status pipe once `ready` is reported; exec_fifo (an O_PATH descriptor) is opened for writing, which
    blocks until `pycontain-oci start` opens it for reading.
    """

    __slots__ = ("argv", "env", "user", "workdir", "tty", "interactive", "stdio", "ids", "caps", "no_new_privs",
                 "rlimits", "umask", "console_size", "console", "oci", "exec_fifo", "preserve_fds", "start_hooks",
                 "go_r", "status_w", "seccomp", "seccomp_flags")

    def __init__(self, argv: tuple[str, ...], env: tuple[str, ...], user: str, workdir: str,
                 tty: bool = False, interactive: bool = False, stdio: tuple[int, ...] = ()) -> None:
        self.argv, self.env, self.user, self.workdir = argv, env, user, workdir
        self.tty, self.interactive = tty, interactive
        self.stdio = stdio
        self.ids: tuple[int, int, list[int]] | None = None
        self.caps: tuple[int, int, int, int, int] | None = None
        self.no_new_privs = True
        self.rlimits: list[tuple[int, int, int]] = []
        self.umask: int | None = None
        self.console_size: tuple[int, int] | None = None
        self.console: Any = None  # a connected socket to send the pty master over (--console-socket)
        self.oci = False
        self.exec_fifo: int | None = None
        self.preserve_fds = 0
        self.start_hooks: Any = None  # startContainer hooks: called in the child, after start, before exec
        self.go_r = self.status_w = -1
        self.seccomp: bytes | None = None  # a compiled BPF program (oci/seccomp.py), installed last
        self.seccomp_flags: list[str] = []


def sealed_helper() -> int:
    """A sealed, close-on-exec memfd holding the static exec helper (csrc/exec_helper.c).

    The child execs this copy rather than any file: the container's processes then see an anonymous
    memory file as /proc/PID/exe, which no write can reach (sealed) and no host path names
    (CVE-2019-5736). Copying ~17 KiB costs ~15 us.
    """
    try:
        src = os.open(HELPER, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise PycontainError(f"pycontain's exec helper {HELPER} is missing ({e.strerror}): reinstall pycontain "
                             "(scripts/install)") from None
    try:
        flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
        try:
            fd = os.memfd_create("pycontain-exec", flags | MFD_EXEC)
        except OSError:  # kernels before 6.3 reject the flag they do not know
            fd = os.memfd_create("pycontain-exec", flags)
        try:
            size = os.fstat(src).st_size
            done = 0
            while done < size:
                sent = os.sendfile(fd, src, done, size - done)
                if sent == 0:
                    raise PycontainError(f"pycontain's exec helper {HELPER} shrank while being copied")
                done += sent
            fcntl.fcntl(fd, F_ADD_SEALS, F_SEAL_ALL)
        except BaseException:
            os.close(fd)
            raise
    finally:
        os.close(src)
    return fd


class Child:
    """The parent's handle on a cloned child.

    Besides EOF (execve succeeded) and an error line, the child may write one-byte events on the status
    pipe: HOOKS (its mounts are made, pivot_root is next: the parent runs the createRuntime hooks, then
    writes CONTINUE on the go pipe) and READY (an OCI container, set up and about to wait for start).
    """

    def __init__(self, pid: int, go_w: int, status_r: int, console: object | None) -> None:
        self.pid = pid
        self._go_w = go_w
        self._status_r = status_r
        self._console = console
        self.master_fd: int | None = None

    def go(self) -> None:
        os.write(self._go_w, b"g")

    def _events(self, on_hooks: Callable[[], None] | None) -> bytes:
        """Read the status pipe up to READY (returns it) or EOF (returns b""), raising the child's error."""
        while True:
            first = os.read(self._status_r, 1)
            if first == HOOKS:
                if on_hooks is not None:
                    on_hooks()
                os.write(self._go_w, CONTINUE)
                continue
            if first in (READY, b""):
                return first
            chunks = [first]
            while chunk := os.read(self._status_r, 4096):
                chunks.append(chunk)
            code, _, message = b"".join(chunks).decode(errors="replace").partition("\t")
            self._finish()
            raise {127: CommandNotFound, 126: CommandNotExecutable}.get(
                int(code) if code.isdigit() else 125, PycontainError)(message)

    def wait_exec(self, on_hooks: Callable[[], None] | None = None) -> None:
        """Block until the child has exec'd (returns) or failed (raises the matching error)."""
        try:
            self._events(on_hooks)
        finally:
            self._finish()

    def wait_ready(self, on_hooks: Callable[[], None] | None = None) -> None:
        """An OCI create: block until the child is set up and waiting for start (or raise its error)."""
        try:
            if self._events(on_hooks) != READY:
                raise PycontainError("the container's init exited before it was ready")
        finally:
            self._finish()

    def _finish(self) -> None:
        if self._status_r >= 0:
            os.close(self._status_r)
            self._status_r = -1
        if self._console is not None:
            import socket

            sock: socket.socket = self._console  # type: ignore[assignment]
            try:
                _, fds, _, _ = socket.recv_fds(sock, 1, 1)
            except OSError:
                fds = []
            sock.close()
            self._console = None
            self.master_fd = fds[0] if fds else None
        self.close()

    def close(self) -> None:
        if self._go_w >= 0:
            os.close(self._go_w)
            self._go_w = -1


HOOKS, CONTINUE, READY = b"h", b"c", b"="


def spawn(flags: int, prepare: Callable[[Process], None], proc: Process,
          clone: Callable[[int], int] | None = None) -> Child:
    """clone(flags); the child waits for go, runs `prepare` (namespace setup), then execs `proc`.
    clone: another way to make the child, with clone's contract (executor._clone_joined)."""
    helper = sealed_helper()
    go_r, go_w = os.pipe()
    status_r, status_w = os.pipe()
    parent_sock = child_sock = None
    if proc.tty and proc.console is None:
        import socket

        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        proc.console = child_sock
    if proc.rlimits:
        import resource  # noqa: F401 - for the child, which imports nothing itself
    try:
        pid = (clone or syscalls.clone)(flags)
    except BaseException:
        for fd in (helper, go_r, go_w, status_r, status_w):
            os.close(fd)
        raise
    if pid == 0:
        os.close(go_w)
        os.close(status_r)
        if parent_sock is not None:
            parent_sock.close()
        _child(go_r, status_w, helper, prepare, proc)
    os.close(helper)
    os.close(go_r)
    os.close(status_w)
    if child_sock is not None:
        child_sock.close()
    explain.say(f"clone({syscalls.flags_name(flags) if flags else 'fork'}) -> pid {pid} on the host")
    return Child(pid, go_w, status_r, parent_sock)


def _child(go_r: int, status_w: int, helper: int, prepare: Callable[[Process], None], proc: Process) -> NoReturn:
    code = 125
    proc.go_r, proc.status_w = go_r, status_w
    try:
        # The process that enters a container must not expose its memory or /proc/self/exe to it
        # (CVE-2019-5736): not dumpable until execve replaces this Python image.
        syscalls.set_dumpable(False)
        if not proc.oci:
            syscalls.set_pdeathsig(SIGKILL)  # if the supervisor dies, so does the container
        _join_new_keyring()  # before "go": its ~0.15 ms overlaps the parent's work after clone
        if os.read(go_r, 1) != b"g":
            os._exit(125)
        prepare(proc)
        _finish_and_exec(go_r, status_w, helper, proc)
    except BaseException as e:  # noqa: BLE001 - everything goes back to the parent as one line
        code = getattr(e, "exit_code", 125)
        if isinstance(e, OSError) and e.strerror:
            message = e.strerror + (f": {e.filename}" if e.filename else "")
        else:
            message = str(e) or type(e).__name__
        try:
            if proc.status_w >= 0:
                os.write(proc.status_w, f"{code}\t{message}".encode())
            else:  # READY was reported and the creator is gone: stderr is all there is
                os.write(2, f"pycontain-oci: {message}\n".encode())
        finally:
            os._exit(code)


def _finish_and_exec(go_r: int, status_w: int, helper: int, proc: Process) -> NoReturn:
    user, caps = _identity(proc)
    # The working directory is a path in the container, which (in exec) the container may have made a
    # link to /proc/PID/cwd of a process still outside: opened without magic links, then fchdir.
    try:
        cwd = security.open_inside(proc.workdir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fchdir(cwd)
        finally:
            os.close(cwd)
    except OSError as e:
        reason = "it leads through a /proc link" if e.errno in (errno.ELOOP, errno.EXDEV) else \
            os.strerror(e.errno or 0)
        raise PycontainError(f"cannot use working directory {proc.workdir}: {reason}") from None
    if proc.tty:
        _attach_pty(proc.console, proc.console_size)
    else:
        os.setsid()  # out of the caller's process group: the terminal's Ctrl-C goes to pycontain, which forwards it
        for target, fd in enumerate(proc.stdio):
            os.dup2(fd, target)
    env = list(proc.env)
    if not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={user.home}")
    if proc.rlimits:
        import resource  # imported by the parent before clone (spawn): a dictionary lookup here

        for which, soft, hard in proc.rlimits:
            infinity = resource.RLIM_INFINITY
            limits = (soft if soft < 2**63 else infinity, hard if hard < 2**63 else infinity)
            try:
                resource.setrlimit(which, limits)
            except (OSError, ValueError) as e:
                raise PycontainError(f"setrlimit({which}, {soft}, {hard}): {getattr(e, 'strerror', None) or e} "
                                     "(raising a hard limit needs CAP_SYS_RESOURCE)") from None
    os.umask(proc.umask if proc.umask is not None else 0o022)
    if proc.seccomp is not None and not proc.no_new_privs:
        # Without no_new_privs the kernel takes a filter only from a process with CAP_SYS_ADMIN: load it
        # now, before capabilities are dropped (as runc does); the filter must allow what follows.
        _install_seccomp(proc)
    security.set_identity(user, caps, proc.no_new_privs)
    if not proc.oci:
        syscalls.set_pdeathsig(SIGKILL)  # changing uid cleared it
        if _parent_gone(go_r):
            os._exit(125)
    # As runc does: a missing program fails here, with 127 or 126 on the status pipe (and for an OCI
    # container, `create`, not `start`). The helper is then given no status pipe ("-"): the pipe is
    # close-on-exec, so it closes at the execve below, while this process is still not dumpable.
    # Handing it to the helper (which is dumpable once exec'd) let a container process take the pipe
    # through /proc/HELPER/fd/N, hold it (an `exec` that never returns) and write a forged status
    # into it (CVE-2016-9962 class). A program removed between this check and the helper's execve
    # still fails with 127/126, said on stderr.
    _check_program(proc.argv[0], env)
    if proc.exec_fifo is not None:
        os.write(status_w, READY)
        os.close(status_w)
        proc.status_w = -1
        # Blocks until `pycontain-oci start` opens the FIFO for reading; the byte tells it we are past it.
        fifo = os.open(f"/proc/self/fd/{proc.exec_fifo}", os.O_WRONLY | os.O_CLOEXEC)
        os.write(fifo, b"0")
        os.close(fifo)
    if proc.start_hooks is not None:  # startContainer: inside the container, after start, before execve
        proc.start_hooks()
    # CVE-2024-21626: no descriptor of the host's (a directory fd, the cgroupfs) may survive into the
    # container, where /proc/self/fd/N would lead back out. Kept: the close-on-exec status pipe, the
    # helper's memfd (close-on-exec too), which the exec below consumes, and the descriptors an OCI
    # caller asked to pass on (--preserve-fds: 3 .. 3+N-1).
    first = 3 + proc.preserve_fds
    for fd in range(3, first):
        os.set_inheritable(fd, True)
    for keep in sorted(fd for fd in (status_w if proc.status_w >= 0 else -1, helper) if fd >= first):
        if keep > first:
            _close_range(first, keep - 1)
        first = keep + 1
    _close_range(first, 0xFFFFFFFF)
    if not os.getcwd().startswith("/"):
        raise PycontainError("the working directory is outside the container")
    # Python ignores SIGPIPE and SIGXFSZ for itself; a container's program expects the defaults.
    for signum in (_signal.SIGPIPE, _signal.SIGXFSZ, _signal.SIGINT, _signal.SIGTERM):
        _signal.signal(signum, _signal.SIG_DFL)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
    if proc.seccomp is not None and proc.no_new_privs:
        _install_seccomp(proc)  # the last step before execve: it filters the container's program only
    explain.say(f"execveat(sealed memfd of pycontain-exec) -> execve({proc.argv[0]}): the container's program "
                "replaces pycontain's child, and no host binary is ever its /proc/self/exe")
    try:
        os.execve(helper, ["pycontain-exec", HELPER_MAGIC, "-", *proc.argv],
                  dict(e.split("=", 1) for e in env if "=" in e))
    except OSError as e:
        raise PycontainError(f"cannot start pycontain's exec helper: {e.strerror}") from None


def _close_range(first: int, last: int) -> None:
    """close_range(2), or one close(2) per descriptor where it is refused: a spec's seccomp filter
    (loaded before this step when no_new_privs is off) may not know the newer call."""
    try:
        syscalls.close_range(first, last)
    except OSError:
        os.closerange(first, min(last + 1, os.sysconf("SC_OPEN_MAX")))


def _install_seccomp(proc: Process) -> None:
    from pycontain.oci import seccomp  # imported by the parent (plan) already: a dictionary lookup

    assert proc.seccomp is not None
    seccomp.install(proc.seccomp, proc.seccomp_flags)
    explain.say(f"seccomp(SECCOMP_SET_MODE_FILTER, {len(proc.seccomp) // 8} BPF instructions): the spec's "
                "syscall filter")


def _identity(proc: Process) -> tuple[security.User, tuple[int, int, int, int, int]]:
    """Who the process runs as, and its capability sets (bounding, effective, permitted, inheritable,
    ambient). A user given by name is looked up in the image; like Docker, a non-root user then gets
    the capabilities only in its bounding set."""
    if proc.ids is not None:
        uid, gid, groups = proc.ids
        user = security.User(uid, gid, groups, _home_of(uid))
    else:
        user = security.resolve_user(proc.user)
    if proc.caps is None:
        keep = capability_mask(security.DEFAULT_CAPS)
        have = keep if user.uid == 0 else 0
        return user, (keep, have, have, 0, 0)
    bounding, effective, permitted, inheritable, ambient = proc.caps
    if proc.ids is None and user.uid != 0:
        effective = permitted = ambient = 0
    return user, (bounding, effective, permitted, inheritable, ambient)


def _home_of(uid: int) -> str:
    """$HOME for a numeric uid, from the image's /etc/passwd (as runc does), else /."""
    try:
        return security.resolve_user(str(uid)).home
    except PycontainError:
        return "/"


def _check_program(program: str, env: list[str]) -> None:
    """The container's program exists and is executable (looked up in the container's $PATH)."""
    if "/" in program:
        candidates = [program]
    else:
        from pycontain.config import DEFAULT_PATH  # imported by the parent already: a dictionary lookup

        path = next((e[5:] for e in reversed(env) if e.startswith("PATH=")), DEFAULT_PATH)
        candidates = [f"{d or '.'}/{program}" for d in path.split(":")]
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return
    if any(os.path.exists(c) for c in candidates):
        raise CommandNotExecutable(f"{program}: permission denied")
    raise CommandNotFound(f"exec: \"{program}\": executable file not found in $PATH")



def _join_new_keyring() -> None:
    """A fresh session keyring: the caller's session keys (a login's, an administrator's) stay out of
    reach. The user keyring of uid 0 is still the host root's until user namespaces separate it."""
    try:
        syscalls.join_session_keyring()
    except OSError as e:
        if e.errno != errno.ENOSYS:
            raise
    explain.say("keyctl(KEYCTL_JOIN_SESSION_KEYRING): a new session keyring, none of the caller's keys")


def _attach_pty(sock: object, size: tuple[int, int] | None = None) -> None:
    """Open a pty inside the container's devpts, send the master to the parent, make the slave our terminal.

    In `exec` the container's /dev is the container's to change, so the master is opened as
    /dev/pts/ptmx without following links out (and checked to be the ptmx device), and the slave is
    opened from the master (TIOCGPTPEER), never looked up by name (CVE-2025-52565).
    """
    import socket  # already imported by spawn() in the parent: this is a dictionary lookup

    master = security.open_inside("/dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_NOFOLLOW | os.O_CLOEXEC)
    st = os.fstat(master)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(*PTMX):
        raise PycontainError("/dev/pts/ptmx in the container is not the pty multiplexer")
    fcntl.ioctl(master, TIOCSPTLCK, b"\0\0\0\0")  # unlockpt(3)
    slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
    if size:  # process.consoleSize: struct winsize is rows, columns (then two unused shorts)
        fcntl.ioctl(master, TIOCSWINSZ, size[0].to_bytes(2, "little") + size[1].to_bytes(2, "little") + bytes(4))
    socket.send_fds(sock, [b"m"], [master])  # type: ignore[arg-type]
    os.close(master)
    sock.close()  # type: ignore[attr-defined]
    os.setsid()
    fcntl.ioctl(slave, TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def _parent_gone(go_r: int) -> bool:
    poller = select.poll()
    poller.register(go_r, select.POLLIN)
    return bool(poller.poll(0))  # the parent never writes again: readiness can only be its EOF


def exit_code(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128+N for death by signal N."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def enter_pid_namespace(pid: int) -> None:
    """For exec: make the next clone land in the PID namespace of `pid` (setns on a PID namespace applies
    to the caller's children, not to the caller), and make the caller non-dumpable first: what enters
    the container must leave no /proc/PID/exe to write to (CVE-2019-5736)."""
    fd = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscalls.set_dumpable(False)
        syscalls.setns(fd, syscalls.CLONE_NEWPID)
    finally:
        os.close(fd)
    explain.say(f"setns(CLONE_NEWPID) into PID 1 {pid}'s namespace: the next fork lands inside it")


class Joiner:
    """For `exec`: the container's namespaces, opened now; calling it setns()es into them (in the child).

    The PID namespace is joined by the caller itself before clone (setns on a PID namespace only
    affects children), and the mount namespace last, since it changes root and cwd.
    """

    def __init__(self, pid: int, kinds: tuple[str, ...] = ("cgroup", "ipc", "uts", "net", "mnt")) -> None:
        if "user" not in kinds and _other_userns(pid):
            # First: the container's other namespaces belong to its user namespace, and setns into them
            # needs capabilities there (which joining it gives; the host's root may join any).
            kinds = ("user", *kinds)
        self.kinds = kinds
        self.fds: dict[str, int] = {}
        try:
            for kind in kinds:
                self.fds[kind] = os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
        except BaseException:
            self.close()
            raise

    def __call__(self, proc: Process | None = None) -> None:
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


def _other_userns(pid: int) -> bool:
    """Whether process `pid` lives in a user namespace other than ours (a container with --userns=auto)."""
    try:
        return os.stat(f"/proc/{pid}/ns/user").st_ino != os.stat("/proc/self/ns/user").st_ino
    except FileNotFoundError:
        return False
