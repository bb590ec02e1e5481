"""The container's stdin, stdout and stderr without -t: pipes that the supervisor owns and relays.

Why pipes and not the caller's own descriptors: a descriptor handed into a container is the caller's
open file there. Through /proc/self/fd/N the container names the host file (`readlink`), and its root
can fchmod/fchown the host inode behind it (the administrator's terminal, a redirected file, /dev/null);
a process left behind by `exec` keeps reading the terminal after `exec` has returned. So the container
gets only pipe ends, the supervisor copies between them and the caller, and it stops copying when the
container's process exits: whatever is left behind then holds pipes that lead nowhere.

    caller stdin ──> [pipe] ──> container fd 0      (-i; otherwise an empty pipe: EOF at once)
    container fd 1 ──> [pipe] ──> caller stdout (and the log), or the log of a detached container
    container fd 2 ──> [pipe] ──> caller stderr (and the log), or the same log

The relay runs until the container's process exits (a pidfd says so), then drains what the pipes
already hold. Measured on the reference VM: three pipes and the poll loop add ~0.1 ms to `run --rm true`;
throughput is in docs/performance.md.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    class Sink(Protocol):
        def write(self, data: bytes) -> None: ...

CHUNK = 65536
SPLICE_CHUNK = 1 << 20
F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20  # /proc/sys/fs/pipe-max-size's default


def _high(fd: int) -> int:
    """`fd` moved to 3 or above (close-on-exec): a caller that started us with 0-2 closed must not
    make a pipe land on a standard descriptor number the child is about to dup2 onto."""
    if fd > 2:
        return fd
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    os.close(fd)
    return new


def _pipe() -> tuple[int, int]:
    r, w = os.pipe()
    return _high(r), _high(w)


class FdSink:
    """Write everything to a descriptor; once the reader has gone (EPIPE), discard quietly."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.broken = False
        self.splice = True

    def pull(self, src: int) -> int:
        """Move what the pipe `src` holds straight to our descriptor with splice(2), without copying it
        through Python (1 MiB writes relayed into a pipe: 1.3 GB/s, faster than handing the container
        the caller's pipe, 1.05 GB/s).
        Returns the bytes moved (0 at EOF), or -1 where splice cannot serve (a terminal, a broken sink)."""
        if not self.splice or self.broken:
            return -1
        while True:
            try:
                return os.splice(src, self.fd, SPLICE_CHUNK)
            except BlockingIOError:
                # Either side may be non-blocking: an empty source (the drain) is "nothing now",
                # a full destination is waited for.
                if select.select([], [self.fd], [], 0)[1]:
                    raise
                select.select([], [self.fd], [])
            except OSError as e:
                if e.errno in (errno.EPIPE, errno.EBADF, errno.EIO):
                    self.broken = True
                self.splice = False
                return -1

    def write(self, data: bytes) -> None:
        while data and not self.broken:
            try:
                data = data[os.write(self.fd, data):]
            except BlockingIOError:
                select.select([], [self.fd], [])
            except OSError as e:
                if e.errno not in (errno.EPIPE, errno.EBADF, errno.EIO):
                    raise
                self.broken = True


class Tee:
    """A foreground container's output: to the caller, and into its log."""

    def __init__(self, first: Sink, second: Sink) -> None:
        self.first, self.second = first, second

    def write(self, data: bytes) -> None:
        self.first.write(data)
        self.second.write(data)


