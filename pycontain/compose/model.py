"""The Compose file model: find the files, interpolate, validate, normalise, merge, order.

Every file is read as YAML nodes (not plain values) so an error can name the line a key is on. Each file is
interpolated, checked and brought to Compose's long forms on its own; the files are then merged in order
(the Compose specification's merge rules, see `_merge_service`) and the result checked as a whole
(references between services, networks and volumes). `normalized()` is what `compose config` prints.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any

from pycontain.errors import PycontainError

FILE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
OVERRIDE_NAMES = ("compose.override.yaml", "compose.override.yml",
                  "docker-compose.override.yaml", "docker-compose.override.yml")

# Service keys Compose defines that pycontain does not implement yet: refused by name, never ignored.
UNSUPPORTED_SERVICE_KEYS = frozenset({
    "annotations", "attach", "blkio_config", "cgroup", "cgroup_parent", "configs", "cpu_count", "cpu_percent",
    "cpu_rt_period", "cpu_rt_runtime", "credential_spec", "develop", "device_cgroup_rules", "domainname",
    "external_links", "gpus", "isolation", "links", "oom_score_adj", "post_start", "pre_stop", "provider",
    "secrets", "storage_opt", "userns_mode", "extends", "models", "use_api_socket",
})
UNSUPPORTED_TOP_KEYS = frozenset({"secrets", "configs", "include", "models"})
CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")
RESTART_POLICIES = re.compile(r"^(no|always|unless-stopped|on-failure(:\d+)?)$")

Path_ = tuple[str | int, ...]


class ComposeError(PycontainError):
    """A Compose file that cannot be used; the message names the file, the key path and the line."""


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(top level)"


class _Source:
    """One file's text as plain values, with the line of every mapping key and sequence item."""

    def __init__(self, name: str, lines: dict[Path_, int]) -> None:
        self.name = name
        self.lines = lines

    def fail(self, path: Path_, message: str) -> ComposeError:
        line = None
        for cut in range(len(path), -1, -1):  # the nearest enclosing key that has a line
            line = self.lines.get(path[:cut])
            if line is not None:
                break
        where = f"{self.name}:{line}" if line is not None else self.name
        return ComposeError(f"{where}: {_dotted(path)}: {message}")


