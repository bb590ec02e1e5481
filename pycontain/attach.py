"""`attach`: reach a running container's terminal or output through its monitor.

The monitor of a detached container (or the `pycontain run` process of a foreground one) holds the
container's side of the relay (the pty master with -t, the stdio pipes without). While the container
runs it also listens on a unix socket in the record, {record}/attach.sock (mode 0600 in a 0700
directory: root only), and relays between the container and every client connected there. Nothing else
holds a detached container's pty, so this socket is the one way to its terminal; a foreground run also
relays its own caller (Server.run's local_stdin, its stdout), whose terminal keeps no detach keys. The
log (logs.py) gets the same output whether anyone is attached or not.

Both directions carry frames: a kind byte, a 4-byte big-endian length, the payload.

    monitor -> client   STDOUT, STDERR (output; a -t container's is all STDOUT), EXIT (its code, ascii)
    client -> monitor   STDIN (to the pty or the -i stdin pipe), WINSIZE (struct winsize, -t only),
                        SIGNAL (--sig-proxy: a signal number, ascii), CLOSE_STDIN (`start -a -i` at EOF)

The detach keys (Ctrl-P Ctrl-Q, or --detach-keys) are read by the client, which then just leaves: the
container and the other clients go on. A client that cannot keep up (its backlog passes BACKLOG) is
dropped rather than let the monitor's memory grow or the container wait for it.
The socket goes when the monitor ends; after a SIGKILL of the monitor, `gc` removes it.
"""

from __future__ import annotations

import errno
import os
import select

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from pycontain.state import Record
    from pycontain.stdio import Pipes

STDIN, STDOUT, STDERR, EXIT, WINSIZE, SIGNAL, CLOSE_STDIN = range(7)
SOCKET = "attach.sock"
BACKLOG = 4 << 20  # bytes of output queued for one client before it is dropped
INPUT_BACKLOG = 1 << 20  # bytes of input queued for the container before more is dropped
TIOCSWINSZ = 0x5414
LISTEN_GRACE = 0.5  # seconds `attach` waits for the socket of a running container (see connect)


def socket_path(rec: Record) -> str:
    return f"{rec.dir}/{SOCKET}"


def frame(kind: int, payload: bytes) -> bytes:
    return bytes((kind,)) + len(payload).to_bytes(4, "big") + payload


def frames(buf: bytearray) -> Iterator[tuple[int, bytes]]:
    """The complete frames at the front of `buf`, each taken off it as it is yielded (a partial one
    stays for the next read): the one reader of frame() for the monitor, the client and verify."""
    while len(buf) >= 5:
        size = int.from_bytes(buf[1:5], "big")
        if len(buf) < 5 + size:
            return
        kind, payload = buf[0], bytes(buf[5:5 + size])
        del buf[:5 + size]
        yield kind, payload


