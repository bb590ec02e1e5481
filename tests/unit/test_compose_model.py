"""The Compose file model (pycontain/compose/model.py): parsing, merging, interpolation, validation with
file/key path/line, the normalised long forms `compose config` prints, start order and project names.
Pure Python: files live in tmp_path, variables are passed in (never the process environment)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("yaml")

from pycontain.compose import model  # noqa: E402
from pycontain.compose.model import ComposeError  # noqa: E402

VOTING = """\
services:
  vote:
    build: ./vote
    command: python app.py
    ports: ["5000:80"]
    networks: [front-tier, back-tier]
    depends_on:
      redis:
        condition: service_healthy
  result:
    build:
      context: ./result
      args: [NODE_ENV=production]
    ports:
      - "127.0.0.1:5001:80"
      - target: 5858
        published: 5858
    networks:
      front-tier:
        aliases: [results]
      back-tier:
    depends_on: [db]
  worker:
    image: "worker:${TAG:-latest}"
    deploy:
      replicas: 2
      resources:
        limits: {cpus: "0.5", memory: 50M, pids: 100}
    networks: [back-tier]
    depends_on:
      redis: {condition: service_healthy}
      db: {condition: service_healthy}
  redis:
    image: redis:alpine
    healthcheck:
      test: redis-cli ping
      interval: 90s
      timeout: 3s
      retries: 3
    networks: [back-tier]
  db:
    image: postgres:15
    environment:
      - POSTGRES_USER=postgres
      - POSTGRES_PASSWORD=$${not_a_var}
    volumes:
      - db-data:/var/lib/postgresql/data
      - ./init:/docker-entrypoint-initdb.d:ro
    networks: [back-tier]
volumes:
  db-data:
networks:
  front-tier:
  back-tier:
    ipam:
      config: [{subnet: 10.5.0.0/24}]
"""


def load(tmp_path: Path, *texts: str, env: dict[str, str] | None = None, project: str | None = None,
         names: tuple[str, ...] = ()) -> model.Project:
    pairs = [(t, names[i] if i < len(names) else f"f{i}.yaml") for i, t in enumerate(texts)]
    return model.load_texts(pairs, tmp_path, env or {}, project)


def error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ComposeError) as e:
        load(tmp_path, text, env=env, names=("compose.yaml",))
    message = str(e.value)
    assert "\n" not in message
    return message


def test_voting_app_normalises_to_compose_long_forms(tmp_path: Path) -> None:
    d = str(tmp_path)
    got = model.normalized(load(tmp_path, VOTING, project="voting"))
    expected: dict[str, Any] = {
        "name": "voting",
        "services": {
            "vote": {
                "build": {"context": f"{d}/vote", "dockerfile": "Dockerfile"},
                "command": ["python", "app.py"],
                "ports": [{"mode": "ingress", "target": 80, "published": "5000", "protocol": "tcp"}],
                "networks": {"front-tier": None, "back-tier": None},
                "depends_on": {"redis": {"condition": "service_healthy", "required": True}},
            },
            "result": {
                "build": {"context": f"{d}/result", "dockerfile": "Dockerfile", "args": {"NODE_ENV": "production"}},
                "ports": [
                    {"mode": "ingress", "host_ip": "127.0.0.1", "target": 80, "published": "5001", "protocol": "tcp"},
                    {"mode": "ingress", "target": 5858, "published": "5858", "protocol": "tcp"},
                ],
                "networks": {"front-tier": {"aliases": ["results"]}, "back-tier": None},
                "depends_on": {"db": {"condition": "service_started", "required": True}},
            },
            "worker": {
                "image": "worker:latest",
                "deploy": {"replicas": 2, "resources": {"limits": {"cpus": 0.5, "memory": 52428800, "pids": 100}}},
                "networks": {"back-tier": None},
                "depends_on": {"redis": {"condition": "service_healthy", "required": True},
                               "db": {"condition": "service_healthy", "required": True}},
            },
            "redis": {
                "image": "redis:alpine",
                "healthcheck": {"test": ["CMD-SHELL", "redis-cli ping"], "interval": "1m30s", "timeout": "3s",
                                "retries": 3},
                "networks": {"back-tier": None},
            },
            "db": {
                "image": "postgres:15",
                "environment": {"POSTGRES_USER": "postgres", "POSTGRES_PASSWORD": "${not_a_var}"},
                "volumes": [
                    {"type": "volume", "source": "db-data", "target": "/var/lib/postgresql/data", "volume": {}},
                    {"type": "bind", "source": f"{d}/init", "target": "/docker-entrypoint-initdb.d",
                     "read_only": True, "bind": {"create_host_path": True}},
                ],
                "networks": {"back-tier": None},
            },
        },
        "networks": {
            "front-tier": {"name": "voting_front-tier"},
            "back-tier": {"name": "voting_back-tier", "ipam": {"config": [{"subnet": "10.5.0.0/24"}]}},
        },
        "volumes": {"db-data": {"name": "voting_db-data"}},
    }
    assert got == expected


def test_dump_is_stable_sorted_yaml(tmp_path: Path) -> None:
    import yaml

    p = load(tmp_path, VOTING, project="voting")
    text = model.dump(p)
    assert text == model.dump(load(tmp_path, VOTING, project="voting"))
    assert yaml.safe_load(text) == model.normalized(p)
    assert text.splitlines()[0] == "name: voting"
    services = [line.strip(" :") for line in text.splitlines() if line.startswith("  ") and not line.startswith("   ")
                and line.endswith(":")]
    assert services[services.index("db"):services.index("db") + 5] == ["db", "redis", "result", "vote", "worker"]


def test_default_network_and_external_resources(tmp_path: Path) -> None:
    p = load(tmp_path, """