def _from_nodes(node: Any, path: Path_, lines: dict[Path_, int], src: str, loader: Any) -> Any:
    import yaml  # type: ignore[import-untyped, unused-ignore]  # no stubs in the venv; fine if they arrive

    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for knode, vnode in node.value:
            if knode.tag == "tag:yaml.org,2002:merge":
                raise ComposeError(f"{src}:{knode.start_mark.line + 1}: {_dotted(path)}: "
                                   "YAML merge keys (<<) are not supported")
            key = knode.value if isinstance(knode, yaml.ScalarNode) else None
            if not isinstance(key, str):
                raise ComposeError(f"{src}:{knode.start_mark.line + 1}: {_dotted(path)}: a key must be a string")
            if key in out:
                raise ComposeError(f"{src}:{knode.start_mark.line + 1}: {_dotted((*path, key))}: duplicate key")
            lines[(*path, key)] = knode.start_mark.line + 1
            out[key] = _from_nodes(vnode, (*path, key), lines, src, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            items.append(_from_nodes(item, (*path, i), lines, src, loader))
        return items
    kind = node.tag.removeprefix("tag:yaml.org,2002:")
    if kind == "timestamp":
        return node.value  # Compose reads a date-like scalar as the text written
    if kind not in ("str", "int", "float", "bool", "null"):
        raise ComposeError(f"{src}:{node.start_mark.line + 1}: {_dotted(path)}: unsupported YAML tag {node.tag}")
    try:
        return loader.construct_object(node)
    except yaml.YAMLError as e:
        raise ComposeError(f"{src}:{node.start_mark.line + 1}: {_dotted(path)}: {getattr(e, 'problem', e)}") from None


def parse(text: str, name: str) -> tuple[Any, _Source]:
    """YAML text into plain values and the lines they were on."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ComposeError(f"{name}{line}: not valid YAML: {problem}") from None
    lines: dict[Path_, int] = {}
    if root is None:
        return {}, _Source(name, lines)
    lines[()] = root.start_mark.line + 1
    return _from_nodes(root, (), lines, name, yaml.SafeLoader("")), _Source(name, lines)


# ---------------------------------------------------------------------------------------- files and names


def find_files(directory: str | Path, files: list[str] | None = None) -> list[Path]:
    """The files to merge, in order: those given (-f), else the first of FILE_NAMES in `directory` and
    the matching override file (compose.override.yaml ...), as Compose does without -f."""
    base = Path(directory)
    if files:
        out = [(base / f) if not os.path.isabs(f) else Path(f) for f in files]
        for f in out:
            if not f.is_file():
                raise ComposeError(f"{f}: no such compose file")
        return out
    for name in FILE_NAMES:
        if (base / name).is_file():
            found = [base / name]
            for over in OVERRIDE_NAMES:
                if (base / over).is_file():
                    found.append(base / over)
                    break
            return found
    raise ComposeError(f"no compose file in {base} (looked for {', '.join(FILE_NAMES)})")


_NAME_OK = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def normalize_project_name(name: str) -> str:
    """A directory name as Compose turns it into a project name: lowercase, only [a-z0-9_-], and no
    leading '-' or '_'."""
    return re.sub(r"[^a-z0-9_-]", "", name.lower()).lstrip("_-")


def project_name(directory: str | Path, explicit: str | None, env: dict[str, str],
                 top_level: str | None) -> str:
    """-p, then COMPOSE_PROJECT_NAME, then the file's `name:`, then the directory. A name the user wrote is
    checked (Compose refuses it rather than rewriting it); only the directory's name is normalised."""
    for given, origin in ((explicit, "-p"), (env.get("COMPOSE_PROJECT_NAME") or None, "COMPOSE_PROJECT_NAME"),
                          (top_level, "name:")):
        if given:
            if not _NAME_OK.match(given):
                raise ComposeError(f"{origin}: invalid project name {given!r}: use lowercase letters, digits, "
                                   "'-' and '_', starting with a letter or digit")
            return given
    name = normalize_project_name(Path(directory).resolve().name)
    if not name:
        raise ComposeError(f"cannot make a project name from the directory {directory}: use -p NAME")
    return name


# ------------------------------------------------------------------------------------------ interpolation


def parse_env_file(text: str, name: str) -> dict[str, str]:
    """A .env file: KEY=VALUE lines, `export ` allowed, # comments, single quotes literal, double quotes
    with \\n \\t \\" \\\\ escapes, unquoted values cut at ' #'."""
    out: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.match(r"^[A-Za-z_][A-Za-z0-9_.-]*$", key):
            raise ComposeError(f"{name}:{n}: expected KEY=VALUE, got {raw.strip()!r}")
        value = value.strip()
        if value[:1] == "'" and value.rfind("'") > 0:
            value = value[1:value.rfind("'")]
        elif value[:1] == '"' and value.rfind('"') > 0:
            body = value[1:value.rfind('"')]
            value = re.sub(r'\\([nt"\\])', lambda m: {"n": "\n", "t": "\t"}.get(m[1], m[1]), body)
        else:
            value = re.split(r"\s+#", value, maxsplit=1)[0].rstrip()
        out[key] = value
    return out


def variables(directory: str | Path, env_files: list[str] | None = None,
              environ: dict[str, str] | None = None) -> dict[str, str]:
    """The interpolation variables: the project directory's .env (or the --env-file files, in order), with
    the process environment overriding them, as Compose does."""
    base = Path(directory)
    found: dict[str, str] = {}
    if env_files:
        paths = [(base / f) if not os.path.isabs(f) else Path(f) for f in env_files]
        for p in paths:
            if not p.is_file():
                raise ComposeError(f"{p}: no such env file")
    else:
        paths = [base / ".env"] if (base / ".env").is_file() else []
    for p in paths:
        found.update(parse_env_file(p.read_text(), str(p)))
    found.update(os.environ if environ is None else environ)
    return found


_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def interpolate(text: str, env: dict[str, str], where: str = "") -> str:
    """${VAR} $VAR ${VAR:-d} ${VAR-d} ${VAR:?e} ${VAR?e} ${VAR:+a} ${VAR+a}, $$ for a literal $; the
    default, error and alternative words are themselves interpolated (nesting works). `where` prefixes errors."""
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c != "$":
            out.append(c)
            i += 1
            continue
        if text.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        if text.startswith("${", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("$$", j):
                    j += 2
                    continue
                if text.startswith("${", j):
                    depth, j = depth + 1, j + 2
                    continue
                if text[j] == "}":
                    depth -= 1
                j += 1
            if depth:
                raise ComposeError(f"{where}invalid interpolation format: unclosed '${{' in {text!r}")
            out.append(_substitute(text[i + 2:j - 1], env, where))
            i = j
            continue
        m = _VAR.match(text, i + 1)
        if not m:
            raise ComposeError(f"{where}invalid interpolation format in {text!r}: use $$ for a literal $")
        out.append(env.get(m[0], ""))
        i = m.end()
    return "".join(out)


def _substitute(body: str, env: dict[str, str], where: str) -> str:
    m = _VAR.match(body)
    if not m:
        raise ComposeError(f"{where}invalid interpolation format: ${{{body}}}")
    name, rest = m[0], body[m.end():]
    value = env.get(name)
    if not rest:
        return value or ""
    for op in (":-", ":?", ":+", "-", "?", "+"):
        if rest.startswith(op):
            word = rest[len(op):]
            break
    else:
        raise ComposeError(f"{where}invalid interpolation format: ${{{body}}}")
    unset_or_empty = not value if op.startswith(":") else value is None
    if op.endswith("-"):
        return interpolate(word, env, where) if unset_or_empty else (value or "")
    if op.endswith("+"):
        return "" if unset_or_empty else interpolate(word, env, where)
    if unset_or_empty:
        detail = interpolate(word, env, where)
        raise ComposeError(f"{where}required variable {name} is missing a value" + (f": {detail}" if detail else ""))
    return value or ""


def _interpolate_tree(value: Any, env: dict[str, str], path: Path_, src: _Source) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate_tree(v, env, (*path, k), src) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate_tree(v, env, (*path, i), src) for i, v in enumerate(value)]
    if isinstance(value, str) and "$" in value:
        try:
            return interpolate(value, env)
        except ComposeError as e:
            raise src.fail(path, str(e)) from None
    return value


# ------------------------------------------------------------------------------------------- value checks


class _Check:
    """Type checks and long forms for one file's values."""

    def __init__(self, src: _Source, directory: Path, env: dict[str, str]) -> None:
        self.src = src
        self.dir = directory
        self.env = env

    def fail(self, path: Path_, message: str) -> ComposeError:
        return self.src.fail(path, message)

    def mapping(self, v: Any, path: Path_) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise self.fail(path, f"must be a mapping, not {_kind(v)}")
        return v

    def keys(self, v: Any, path: Path_, known: set[str] | frozenset[str]) -> dict[str, Any]:
        m = self.mapping(v, path)
        for k in m:
            if k not in known and not k.startswith("x-"):
                raise self.fail((*path, k), "unknown key" + (f" (known: {', '.join(sorted(known))})"
                                                             if len(known) <= 8 else ""))
        return {k: x for k, x in m.items() if not k.startswith("x-")}

    def string(self, v: Any, path: Path_) -> str:
        # Numbers are accepted where Compose takes a string (`user: 1000`), written back as text.
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise self.fail(path, f"must be a string, not {_kind(v)}")
        return str(v)

    def boolean(self, v: Any, path: Path_) -> bool:
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.lower() in ("true", "false", "yes", "no"):
            return v.lower() in ("true", "yes")  # interpolated values arrive as text
        raise self.fail(path, f"must be true or false, not {_kind(v)}")

    def integer(self, v: Any, path: Path_, minimum: int = 0) -> int:
        if isinstance(v, str) and re.fullmatch(r"-?\d+", v.strip()):
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(path, f"must be an integer, not {_kind(v)}")
        if v < minimum:
            raise self.fail(path, f"must be at least {minimum}")
        return v

    def strings(self, v: Any, path: Path_, single: bool = False) -> list[str]:
        if single and isinstance(v, str):
            return [v]
        if not isinstance(v, list):
            raise self.fail(path, f"must be a list{' or a string' if single else ''}, not {_kind(v)}")
        return [self.string(x, (*path, i)) for i, x in enumerate(v)]

    def command(self, v: Any, path: Path_) -> list[str] | None:
        if v is None:
            return None
        if isinstance(v, str):
            try:
                return shlex.split(v)
            except ValueError as e:
                raise self.fail(path, f"cannot split the command: {e}") from None
        return self.strings(v, path)

    def dict_or_list(self, v: Any, path: Path_, env_lookup: bool = False) -> dict[str, str | None]:
        """environment/labels/sysctls/build.args: a map, or a list of KEY=VALUE (a bare KEY takes its value
        from the variables for environment and args, as Compose does; else it stays unset: null)."""
        out: dict[str, str | None] = {}
        if isinstance(v, dict):
            for k, x in v.items():
                if x is None:
                    out[k] = self.env.get(k) if env_lookup else None
                elif isinstance(x, (dict, list)):
                    raise self.fail((*path, k), f"must be a string, number or boolean, not {_kind(x)}")
                else:
                    out[k] = ("true" if x else "false") if isinstance(x, bool) else str(x)
            return out
        if isinstance(v, list):
            for i, item in enumerate(v):
                s = self.string(item, (*path, i))
                key, sep, value = s.partition("=")
                if not key:
                    raise self.fail((*path, i), f"expected KEY=VALUE, got {s!r}")
                if key in out:
                    raise self.fail((*path, i), f"{key} given twice")
                out[key] = value if sep else (self.env.get(key) if env_lookup else None)
            return out
        raise self.fail(path, f"must be a mapping or a list of KEY=VALUE, not {_kind(v)}")

    def duration(self, v: Any, path: Path_) -> str:
        s = self.string(v, path)
        total = 0.0
        units = {"ns": 1, "us": 1e3, "µs": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9}
        parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", s)
        if not s or "".join(a + b for a, b in parts) != s:
            raise self.fail(path, f"invalid duration {s!r} (e.g. 30s, 1m30s, 500ms)")
        for num, unit in parts:
            total += float(num) * units[unit]
        return go_duration(int(round(total)))

    def bytes_(self, v: Any, path: Path_) -> int:
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        s = self.string(v, path).strip().lower()
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([bkmg]?)b?", s)
        if not m:
            raise self.fail(path, f"invalid size {s!r} (e.g. 512m, 1g)")
        return int(float(m[1]) * {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m[2]])

    def path(self, p: str) -> str:
        """Relative and ~ paths as Compose resolves them: against the project directory."""
        if p.startswith("~"):
            p = os.path.expanduser(p)
        return os.path.normpath(self.dir / p) if not os.path.isabs(p) else os.path.normpath(p)


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "a mapping"}.get(type(v), type(v).__name__)


