"""Registry credentials and the two auth schemes of the Distribution API: Basic and Bearer tokens.

A registry answers an unauthenticated request with 401 and a `WWW-Authenticate` challenge:

    Basic realm="..."                                   send `Authorization: Basic base64(user:pass)`
    Bearer realm="https://auth/token",service="reg",scope="repository:library/alpine:pull"
                                                        GET realm?service=..&scope=.. (with Basic creds if
                                                        we have them), then send `Authorization: Bearer TOKEN`

This is the flow Docker Hub uses for anonymous pulls too: the token service hands out pull-only tokens
without credentials.

Credentials come from `pycontain login` (kept in `<storage>/auth.json`, mode 0600, root-only, in the
same `{"auths": {host: {"auth": base64}}}` shape Docker uses) and then from the Docker CLI's
`~/.docker/config.json` (or `$DOCKER_CONFIG/config.json`), so a `docker login` already done works.
"""

from __future__ import annotations

import base64
import os

from pycontain import jsonfast
from pycontain.errors import RegistryError, UsageError
from pycontain.state import Paths

# The Docker CLI stores Docker Hub credentials under its v1 index URL, for historical reasons.
DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")


def auth_file(paths: Paths) -> str:
    return f"{paths.storage}/auth.json"


def _keys_for(domain: str) -> tuple[str, ...]:
    if domain == "docker.io":
        return DOCKER_HUB_KEYS
    return (domain, f"https://{domain}", f"http://{domain}", f"https://{domain}/v1/")


def _decode(entry: object) -> tuple[str, str] | None:
    if not isinstance(entry, dict):
        return None
    if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
        return entry["username"], entry["password"]
    encoded = entry.get("auth")
    if not isinstance(encoded, str) or not encoded:
        return None
    try:
        user, sep, password = base64.b64decode(encoded).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def read_json_config(path: str, what: str) -> object:
    """A JSON settings file: {} when it does not exist, a RegistryError naming it when it is unreadable."""
    try:
        with open(path, "rb") as f:
            return jsonfast.loads(f.read())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise RegistryError(f"cannot read {what} from {path}: {e}; fix or remove the file") from None


def _read_auths(path: str) -> dict[str, object]:
    data = read_json_config(path, "registry credentials")
    auths = data.get("auths") if isinstance(data, dict) else None
    return auths if isinstance(auths, dict) else {}


def docker_config_path() -> str:
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def credentials(paths: Paths, domain: str) -> tuple[str, str] | None:
    """(user, password) for a registry: pycontain's own login first, then the Docker CLI's config."""
    for path in (auth_file(paths), docker_config_path()):
        auths = _read_auths(path)
        for key in _keys_for(domain):
            found = _decode(auths.get(key))
            if found:
                return found
    return None


def store_credentials(paths: Paths, domain: str, user: str, password: str | None) -> None:
    """Save (or with password None, forget) a registry login; the file is root-only (0600)."""
    from pycontain.state import atomic_write_json

    os.makedirs(paths.storage, mode=0o700, exist_ok=True)
    path = auth_file(paths)
    auths = dict(_read_auths(path))
    key = DOCKER_HUB_KEYS[0] if domain == "docker.io" else domain
    if password is None:
        if auths.pop(key, None) is None:
            raise UsageError(f"not logged in to {domain}")
    else:
        auths[key] = {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
    # A new 0600 file (O_EXCL|O_NOFOLLOW temp, renamed over the old one): no chmod by name afterwards,
    # which would follow a symlink put in the file's place.
    atomic_write_json(path, {"auths": auths})


def basic_header(creds: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="x",service="y",scope="a b"` -> ("bearer", {...}). Quoted values may hold commas."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " ,":
            i += 1
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip().lower()
        i = eq + 1
        if i < n and rest[i] == '"':
            i += 1
            value = []
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(rest[i])
                i += 1
            i += 1
            params[key] = "".join(value)
        else:
            end = rest.find(",", i)
            end = n if end < 0 else end
            params[key] = rest[i:end].strip()
            i = end
    return scheme.lower(), params
