"""HTTPS_PROXY / HTTP_PROXY / NO_PROXY as Docker's Go client reads them (pycontain.images.registry)."""

from __future__ import annotations

import pytest

from pycontain.errors import RegistryError
from pycontain.images.registry import no_proxy_matches, parse_proxy, proxy_for


@pytest.mark.parametrize(("no_proxy", "host", "port", "hit"), [
    ("*", "anything.example", 443, True),
    ("example.com", "example.com", 443, True),
    ("example.com", "reg.example.com", 443, True),
    ("example.com", "notexample.com", 443, False),
    (".example.com", "example.com", 443, False),
    (".example.com", "reg.example.com", 443, True),
    ("*.example.com", "reg.example.com", 443, True),
    ("reg.example.com:5000", "reg.example.com", 5000, True),
    ("reg.example.com:5000", "reg.example.com", 443, False),
    ("10.0.0.0/8", "10.1.2.3", 443, True),
    ("10.0.0.0/8", "11.1.2.3", 443, False),
    ("192.0.2.7", "192.0.2.7", 443, True),
    (" a.example , B.Example ", "b.example", 443, True),
    ("", "example.com", 443, False),
])
def test_no_proxy_matching(no_proxy: str, host: str, port: int, hit: bool) -> None:
    assert no_proxy_matches(no_proxy, host, port) is hit


def test_scheme_picks_the_variable_upper_case_first() -> None:
    env = {"HTTPS_PROXY": "http://upper:3128", "https_proxy": "http://lower:3128", "http_proxy": "plain:8080"}
    assert proxy_for("https", "reg.example", 443, env) == ("upper", 3128, None)
    assert proxy_for("http", "reg.example", 80, env) == ("plain", 8080, None)
    assert proxy_for("https", "reg.example", 443, {"https_proxy": "lower:3128"}) == ("lower", 3128, None)


def test_loopback_and_no_proxy_go_direct() -> None:
    env = {"HTTPS_PROXY": "proxy:3128", "NO_PROXY": ".internal"}
    for host in ("localhost", "127.0.0.1", "127.3.2.1", "::1", "reg.internal"):
        assert proxy_for("https", host, 443, env) is None
    assert proxy_for("https", "reg.example", 443, env) == ("proxy", 3128, None)
    assert proxy_for("https", "reg.example", 443, {}) is None


def test_proxy_credentials_and_bad_schemes() -> None:
    host, port, auth = parse_proxy("http://al%40ice:pw@proxy.example:8080/")
    assert (host, port) == ("proxy.example", 8080)
    import base64

    assert auth is not None and base64.b64decode(auth.split()[1]) == b"al@ice:pw"
    assert parse_proxy("proxy.example")[:2] == ("proxy.example", 80)
    with pytest.raises(RegistryError, match="http:// proxies"):
        parse_proxy("socks5://proxy.example:1080")