def go_duration(ns: int) -> str:
    """Go's time.Duration.String(), which `docker compose config` prints: 90s -> 1m30s, 1h -> 1h0m0s."""
    if ns == 0:
        return "0s"
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1000), ("ns", 1)):
            if ns >= size:
                return f"{_trim(ns / size)}{unit}"
    h, rest = divmod(ns, 3600 * 10**9)
    m, rest = divmod(rest, 60 * 10**9)
    sec = _trim(rest / 1e9) + "s"
    if h:
        return f"{h}h{m}m{sec}"
    if m:
        return f"{m}m{sec}"
    return sec


def _trim(x: float) -> str:
    return f"{x:.9f}".rstrip("0").rstrip(".")


# ---------------------------------------------------------------------------------------------- services

SERVICE_KEYS = frozenset({
    "image", "build", "command", "entrypoint", "environment", "env_file", "ports", "expose", "volumes",
    "networks", "depends_on", "healthcheck", "restart", "deploy", "user", "working_dir", "hostname", "labels",
    "read_only", "cap_add", "cap_drop", "security_opt", "init", "tty", "stdin_open", "stop_signal",
    "stop_grace_period", "extra_hosts", "dns", "sysctls", "ulimits", "profiles", "container_name",
    # Beyond the list: keys that map onto a `create` flag one to one.
    "tmpfs", "dns_search", "dns_opt", "devices", "group_add", "mac_address", "privileged", "oom_kill_disable",
    "mem_limit", "memswap_limit", "mem_reservation", "shm_size", "pids_limit", "cpu_shares", "cpus", "cpuset",
    "mem_swappiness", "cpu_period", "cpu_quota", "platform", "runtime", "ipc", "pid", "uts", "network_mode",
    "logging", "pull_policy", "scale", "volumes_from",
})
_STRINGS = ("image", "user", "working_dir", "hostname", "stop_signal", "container_name", "mac_address", "platform",
            "runtime", "cpuset", "ipc", "pid", "uts", "network_mode")
_BOOLS = ("read_only", "init", "tty", "stdin_open", "privileged", "oom_kill_disable")
_LISTS = ("cap_add", "cap_drop", "security_opt", "profiles")
_SINGLE_OR_LISTS = ("dns", "tmpfs", "dns_search", "dns_opt", "devices", "group_add", "volumes_from")
_SIZES = ("mem_limit", "memswap_limit", "mem_reservation", "shm_size")
_INTS = {"pids_limit": -1, "cpu_shares": 0, "mem_swappiness": 0, "cpu_period": 0, "cpu_quota": -1, "scale": 0}
PULL_POLICIES = ("always", "never", "missing", "build", "if_not_present")