def _short(path: str) -> tuple[str, int]:
    """A name for `path` that fits sun_path (108 bytes: a --root under a deep temp dir does not):
    the directory through /proc/self/fd. Returns it and the directory fd to close afterwards."""
    d, _, base = path.rpartition("/")
    dfd = os.open(d, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return f"/proc/self/fd/{dfd}/{base}", dfd


def _above_stdio(fd: int) -> int:
    """`fd` itself, or (if it is 0, 1 or 2) a close-on-exec copy at 3 or above, the original closed."""
    if fd > 2:
        return fd
    import fcntl

    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    os.close(fd)
    return new


def unlink_socket(rec: Record) -> bool:
    try:
        os.unlink(socket_path(rec))
        return True
    except FileNotFoundError:
        return False


# ---------------------------------------------------------------- the monitor's side

class _Client:
    __slots__ = ("fd", "out", "inbuf")

    def __init__(self, fd: int) -> None:
        self.fd, self.out, self.inbuf = fd, bytearray(), bytearray()


class Server:
    """The attach socket of one run of a detached container, and the relay loop of its monitor."""

    def __init__(self, rec: Record, tty: bool, client_fd: int | None = None,
                 listen_after: float | None = None) -> None:
        """listen_after: listen only once the container has run that many seconds (a foreground run: a
        `run --rm true` over by then never pays for the socket), else at once."""
        self.path = socket_path(rec)
        self.rec = rec
        self.tty = tty
        self.clients: dict[int, _Client] = {}
        self.listener: Any = None
        self.listen_at: float | None = None
        if listen_after is None:
            self._listen()
        else:
            import time

            self.listen_at = time.monotonic() + listen_after
        if client_fd is not None:  # `start -a`: connected before the container ran, so it misses nothing
            client_fd = _above_stdio(client_fd)
            os.set_blocking(client_fd, False)
            self.clients[client_fd] = _Client(client_fd)

    def _listen(self) -> None:
        import _socket

        self.listen_at = None
        self.listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC
                                       | _socket.SOCK_NONBLOCK)
        if self.listener.fileno() <= 2:
            # Started with a standard fd closed: the monitor puts /dev/null on 0-2 soon, over the socket.
            fd = _above_stdio(self.listener.detach())
            self.listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, fd)
        try:
            unlink_socket(self.rec)  # we hold the record's lock: any socket file left there is a dead monitor's
            name, dfd = _short(self.path)
            try:
                old = os.umask(0o177)
                try:
                    self.listener.bind(name)
                finally:
                    os.umask(old)
            finally:
                os.close(dfd)
            self.listener.listen(16)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for fd in list(self.clients):
            os.close(fd)
        self.clients.clear()
        self.listen_at = None
        if self.listener is not None and self.listener.fileno() >= 0:
            self.listener.close()
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    # The relay: container output -> sinks and clients, clients' input -> container, until pid exits.
    def run(self, pid: int, master: int | None, pipes: Pipes | None, out_sink: object, err_sink: object,
            local_stdin: int | None = None) -> None:
        """local_stdin: a foreground run's own input (the caller's fd 0 with -i), relayed as a client's is;
        its end closes the container's stdin (a pipe) or types the terminal's EOF key (-t)."""
        self.pid = pid
        self.local_stdin = local_stdin
        self.sinks = {}
        if master is not None:
            self.sinks[master] = (STDOUT, out_sink)
            self.stdin_w: int | None = master
        else:
            assert pipes is not None
            self.sinks[pipes.out_r] = (STDOUT, out_sink)
            self.sinks[pipes.err_r] = (STDERR, err_sink)
            self.stdin_w = pipes.stdin_w
        self.pipes = pipes
        self.master = master
        for fd in self.sinks:
            os.set_blocking(fd, False)
        if self.stdin_w is not None:
            os.set_blocking(self.stdin_w, False)
        self.to_container = bytearray()
        pidfd = os.pidfd_open(pid)
        try:
            self._loop(pidfd)
        finally:
            os.close(pidfd)
            if pipes is not None and pipes.stdin_w is not None:  # whatever outlives it reads EOF
                os.close(pipes.stdin_w)
                pipes.stdin_w = None

    def _loop(self, pidfd: int) -> None:
        outputs = set(self.sinks)
        lfd = -1 if self.listener is None else self.listener.fileno()
        while True:
            timeout = None
            if self.listen_at is not None:
                import time

                timeout = max(0, int((self.listen_at - time.monotonic()) * 1000) + 1)
                if timeout <= 1:
                    self._listen()
                    lfd, timeout = self.listener.fileno(), None
            # A new poll set every round keeps each fd's event mask right; there are only a handful.
            masks = {pidfd: select.POLLIN}
            if lfd >= 0:
                masks[lfd] = select.POLLIN
            for fd in outputs:
                masks[fd] = select.POLLIN
            for c in self.clients.values():
                masks[c.fd] = select.POLLIN | (select.POLLOUT if c.out else 0)
            if self.to_container and self.stdin_w is not None:
                masks[self.stdin_w] = masks.get(self.stdin_w, 0) | select.POLLOUT
            elif self.local_stdin is not None and self.stdin_w is not None:
                # A foreground run's caller is read only once the container took its last read.
                masks[self.local_stdin] = masks.get(self.local_stdin, 0) | select.POLLIN
            poller = select.poll()
            for fd, mask in masks.items():
                poller.register(fd, mask)
            try:
                events = poller.poll(timeout)
            except InterruptedError:
                continue
            for fd, ev in events:
                if fd == pidfd:
                    for out in sorted(outputs):  # it has exited: what the pipes (or the pty) hold now
                        while self._copy_out(out) > 0:
                            pass
                    return
                if fd == lfd:
                    self._accept()
                    continue
                if fd in outputs and ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    if self._copy_out(fd) < 0:
                        outputs.discard(fd)
                if fd == self.stdin_w and ev & select.POLLOUT:
                    self._write_stdin()
                if fd == self.local_stdin and ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    self._read_local()
                client = self.clients.get(fd)
                if client is not None:
                    if ev & select.POLLOUT:
                        self._flush(client)
                    if fd in self.clients and ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
                        self._read_client(client)

    def _accept(self) -> None:
        try:
            fd, _ = self.listener._accept()  # a bare fd
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        os.set_blocking(fd, False)
        self.clients[fd] = _Client(fd)

    def _read_out(self, fd: int) -> int:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return 0
        except OSError as e:
            if e.errno == errno.EIO:
                return -1
            raise
        if not data:
            return -1
        kind, sink = self.sinks[fd]
        sink.write(data)  # type: ignore[attr-defined]
        self._to_clients(kind, data)
        return 1

    def _copy_out(self, fd: int) -> int:
        """One read of an output: 1 if it gave data, 0 if none is there now, -1 at its end (EOF, or EIO:
        no pty slave is open any more)."""
        sink = self.sinks[fd][1]
        if not self.clients and hasattr(sink, "pull"):
            # A foreground run's own stdout with nobody attached: spliced as stdio's relay does.
            try:
                moved = sink.pull(fd)
            except BlockingIOError:
                return 0
            if moved >= 0:
                return 1 if moved else -1
        return self._read_out(fd)

    def _to_clients(self, kind: int, data: bytes) -> None:
        if self.clients:
            msg = frame(kind, data)
            for c in list(self.clients.values()):
                c.out += msg
                if len(c.out) > BACKLOG:
                    self._drop(c)
                else:
                    self._flush(c)

    def _flush(self, c: _Client) -> None:
        try:
            n = os.write(c.fd, c.out)
        except BlockingIOError:
            return
        except OSError:
            self._drop(c)
            return
        del c.out[:n]

    def _drop(self, c: _Client) -> None:
        self.clients.pop(c.fd, None)
        os.close(c.fd)

    def _read_client(self, c: _Client) -> None:
        try:
            data = os.read(c.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(c)
            return
        c.inbuf += data
        for kind, payload in frames(c.inbuf):
            self._handle(kind, payload)

    def _handle(self, kind: int, payload: bytes) -> None:
        if kind == STDIN:
            if self.stdin_w is not None and len(self.to_container) < INPUT_BACKLOG:
                self.to_container += payload
                self._write_stdin()
        elif kind == WINSIZE and self.master is not None and len(payload) == 8:
            import fcntl

            try:
                fcntl.ioctl(self.master, TIOCSWINSZ, payload)
            except OSError:
                pass
        elif kind == SIGNAL and payload.isdigit() and 0 < int(payload) < 65:
            try:
                os.kill(self.pid, int(payload))
            except ProcessLookupError:
                pass
        elif kind == CLOSE_STDIN and self.pipes is not None and self.pipes.stdin_w is not None:
            self.to_container.clear()
            os.close(self.pipes.stdin_w)
            self.pipes.stdin_w = self.stdin_w = None

    def _read_local(self) -> None:
        assert self.local_stdin is not None
        try:
            data = os.read(self.local_stdin, 65536)
        except BlockingIOError:
            return
        except OSError:  # a hung-up terminal (EIO): its end, as EOF
            data = b""
        if data:
            self._handle(STDIN, data)
            return
        self.local_stdin = None
        if self.master is not None:
            self._handle(STDIN, b"\x04")  # the end of our input, as the terminal's EOF key
        else:
            self._handle(CLOSE_STDIN, b"")

    def _write_stdin(self) -> None:
        if self.stdin_w is None:
            self.to_container.clear()
            return
        try:
            n = os.write(self.stdin_w, self.to_container)
        except BlockingIOError:
            return
        except OSError:  # the container closed its stdin (EPIPE), its pty is gone (EIO): drop the rest
            self.to_container.clear()
            return
        del self.to_container[:n]

    def finish(self, code: int, timeout: float = 2.0) -> None:
        """Tell every client the exit code; give them up to `timeout` to take what is queued."""
        import time

        msg = frame(EXIT, str(code).encode())
        for c in self.clients.values():
            c.out += msg
        deadline = time.monotonic() + timeout
        while True:
            for c in list(self.clients.values()):
                self._flush(c)
                if not c.out:
                    self._drop(c)
            left = deadline - time.monotonic()
            if not self.clients or left <= 0:
                break
            select.select([], list(self.clients), [], left)
        self.close()


# ---------------------------------------------------------------- the client's side

def parse_detach_keys(spec: str) -> bytes:
    """Docker's --detach-keys: comma-separated keys, each `ctrl-X` or one character ("ctrl-p,ctrl-q")."""
    from pycontain.errors import UsageError

    out = bytearray()
    for key in spec.split(","):
        k = key.strip()
        if k.lower().startswith("ctrl-") and len(k) == 6:
            c = k[5].lower()
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
                continue
            if c in "@[\\]^_":
                out.append(ord(c) ^ 0x40)
                continue
        elif len(k) == 1 and k.isprintable():
            out.append(ord(k))
            continue
        raise UsageError(f"invalid --detach-keys {spec!r}: use keys like ctrl-p,ctrl-q or ctrl-a,x")
    return bytes(out)


def connect(rec: Record) -> int:
    """A connection to the container's monitor (a blocking socket fd the caller closes)."""
    import _socket

    from pycontain.errors import ContainerStateError

    import time

    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    # A foreground run listens only once its container has run a moment (Server's listen_after): a
    # running container's socket may be a few tens of milliseconds away yet.
    deadline = time.monotonic() + LISTEN_GRACE
    try:
        while True:
            name, dfd = _short(socket_path(rec))
            try:
                s.connect(name)
                break
            except FileNotFoundError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)
            finally:
                os.close(dfd)
    except (FileNotFoundError, ConnectionRefusedError):
        s.close()
        raise ContainerStateError(f"container {rec.name} cannot be attached to: no monitor of it accepts attach "
                                  "(it is not running, or was started by an older pycontain)") from None
    except BaseException:
        s.close()
        raise
    return s.detach()


