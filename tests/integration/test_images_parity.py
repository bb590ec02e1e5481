"""Image and registry behaviour a Docker user expects (issue 13): what `run` says about pulls, registry
errors in Docker's words, OCI archives for `load`, kept-alive connections and proxies, the built-in image.

Registries are Debian's docker-registry on 127.0.0.1 (images_support.py); proxies and plain servers
here listen on 127.0.0.1 too. Nothing leaves the loopback interface.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from images_support import REGISTRY_BIN, LocalRegistry, free_port, skopeo
from support import ALPINE_TARBALL, Pycontain, assert_pycontain_error, describe

pytest_plugins = ("images_support",)

REPO = Path(__file__).resolve().parents[2]


def alpine(reg: LocalRegistry) -> str:
    return f"{reg.host}/library/alpine:3.20"


# ---------------------------------------------------------------- run and its pulls

def test_run_pull_always_of_a_present_image_does_not_say_it_is_missing(
        pcr: Pycontain, registry: LocalRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    pcr.ok("pull", alpine(registry))
    monkeypatch.delenv("PYCONTAIN_PULL", raising=False)
    res = pcr.ok("run", "--rm", "--pull", "always", alpine(registry), "cat", "/etc/alpine-release")
    assert res.stdout == "3.20.3\n"
    assert "Unable to find image" not in res.stderr, describe(res)
    assert "Image is up to date" in res.stderr, describe(res)


def test_run_of_a_misspelt_image_says_not_found_locally_then_the_registry_answer(
        pcr: Pycontain, registry: LocalRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYCONTAIN_PULL", raising=False)
    res = pcr("run", "--rm", f"{registry.host}/library/alpnie", "true")
    assert_pycontain_error(res, after_progress=True)
    lines = res.stderr.strip().splitlines()
    assert lines[0] == f"Unable to find image '{registry.host}/library/alpnie:latest' locally", describe(res)
    assert len(lines) == 2, describe(res)
    # Docker's words for what this registry answers (distribution says MANIFEST_UNKNOWN for a missing
    # repository, Docker Hub 401), with the registry's own code.
    assert "not found" in lines[1] or "pull access denied" in lines[1], describe(res)
    assert "_UNKNOWN" in lines[1], describe(res)

    res = pcr("run", "--rm", f"{registry.host}/library/alpine:9.99", "true")
    assert_pycontain_error(res, after_progress=True)
    lines = res.stderr.strip().splitlines()
    assert lines[0] == f"Unable to find image '{registry.host}/library/alpine:9.99' locally", describe(res)
    assert len(lines) == 2 and "not found" in lines[1] and "MANIFEST_UNKNOWN" in lines[1], describe(res)


def test_pull_of_a_misspelt_image_is_still_one_line(pcr: Pycontain, registry: LocalRegistry) -> None:
    res = pcr("pull", f"{registry.host}/library/alpnie")
    assert_pycontain_error(res)
    assert "_UNKNOWN" in res.stderr


# ---------------------------------------------------------------- proxies, kept-alive connections, plain HTTP

class CountingProxy:
    """An HTTP proxy on 127.0.0.1 that counts what it is asked: CONNECT tunnels and forwarded requests.

    It knows only the names in `routes` ("name:port" -> a 127.0.0.1 port), so a registry can have a
    non-loopback name (pycontain never proxies loopback, as Docker) while every byte stays on loopback.
    Forwarded (absolute-form) requests are piped as they are: the Go registry accepts that form.
    """

    def __init__(self, routes: dict[str, int]) -> None:
        self.routes = routes
        self.connects: list[str] = []
        self.forwards: list[str] = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            method, target = data.split(b" ", 2)[:2]
            name = target.decode() if method == b"CONNECT" else target.decode().split("/")[2]
            (self.connects if method == b"CONNECT" else self.forwards).append(name)
            port = self.routes.get(name)
            if port is None:
                conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            with socket.create_connection(("127.0.0.1", port)) as up:
                if method == b"CONNECT":
                    conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                else:
                    up.sendall(data)
                t = threading.Thread(target=self._pipe, args=(up, conn), daemon=True)
                t.start()
                self._pipe(conn, up)
                t.join(30)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory, registry: LocalRegistry) -> Iterator[str]:
    """A docker-registry speaking HTTPS (self-signed) on 127.0.0.1 with library/alpine:3.20; its host:port."""
    work = tmp_path_factory.mktemp("registry-tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(work / "key.pem"),
                    "-out", str(work / "cert.pem"), "-days", "2", "-subj", "/CN=registry.test"],
                   check=True, capture_output=True, timeout=60)
    port = free_port()
    (work / "config.yml").write_text("\n".join([
        "version: 0.1", "log:", "  level: error", "  accesslog:", "    disabled: true",
        "storage:", "  filesystem:", f"    rootdirectory: {work / 'storage'}",
        "http:", f"  addr: 127.0.0.1:{port}", "  tls:", f"    certificate: {work / 'cert.pem'}",
        f"    key: {work / 'key.pem'}"]) + "\n")
    log = open(work / "registry.log", "wb")
    proc = subprocess.Popen([REGISTRY_BIN, "serve", str(work / "config.yml")], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    try:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s, \
                        ctx.wrap_socket(s, server_hostname="registry.test"):
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (work / "registry.log").read_text()
                time.sleep(0.05)
        skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false",
               f"docker://{registry.host}/library/alpine:3.20", f"docker://127.0.0.1:{port}/library/alpine:3.20")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    yield


def _use_proxy(monkeypatch: pytest.MonkeyPatch, proxy: CountingProxy) -> None:
    # Both: nothing with a made-up name may ever reach a name lookup of its own.
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("http_proxy", proxy.url)


def test_https_pull_goes_through_the_proxy_on_one_kept_alive_connection(
        pcr: Pycontain, tls_registry: str, proxy_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "registry.test:5443"
    proxy = CountingProxy({name: int(tls_registry.rsplit(":", 1)[1])})
    try:
        _use_proxy(monkeypatch, proxy)
        res = pcr.ok("pull", "--insecure-registry", name, f"{name}/library/alpine:3.20")
        assert "Downloaded newer image" in res.stderr, describe(res)
        # manifest, config and layer: three requests, one tunnel (each used to pay its own handshake).
        assert proxy.connects == [name], proxy.connects
        assert proxy.forwards == []
        assert pcr.ok("run", "--rm", f"{name}/library/alpine:3.20", "cat", "/etc/alpine-release").stdout == "3.20.3\n"

        # Loopback is never proxied (as in Docker); NO_PROXY's matching is in tests/unit, since an
        # unproxied made-up name would be looked up in DNS.
        before = len(proxy.connects)
        res = pcr("pull", "--insecure-registry", "127.0.0.1:1", "127.0.0.1:1/library/alpine:3.20")
        assert_pycontain_error(res)
        assert len(proxy.connects) == before  # loopback is never proxied
    finally:
        proxy.close()


def test_plain_http_registry_without_insecure_registry_names_the_flag(
        pcr: Pycontain, registry: LocalRegistry, proxy_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "plain.test:5000"
    proxy = CountingProxy({name: registry.port})
    try:
        _use_proxy(monkeypatch, proxy)
        res = pcr("pull", f"{name}/library/alpine:3.20")
        assert_pycontain_error(res)
        assert "plain HTTP" in res.stderr and f"--insecure-registry {name}" in res.stderr, describe(res)
        # With the flag: https fails, then plain HTTP through the proxy (absolute-form), kept alive.
        res = pcr.ok("pull", "--insecure-registry", name, f"{name}/library/alpine:3.20")
        assert "Downloaded newer image" in res.stderr, describe(res)
        assert proxy.forwards == [name], proxy.forwards
    finally:
        proxy.close()


# ---------------------------------------------------------------- load of OCI archives

@pytest.fixture
def saved_alpine(pcr: Pycontain, tmp_path: Path) -> tuple[Path, str]:
    """alpine:3.20 imported and saved by pycontain: (the docker-archive, the image id)."""
    image_id = pcr.ok("import", ALPINE_TARBALL, "alpine:3.20").stdout.strip()
    pcr.ok("save", "-o", tmp_path / "alpine.tar", "alpine:3.20")
    pcr.ok("rmi", "alpine:3.20")
    return tmp_path / "alpine.tar", image_id


def oci_image_id(oci: Path) -> str:
    """The config digest an OCI archive's (first) manifest names: the id the loaded image must get."""
    with tarfile.open(oci) as tf:
        def read(name: str) -> bytes:
            f = tf.extractfile(name)
            assert f is not None
            return f.read()

        index = json.loads(read("index.json"))
        manifest = json.loads(read("blobs/sha256/" + index["manifests"][0]["digest"][7:]))
    return str(manifest["config"]["digest"])