def _service(c: _Check, v: Any, path: Path_) -> dict[str, Any]:
    m = c.mapping(v, path)
    for k in m:
        if k in UNSUPPORTED_SERVICE_KEYS:
            raise c.fail((*path, k), f"'{k}' is not supported by pycontain yet")
    m = c.keys(m, path, SERVICE_KEYS)
    out: dict[str, Any] = {}
    for k, x in m.items():
        p = (*path, k)
        if k in _STRINGS:
            out[k] = c.string(x, p)
        elif k in _BOOLS:
            out[k] = c.boolean(x, p)
        elif k in _LISTS:
            out[k] = c.strings(x, p)
        elif k in _SINGLE_OR_LISTS:
            out[k] = c.strings(x, p, single=True)
        elif k in _SIZES:
            out[k] = c.bytes_(x, p) if not (k == "memswap_limit" and str(x).strip() == "-1") else -1
        elif k in _INTS:
            out[k] = c.integer(x, p, _INTS[k])
            if k == "mem_swappiness" and out[k] > 100:
                raise c.fail(p, "must be between 0 and 100")
        elif k == "cpus":
            try:
                out[k] = float(c.string(x, p))
            except ValueError:
                raise c.fail(p, f"must be a number, not {x!r}") from None
            if out[k] < 0:
                raise c.fail(p, "must not be negative")
        elif k == "pull_policy":
            out[k] = c.string(x, p)
            if out[k] not in PULL_POLICIES:
                raise c.fail(p, f"must be one of {', '.join(PULL_POLICIES)}")
        elif k == "logging":
            lg = c.keys(x, p, {"driver", "options"})
            out[k] = {}
            if "driver" in lg:
                out[k]["driver"] = c.string(lg["driver"], (*p, "driver"))
                if out[k]["driver"] not in ("json-file", "local", "none"):
                    raise c.fail((*p, "driver"), f"logging driver '{out[k]['driver']}' is not supported "
                                                 "(json-file, none)")
            if "options" in lg:
                out[k]["options"] = c.dict_or_list(lg["options"], (*p, "options"))
        elif k in ("command", "entrypoint"):
            out[k] = c.command(x, p)
        elif k == "environment":
            out[k] = c.dict_or_list(x, p, env_lookup=True)
        elif k in ("labels", "sysctls"):
            out[k] = c.dict_or_list(x, p)
        elif k == "env_file":
            out[k] = _env_file(c, x, p)
        elif k == "ports":
            if not isinstance(x, list):
                raise c.fail(p, f"must be a list, not {_kind(x)}")
            out[k] = [port for i, item in enumerate(x) for port in _port(c, item, (*p, i))]
        elif k == "expose":
            if not isinstance(x, list):
                raise c.fail(p, f"must be a list, not {_kind(x)}")
            out[k] = [c.string(e, (*p, i)) for i, e in enumerate(x)]
        elif k == "volumes":
            if not isinstance(x, list):
                raise c.fail(p, f"must be a list, not {_kind(x)}")
            out[k] = [_volume(c, item, (*p, i)) for i, item in enumerate(x)]
        elif k == "networks":
            out[k] = _service_networks(c, x, p)
        elif k == "depends_on":
            out[k] = _depends_on(c, x, p)
        elif k == "healthcheck":
            out[k] = _healthcheck(c, x, p)
        elif k == "restart":
            s = c.string(x, p)
            if not RESTART_POLICIES.match(s):
                raise c.fail(p, f"invalid restart policy {s!r} (no, always, unless-stopped, on-failure[:N])")
            out[k] = s
        elif k == "deploy":
            out[k] = _deploy(c, x, p)
        elif k == "build":
            out[k] = _build(c, x, p)
        elif k == "stop_grace_period":
            out[k] = c.duration(x, p)
        elif k == "extra_hosts":
            out[k] = _extra_hosts(c, x, p)
        elif k == "ulimits":
            out[k] = _ulimits(c, x, p)
    return out


def _env_file(c: _Check, v: Any, path: Path_) -> list[dict[str, Any]]:
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list):
        raise c.fail(path, f"must be a string or a list, not {_kind(v)}")
    out = []
    for i, item in enumerate(items):
        p = (*path, i)
        if isinstance(item, dict):
            m = c.keys(item, p, {"path", "required"})
            if "path" not in m:
                raise c.fail(p, "'path' is required")
            out.append({"path": c.path(c.string(m["path"], (*p, "path"))),
                        "required": c.boolean(m.get("required", True), (*p, "required"))})
        else:
            out.append({"path": c.path(c.string(item, p)), "required": True})
    return out


_PORT = re.compile(r"^(?:(?:\[(?P<ip6>[0-9a-fA-F:.]+)\]|(?P<ip>\d+\.\d+\.\d+\.\d+)):)?(?:(?P<pub>\d+(?:-\d+)?)?:)?"
                   r"(?P<target>\d+(?:-\d+)?)(?:/(?P<proto>tcp|udp|sctp))?$")


def _port_range(c: _Check, s: str, path: Path_) -> list[int]:
    lo, _, hi = s.partition("-")
    a, b = int(lo), int(hi or lo)
    if not (0 < a <= b <= 65535):
        raise c.fail(path, f"invalid port or range {s!r}")
    return list(range(a, b + 1))


