"""A client for the OCI Distribution API (Registry HTTP API v2).

    GET  /v2/<repo>/manifests/<tag|digest>    a manifest, or a manifest list / OCI index of them
    GET  /v2/<repo>/blobs/<digest>            a layer or config (often a redirect to a CDN)
    HEAD /v2/<repo>/blobs/<digest>            does the registry have it (push)
    POST /v2/<repo>/blobs/uploads/            start an upload; PUT <Location>?digest=... finishes it
    PUT  /v2/<repo>/manifests/<tag>           publish a manifest

Why no HTTP library (requests, httpx): the protocol needs a handful of requests, streamed bodies and
manual redirects (the Authorization header must not follow a redirect to a CDN). images/http.py does
that in a page, and even the standard library's http.client costs more import time than a whole
up-to-date `pull` may take.

Plain HTTP is used only where Docker allows it: registries on loopback addresses and those named by
`--insecure-registry` (or PYCONTAIN_INSECURE_REGISTRIES, or the config file). For the named ones HTTPS
is tried first without certificate checks, then plain HTTP, as Docker does; for loopback plain HTTP
comes first, since that traffic never leaves the host and a local registry usually speaks it.
Docker Hub pulls may go through mirrors (`--registry-mirror`, PYCONTAIN_REGISTRY_MIRRORS, the config
file's "registry-mirrors"), tried in order before the registry itself.

Connections are kept alive per host for the requests of one pull or push (a Registry object), so a
pull pays one TCP and TLS handshake per host and download thread, not one per request. Proxies come
from HTTPS_PROXY / HTTP_PROXY / NO_PROXY (upper case first, then lower case) with the rules Docker's
Go client applies: https goes through a CONNECT tunnel, http as absolute-form requests, NO_PROXY
lists hosts, domains (with their subdomains), IPs and CIDRs, `*` is everything, and localhost and
loopback addresses are never proxied.

The config file is `/etc/pycontain/registries.json` (or $PYCONTAIN_REGISTRIES_CONFIG), in the shape of
Docker's daemon.json: {"registry-mirrors": ["https://mirror.example"], "insecure-registries": ["host:5000"]}.
"""

from __future__ import annotations

import os
import socket
import threading
from functools import partial

from pycontain import jsonfast
from pycontain.errors import ImageNotFound, RegistryError
from pycontain.images import auth, http
from pycontain.state import Paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import IO, Any

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
ACCEPT = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))
MAX_MANIFEST_BYTES = 4 << 20  # a manifest is a few kB; more than this is not a manifest
DOCKER_HUB = "registry-1.docker.io"
CONFIG_FILE = "/etc/pycontain/registries.json"
TIMEOUT = 60.0
USER_AGENT = "pycontain"
DRAIN_BYTES = 64 << 10


class Settings:
    """Mirrors and insecure registries: flags first, then the environment, then the config file."""

    def __init__(self, mirrors: list[str] | tuple[str, ...] = (),
                 insecure: list[str] | tuple[str, ...] = ()) -> None:
        conf = _config_file()
        env_mirrors = _split(os.environ.get("PYCONTAIN_REGISTRY_MIRRORS", ""))
        env_insecure = _split(os.environ.get("PYCONTAIN_INSECURE_REGISTRIES", ""))
        self.mirrors = [*mirrors, *env_mirrors, *conf.get("registry-mirrors", [])]
        self.insecure = {*insecure, *env_insecure, *conf.get("insecure-registries", [])}
        for m in self.mirrors:
            try:
                ok = bool(http.split_url(m)[1])
            except ValueError:
                ok = False
            if not ok:
                raise RegistryError(f"invalid registry mirror {m!r}: expected a URL like https://mirror.example:5000")

    def is_insecure(self, netloc: str) -> bool:
        host = _host_of(netloc)
        return _is_loopback(host) or netloc in self.insecure or host in self.insecure


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _config_file() -> dict[str, list[str]]:
    path = os.environ.get("PYCONTAIN_REGISTRIES_CONFIG", CONFIG_FILE)
    data = auth.read_json_config(path, "registry settings")
    if not isinstance(data, dict):
        raise RegistryError(f"{path} must hold a JSON object with registry-mirrors / insecure-registries")
    out = {}
    for key in ("registry-mirrors", "insecure-registries"):
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise RegistryError(f"{path}: {key} must be a list of strings")
        out[key] = value
    return out


