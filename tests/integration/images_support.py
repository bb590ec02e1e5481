"""Real registries for the image tests: Debian's `docker-registry` on 127.0.0.1, filled with skopeo.

    LocalRegistry      one registry process: a random free port, a temp config and storage dir,
                       optional htpasswd (Basic) or token auth; stopped at teardown
    TokenIssuer        a tiny token service on 127.0.0.1 for the registry's `auth: token` mode: it checks
                       Basic credentials and signs RS256 JWTs with a throwaway key (openssl), whose
                       self-signed certificate is the registry's rootcertbundle
    fixtures           registry (anonymous, with alpine:3.20 gzip, alpine:zstd and a manifest list),
                       htpasswd_registry, token_registry, fresh_registry (per test, for damage), pcr

All traffic stays on the loopback interface. Nothing here uses pycontain's own registry code: what
fills and checks the registries is skopeo and the standard library.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import http.server
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import ALPINE_TARBALL, COMMAND_TIMEOUT, Pycontain

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
USER, PASSWORD = "alice", "s3cret-pw"
SERVICE, ISSUER = "pycontain-test-registry", "pycontain-test-issuer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def skopeo(*args: str) -> str:
    res = subprocess.run([SKOPEO, *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT * 2)
    assert res.returncode == 0, f"skopeo {' '.join(args)} failed:\n{res.stderr}"
    return res.stdout


class TokenIssuer:
    """GET /token?service=..&scope=repository:NAME:ACTIONS with Basic auth -> {"token": JWT}."""

    def __init__(self, workdir: Path) -> None:
        self.key, self.cert = workdir / "issuer.key", workdir / "issuer.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key),
                        "-out", str(self.cert), "-days", "2", "-subj", f"/CN={ISSUER}"],
                       check=True, capture_output=True, timeout=COMMAND_TIMEOUT)
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"], check=True,
                             capture_output=True, timeout=COMMAND_TIMEOUT).stdout
        self.x5c = base64.b64encode(der).decode()
        self.requests: list[str] = []
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                issuer.requests.append(self.path)
                expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                from urllib.parse import parse_qs, urlsplit

                query = parse_qs(urlsplit(self.path).query)
                access = []
                for scope in query.get("scope", []):
                    kind, _, rest = scope.partition(":")
                    name, _, actions = rest.rpartition(":")
                    access.append({"type": kind, "name": name, "actions": actions.split(",")})
                body = json.dumps({"token": issuer.sign(query.get("service", [""])[0], access)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def sign(self, audience: str, access: list[dict[str, Any]]) -> str:
        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {"iss": ISSUER, "sub": USER, "aud": audience, "exp": now + 600, "nbf": now - 60, "iat": now,
                  "jti": uuid.uuid4().hex, "access": access}
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)], input=signing_input.encode(),
                             check=True, capture_output=True, timeout=COMMAND_TIMEOUT).stdout
        return f"{signing_input}.{b64(sig)}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class LocalRegistry:
    def __init__(self, workdir: Path, auth: str | None = None) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.storage = workdir / "storage"
        self.issuer: TokenIssuer | None = None
        config = [
            "version: 0.1",
            "log:", "  level: error", "  accesslog:", "    disabled: true",
            "storage:", "  filesystem:", f"    rootdirectory: {self.storage}", "  delete:", "    enabled: true",
            "http:", f"  addr: {self.host}",
        ]
        if auth == "htpasswd":
            hashed = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], check=True, capture_output=True,
                                    text=True, timeout=COMMAND_TIMEOUT).stdout
            (workdir / "htpasswd").write_text(hashed)
            config += ["auth:", "  htpasswd:", "    realm: pycontain-test", f"    path: {workdir / 'htpasswd'}"]
        elif auth == "token":
            self.issuer = TokenIssuer(workdir)
            config += ["auth:", "  token:", f"    realm: {self.issuer.realm}", f"    service: {SERVICE}",
                       f"    issuer: {ISSUER}", f"    rootcertbundle: {self.issuer.cert}"]
        (workdir / "config.yml").write_text("\n".join(config) + "\n")
        self.log = open(workdir / "registry.log", "wb")
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(workdir / "config.yml")], stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                conn = http.client.HTTPConnection(self.host, timeout=2)
                conn.request("GET", "/v2/")
                conn.getresponse().read()
                conn.close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError("docker-registry did not start: "
                                         + (workdir / "registry.log").read_text()[-2000:])
                time.sleep(0.05)

    def creds_args(self, flag: str) -> list[str]:
        return [flag, f"{USER}:{PASSWORD}"] if self.issuer or (self.workdir / "htpasswd").exists() else []

    def push_tarball(self, repo_tag: str, *extra: str) -> None:
        skopeo("copy", "--dest-tls-verify=false", *self.creds_args("--dest-creds"), *extra,
               f"tarball:{ALPINE_TARBALL}", f"docker://{self.host}/{repo_tag}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if self.issuer:
            self.issuer.stop()

    # -- the raw API, for what skopeo cannot make (a hand-made manifest list) --
    def _request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
                 ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, timeout=COMMAND_TIMEOUT)
        conn.request(method, path, body=body or None, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, dict(resp.headers), data

    def put_blob(self, repo: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        status, headers, _ = self._request("POST", f"/v2/{repo}/blobs/uploads/")
        assert status == 202, status
        location = headers["Location"]
        location += ("&" if "?" in location else "?") + f"digest={digest}"
        if location.startswith("http"):
            location = "/" + location.split("/", 3)[3]
        status, _, body = self._request("PUT", location, data, {"Content-Type": "application/octet-stream"})
        assert status == 201, (status, body)
        return digest

    def put_manifest(self, repo: str, tag: str, doc: dict[str, Any]) -> tuple[str, int]:
        data = json.dumps(doc).encode()
        status, _, body = self._request("PUT", f"/v2/{repo}/manifests/{tag}", data,
                                        {"Content-Type": doc["mediaType"]})
        assert status == 201, (status, body)
        return "sha256:" + hashlib.sha256(data).hexdigest(), len(data)

    def get_manifest(self, repo: str, ref: str) -> bytes:
        status, _, body = self._request("GET", f"/v2/{repo}/manifests/{ref}", headers={
            "Accept": "application/vnd.docker.distribution.manifest.v2+json, "
                      "application/vnd.oci.image.manifest.v1+json"})
        assert status == 200, (status, body)
        return body

    def blob_file(self, digest: str) -> Path:
        hexd = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"


def tiny_layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A gzip layer with the given files; returns (gzip bytes, diff_id)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tf.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0), "sha256:" + hashlib.sha256(raw).hexdigest()


def push_manifest_list(reg: LocalRegistry, repo: str, tag: str, media_type: str) -> None:
    """repo:tag -> a list of linux/amd64 (the alpine image) and linux/arm64/v8 (a tiny marker image)."""
    skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false",
           f"docker://{reg.host}/library/alpine:3.20", f"docker://{reg.host}/{repo}:amd64")
    amd64 = reg.get_manifest(repo, "amd64")
    layer, diff_id = tiny_layer({"etc/platform": b"arm64\n"})
    layer_digest = reg.put_blob(repo, layer)
    config = json.dumps({"architecture": "arm64", "variant": "v8", "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    config_digest = reg.put_blob(repo, config)
    arm64_digest, arm64_size = reg.put_manifest(repo, "arm64", {
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                   "digest": config_digest},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(layer),
                    "digest": layer_digest}]})
    child_type = "application/vnd.docker.distribution.manifest.v2+json"
    amd64_type = json.loads(amd64).get("mediaType", "application/vnd.oci.image.manifest.v1+json")
    reg.put_manifest(repo, tag, {
        "schemaVersion": 2, "mediaType": media_type,
        "manifests": [
            {"mediaType": amd64_type, "size": len(amd64), "digest": "sha256:" + hashlib.sha256(amd64).hexdigest(),
             "platform": {"architecture": "arm64", "os": "unknown"}},  # an attestation-like entry, skipped
            {"mediaType": child_type, "size": arm64_size, "digest": arm64_digest,
             "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
            {"mediaType": amd64_type, "size": len(amd64), "digest": "sha256:" + hashlib.sha256(amd64).hexdigest(),
             "platform": {"architecture": "amd64", "os": "linux"}},
        ]})


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """An anonymous registry with library/alpine:3.20 (gzip), :zstd, and library/multi:{oci,docker} lists."""
    reg = LocalRegistry(tmp_path_factory.mktemp("registry"))
    try:
        reg.push_tarball("library/alpine:3.20")
        skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--dest-compress-format", "zstd",
               "--dest-compress", f"docker://{reg.host}/library/alpine:3.20", f"docker://{reg.host}/zstd/alpine:3.20")
        push_manifest_list(reg, "library/multi", "oci", "application/vnd.oci.image.index.v1+json")
        push_manifest_list(reg, "library/multi", "docker",
                           "application/vnd.docker.distribution.manifest.list.v2+json")
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def htpasswd_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    reg = LocalRegistry(tmp_path_factory.mktemp("registry-htpasswd"), auth="htpasswd")
    try:
        reg.push_tarball("private/alpine:3.20")
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    reg = LocalRegistry(tmp_path_factory.mktemp("registry-token"), auth="token")
    try:
        reg.push_tarball("team/alpine:3.20")
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def fresh_registry(tmp_path: Path) -> Iterator[LocalRegistry]:
    """A registry of this test's own (for tests that damage or fill it)."""
    reg = LocalRegistry(tmp_path / "registry-own")
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def pcr(tmp_path: Path) -> Iterator[Pycontain]:
    """pycontain with this test's own empty state root (no image imported) and no auto-pull surprises:
    HOME/DOCKER_CONFIG point into the test dir so a real ~/.docker/config.json is never read."""
    (tmp_path / "home").mkdir()
    old = {k: os.environ.get(k) for k in ("DOCKER_CONFIG", "PYCONTAIN_REGISTRIES_CONFIG")}
    os.environ["DOCKER_CONFIG"] = str(tmp_path / "home" / ".docker")
    os.environ["PYCONTAIN_REGISTRIES_CONFIG"] = str(tmp_path / "home" / "registries.json")
    p = Pycontain(tmp_path / "root")
    try:
        yield p
    finally:
        p.remove_all()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def store_files(root: Path) -> list[str]:
    """Every path in the image store (relative), for consistency checks."""
    images = root / "storage" / "images"
    return sorted(str(p.relative_to(images)) for p in images.rglob("*")) if images.exists() else []