def test_load_reads_an_oci_archive_with_its_name(pcr: Pycontain, saved_alpine: tuple[Path, str],
                                                 tmp_path: Path) -> None:
    archive, _ = saved_alpine
    oci = tmp_path / "alpine-oci.tar"
    skopeo("copy", f"docker-archive:{archive}", f"oci-archive:{oci}:alpine:3.20")
    image_id = oci_image_id(oci)  # skopeo rewrites the config, so not pycontain's id
    res = pcr.ok("load", "-i", oci)
    assert res.stdout == "Loaded image: alpine:3.20\n", describe(res)
    assert pcr.ok("images", "-q", "--no-trunc", "alpine:3.20").stdout.strip() == image_id
    assert pcr.ok("run", "--rm", "alpine:3.20", "cat", "/etc/alpine-release").stdout == "3.20.3\n"


def test_load_of_an_unnamed_oci_archive_prints_the_id(pcr: Pycontain, saved_alpine: tuple[Path, str],
                                                      tmp_path: Path) -> None:
    archive, _ = saved_alpine
    oci = tmp_path / "anonymous-oci.tar"
    skopeo("copy", f"docker-archive:{archive}", f"oci-archive:{oci}")
    image_id = oci_image_id(oci)
    res = pcr.ok("load", "-i", oci)
    assert image_id in res.stdout, describe(res)
    assert pcr.ok("run", "--rm", image_id[7:19], "cat", "/etc/alpine-release").stdout == "3.20.3\n"


