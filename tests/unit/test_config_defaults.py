"""Image defaults merge with user flags as Docker merges them."""

import pytest

from pycontain import config
from pycontain.config import ContainerConfig
from pycontain.errors import UsageError

IMAGE = {"config": {"Env": ["PATH=/img/bin", "A=image"], "Cmd": ["sh"], "WorkingDir": "/app", "User": "app"}}


def test_image_cmd_env_workdir_user_are_defaults():
    r = ContainerConfig(image="x").with_image_defaults(IMAGE, "abc123def456")
    assert r.argv == ("sh",)
    assert "PATH=/img/bin" in r.env and "A=image" in r.env and "HOSTNAME=abc123def456" in r.env
    assert r.workdir == "/app" and r.user == "app" and r.hostname == "abc123def456"


def test_user_flags_override_image_defaults():
    cfg = ContainerConfig(image="x", command=("echo", "hi"), env=("A=user",), workdir="/w", user="0", hostname="h")
    r = cfg.with_image_defaults(IMAGE, "abc")
    assert r.argv == ("echo", "hi")
    assert "A=user" in r.env and "A=image" not in r.env
    assert (r.workdir, r.user, r.hostname) == ("/w", "0", "h")


def test_entrypoint_flag_drops_the_image_cmd():
    r = ContainerConfig(image="x", entrypoint=("/bin/date",)).with_image_defaults(IMAGE, "abc")
    assert r.argv == ("/bin/date",)


def test_no_command_anywhere_is_an_error():
    with pytest.raises(UsageError, match="no command"):
        ContainerConfig(image="x").with_image_defaults({"config": {}}, "abc")


def test_default_path_and_term_are_added():
    r = ContainerConfig(image="x", command=("true",), tty=True).with_image_defaults({}, "abc")
    assert any(e.startswith("PATH=/usr/local/sbin") for e in r.env)
    assert "TERM=xterm" in r.env


def test_env_parsing(tmp_path):
    assert config.parse_env(["A=1", "B", "C"], {"B": "host"}) == ["A=1", "B=host"]
    with pytest.raises(UsageError):
        config.parse_env(["=x"])
    f = tmp_path / "env"
    f.write_text("# comment\n\nX=1\nY=two words\n")
    assert config.read_env_file(str(f)) == ["X=1", "Y=two words"]
    with pytest.raises(UsageError, match="env-file"):
        config.read_env_file(str(tmp_path / "missing"))


def test_volume_parsing(tmp_path):
    m = config.parse_volume(f"{tmp_path}:/data:ro")
    assert (m.source, m.target, m.readonly) == (str(tmp_path), "/data", True)
    for bad in ("./rel:/x", f"{tmp_path}:rel", f"{tmp_path}:/x:rx", f"{tmp_path}/missing:/x", "rel"):
        with pytest.raises(UsageError):
            config.parse_volume(bad)


def test_config_round_trips_through_json():
    cfg = ContainerConfig(image="x", command=("a",), mounts=(config.BindMount("/s", "/t", True),),
                          limits=config.Limits(pids=7), entrypoint=("e",))
    assert ContainerConfig.from_json(cfg.to_json()) == cfg