def _port(c: _Check, v: Any, path: Path_) -> list[dict[str, Any]]:
    """One short-syntax entry (which may be a range) or one long-syntax mapping, as long-syntax mappings:
    {mode, host_ip?, target, published? (a string, as Compose prints it), protocol}."""
    if isinstance(v, dict):
        m = c.keys(v, path, {"target", "published", "host_ip", "protocol", "mode", "name", "app_protocol"})
        if "target" not in m:
            raise c.fail(path, "'target' is required")
        out: dict[str, Any] = {"mode": c.string(m.get("mode", "ingress"), (*path, "mode")),
                               "target": c.integer(m["target"], (*path, "target"), 1),
                               "protocol": c.string(m.get("protocol", "tcp"), (*path, "protocol"))}
        if out["mode"] not in ("ingress", "host"):
            raise c.fail((*path, "mode"), "must be ingress or host")
        if out["protocol"] not in ("tcp", "udp", "sctp"):
            raise c.fail((*path, "protocol"), "must be tcp, udp or sctp")
        if m.get("published") is not None:
            pub = c.string(m["published"], (*path, "published"))
            if not re.fullmatch(r"\d+(-\d+)?", pub):
                raise c.fail((*path, "published"), f"invalid port {pub!r}")
            _port_range(c, pub, (*path, "published"))
            out["published"] = pub
        for k in ("host_ip", "name", "app_protocol"):
            if k in m:
                out[k] = c.string(m[k], (*path, k))
        return [out]
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise c.fail(path, f"must be a string, a number or a mapping, not {_kind(v)}")
    s = str(v)
    pm = _PORT.match(s)
    if not pm:
        raise c.fail(path, f"invalid port {s!r} (e.g. \"8080:80\", \"127.0.0.1:8080:80/udp\", \"80\")")
    targets = _port_range(c, pm["target"], path)
    published = _port_range(c, pm["pub"], path) if pm["pub"] else None
    if published is not None and len(published) != len(targets) and len(targets) != 1:
        raise c.fail(path, f"the published range of {s!r} does not match the container range")
    ports = []
    for i, target in enumerate(targets):
        p: dict[str, Any] = {"mode": "ingress", "target": target, "protocol": pm["proto"] or "tcp"}
        if pm["ip"] or pm["ip6"]:
            p["host_ip"] = pm["ip"] or pm["ip6"]
        if published is not None:
            # One container port with a host range: Compose publishes it on the first free port of the
            # range, printed as the range itself.
            p["published"] = str(published[i]) if len(published) == len(targets) else pm["pub"]
        ports.append(p)
    return ports


_VOLUME_KEYS = {"type", "source", "target", "read_only", "bind", "volume", "tmpfs", "consistency"}


def _volume(c: _Check, v: Any, path: Path_) -> dict[str, Any]:
    """Short "SRC:DST[:MODE]" / "DST" or a long mapping into the long form: {type, source?, target,
    read_only?, bind: {create_host_path}?, volume: {...}?, tmpfs: {size}?}."""
    if isinstance(v, dict):
        m = c.keys(v, path, _VOLUME_KEYS)
        kind = c.string(m.get("type", "volume"), (*path, "type"))
        if kind not in ("bind", "volume", "tmpfs"):
            raise c.fail((*path, "type"), f"'{kind}' is not supported (bind, volume or tmpfs)")
        if "target" not in m:
            raise c.fail(path, "'target' is required")
        out: dict[str, Any] = {"type": kind, "target": c.string(m["target"], (*path, "target"))}
        if m.get("source") is not None:
            if kind == "tmpfs":
                raise c.fail((*path, "source"), "a tmpfs mount has no source")
            src = c.string(m["source"], (*path, "source"))
            out["source"] = c.path(src) if kind == "bind" else src
        elif kind == "bind":
            raise c.fail(path, "a bind mount needs a 'source'")
        if "read_only" in m:
            out["read_only"] = c.boolean(m["read_only"], (*path, "read_only"))
        if "bind" in m:
            b = c.keys(m["bind"], (*path, "bind"), {"propagation", "create_host_path", "selinux"})
            out["bind"] = {k: (c.boolean(x, (*path, "bind", k)) if k == "create_host_path"
                               else c.string(x, (*path, "bind", k))) for k, x in b.items()}
        if "volume" in m:
            vol = c.keys(m["volume"], (*path, "volume"), {"nocopy", "subpath"})
            out["volume"] = {k: (c.boolean(x, (*path, "volume", k)) if k == "nocopy"
                                 else c.string(x, (*path, "volume", k))) for k, x in vol.items()}
        if "tmpfs" in m:
            t = c.keys(m["tmpfs"], (*path, "tmpfs"), {"size", "mode"})
            out["tmpfs"] = {k: (c.bytes_(x, (*path, "tmpfs", k)) if k == "size"
                                else c.integer(x, (*path, "tmpfs", k))) for k, x in t.items()}
        if "consistency" in m:
            out["consistency"] = c.string(m["consistency"], (*path, "consistency"))
        if kind != "bind" and "bind" in out or kind != "volume" and "volume" in out \
                or kind != "tmpfs" and "tmpfs" in out:
            raise c.fail(path, f"options of another mount type on a {kind} mount")
        return out
    s = c.string(v, path)
    parts = s.split(":")
    if len(parts) == 1:
        if not parts[0].startswith("/"):
            raise c.fail(path, f"an anonymous volume's target must be absolute: {s!r}")
        return {"type": "volume", "target": parts[0]}
    if len(parts) > 3 or not parts[0] or not parts[1]:
        raise c.fail(path, f"invalid volume {s!r} (SOURCE:TARGET[:MODE])")
    source, target = parts[0], parts[1]
    if not target.startswith("/"):
        raise c.fail(path, f"the target of {s!r} must be an absolute path")
    modes = parts[2].split(",") if len(parts) == 3 else []
    for mode in modes:
        if mode not in ("ro", "rw", "z", "Z", "nocopy"):
            raise c.fail(path, f"unknown volume mode {mode!r} in {s!r}")
    is_bind = source.startswith(("/", ".", "~"))
    out = {"type": "bind" if is_bind else "volume", "source": c.path(source) if is_bind else source,
           "target": target}
    if "ro" in modes:
        out["read_only"] = True
    if is_bind:
        out["bind"] = {"create_host_path": True}  # the short syntax creates a missing host path
    else:
        out["volume"] = {"nocopy": True} if "nocopy" in modes else {}
    return out


def _service_networks(c: _Check, v: Any, path: Path_) -> dict[str, Any]:
    if isinstance(v, list):
        return {c.string(x, (*path, i)): None for i, x in enumerate(v)}
    m = c.mapping(v, path)
    out: dict[str, Any] = {}
    for name, x in m.items():
        p = (*path, name)
        if x is None:
            out[name] = None
            continue
        n = c.keys(x, p, {"aliases", "ipv4_address"})
        entry: dict[str, Any] = {}
        if "aliases" in n:
            entry["aliases"] = c.strings(n["aliases"], (*p, "aliases"))
        if "ipv4_address" in n:
            addr = c.string(n["ipv4_address"], (*p, "ipv4_address"))
            if not re.fullmatch(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})", addr) \
                    or any(int(o) > 255 for o in addr.split(".")):
                raise c.fail((*p, "ipv4_address"), f"not an IPv4 address: {addr!r}")
            entry["ipv4_address"] = addr
        out[name] = entry or None
    return out