services:
  a: {image: x, volumes: [shared:/data]}
networks:
  outside: {external: true}
volumes:
  shared: {external: true, name: real-volume}
""", project="p")
    assert p.services["a"]["networks"] == {"default": None}
    assert p.networks == {"outside": {"external": True, "name": "outside"}, "default": {"name": "p_default"}}
    assert p.volumes == {"shared": {"external": True, "name": "real-volume"}}


def test_short_and_long_syntaxes(tmp_path: Path) -> None:
    p = load(tmp_path, """
services:
  s:
    image: x
    ports: ["80", "8000-8001:9000-9001", "[::1]:53:53/udp", 8080]
    volumes:
      - /anon
      - ~/cfg:/cfg
      - {type: tmpfs, target: /tmp, tmpfs: {size: 1m}}
    environment: {A: 1, B: true, C: }
    labels: [com.example=1, bare]
    extra_hosts: ["h1:10.0.0.1", "h2=::1"]
    ulimits: {nproc: 65535, nofile: {soft: 1024, hard: 2048}}
    sysctls: [net.core.somaxconn=1024]
    env_file: [.env.s, {path: opt.env, required: false}]
    dns: 1.1.1.1
    stop_grace_period: 1m
    healthcheck: {test: [CMD, "true"], start_period: 500ms}
    profiles: [debug]
""", env={"C": "from-env"}, project="p")
    s = p.services["s"]
    assert [(x["target"], x.get("published"), x.get("host_ip"), x["protocol"]) for x in s["ports"]] == [
        (80, None, None, "tcp"), (9000, "8000", None, "tcp"), (9001, "8001", None, "tcp"), (53, "53", "::1", "udp"),
        (8080, None, None, "tcp")]
    assert s["volumes"][0] == {"type": "volume", "target": "/anon"}
    assert s["volumes"][1]["type"] == "bind" and s["volumes"][1]["source"].endswith("/cfg")
    assert s["volumes"][2] == {"type": "tmpfs", "target": "/tmp", "tmpfs": {"size": 1048576}}
    assert s["environment"] == {"A": "1", "B": "true", "C": "from-env"}
    assert s["labels"] == {"com.example": "1", "bare": None}
    assert s["extra_hosts"] == ["h1=10.0.0.1", "h2=::1"]
    assert s["ulimits"] == {"nproc": 65535, "nofile": {"soft": 1024, "hard": 2048}}
    assert s["sysctls"] == {"net.core.somaxconn": "1024"}
    assert s["env_file"] == [{"path": f"{tmp_path}/.env.s", "required": True},
                             {"path": f"{tmp_path}/opt.env", "required": False}]
    assert s["dns"] == ["1.1.1.1"]
    assert s["stop_grace_period"] == "1m0s"
    assert s["healthcheck"] == {"test": ["CMD", "true"], "start_period": "500ms"}
    assert s["profiles"] == ["debug"]


def test_merge_of_two_files(tmp_path: Path) -> None:
    base = """