def attach(rec: Record, stdin: bool, sig_proxy: bool, detach_keys: str | None) -> int:
    """`attach CONTAINER` (a running one): relay until it exits (its exit code) or the detach keys (0)."""
    keys = parse_detach_keys(detach_keys if detach_keys is not None else "ctrl-p,ctrl-q")
    sock = connect(rec)
    cfg = rec.config
    return relay(sock, cfg.tty, stdin and cfg.interactive, sig_proxy and not cfg.tty, keys, close_stdin=False)


def relay(sock: int, tty: bool, use_stdin: bool, sig_proxy: bool, keys: bytes, close_stdin: bool) -> int:
    """The client's loop over `sock` (taken over and closed): output to our stdout/stderr, our stdin
    (when use_stdin) to the container, the container's exit code at the end, 0 after the detach keys."""
    import _signal
    import termios

    from pycontain import console

    fds_to_close = [sock]
    saved = None
    handlers: dict[int, Any] = {}
    wake_r = wake_w = -1
    try:
        if use_stdin and tty and os.isatty(0):
            saved = termios.tcgetattr(0)
            console.raw(0)
        if tty and os.isatty(0):
            _send(sock, WINSIZE, _winsize(0))
            wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
            fds_to_close += [wake_r, wake_w]
            handlers[_signal.SIGWINCH] = _signal.signal(_signal.SIGWINCH, lambda *_: None)
        if sig_proxy:
            if wake_r < 0:
                wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
                fds_to_close += [wake_r, wake_w]
            from pycontain.namespaces import FORWARDED

            for signum in FORWARDED:
                handlers[signum] = _signal.signal(signum, lambda *_: None)
        old_wakeup = _signal.set_wakeup_fd(wake_w) if wake_w >= 0 else None
        try:
            return _client_loop(sock, tty, use_stdin, keys, close_stdin, wake_r)
        finally:
            if old_wakeup is not None:
                _signal.set_wakeup_fd(old_wakeup)
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        for signum, handler in handlers.items():
            _signal.signal(signum, handler)
        for fd in fds_to_close:
            os.close(fd)