def _depends_on(c: _Check, v: Any, path: Path_) -> dict[str, Any]:
    if isinstance(v, list):
        return {c.string(x, (*path, i)): {"condition": "service_started", "required": True}
                for i, x in enumerate(v)}
    m = c.mapping(v, path)
    out: dict[str, Any] = {}
    for name, x in m.items():
        p = (*path, name)
        d = c.keys(x if x is not None else {}, p, {"condition", "required", "restart"})
        cond = c.string(d.get("condition", "service_started"), (*p, "condition"))
        if cond not in CONDITIONS:
            raise c.fail((*p, "condition"), f"must be one of {', '.join(CONDITIONS)}")
        entry: dict[str, Any] = {"condition": cond, "required": c.boolean(d.get("required", True), (*p, "required"))}
        if "restart" in d:
            entry["restart"] = c.boolean(d["restart"], (*p, "restart"))
        out[name] = entry
    return out


def _healthcheck(c: _Check, v: Any, path: Path_) -> dict[str, Any]:
    m = c.keys(v, path, {"test", "interval", "timeout", "retries", "start_period", "start_interval", "disable"})
    out: dict[str, Any] = {}
    if c.boolean(m.get("disable", False), (*path, "disable")):
        return {"disable": True}
    if "test" in m:
        t = m["test"]
        if isinstance(t, str):
            out["test"] = ["CMD-SHELL", t]
        else:
            test = c.strings(t, (*path, "test"))
            if not test or test[0] not in ("CMD", "CMD-SHELL", "NONE"):
                raise c.fail((*path, "test"), "a list test starts with CMD, CMD-SHELL or NONE")
            out["test"] = test
    for k in ("interval", "timeout", "start_period", "start_interval"):
        if k in m:
            out[k] = c.duration(m[k], (*path, k))
    if "retries" in m:
        out["retries"] = c.integer(m["retries"], (*path, "retries"))
    return out


def _deploy(c: _Check, v: Any, path: Path_) -> dict[str, Any]:
    m = c.keys(v, path, {"replicas", "resources"})
    out: dict[str, Any] = {}
    if "replicas" in m:
        out["replicas"] = c.integer(m["replicas"], (*path, "replicas"))
    if "resources" in m:
        r = c.keys(m["resources"], (*path, "resources"), {"limits"})
        if "limits" in r:
            lp = (*path, "resources", "limits")
            lim = c.keys(r["limits"], lp, {"cpus", "memory", "pids"})
            limits: dict[str, Any] = {}
            if "cpus" in lim:
                try:
                    cpus = float(c.string(lim["cpus"], (*lp, "cpus")))
                except ValueError:
                    raise c.fail((*lp, "cpus"), f"must be a number, not {lim['cpus']!r}") from None
                if cpus <= 0:
                    raise c.fail((*lp, "cpus"), "must be more than 0")
                limits["cpus"] = cpus
            if "memory" in lim:
                limits["memory"] = c.bytes_(lim["memory"], (*lp, "memory"))
            if "pids" in lim:
                limits["pids"] = c.integer(lim["pids"], (*lp, "pids"), 1)
            out["resources"] = {"limits": limits}
    return out


def _build(c: _Check, v: Any, path: Path_) -> dict[str, Any]:
    if isinstance(v, str):
        return {"context": c.path(v), "dockerfile": "Dockerfile"}
    m = c.keys(v, path, {"context", "dockerfile", "args", "target", "labels"})
    out: dict[str, Any] = {"context": c.path(c.string(m.get("context", "."), (*path, "context"))),
                           "dockerfile": c.string(m.get("dockerfile", "Dockerfile"), (*path, "dockerfile"))}
    if "args" in m:
        out["args"] = c.dict_or_list(m["args"], (*path, "args"), env_lookup=True)
    if "target" in m:
        out["target"] = c.string(m["target"], (*path, "target"))
    if "labels" in m:
        out["labels"] = c.dict_or_list(m["labels"], (*path, "labels"))
    return out


def _extra_hosts(c: _Check, v: Any, path: Path_) -> list[str]:
    """A list of "host:ip" / "host=ip" or a mapping, as Compose prints it: a list of "host=ip"."""
    pairs: list[tuple[str, str]] = []
    if isinstance(v, dict):
        pairs = [(k, c.string(x, (*path, k))) for k, x in v.items()]
    elif isinstance(v, list):
        for i, item in enumerate(v):
            s = c.string(item, (*path, i))
            host, sep, ip = s.partition("=")
            if not sep:
                host, sep, ip = s.partition(":")  # host:ip; an IPv6 address keeps its own colons
            if not sep or not host or not ip:
                raise c.fail((*path, i), f"expected HOST=IP or HOST:IP, got {s!r}")
            pairs.append((host, ip.strip("[]")))
    else:
        raise c.fail(path, f"must be a list or a mapping, not {_kind(v)}")
    return [f"{h}={ip}" for h, ip in pairs]


def _ulimits(c: _Check, v: Any, path: Path_) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, x in c.mapping(v, path).items():
        p = (*path, name)
        if isinstance(x, dict):
            u = c.keys(x, p, {"soft", "hard"})
            if set(u) != {"soft", "hard"}:
                raise c.fail(p, "needs both 'soft' and 'hard'")
            soft, hard = c.integer(u["soft"], (*p, "soft"), -1), c.integer(u["hard"], (*p, "hard"), -1)
            if hard != -1 and soft > hard:
                raise c.fail(p, "soft is above hard")
            out[name] = {"soft": soft, "hard": hard}
        else:
            out[name] = c.integer(x, p, -1)
    return out


# ------------------------------------------------------------------------------------ top-level resources