def _host_of(netloc: str) -> str:
    if netloc.startswith("["):
        return netloc[1:].split("]", 1)[0]
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


def _is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1 (by hand: the ipaddress module costs milliseconds to import)."""
    if host in ("localhost", "::1"):
        return True
    parts = host.split(".")
    return len(parts) == 4 and parts[0] == "127" and all(p.isdigit() and int(p) < 256 for p in parts)


class Endpoint:
    """Where requests for one registry go: scheme://netloc/prefix (a mirror may have a path prefix)."""

    __slots__ = ("scheme", "netloc", "prefix", "verify", "mirror")

    def __init__(self, scheme: str, netloc: str, prefix: str = "", verify: bool = True, mirror: bool = False):
        self.scheme, self.netloc, self.prefix, self.verify, self.mirror = scheme, netloc, prefix, verify, mirror

    def __str__(self) -> str:
        return f"{self.scheme}://{self.netloc}{self.prefix}"


class Response:
    """A response whose body is streamed; close() it when done (that hands a kept-alive connection back)."""

    def __init__(self, resp: http.Response, url: str, release: Callable[[], None] | None = None) -> None:
        self.status = resp.status
        self.headers = resp.headers
        self.url = url
        self._resp = resp
        self._release = release
        self._ended = False
        self._closed = False

    def read(self, n: int = -1) -> bytes:
        data = self._resp.read(n)
        if not data and n != 0:
            self._ended = True
        return data

    def readable(self) -> bool:
        return True

    def _complete(self) -> bool:
        """The whole body was read and the connection may carry another request."""
        if self._resp.chunked:
            return self._ended
        return self._resp.left == 0  # a body without a length ends only when the server closes

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        resp = self._resp
        reuse = self._release is not None and (resp.headers.get("connection") or "").lower() != "close"
        if reuse and not self._complete():
            # A small unread body (a 401's or a redirect's) is cheaper to skip than a new handshake.
            try:
                skipped = 0
                while skipped <= DRAIN_BYTES and (chunk := self.read(1 << 14)):
                    skipped += len(chunk)
            except OSError:
                reuse = False
        if reuse and self._complete() and self._release is not None:
            resp.file.close()  # the socket stays open for the next request
            self._release()
        else:
            resp.close()

    def json(self, limit: int = MAX_MANIFEST_BYTES) -> Any:
        data = self._read_limited(limit)
        try:
            return jsonfast.loads(data)
        except ValueError:
            raise RegistryError(f"{self.url} answered something that is not JSON") from None

    def body(self, limit: int) -> bytes:
        """The whole body (at most limit bytes, else RegistryError), then close."""
        return self._read_limited(limit)

    def _read_limited(self, limit: int) -> bytes:
        out, total = [], 0
        try:
            while chunk := self.read(1 << 16):
                out.append(chunk)
                total += len(chunk)
                if total > limit:
                    raise RegistryError(f"{self.url} answered more than {limit >> 10} kB where a small document "
                                        "was expected")
        except OSError as e:
            raise RegistryError(f"reading from {self.url} failed: {e}") from None
        finally:
            self.close()
        return b"".join(out)


