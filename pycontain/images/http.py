"""Just enough HTTP/1.1 for the registry API: one request per connection, streamed bodies.

Why not http.client: importing it (with the email package it parses headers with) and urllib.parse
costs ~30 ms on the reference VM, more than the whole `pull` of an image that is already up to date
(the issue's budget is 50 ms). The registry protocol needs little of HTTP: a request line, headers, a
body of known length, and responses with Content-Length, chunked encoding or read-to-close.
"""

from __future__ import annotations

import socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any

MAX_HEADER_BYTES = 64 << 10
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


class HTTPError(OSError):
    """The peer broke the protocol (bad status line, oversized headers, truncated chunk)."""


def split_url(url: str) -> tuple[str, str, str]:
    """'https://host:5000/v2/x?y' -> ('https', 'host:5000', '/v2/x?y')."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {url!r}")
    netloc, slash, path = rest.partition("/")
    return scheme, netloc.rsplit("@", 1)[-1], slash + path if slash else "/"


def join_url(base: str, location: str) -> str:
    """Resolve a Location header against the URL it answered (absolute, host-relative or relative)."""
    if "://" in location.split("?", 1)[0]:
        return location
    scheme, netloc, path = split_url(base)
    if location.startswith("//"):
        return f"{scheme}:{location}"
    if location.startswith("/"):
        return f"{scheme}://{netloc}{location}"
    return f"{scheme}://{netloc}{path.split('?', 1)[0].rsplit('/', 1)[0]}/{location}"


def quote(text: str) -> str:
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in text.encode())


def urlencode(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs)


def host_port(netloc: str, scheme: str) -> tuple[str, int]:
    default = 443 if scheme == "https" else 80
    if netloc.startswith("["):
        host, _, rest = netloc[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default
    host, sep, port = netloc.rpartition(":")
    if sep and port.isdigit():
        return host, int(port)
    return netloc, default


class Headers(dict[str, str]):
    """Response headers; keys lowercased, so get() is case-insensitive like HTTP's."""

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return dict.get(self, key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return dict.__getitem__(self, key.lower())


class Response:
    def __init__(self, sock: socket.socket, method: str) -> None:
        self.sock = sock
        self.file = sock.makefile("rb")
        line = self.file.readline(MAX_HEADER_BYTES)
        parts = line.decode("latin-1").split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise HTTPError(f"not an HTTP response: {line[:60]!r}")
        self.status = int(parts[1])
        self.headers = Headers()
        total = len(line)
        while True:
            line = self.file.readline(MAX_HEADER_BYTES)
            total += len(line)
            if total > MAX_HEADER_BYTES:
                raise HTTPError("response headers are larger than 64 kB")
            if line in (b"\r\n", b"\n", b""):
                break
            key, _, value = line.decode("latin-1").partition(":")
            self.headers[key.strip().lower()] = value.strip()
        self.chunked = "chunked" in (self.headers.get("transfer-encoding") or "").lower()
        length = self.headers.get("content-length")
        self.left: int | None = int(length) if length and length.isdigit() else None
        if method == "HEAD" or self.status in (204, 304) or 100 <= self.status < 200:
            self.left, self.chunked = 0, False
        self._chunk_left = 0
        self._eof = False

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            out = []
            while chunk := self.read(1 << 20):
                out.append(chunk)
            return b"".join(out)
        if self._eof or n == 0:
            return b""
        if self.chunked:
            return self._read_chunked(n)
        if self.left is not None:
            if self.left == 0:
                self._eof = True
                return b""
            data = self.file.read1(min(n, self.left))
            if not data:
                raise HTTPError(f"connection closed with {self.left} bytes of the body missing")
            self.left -= len(data)
            return data
        data = self.file.read1(n)  # no length: the body ends when the server closes
        if not data:
            self._eof = True
        return data

    def _read_chunked(self, n: int) -> bytes:
        if self._chunk_left == 0:
            size_line = self.file.readline(1024).split(b";", 1)[0].strip()
            try:
                self._chunk_left = int(size_line, 16)
            except ValueError:
                raise HTTPError(f"bad chunk size {size_line[:20]!r}") from None
            if self._chunk_left == 0:
                while self.file.readline(MAX_HEADER_BYTES) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self._eof = True
                return b""
        data = self.file.read1(min(n, self._chunk_left))
        if not data:
            raise HTTPError("connection closed in the middle of a chunk")
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            self.file.readline(8)  # the CRLF after the chunk
        return data

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def request(method: str, url: str, headers: dict[str, str], body: IO[bytes] | bytes | None = None,
            verify: bool = True, timeout: float = 60.0) -> Response:
    """Send one request (Connection: close) and return the response with its body unread."""
    scheme, netloc, target = split_url(url)
    host, port = host_port(netloc, scheme)
    # An ASCII host as bytes: a str makes getaddrinfo load the idna codec (~3 ms) just to encode it.
    address: Any = (host.encode() if host.isascii() else host, port)
    sock = socket.create_connection(address, timeout=timeout)
    try:
        if scheme == "https":
            sock = tls_context(sock, host, verify)
        head = [f"{method} {target} HTTP/1.1", f"Host: {netloc}", "Connection: close"]
        if body is not None and not any(k.lower() == "content-length" for k in headers):
            if not isinstance(body, bytes):
                raise ValueError("a streamed body needs a Content-Length header")
            headers = {**headers, "Content-Length": str(len(body))}
        head += [f"{k}: {v}" for k, v in headers.items()]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        if isinstance(body, bytes):
            sock.sendall(body)
        elif body is not None:
            while chunk := body.read(1 << 20):
                sock.sendall(chunk)
        return Response(sock, method)
    except BaseException:
        sock.close()
        raise


def tls_context(sock: socket.socket, host: str, verify: bool) -> socket.socket:
    import ssl

    if verify:
        ctx = ssl.create_default_context()
    else:  # an --insecure-registry: no CA bundle to load (~35 ms here), no checks
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx.wrap_socket(sock, server_hostname=host)