def _networks(c: _Check, v: Any, path: Path_) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, x in c.mapping(v, path).items():
        p = (*path, name)
        n = c.keys(x if x is not None else {}, p, {"driver", "ipam", "internal", "external", "name", "labels"})
        entry: dict[str, Any] = {}
        if "name" in n:
            entry["name"] = c.string(n["name"], (*p, "name"))
        if "driver" in n:
            entry["driver"] = c.string(n["driver"], (*p, "driver"))
            if entry["driver"] != "bridge":
                raise c.fail((*p, "driver"), f"driver '{entry['driver']}' is not supported (bridge)")
        if "ipam" in n:
            ipam = c.keys(n["ipam"], (*p, "ipam"), {"driver", "config"})
            cfgs = []
            for i, item in enumerate(ipam.get("config") or []):
                cp = (*p, "ipam", "config", i)
                cfg = c.keys(item, cp, {"subnet", "gateway"})
                cfgs.append({k: c.string(x, (*cp, k)) for k, x in cfg.items()})
            entry["ipam"] = {"config": cfgs}
            if "driver" in ipam:
                entry["ipam"]["driver"] = c.string(ipam["driver"], (*p, "ipam", "driver"))
        for k in ("internal", "external"):
            if k in n:
                entry[k] = c.boolean(n[k], (*p, k))
        if "labels" in n:
            entry["labels"] = c.dict_or_list(n["labels"], (*p, "labels"))
        if entry.get("external") and set(entry) - {"external", "name"}:
            raise c.fail(p, "an external network takes only 'name'")
        out[name] = entry
    return out


def _volumes(c: _Check, v: Any, path: Path_) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, x in c.mapping(v, path).items():
        p = (*path, name)
        n = c.keys(x if x is not None else {}, p, {"external", "labels", "name", "driver"})
        entry: dict[str, Any] = {}
        if "name" in n:
            entry["name"] = c.string(n["name"], (*p, "name"))
        if "driver" in n:
            entry["driver"] = c.string(n["driver"], (*p, "driver"))
            if entry["driver"] != "local":
                raise c.fail((*p, "driver"), f"driver '{entry['driver']}' is not supported (local)")
        if "external" in n:
            entry["external"] = c.boolean(n["external"], (*p, "external"))
        if "labels" in n:
            entry["labels"] = c.dict_or_list(n["labels"], (*p, "labels"))
        out[name] = entry
    return out


TOP_KEYS = {"version", "name", "services", "networks", "volumes"}


def _file(c: _Check, data: Any) -> dict[str, Any]:
    m = c.mapping(data, ())
    for k in m:
        if k in UNSUPPORTED_TOP_KEYS:
            raise c.fail((k,), f"'{k}' is not supported by pycontain yet")
    m = c.keys(m, (), TOP_KEYS)
    out: dict[str, Any] = {"services": {}, "networks": {}, "volumes": {}}
    if m.get("name") is not None:
        out["name"] = c.string(m["name"], ("name",))
    if m.get("version") is not None:
        c.string(m["version"], ("version",))  # obsolete in Compose and ignored, but still a string
    for name, svc in c.mapping(m.get("services") or {}, ("services",)).items():
        if not re.fullmatch(r"[a-zA-Z0-9._-]+", name):
            raise c.fail(("services", name), "a service name uses only letters, digits, '.', '_' and '-'")
        out["services"][name] = _service(c, svc if svc is not None else {}, ("services", name))
    out["networks"] = _networks(c, m.get("networks") or {}, ("networks",))
    out["volumes"] = _volumes(c, m.get("volumes") or {}, ("volumes",))
    return out


# ----------------------------------------------------------------------------------------------- merging


def _merge_unique(base: list[dict[str, Any]], over: list[dict[str, Any]], key: Any) -> list[dict[str, Any]]:
    """ports and volumes: a later entry with the same unique key replaces the earlier one in place."""
    out = list(base)
    for item in over:
        k = key(item)
        for i, old in enumerate(out):
            if key(old) == k:
                out[i] = item
                break
        else:
            out.append(item)
    return out