class Registry:
    """One registry and one repository on it, with the auth state (tokens) of this session."""

    def __init__(self, paths: Paths, domain: str, repo: str, settings: Settings, push: bool = False) -> None:
        self.paths, self.domain, self.repo, self.settings, self.push = paths, domain, repo, settings, push
        self.endpoints = self._endpoints()
        self.endpoint = self.endpoints[0]
        self._auth_header: str | None = None
        self._creds: tuple[str, str] | None | bool = False  # False: not looked up yet
        self._pool = _Pool()

    def close(self) -> None:
        """Close the kept-alive connections (the process exiting would, too)."""
        self._pool.close()

    def _endpoints(self) -> list[Endpoint]:
        out = []
        if self.domain == "docker.io" and not self.push:
            for m in self.settings.mirrors:
                scheme, netloc, path = http.split_url(m)
                out.append(Endpoint(scheme, netloc, path.split("?")[0].rstrip("/"), mirror=True,
                                    verify=not self.settings.is_insecure(netloc)))
        netloc = DOCKER_HUB if self.domain == "docker.io" else self.domain
        if _is_loopback(_host_of(netloc)):
            # Traffic that never leaves the host: plain HTTP first (what a local registry usually speaks).
            out += [Endpoint("http", netloc), Endpoint("https", netloc, verify=False)]
        elif self.settings.is_insecure(netloc):
            out += [Endpoint("https", netloc, verify=False), Endpoint("http", netloc)]
        else:
            out.append(Endpoint("https", netloc))
        return out

    @property
    def scope(self) -> str:
        if not self.repo:
            return ""  # `login`: a token for no repository proves the credentials
        return f"repository:{self.repo}:{'pull,push' if self.push else 'pull'}"

    @property
    def credentials(self) -> tuple[str, str] | None:
        if self._creds is False:
            self._creds = auth.credentials(self.paths, self.domain)
        return self._creds  # type: ignore[return-value]

    @credentials.setter
    def credentials(self, creds: tuple[str, str]) -> None:
        """`login` checks the credentials it was given, not the stored ones."""
        self._creds = creds

    # -- plumbing --
    def _use(self, endpoint: Endpoint) -> None:
        if endpoint is not self.endpoint:
            self._auth_header = None  # a mirror's token means nothing to the registry, and vice versa
        self.endpoint = endpoint

    def _send(self, method: str, url: str, headers: dict[str, str], body: IO[bytes] | bytes | None,
              verify: bool) -> Response:
        """One request on a kept-alive connection to the host (or a new one), through a proxy if set.

        A reused connection the server has closed meanwhile fails before any answer: the request is
        sent again once on a new connection (bodies here are bytes or seekable files).
        """
        scheme, netloc, target = http.split_url(url)
        host, port = http.host_port(netloc, scheme)
        proxy = proxy_for(scheme, host, port)
        if proxy is not None and scheme == "http":
            target = f"http://{netloc}{target}"  # a proxy forwards absolute-form requests
            if proxy[2]:
                headers = {**headers, "Proxy-Authorization": proxy[2]}
        head = [f"{method} {target} HTTP/1.1", f"Host: {netloc}", f"User-Agent: {USER_AGENT}"]
        if body is not None and not any(k.lower() == "content-length" for k in headers):
            if not isinstance(body, bytes):
                raise ValueError("a streamed body needs a Content-Length header")
            headers = {**headers, "Content-Length": str(len(body))}
        head += [f"{k}: {v}" for k, v in headers.items()]
        request_head = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        key = (scheme, netloc, verify)
        while True:
            sock = self._pool.take(key)
            reused = sock is not None
            if sock is None:
                sock = _connect(scheme, host, port, verify, proxy)
            try:
                if reused and hasattr(body, "seek"):
                    body.seek(0)  # type: ignore[union-attr]
                sock.sendall(request_head)
                if isinstance(body, bytes):
                    sock.sendall(body)
                elif body is not None:
                    while chunk := body.read(1 << 20):
                        sock.sendall(chunk)
                resp = http.Response(sock, method)
            except OSError:
                sock.close()
                if reused:
                    continue  # a stale kept-alive connection: once more on a new one
                raise
            except BaseException:
                sock.close()
                raise
            return Response(resp, url, release=partial(self._pool.give, key, sock))

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                body: IO[bytes] | bytes | None = None, url: str | None = None) -> Response:
        """One API request with auth (answering a 401 challenge once) and redirects followed."""
        headers = dict(headers or {})
        url = url or f"{self.endpoint}{path}"
        verify = self.endpoint.verify
        for _ in range(6):
            h = dict(headers)
            same_host = http.split_url(url)[1] == self.endpoint.netloc
            if self._auth_header and same_host:
                h["Authorization"] = self._auth_header
            if hasattr(body, "seek"):
                body.seek(0)  # type: ignore[union-attr]
            resp = self._send_or_explain(method, url, h, body, verify)
            if resp.status == 401 and same_host and "Authorization" not in h:
                challenge = resp.headers.get("WWW-Authenticate") or ""
                resp.close()
                self._authenticate(challenge)
                continue
            if resp.status in (301, 302, 303, 307, 308) and resp.headers.get("Location"):
                # Blob downloads are redirected to storage (S3, a CDN); our credentials stay behind.
                url = http.join_url(url, resp.headers["Location"])
                resp.close()
                if resp.status == 303:
                    method, body = "GET", None
                verify = verify or http.split_url(url)[1] != self.endpoint.netloc
                continue
            return resp
        raise RegistryError(f"registry {self.domain}: too many redirects or auth rounds for {path}")

    def _send_or_explain(self, method: str, url: str, headers: dict[str, str],
                         body: IO[bytes] | bytes | None, verify: bool) -> Response:
        try:
            return self._send(method, url, headers, body, verify)
        except OSError as e:
            if type(e).__name__ != "SSLCertVerificationError":
                if url.startswith("https:") and type(e).__name__ == "SSLError":
                    self._explain_plain_http(url)
                raise _Unreachable(self.domain, url, e) from None
            raise RegistryError(
                f"registry {self.domain}: TLS certificate of {http.split_url(url)[1]} not trusted "
                f"({getattr(e, 'verify_message', e)}); if you trust this registry, "
                f"use --insecure-registry {self.domain}"
            ) from None

    def _explain_plain_http(self, url: str) -> None:
        """A TLS handshake failed: if the server speaks plain HTTP there, say what to do about it.

        Only for a registry that is not allowed plain HTTP (an allowed one goes on to its http://
        endpoint). The probe sends a bare `GET /v2/` without credentials over the same route.
        """
        _, netloc, _ = http.split_url(url)
        if self.settings.is_insecure(netloc):
            return
        host, port = http.host_port(netloc, "https")
        if _answers_plain_http(host, port, netloc):
            raise RegistryError(
                f"registry {self.domain}: {netloc} answered plain HTTP to an HTTPS request; if you trust "
                f"the network to it, add --insecure-registry {netloc}")

    def _authenticate(self, challenge: str) -> None:
        scheme, params = auth.parse_challenge(challenge)
        creds = self.credentials
        if scheme == "basic":
            if not creds:
                raise RegistryError(
                    f"registry {self.domain} needs a login for {self.repo}: run `pycontain login {self.domain}`")
            self._auth_header = auth.basic_header(creds)
            return
        if scheme != "bearer" or "realm" not in params:
            raise RegistryError(f"registry {self.domain} asked for unsupported authentication {challenge!r}")
        self._auth_header = "Bearer " + self._fetch_token(params, creds)

    def _fetch_token(self, params: dict[str, str], creds: tuple[str, str] | None) -> str:
        try:
            realm_scheme, realm_netloc, realm_path = http.split_url(params["realm"])
        except ValueError:
            raise RegistryError(f"registry {self.domain} named an invalid token service {params['realm']!r}") from None
        if realm_scheme == "http" and not self.settings.is_insecure(realm_netloc):
            raise RegistryError(
                f"registry {self.domain} wants tokens from plain-HTTP {params['realm']}; allow it with "
                f"--insecure-registry {realm_netloc} if you trust the network")
        scopes = [s for s in [self.scope, *params.get("scope", "").split(" ")] if s]
        scopes = list(dict.fromkeys(scopes))
        query = [("scope", s) for s in scopes]
        if "service" in params:
            query.insert(0, ("service", params["service"]))
        if creds:
            query.append(("account", creds[0]))
        url = params["realm"] + ("&" if "?" in realm_path else "?") + http.urlencode(query)
        headers = {"Authorization": auth.basic_header(creds)} if creds else {}
        resp = self._send_or_explain("GET", url, headers, None, not self.settings.is_insecure(realm_netloc))
        if resp.status in (401, 403):
            resp.close()
            raise RegistryError(
                f"token service of {self.domain} refused " + ("the stored login" if creds else "an anonymous request")
                + f" for {self.repo}; check the name, or run `pycontain login {self.domain}`")
        if resp.status != 200:
            resp.close()
            raise RegistryError(f"token service {realm_netloc} of {self.domain} answered HTTP {resp.status}")
        data = resp.json()
        token = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"token service {realm_netloc} of {self.domain} answered without a token")
        return token

    def _fail(self, resp: Response, what: str) -> RegistryError:
        try:
            body = resp.body(64 << 10)
        except RegistryError:
            body = b""
        detail = _error_detail(body)
        if resp.status in (401, 403):
            return RegistryError(
                f"registry {self.domain} denied {what} (HTTP {resp.status}{': ' + detail if detail else ''}); "
                f"run `pycontain login {self.domain}` with an account that may access {self.repo}")
        return RegistryError(f"registry {self.domain}: {what} failed with HTTP {resp.status}"
                             + (f" ({detail})" if detail else ""))

    # -- the API --
    def manifest(self, reference: str) -> tuple[bytes, str, str | None]:
        """(bytes, media type, Docker-Content-Digest header) of a manifest; tries mirrors, then the registry."""
        errors: list[str] = []
        for i, endpoint in enumerate(self.endpoints):
            self._use(endpoint)
            try:
                resp = self.request("GET", f"/v2/{self.repo}/manifests/{reference}", {"Accept": ACCEPT})
            except _Unreachable as e:
                errors += e.reasons
                if i + 1 < len(self.endpoints):
                    continue
                raise _Unreachable(self.domain, "", reasons=errors) from None
            except RegistryError:
                if endpoint.mirror and i + 1 < len(self.endpoints):
                    continue
                raise
            if resp.status == 404 and endpoint.mirror and i + 1 < len(self.endpoints):
                resp.close()
                continue
            if resp.status in (401, 403, 404):
                raise self._manifest_refused(resp, reference)
            if resp.status != 200:
                raise self._fail(resp, f"reading the manifest of {self.repo}:{reference}")
            data = resp.body(MAX_MANIFEST_BYTES)
            media_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
            return data, media_type, resp.headers.get("Docker-Content-Digest")
        raise RegistryError(f"no endpoint for registry {self.domain}")  # pragma: no cover

    def _manifest_refused(self, resp: Response, reference: str) -> RegistryError | ImageNotFound:
        """A 401/403/404 for a manifest in Docker's words, with the registry's own answer, on one line.

        A registry cannot tell "no such repository" from "not yours" without leaking private names, so
        Docker Hub answers both with 401 and Docker says "pull access denied ... does not exist or may
        require authorization". A 404 names a missing tag (MANIFEST_UNKNOWN) or repository (NAME_UNKNOWN).
        """
        from pycontain.images.reference import Reference

        repo = Reference(self.domain, self.repo).familiar_repository
        try:
            detail = _error_detail(resp.body(64 << 10))
        except RegistryError:
            detail = ""
        answer = f"registry {self.domain} answered HTTP {resp.status}" + (f": {detail}" if detail else "")
        if resp.status == 404 and "NAME_UNKNOWN" not in detail:
            sep = "@" if reference.startswith("sha256:") else ":"
            return ImageNotFound(f"manifest for {repo}{sep}{reference} not found ({answer}); "
                                 "check the name and tag")
        login = "" if self.credentials else f"; if it is private, run `pycontain login {self.domain}` first"
        text = (f"pull access denied for {repo}, repository does not exist or may require authorization "
                f"({answer}){login}")
        return ImageNotFound(text) if resp.status == 404 else RegistryError(text)

    def blob(self, digest: str) -> Response:
        resp = self.request("GET", f"/v2/{self.repo}/blobs/{digest}")
        if resp.status != 200:
            raise self._fail(resp, f"downloading {digest[:19]} of {self.repo}")
        return resp

    def blob_exists(self, digest: str) -> bool:
        resp = self.request("HEAD", f"/v2/{self.repo}/blobs/{digest}")
        resp.close()
        if resp.status in (200, 404):
            return resp.status == 200
        raise self._fail(resp, f"checking for blob {digest[:19]} in {self.repo}")

    def upload_blob(self, digest: str, f: IO[bytes], size: int) -> None:
        """Monolithic upload: POST opens a session, one PUT with the whole blob and its digest closes it."""
        resp = self.request("POST", f"/v2/{self.repo}/blobs/uploads/", {"Content-Length": "0"}, b"")
        if resp.status != 202 or not resp.headers.get("Location"):
            raise self._fail(resp, f"starting an upload to {self.repo}")
        resp.close()
        location = http.join_url(f"{self.endpoint}/v2/", resp.headers["Location"])
        location += ("&" if "?" in location else "?") + http.urlencode([("digest", digest)])
        resp = self.request("PUT", "", {"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                            f, url=location)
        if resp.status != 201:
            raise self._fail(resp, f"uploading {digest[:19]} to {self.repo}")
        resp.close()

    def put_manifest(self, reference: str, data: bytes, media_type: str) -> str | None:
        resp = self.request("PUT", f"/v2/{self.repo}/manifests/{reference}",
                            {"Content-Type": media_type, "Content-Length": str(len(data))}, data)
        if resp.status not in (200, 201):
            raise self._fail(resp, f"publishing the manifest of {self.repo}:{reference}")
        resp.close()
        return resp.headers.get("Docker-Content-Digest")

    def ping_endpoints(self) -> int:
        """GET /v2/ (authenticating if challenged) on each endpoint until one answers; its status."""
        reasons: list[str] = []
        for i, endpoint in enumerate(self.endpoints):
            self._use(endpoint)
            try:
                resp = self.request("GET", "/v2/")
            except _Unreachable as e:
                reasons += e.reasons
                if i + 1 < len(self.endpoints):
                    continue
                raise _Unreachable(self.domain, "", reasons=reasons) from None
            resp.close()
            return resp.status
        raise RegistryError(f"no endpoint for registry {self.domain}")  # pragma: no cover

    def ping(self) -> None:
        """What `login` uses to check credentials before storing them."""
        status = self.ping_endpoints()
        if status in (401, 403):
            raise RegistryError(f"registry {self.domain} refused the login; check user name and password")
        if status != 200:
            raise RegistryError(f"registry {self.domain} answered HTTP {status} to the login check")


class _Pool:
    """Idle kept-alive connections by (scheme, host:port, verify); shared by the download threads."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, str, bool], list[socket.socket]] = {}
        self._lock = threading.Lock()

    def take(self, key: tuple[str, str, bool]) -> socket.socket | None:
        with self._lock:
            idle = self._idle.get(key)
            return idle.pop() if idle else None

    def give(self, key: tuple[str, str, bool], sock: socket.socket) -> None:
        with self._lock:
            self._idle.setdefault(key, []).append(sock)

    def close(self) -> None:
        with self._lock:
            for idle in self._idle.values():
                for sock in idle:
                    sock.close()
            self._idle.clear()


Proxy = tuple[str, int, "str | None"]  # host, port, Proxy-Authorization header value


def proxy_for(scheme: str, host: str, port: int, environ: Mapping[str, str] | None = None) -> Proxy | None:
    """The proxy for scheme://host:port from the environment, by the rules of Go's net/http (Docker's)."""
    env = os.environ if environ is None else environ
    name = "HTTPS_PROXY" if scheme == "https" else "HTTP_PROXY"
    value = env.get(name) or env.get(name.lower()) or ""
    if not value or _is_loopback(host.lower()):
        return None
    if no_proxy_matches(env.get("NO_PROXY") or env.get("no_proxy") or "", host, port):
        return None
    return parse_proxy(value, name)


def parse_proxy(value: str, name: str = "HTTPS_PROXY") -> Proxy:
    """`http://user:pass@host:port` (scheme optional, as Go takes it) -> (host, port, auth header)."""
    url = value.strip() if "://" in value else "http://" + value.strip()
    scheme, _, rest = url.partition("://")
    netloc = rest.split("/", 1)[0]
    userinfo, at, hostport = netloc.rpartition("@")
    if scheme.lower() != "http" or not hostport:
        raise RegistryError(f"{name}={value!r}: pycontain supports http:// proxies (CONNECT for https)")
    host, port = http.host_port(hostport, "http")
    auth = None
    if at:
        import base64

        user, _, password = userinfo.partition(":")
        pair = f"{_unquote(user)}:{_unquote(password)}".encode()
        auth = "Basic " + base64.b64encode(pair).decode()
    return host, port, auth


def _unquote(text: str) -> str:
    """Percent-decoding of a URL's user info (by hand: urllib.parse costs milliseconds to import)."""
    parts = text.encode().split(b"%")
    out = bytearray(parts[0])
    for part in parts[1:]:
        try:
            out += bytes([int(part[:2], 16)]) + part[2:] if len(part) >= 2 else b"%" + part
        except ValueError:
            out += b"%" + part
    return out.decode("utf-8", "replace")


def no_proxy_matches(no_proxy: str, host: str, port: int) -> bool:
    """NO_PROXY as Go reads it: `*`; IPs and CIDRs; `example.com` (and its subdomains); `.example.com`
    and `*.example.com` (subdomains only); any entry may carry `:port`."""
    host = host.lower().strip("[]")
    for entry in no_proxy.lower().split(","):
        entry = entry.strip()
        if not entry:
            continue
        if entry == "*":
            return True
        if "/" in entry:
            import ipaddress

            try:
                if ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        want_port = 0
        if entry.startswith("["):
            name, _, rest = entry[1:].partition("]")
            want_port = int(rest[1:]) if rest[1:].isdigit() else 0
        elif entry.count(":") == 1:
            name, _, p = entry.partition(":")
            want_port = int(p) if p.isdigit() else 0
        else:
            name = entry
        if want_port and want_port != port:
            continue
        if name.startswith("*."):
            name = name[1:]
        if name.startswith("."):
            if host.endswith(name):
                return True
        elif host == name or host.endswith("." + name):
            return True
    return False


def _dial(host: str, port: int) -> socket.socket:
    # An ASCII host as bytes: a str makes getaddrinfo load the idna codec (~3 ms) just to encode it.
    address: Any = (host.encode() if host.isascii() else host, port)
    return socket.create_connection(address, timeout=TIMEOUT)


def _raw_connection(scheme: str, host: str, port: int, proxy: Proxy | None) -> socket.socket:
    """A TCP connection to host:port: direct, or (https) a CONNECT tunnel, or (http) to the proxy itself."""
    if proxy is None:
        return _dial(host, port)
    try:
        sock = _dial(proxy[0], proxy[1])
    except OSError as e:
        raise OSError(e.errno, f"proxy {proxy[0]}:{proxy[1]}: {e.strerror or e}") from None
    if scheme != "https":
        return sock
    try:
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        head = [f"CONNECT {target} HTTP/1.1", f"Host: {target}", f"User-Agent: {USER_AGENT}"]
        if proxy[2]:
            head.append(f"Proxy-Authorization: {proxy[2]}")
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        answer = http.Response(sock, "HEAD")  # a CONNECT answer has no body; HEAD reads none
        answer.file.close()  # the tunnel is the socket itself now
        if not 200 <= answer.status < 300:
            hint = " (the proxy wants a login: put user:password@ in the proxy URL)" if answer.status == 407 else ""
            raise OSError(None, f"proxy {proxy[0]}:{proxy[1]} answered CONNECT {target} with HTTP "
                                f"{answer.status}{hint}")
    except BaseException:
        sock.close()
        raise
    return sock


def _connect(scheme: str, host: str, port: int, verify: bool, proxy: Proxy | None) -> socket.socket:
    sock = _raw_connection(scheme, host, port, proxy)
    if scheme != "https":
        return sock
    try:
        return http.tls_context(sock, host, verify)
    except BaseException:
        sock.close()
        raise


def _answers_plain_http(host: str, port: int, netloc: str) -> bool:
    """Does host:port (by the route an https request takes) answer a plain-HTTP request?"""
    try:
        sock = _raw_connection("https", host, port, proxy_for("https", host, port))
    except (OSError, RegistryError):
        return False
    with sock:
        try:
            sock.sendall(f"GET /v2/ HTTP/1.1\r\nHost: {netloc}\r\nConnection: close\r\n\r\n".encode("latin-1"))
            data = b""
            while len(data) < 5 and (chunk := sock.recv(5 - len(data))):
                data += chunk
        except OSError:
            return False
    return data == b"HTTP/"


def _error_detail(body: bytes) -> str:
    """`CODE: message; ...` from the registry's JSON error body (untrusted: one line, bounded)."""
    try:
        errors = jsonfast.loads(body).get("errors") or []
        text = "; ".join(f"{e.get('code', '')}: {e.get('message', '')}" for e in errors if isinstance(e, dict))
    except (ValueError, AttributeError, TypeError):
        return ""
    text = " ".join(text.split())
    return text[:300] + "..." if len(text) > 300 else text


class _Unreachable(RegistryError):
    """No answer from an endpoint (refused, timed out, name lookup or TLS handshake failed)."""

    def __init__(self, domain: str, url: str, cause: BaseException | None = None,
                 reasons: list[str] | None = None) -> None:
        self.domain = domain
        if cause is not None:
            scheme, netloc, _ = http.split_url(url)
            why = str(cause) or type(cause).__name__
            if isinstance(cause, OSError) and cause.strerror:
                why = cause.strerror
            if isinstance(cause, socket.gaierror):
                why = f"name lookup failed ({cause.strerror})"
            reasons = [f"{scheme}://{netloc}: {why}"]
        self.reasons = reasons or []
        super().__init__(
            f"cannot reach registry {domain} ({'; '.join(self.reasons)}); without network access bring the image "
            "in with `pycontain load -i FILE` or `pycontain import TARBALL NAME`, or use --registry-mirror URL")