services:
  web:
    image: web:1
    command: ["serve", "--port", "80"]
    environment: {A: "1", B: "2"}
    labels: [x=1]
    ports: ["8080:80", "9090:90"]
    volumes: ["/a:/data", "/b:/logs"]
    cap_add: [NET_ADMIN]
    depends_on: [db]
    healthcheck: {test: [CMD, a, b], interval: 10s}
  db: {image: db}
"""
    override = """
services:
  web:
    image: web:2
    command: serve
    environment: [B=3, C=4]
    labels: {y: "2"}
    ports: ["8080:80", "7070:70"]
    volumes: ["/c:/data"]
    cap_add: [NET_ADMIN, SYS_TIME]
    depends_on: {cache: {condition: service_started}}
    healthcheck: {test: [CMD, c]}
  cache: {image: cache}
"""
    web = load(tmp_path, base, override, project="p").services["web"]
    assert web["image"] == "web:2"
    assert web["command"] == ["serve"]
    assert web["environment"] == {"A": "1", "B": "3", "C": "4"}
    assert web["labels"] == {"x": "1", "y": "2"}
    assert [(x["published"], x["target"]) for x in web["ports"]] == [("8080", 80), ("9090", 90), ("7070", 70)]
    assert [(v["source"], v["target"]) for v in web["volumes"]] == [("/c", "/data"), ("/b", "/logs")]
    assert web["cap_add"] == ["NET_ADMIN", "SYS_TIME"]
    assert set(web["depends_on"]) == {"db", "cache"}
    assert web["healthcheck"] == {"test": ["CMD", "c"], "interval": "10s"}


def test_find_files_and_override(tmp_path: Path) -> None:
    with pytest.raises(ComposeError, match="no compose file"):
        model.find_files(tmp_path)
    (tmp_path / "docker-compose.yml").write_text("services: {}\n")
    assert model.find_files(tmp_path) == [tmp_path / "docker-compose.yml"]
    (tmp_path / "compose.yaml").write_text("services: {a: {image: x}}\n")
    (tmp_path / "compose.override.yaml").write_text("services: {a: {image: y}}\n")
    assert model.find_files(tmp_path) == [tmp_path / "compose.yaml", tmp_path / "compose.override.yaml"]
    assert model.find_files(tmp_path, ["docker-compose.yml"]) == [tmp_path / "docker-compose.yml"]
    with pytest.raises(ComposeError, match="no such compose file"):
        model.find_files(tmp_path, ["missing.yaml"])
    (tmp_path / ".env").write_text("COMPOSE_PROJECT_NAME=fromdotenv\n")
    p = model.load(tmp_path, environ={})
    assert p.services["a"]["image"] == "y" and p.name == "fromdotenv"


# ------------------------------------------------------------------------------------------ interpolation

ENV = {"SET": "value", "EMPTY": ""}


@pytest.mark.parametrize(("text", "expected"), [
    ("${SET}", "value"), ("$SET", "value"), ("a$SET-b", "avalue-b"), ("${UNSET}", ""),
    ("${UNSET:-d}", "d"), ("${EMPTY:-d}", "d"), ("${EMPTY-d}", ""), ("${UNSET-d}", "d"),
    ("${SET:+alt}", "alt"), ("${EMPTY:+alt}", ""), ("${EMPTY+alt}", "alt"), ("${UNSET+alt}", ""),
    ("${SET:?err}", "value"), ("${EMPTY?err}", ""), ("$$SET", "$SET"), ("$${SET}", "${SET}"),
    ("${UNSET:-${SET}}", "value"), ("${UNSET:-a ${UNSET2:-b}}", "a b"), ("cost: 5$$", "cost: 5$"),
])
def test_interpolation(text: str, expected: str) -> None:
    assert model.interpolate(text, ENV) == expected


@pytest.mark.parametrize(("text", "match"), [
    ("${UNSET:?need it}", "required variable UNSET is missing a value: need it"),
    ("${EMPTY:?}", "required variable EMPTY is missing a value"),
    ("${UNSET?gone}", "required variable UNSET is missing a value: gone"),
    ("${SET", "unclosed"), ("${}", "invalid interpolation format"), ("$!", "invalid interpolation format"),
    ("${SET:x}", "invalid interpolation format"),
])
def test_interpolation_errors(text: str, match: str) -> None:
    with pytest.raises(ComposeError, match=match):
        model.interpolate(text, ENV)


def test_interpolation_error_names_file_key_path_and_line(tmp_path: Path) -> None:
    msg = error(tmp_path, "services:\n  web:\n    image: x\n    environment:\n      - A=${NEEDED:?set NEEDED}\n")
    assert msg == ("compose.yaml:5: services.web.environment[0]: required variable NEEDED is missing a value: "
                   "set NEEDED")


def test_variables_dotenv_then_process_environment(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("# comment\nA=from-file\nexport B='single $x'\nC=\"dq\\n\" \nD=v # note\n")
    got = model.variables(tmp_path, environ={"A": "from-process"})
    assert got == {"A": "from-process", "B": "single $x", "C": "dq\n", "D": "v"}
    (tmp_path / "other.env").write_text("E=1\n")
    assert model.variables(tmp_path, ["other.env"], environ={}) == {"E": "1"}
    with pytest.raises(ComposeError, match="no such env file"):
        model.variables(tmp_path, ["nope.env"], environ={})
    (tmp_path / "bad.env").write_text("ok=1\nnot a pair\n")
    with pytest.raises(ComposeError, match=r"bad.env:2: expected KEY=VALUE"):
        model.variables(tmp_path, ["bad.env"], environ={})


# --------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(("text", "expected"), [
    ("services:\n  web:\n    image: x\n    imgae: y\n", "compose.yaml:4: services.web.imgae: unknown key"),
    ("services:\n  web:\n    image: [x]\n", "compose.yaml:3: services.web.image: must be a string, not a list"),
    ("services:\n  web:\n    image: x\n    ports: 80\n", "compose.yaml:4: services.web.ports: must be a list"),
    ("services:\n  web:\n    image: x\n    read_only: maybe\n", "services.web.read_only: must be true or false"),
    ("services:\n  web:\n    image: x\n    userns_mode: host\n",
     "compose.yaml:4: services.web.userns_mode: 'userns_mode' is not supported by pycontain yet"),
    ("secrets: {}\n", "compose.yaml:1: secrets: 'secrets' is not supported by pycontain yet"),
    ("services:\n  web:\n    image: x\n    deploy:\n      replicas: two\n",
     "compose.yaml:5: services.web.deploy.replicas: must be an integer, not a string"),
    ("services:\n  web:\n    image: x\n    deploy: {resources: {limits: {cpus: 1, gpus: 1}}}\n",
     "compose.yaml:4: services.web.deploy.resources.limits.gpus: unknown key"),
    ("services:\n  web:\n    image: x\n    ports:\n      - 80\n      - \"99999:80\"\n",
     "compose.yaml:6: services.web.ports[1]: invalid port or range '99999'"),
    ("services:\n  web:\n    image: x\n    volumes: ['rel/path']\n",
     "services.web.volumes[0]: an anonymous volume's target must be absolute"),
    ("services:\n  web:\n    image: x\n    depends_on:\n      db: {condition: service_ready}\n  db: {image: y}\n",
     "compose.yaml:5: services.web.depends_on.db.condition: must be one of service_started"),
    ("services:\n  web:\n    image: x\n    depends_on: [nope]\n",
     "compose.yaml:4: services.web.depends_on.nope: depends on undefined service 'nope'"),
    ("services:\n  web:\n    image: x\n    networks: [back]\n",
     "compose.yaml:4: services.web.networks.back: network 'back' is not declared"),
    ("services:\n  web:\n    image: x\n    volumes: ['data:/d']\n",
     "compose.yaml:4: services.web.volumes[0]: named volume 'data' is not declared"),
    ("services:\n  web:\n    restart: sometimes\n    image: x\n", "compose.yaml:3: services.web.restart: invalid"),
    ("services:\n  web:\n    command: echo\n", "compose.yaml:2: services.web: needs an 'image' or a 'build'"),
    ("services:\n  web:\n    image: x\n    healthcheck: {interval: soon}\n",
     "compose.yaml:4: services.web.healthcheck.interval: invalid duration 'soon'"),
    ("services:\n  web:\n    image: x\n  web:\n    image: y\n", "compose.yaml:4: services.web: duplicate key"),
    ("services:\n  web: {image: x\n", "compose.yaml:3: not valid YAML"),
    ("networks:\n  n: {driver: overlay}\n", "compose.yaml:2: networks.n.driver: driver 'overlay' is not supported"),
    ("services: [a, b]\n", "compose.yaml:1: services: must be a mapping, not a list"),
    ("- a\n", "compose.yaml:1: (top level): must be a mapping, not a list"),
    ("services:\n  web: !!python/name:os.system\n", "unsupported YAML tag"),
])
def test_validation_errors(tmp_path: Path, text: str, expected: str) -> None:
    msg = error(tmp_path, text)
    assert expected in msg, msg


def test_extension_keys_are_allowed_and_dropped(tmp_path: Path) -> None:
    p = load(tmp_path, "x-common: &c {image: x}\nservices:\n  a:\n    image: x\n    x-note: hi\n", project="p")
    assert p.services["a"] == {"image": "x", "networks": {"default": None}}


# -------------------------------------------------------------------------------- start order and names


def test_start_order_follows_depends_on(tmp_path: Path) -> None:
    p = load(tmp_path, VOTING, project="voting")
    order = model.start_order(p)
    assert order == ["db", "redis", "result", "vote", "worker"]
    for name, svc in p.services.items():
        assert all(order.index(dep) < order.index(name) for dep in svc.get("depends_on", {}))
    assert model.start_order(p, ["vote"]) == ["redis", "vote"]
    with pytest.raises(ComposeError, match="no such service: nope"):
        model.start_order(p, ["nope"])


def test_dependency_cycle_is_one_error_naming_it(tmp_path: Path) -> None:
    p = load(tmp_path, """