def _merge_service(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """The Compose specification's merge rules on the long forms: mappings merge key by key (environment,
    labels, sysctls, ulimits, depends_on, networks, build, deploy, healthcheck, build.args ...), scalars
    are overridden, command/entrypoint/healthcheck.test are replaced whole, ports are unique by (host_ip,
    target, published, protocol) and volumes by target, other sequences are appended without duplicates."""
    out = dict(base)
    for k, v in over.items():
        old = out.get(k)
        if k in ("command", "entrypoint") or old is None:
            out[k] = v
        elif k == "ports":
            out[k] = _merge_unique(old, v, lambda p: (p.get("host_ip"), p["target"], p.get("published"),
                                                      p["protocol"]))
        elif k == "volumes":
            out[k] = _merge_unique(old, v, lambda p: p["target"])
        elif k == "env_file":
            out[k] = _merge_unique(old, v, lambda p: p["path"])
        elif isinstance(old, dict) and isinstance(v, dict):
            out[k] = _merge_dict(old, v)
        elif isinstance(old, list) and isinstance(v, list):
            out[k] = old + [x for x in v if x not in old]
        else:
            out[k] = v
    return out


def _merge_dict(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        old = out.get(k)
        if k == "test":
            out[k] = v  # healthcheck.test is a command: replaced, not appended
        elif isinstance(old, dict) and isinstance(v, dict):
            out[k] = _merge_dict(old, v)
        else:
            out[k] = v
    return out


# ----------------------------------------------------------------------------------------------- project


class Project:
    """A loaded project: its name, directory, files and the merged, normalised model."""

    def __init__(self, name: str, directory: Path, files: list[Path], services: dict[str, Any],
                 networks: dict[str, Any], volumes: dict[str, Any], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.env = dict(env or {})  # the interpolation variables (.env, then the environment)
        self.directory = directory
        self.files = files
        self.services = services
        self.networks = networks
        self.volumes = volumes


def load(directory: str | Path = ".", files: list[str] | None = None, project: str | None = None,
         env_files: list[str] | None = None, environ: dict[str, str] | None = None) -> Project:
    """Find, read, interpolate, check, merge: `compose -f ... -p ... --env-file ...` in `directory`."""
    paths = find_files(directory, files)
    # Compose's project directory is the first file's directory unless given (--project-directory).
    base = Path(directory).resolve() if not files else paths[0].resolve().parent
    env = variables(base, env_files, environ)
    texts = []
    for p in paths:
        try:
            texts.append((p.read_text(), str(p)))
        except (OSError, UnicodeDecodeError) as e:
            raise ComposeError(f"{p}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    return load_texts(texts, base, env, project)


def load_texts(texts: list[tuple[str, str]], directory: Path, env: dict[str, str],
               project: str | None = None) -> Project:
    """The same from (text, file name) pairs and the variables already read: what the tests drive."""
    merged: dict[str, Any] = {"services": {}, "networks": {}, "volumes": {}}
    origin: dict[str, _Source] = {}
    for text, name in texts:
        data, src = parse(text, name)
        data = _interpolate_tree(data, env, (), src)
        one = _file(_Check(src, directory, env), data)
        for svc, body in one["services"].items():
            merged["services"][svc] = _merge_service(merged["services"].get(svc, {}), body)
            origin[svc] = src
        for kind in ("networks", "volumes"):
            for res, body in one[kind].items():
                merged[kind][res] = _merge_dict(merged[kind].get(res, {}), body)
                origin[f"{kind}.{res}"] = src
        if "name" in one:
            merged["name"] = one["name"]
    pname = project_name(directory, project, env, merged.get("name"))
    services, networks, volumes = _resolve(merged, origin, pname)
    return Project(pname, directory, [Path(n) for _, n in texts], services, networks, volumes, env)


def _resolve(merged: dict[str, Any], origin: dict[str, _Source],
             pname: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Checks that need every file: image or build, references to services, networks and volumes;
    and the defaults `compose config` shows (the default network, resource names)."""
    services: dict[str, Any] = merged["services"]
    networks: dict[str, Any] = merged["networks"]
    volumes: dict[str, Any] = merged["volumes"]
    uses_default = False
    for name, svc in services.items():
        src = origin[name]
        path: Path_ = ("services", name)
        if "image" not in svc and "build" not in svc:
            raise src.fail(path, "needs an 'image' or a 'build'")
        for dep in svc.get("depends_on", {}):
            if dep not in services:
                raise src.fail((*path, "depends_on", dep), f"depends on undefined service '{dep}'")
            if dep == name:
                raise src.fail((*path, "depends_on", dep), "a service cannot depend on itself")
        mode = svc.get("network_mode")
        if mode is not None:
            if "networks" in svc:
                raise src.fail((*path, "network_mode"), "network_mode and networks cannot both be set")
            if not (mode in ("none", "host", "bridge") or mode.startswith(("service:", "container:"))):
                raise src.fail((*path, "network_mode"), f"invalid network_mode {mode!r} (none, host, bridge, "
                                                        "service:NAME, container:NAME)")
        refs = [(k, svc[k]) for k in ("network_mode", "ipc", "pid") if str(svc.get(k, "")).startswith("service:")]
        refs += [("volumes_from", v) for v in svc.get("volumes_from", []) if not v.startswith("container:")]
        for key, ref in refs:
            other = ref.removeprefix("service:").split(":")[0]
            if other not in services or other == name:
                raise src.fail((*path, key), f"refers to undefined service '{other}'")
            # Compose starts the service whose namespaces or volumes this one uses first.
            svc.setdefault("depends_on", {}).setdefault(other, {"condition": "service_started", "required": True})
        if "networks" not in svc and mode is None:
            svc["networks"] = {"default": None}
        for net in svc.get("networks", {}):
            if net == "default" and net not in networks:
                uses_default = True
            elif net not in networks:
                raise src.fail((*path, "networks", net), f"network '{net}' is not declared under top-level networks")
        for i, vol in enumerate(svc.get("volumes", [])):
            if vol["type"] == "volume" and "source" in vol and vol["source"] not in volumes:
                raise src.fail((*path, "volumes", i), f"named volume '{vol['source']}' is not declared under "
                                                      "top-level volumes")
    if uses_default:
        networks["default"] = {}
    for res in (networks, volumes):
        for key, body in res.items():
            if "name" not in body:
                # External resources are found by their own name; others belong to the project.
                body["name"] = key if body.get("external") else f"{pname}_{key}"
    return services, networks, volumes


def normalized(project: Project) -> dict[str, Any]:
    """The resolved model in Compose's long forms: what `compose config` prints."""
    import copy

    out: dict[str, Any] = {"name": project.name, "services": copy.deepcopy(project.services)}
    if project.networks:
        out["networks"] = copy.deepcopy(project.networks)
    if project.volumes:
        out["volumes"] = copy.deepcopy(project.volumes)
    return out


def dump(project: Project) -> str:
    """`compose config` output: YAML with every mapping's keys sorted and lists in file order, so the same
    model always prints the same text."""
    import yaml

    text: str = yaml.safe_dump(normalized(project), sort_keys=True, default_flow_style=False,
                               allow_unicode=True, width=1 << 16)
    return text


def start_order(project: Project, selected: list[str] | None = None) -> list[str]:
    """Services in an order that starts every dependency first (depends_on), ties by name so the order is
    stable; `selected` limits it to those services and what they depend on. A cycle is one error naming it."""
    services = project.services
    for s in selected or []:
        if s not in services:
            raise ComposeError(f"no such service: {s}")
    wanted = set(selected) if selected else set(services)
    stack = sorted(wanted)
    while stack:  # the dependencies of selected services come along
        for dep in services[stack.pop()].get("depends_on", {}):
            if dep not in wanted:
                wanted.add(dep)
                stack.append(dep)
    order: list[str] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: placed

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = path[path.index(name):] + [name]
            raise ComposeError(f"dependency cycle between services: {' -> '.join(cycle)}")
        state[name] = 1
        for dep in sorted(services[name].get("depends_on", {})):
            visit(dep, [*path, name])
        state[name] = 2
        order.append(name)

    for name in sorted(wanted):
        visit(name, [])
    return order
