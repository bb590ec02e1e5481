"""How compose turns a service into a container (pycontain/compose/engine.py): the `create` arguments, the
parsed config, the config hash `up` compares, profiles and dependency levels. No root: nothing is run."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("yaml")

from pycontain.compose import engine, model  # noqa: E402
from pycontain.compose.model import ComposeError  # noqa: E402

FILE = """\
name: shop
services:
  web:
    image: busybox
    command: ["httpd", "-f"]
    entrypoint: ["/bin/sh", "-c"]
    environment: {A: "1", FROM_SHELL: null, MISSING: null}
    env_file: [web.env]
    ports: ["127.0.0.1:8080:80", "53/udp"]
    expose: ["9000"]
    volumes: ["data:/data:ro", "./site:/site", "/anon", {type: tmpfs, target: /tmp, tmpfs: {size: 1m}}]
    networks:
      front: {aliases: [www]}
      back: {ipv4_address: 10.5.0.9}
    healthcheck: {test: "true", interval: 1s, retries: 2}
    restart: on-failure:3
    deploy: {replicas: 2, resources: {limits: {cpus: "0.5", memory: 64m, pids: 50}}}
    user: "1000"
    working_dir: /srv
    read_only: true
    cap_drop: [ALL]
    init: true
    stop_grace_period: 1500ms
    extra_hosts: ["gw=10.0.0.1"]
    ulimits: {nofile: {soft: 100, hard: 200}, nproc: 64}
    sysctls: {net.core.somaxconn: "1024"}
    labels: {tier: front}
    depends_on:
      db: {condition: service_healthy}
  db:
    image: busybox
  debug:
    image: busybox
    profiles: [debug]
networks:
  front: {}
  back:
    ipam: {config: [{subnet: 10.5.0.0/24}]}
volumes:
  data: {}
"""


@pytest.fixture
def project(tmp_path: Path) -> model.Project:
    (tmp_path / "web.env").write_text("B=from-file\nA=overridden\n")
    return model.load_texts([(FILE, str(tmp_path / "compose.yaml"))], tmp_path, {"FROM_SHELL": "shell"})


def test_create_args(project: model.Project, tmp_path: Path) -> None:
    argv = engine.create_args(project, "web", "shop-web-1", {"k": "v"})
    pairs = list(zip(argv[::2], argv[1::2]))
    assert ("--name", "shop-web-1") in pairs and ("--pull", "never") in pairs
    env = [v for f, v in zip(argv, argv[1:]) if f == "-e"]
    assert env == ["B=from-file", "A=1", "FROM_SHELL=shell"]  # env_file first, environment over it
    flags = list(zip(argv, argv[1:]))
    assert ("-p", "127.0.0.1:8080:80/tcp") in flags and ("-p", "53/udp") in flags
    assert ("--mount", "type=volume,source=shop_data,target=/data,readonly") in flags
    assert ("--mount", f"type=bind,source={tmp_path}/site,target=/site") in flags
    assert ("--mount", "type=volume,target=/anon") in flags
    assert ("--mount", "type=tmpfs,target=/tmp,tmpfs-size=1048576") in flags
    # eth0 is the first network by name (back); the service's name is an alias on every network.
    assert ("--network", "shop_back") in flags and ("--ip", "10.5.0.9") in flags
    assert ("--network-alias", "web") in flags
    assert engine.networks_of(project, project.services["web"]) == [
        ("shop_back", [], "10.5.0.9"), ("shop_front", ["www"], None)]
    assert ("--stop-timeout", "2") in flags  # rounded up to whole seconds
    assert ("--ulimit", "nofile=100:200") in flags and ("--ulimit", "nproc=64") in flags
    assert ("--add-host", "gw:10.0.0.1") in flags and ("--sysctl", "net.core.somaxconn=1024") in flags
    assert ("--cpus", "0.5") in flags and ("--memory", str(64 << 20)) in flags and ("--pids-limit", "50") in flags
    assert {"--read-only", "--init"} <= set(argv)
    assert ("--label", "tier=front") in flags and ("--label", "k=v") in flags
    assert (tmp_path / "site").is_dir()  # the short syntax makes a missing bind source


def test_config_goes_through_create_parser(project: model.Project, tmp_path: Path) -> None:
    cfg = engine.config_for(None, project, "web", "shop-web-1", {})  # type: ignore[arg-type]
    assert cfg.image == "busybox" and cfg.command == ("httpd", "-f") and cfg.entrypoint == ("/bin/sh", "-c")
    assert cfg.healthcheck == {"Test": ["CMD-SHELL", "true"], "Interval": 1_000_000_000, "Retries": 2}
    assert cfg.restart == {"name": "on-failure", "max_retries": 3}
    assert cfg.network == "shop_back" and cfg.network_aliases == ("web",) and cfg.user == "1000"
    assert cfg.limits.pids == 50


def test_config_hash_follows_the_model_and_the_image(project: model.Project, tmp_path: Path) -> None:
    h = engine.config_hash(project, "web", "sha256:aa")
    assert h == engine.config_hash(project, "web", "sha256:aa")
    assert h != engine.config_hash(project, "web", "sha256:bb")
    changed = model.load_texts([(FILE.replace('A: "1"', 'A: "2"'), str(tmp_path / "compose.yaml"))], tmp_path,
                               {"FROM_SHELL": "shell"})
    assert engine.config_hash(changed, "web", "sha256:aa") != h
    assert engine.config_hash(changed, "db", "sha256:aa") == engine.config_hash(project, "db", "sha256:aa")


def test_profiles_and_levels(project: model.Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COMPOSE_PROFILES", raising=False)
    assert engine.active(project, []) == ["web", "db"]
    assert engine.active(project, ["debug"]) == ["web", "db", "debug"]
    assert engine.active(project, [], ["debug"]) == ["web", "db", "debug"]  # naming a service enables it
    monkeypatch.setenv("COMPOSE_PROFILES", "debug")
    assert "debug" in engine.active(project, [])
    with pytest.raises(ComposeError, match="no such service: nope"):
        engine.active(project, [], ["nope"])
    assert engine.levels(project, ["web", "db", "debug"]) == [["db", "debug"], ["web"]]
    assert engine.container_name(project, "web", 2) == "shop-web-2"
    assert engine.image_name(project, "db") == "busybox"
    assert engine.replicas(project, "web", {}) == 2 and engine.replicas(project, "web", {"web": 5}) == 5


def test_missing_env_file_is_one_error(tmp_path: Path) -> None:
    text = "services:\n  a:\n    image: busybox\n    env_file: [nope.env]\n"
    project = model.load_texts([(text, str(tmp_path / "compose.yaml"))], tmp_path, {})
    with pytest.raises(ComposeError, match="nope.env not found"):
        engine.create_args(project, "a", "x", {})
    text = "services:\n  a:\n    image: busybox\n    env_file: [{path: nope.env, required: false}]\n"
    project = model.load_texts([(text, str(tmp_path / "compose.yaml"))], tmp_path, {})
    assert "-e" not in engine.create_args(project, "a", "x", {})