def _winsize(fd: int) -> bytes:
    import fcntl

    try:
        return fcntl.ioctl(fd, 0x5413, b"\0" * 8)
    except OSError:
        return b"\0" * 8


def _send(sock: int, kind: int, payload: bytes) -> None:
    data = frame(kind, payload)
    while data:
        data = data[os.write(sock, data):]


def _client_loop(sock: int, tty: bool, use_stdin: bool, keys: bytes, close_stdin: bool, wake_r: int) -> int:
    import _signal

    from pycontain.errors import PycontainError
    from pycontain.stdio import FdSink

    outs = {STDOUT: FdSink(1), STDERR: FdSink(2)}
    buf = bytearray()
    matched = 0  # how many of the detach keys the last keys typed match (held back until they differ)
    watch = [sock] + ([0] if use_stdin else []) + ([wake_r] if wake_r >= 0 else [])
    while True:
        try:
            ready, _, _ = select.select(watch, [], [])
        except InterruptedError:
            continue
        if wake_r in ready:
            try:
                signals = os.read(wake_r, 256)
            except BlockingIOError:
                signals = b""
            for signum in signals:
                if signum == _signal.SIGWINCH:
                    _send(sock, WINSIZE, _winsize(0))
                else:
                    _send(sock, SIGNAL, str(signum).encode())
        if sock in ready:
            try:
                data = os.read(sock, 65536)
            except OSError:
                data = b""
            if not data:
                raise PycontainError("the container's monitor went away before it exited (see `pycontain ps -a`)")
            buf += data
            for kind, payload in frames(buf):
                if kind == EXIT:
                    return int(payload) if payload.lstrip(b"-").isdigit() else 125
                if kind in outs:
                    outs[kind].write(payload)
        if use_stdin and 0 in ready:
            try:
                data = os.read(0, 65536)
            except OSError:
                data = b""
            if not data:
                watch.remove(0)
                use_stdin = False
                if close_stdin:
                    _send(sock, CLOSE_STDIN, b"")
                elif tty:
                    _send(sock, STDIN, b"\x04")  # the end of our input, as the terminal's EOF key
                continue
            out = bytearray()
            for byte in data:
                if keys and byte == keys[matched]:
                    matched += 1
                    if matched == len(keys):
                        if out:
                            _send(sock, STDIN, bytes(out))
                        return 0
                    continue
                if matched:  # not the detach sequence after all: what was held back goes too
                    out += keys[:matched]
                    matched = 0
                    if byte == keys[0]:
                        matched = 1
                        continue
                out.append(byte)
            if out:
                _send(sock, STDIN, bytes(out))