class Pipes:
    """Three pipes: the child's ends (for fds 0, 1, 2) and the supervisor's."""

    def __init__(self, keep_stdin_open: bool) -> None:
        self.child: tuple[int, ...] = ()
        self.stdin_w: int | None = None
        self.out_r = self.err_r = -1
        try:
            in_r, in_w = _pipe()
            self.child = (in_r,)
            if keep_stdin_open:
                self.stdin_w = in_w
            else:
                os.close(in_w)  # the container reads EOF at once, as from /dev/null
            self.out_r, out_w = _pipe()
            self.child += (out_w,)
            self.err_r, err_w = _pipe()
            self.child += (err_w,)
            # A bigger pipe lets a program that writes in small pieces run ahead of the relay (4 KiB
            # writes of 1 GB: 5.1 s -> 4.2 s); past the user's pipe-page quota the kernel says no: fine.
            try:
                fcntl.fcntl(out_w, F_SETPIPE_SZ, PIPE_SIZE)
            except OSError:
                pass
        except BaseException:
            self.close()
            raise

    def close_child_ends(self) -> None:
        """After clone: only the child may hold them, or EOF would never come."""
        for fd in self.child:
            os.close(fd)
        self.child = ()

    def close(self) -> None:
        self.close_child_ends()
        for fd in (self.stdin_w, self.out_r, self.err_r):
            if fd is not None and fd >= 0:
                os.close(fd)
        self.stdin_w, self.out_r, self.err_r = None, -1, -1

    def relay(self, pid: int, stdin: int | None, out: Sink, err: Sink) -> None:
        """Copy stdin -> container and container -> out/err until process `pid` exits, then drain."""
        pidfd = os.pidfd_open(pid)
        try:
            _Relay(self, pidfd, stdin, out, err).run()
        finally:
            os.close(pidfd)
            if self.stdin_w is not None:  # whatever outlives the process reads EOF, never the caller
                os.close(self.stdin_w)
                self.stdin_w = None


class _Relay:
    def __init__(self, pipes: Pipes, pidfd: int, stdin: int | None, out: Sink, err: Sink) -> None:
        self.pipes, self.pidfd, self.stdin = pipes, pidfd, stdin
        self.sinks = {pipes.out_r: out, pipes.err_r: err}
        self.pending = b""  # read from the caller, not yet taken by the container's stdin pipe
        if pipes.stdin_w is not None:
            os.set_blocking(pipes.stdin_w, False)

    def run(self) -> None:
        poller = select.poll()
        open_outputs = set(self.sinks)
        for fd in open_outputs:
            poller.register(fd, select.POLLIN)
        poller.register(self.pidfd, select.POLLIN)
        armed: set[int] = set()
        while True:
            self._arm(poller, armed)
            for fd, _events in poller.poll():
                if fd == self.pidfd:
                    self._drain(open_outputs)
                    return
                if fd in self.sinks:
                    if fd in open_outputs and not self._copy_out(fd):
                        poller.unregister(fd)
                        open_outputs.discard(fd)
                elif fd == self.stdin:
                    self._read_stdin()
                elif fd == self.pipes.stdin_w:
                    self._write_stdin()

    def _arm(self, poller: select.poll, armed: set[int]) -> None:
        """Read the caller only while nothing is pending; wait for room in the pipe while something is."""
        w = self.pipes.stdin_w
        want = set()
        if w is not None and self.stdin is not None:
            want.add(w if self.pending else self.stdin)
        for fd in armed - want:
            poller.unregister(fd)
        for fd in want - armed:
            poller.register(fd, select.POLLOUT if fd == w else select.POLLIN)
        armed.clear()
        armed.update(want)

    def _copy_out(self, fd: int) -> bool:
        sink = self.sinks[fd]
        if isinstance(sink, FdSink):
            try:
                moved = sink.pull(fd)
            except BlockingIOError:
                return True
            if moved >= 0:
                return moved > 0
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:
            return True
        if not data:
            return False
        sink.write(data)
        return True

    def _read_stdin(self) -> None:
        assert self.stdin is not None
        try:
            data = os.read(self.stdin, CHUNK)
        except OSError:
            data = b""
        if data:
            self.pending = data
            self._write_stdin()
        else:
            self._close_stdin()

    def _write_stdin(self) -> None:
        w = self.pipes.stdin_w
        if w is None:
            return
        try:
            self.pending = self.pending[os.write(w, self.pending):]
        except BlockingIOError:
            pass
        except BrokenPipeError:  # the container closed its stdin: drop the rest
            self.pending = b""
            self._close_stdin()

    def _close_stdin(self) -> None:
        if self.pipes.stdin_w is not None:
            os.close(self.pipes.stdin_w)
            self.pipes.stdin_w = None
        self.pending = b""

    def _drain(self, open_outputs: set[int]) -> None:
        """The process has exited: copy what the pipes hold now, without waiting for anything left behind."""
        for fd in sorted(open_outputs):
            os.set_blocking(fd, False)
            while self._copy_out(fd):
                try:
                    if not select.select([fd], [], [], 0)[0]:
                        break
                except OSError:
                    break