services:
  a: {image: x, depends_on: [b]}
  b: {image: x, depends_on: [c]}
  c: {image: x, depends_on: [a]}
  d: {image: x}
""", project="p")
    with pytest.raises(ComposeError) as e:
        model.start_order(p)
    assert str(e.value) == "dependency cycle between services: a -> b -> c -> a"


def test_project_name_rules(tmp_path: Path) -> None:
    d = tmp_path / "My App.v2"
    d.mkdir()
    assert model.project_name(d, None, {}, None) == "myappv2"
    assert model.project_name(d, None, {}, "fromfile") == "fromfile"
    assert model.project_name(d, None, {"COMPOSE_PROJECT_NAME": "fromenv"}, "fromfile") == "fromenv"
    assert model.project_name(d, "explicit", {"COMPOSE_PROJECT_NAME": "fromenv"}, "fromfile") == "explicit"
    assert model.normalize_project_name("__Web-App_1!") == "web-app_1"
    with pytest.raises(ComposeError, match="-p: invalid project name 'Bad'"):
        model.project_name(d, "Bad", {}, None)
    with pytest.raises(ComposeError, match="name:: invalid project name"):
        model.project_name(d, None, {}, "-x")
    odd = tmp_path / "___"
    odd.mkdir()
    with pytest.raises(ComposeError, match="use -p NAME"):
        model.project_name(odd, None, {}, None)


def test_top_level_name_is_interpolated(tmp_path: Path) -> None:
    p = load(tmp_path, "name: app-${STAGE}\nservices: {a: {image: x}}\n", env={"STAGE": "dev"})
    assert p.name == "app-dev"
    assert p.networks["default"] == {"name": "app-dev_default"}
