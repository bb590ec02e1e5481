"""The command line is parsed the way a Docker user expects, and bad input is a clean error."""

import pytest

from pycontain import cli
from pycontain.errors import UsageError


def parse_run(*args: str):
    return cli.parse_options(cli.RUN_OPTIONS, list(args), "run")


def test_combined_short_flags_and_options_stop_at_the_image():
    opts, pos = parse_run("-it", "--rm", "-e", "A=1", "-eB=2", "--name=web", "alpine", "sh", "-c", "ls -l")
    assert opts["interactive"] and opts["tty"] and opts["rm"]
    assert opts["env"] == ["A=1", "B=2"]
    assert opts["name"] == "web"
    assert pos == ["alpine", "sh", "-c", "ls -l"]


def test_flags_after_the_image_belong_to_the_container_command():
    opts, pos = parse_run("busybox", "ls", "-la", "--rm")
    assert not opts["rm"]
    assert pos == ["busybox", "ls", "-la", "--rm"]


def test_value_flag_in_a_cluster_takes_the_rest_or_the_next_argument():
    opts, _ = parse_run("-dw", "/srv", "img")
    assert opts["detach"] and opts["workdir"] == "/srv"
    opts, _ = parse_run("-w/srv", "img")
    assert opts["workdir"] == "/srv"


@pytest.mark.parametrize("args", [["--bogus", "img"], ["-Z", "img"], ["--name"], ["--rm=maybe", "img"]])
def test_unknown_or_incomplete_flags_are_usage_errors(args):
    with pytest.raises(UsageError):
        parse_run(*args)


def test_config_from_flags_is_validated():
    opts, pos = parse_run("--pids-limit", "0", "img")
    with pytest.raises(UsageError, match="pids-limit"):
        cli.config_from(opts, pos)
    opts, pos = parse_run("--name", "bad name", "img")
    with pytest.raises(UsageError, match="name"):
        cli.config_from(opts, pos)
    opts, pos = parse_run("-w", "relative", "img")
    with pytest.raises(UsageError, match="absolute"):
        cli.config_from(opts, pos)


def test_config_from_flags_builds_a_frozen_config():
    opts, pos = parse_run("--rm", "-u", "nobody", "-h", "box", "--pids-limit", "-1", "img", "echo", "hi")
    cfg = cli.config_from(opts, pos)
    assert cfg.image == "img" and cfg.command == ("echo", "hi")
    assert cfg.remove and cfg.user == "nobody" and cfg.hostname == "box"
    assert cfg.limits.pids is None
    with pytest.raises(AttributeError):
        cfg.image = "other"


def test_signals_parse_by_name_or_number():
    assert cli.parse_signal("TERM") == 15
    assert cli.parse_signal("SIGKILL") == 9
    assert cli.parse_signal("hup") == 1
    assert cli.parse_signal("10") == 10
    for bad in ("NOPE", "0", "SIG_DFL", "999"):
        with pytest.raises(UsageError):
            cli.parse_signal(bad)


def test_main_prints_one_line_and_exit_125_for_usage_errors(capsys):
    assert cli.main(["frobnicate"]) == 125
    err = capsys.readouterr().err
    assert err.startswith("pycontain: ") and err.count("\n") == 1
    assert cli.main(["--version"]) == 0
    assert "pycontain version" in capsys.readouterr().out