def test_load_of_an_oci_archive_with_a_changed_blob_is_refused(pcr: Pycontain, saved_alpine: tuple[Path, str],
                                                               tmp_path: Path) -> None:
    archive, _ = saved_alpine
    oci = tmp_path / "oci.tar"
    skopeo("copy", f"docker-archive:{archive}", f"oci-archive:{oci}:alpine:3.20")
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    with tarfile.open(oci) as tf:
        tf.extractall(unpacked)  # noqa: S202 - skopeo made this archive in this test
    index = json.loads((unpacked / "index.json").read_text())
    manifest = json.loads((unpacked / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_bytes())
    config = unpacked / "blobs/sha256" / manifest["config"]["digest"][7:]
    config.write_bytes(config.read_bytes().replace(b'"linux"', b'"Linux"'))
    damaged = tmp_path / "damaged.tar"
    with tarfile.open(damaged, "w") as tf:
        for name in ("oci-layout", "index.json", "blobs"):
            tf.add(unpacked / name, name)
    res = pcr("load", "-i", damaged)
    assert_pycontain_error(res)
    assert "does not match its digest" in res.stderr, describe(res)
    assert "alpine" not in pcr.ok("images").stdout


# ---------------------------------------------------------------- the built-in image

def test_reinstalling_the_builtin_image_leaves_no_dangling_image(pcr: Pycontain, tmp_path: Path) -> None:
    ids = []
    for n in (1, 2):
        out = tmp_path / f"busybox-{n}.tar"
        subprocess.run([sys.executable, str(REPO / "rootfs/build.py"), "--docker-archive", str(out)], check=True,
                       capture_output=True, timeout=120)
        assert pcr.ok("load", "-i", out).stdout == "Loaded image: busybox:latest\n"
        ids.append(pcr.ok("images", "-q", "--no-trunc", "busybox").stdout.strip())
    assert ids[0] == ids[1]
    assert "<none>" not in pcr.ok("images").stdout
    assert pcr.ok("run", "--rm", "busybox", "echo", "hi").stdout == "hi\n"
