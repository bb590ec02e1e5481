"""The rarer `run`/`create` flags of issue 13: parsed into the config as Docker reads them, bad values refused
in one UsageError naming the flag, and the spec carries them (namespaces, /dev/shm, linux.resources)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pycontain import cli
from pycontain import config as c
from pycontain import oci as ocispec
from pycontain.errors import UsageError


@pytest.fixture(autouse=True)
def _network_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYCONTAIN_NETWORK", "none")
    monkeypatch.setenv("PYCONTAIN_PULL", "never")


def config(*args: str) -> c.ContainerConfig:
    opts, pos = cli.parse_options(cli.RUN_OPTIONS, [*args, "img", "true"], "run")
    return cli.config_from(opts, pos)  # type: ignore[no-any-return]


def test_no_rare_flag_leaves_every_new_field_at_its_default() -> None:
    cfg = config()
    assert (cfg.ip, cfg.network_aliases, cfg.mac_address, cfg.dns, cfg.add_hosts, cfg.expose, cfg.publish_all,
            cfg.labels, cfg.cidfile, cfg.pid, cfg.ipc, cfg.uts, cfg.shm_size, cfg.group_add,
            cfg.log_driver) == (None, (), None, (), (), (), False, {}, None, None, None, None, None, (), None)
    assert c.ContainerConfig.from_json(cfg.to_json()) == cfg


def test_network_flags_on_a_user_network() -> None:
    cfg = config("--network", "front", "--ip", "10.89.0.010", "--network-alias", "web", "--network-alias", "www",
                 "--mac-address", "02:42:AC:11:00:09", "--dns", "10.0.0.53", "--dns", "fd00::53",
                 "--dns-search", "example.com.", "--dns-option", "ndots:2", "--add-host", "db:10.0.0.2",
                 "--add-host", "gw=host-gateway", "--add-host", "v6:[fd00::1]", "--expose", "80",
                 "--expose", "9000-9002/udp", "-P")
    assert cfg.ip == "10.89.0.10" and cfg.network_aliases == ("web", "www")
    assert cfg.mac_address == "02:42:ac:11:00:09"
    assert cfg.dns == ("10.0.0.53", "fd00::53") and cfg.dns_search == ("example.com",)
    assert cfg.dns_options == ("ndots:2",)
    assert cfg.add_hosts == ("db:10.0.0.2", "gw:host-gateway", "v6:fd00::1")
    assert cfg.expose == ("80/tcp", "9000/udp", "9001/udp", "9002/udp") and cfg.publish_all
    assert c.ContainerConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize("args, words", [
    (["--network", "front", "--ip", "10.1.2"], "--ip"),
    (["--ip", "10.88.0.5"], "user network"),  # the default bridge: as Docker, no --ip
    (["--network", "bridge", "--network-alias", "x"], "user network"),
    (["--network", "front", "--network-alias", "-x"], "--network-alias"),
    (["--network", "front", "--mac-address", "03:00:00:00:00:01"], "multicast"),
    (["--network", "front", "--mac-address", "02:42:ac"], "--mac-address"),
    (["--mac-address", "02:42:ac:11:00:02"], "--network none"),
    (["--dns", "dns.example"], "--dns"),
    (["--dns-search", "a..b"], "--dns-search"),
    (["--dns-option", "a b"], "--dns-option"),
    (["--add-host", "db"], "--add-host"),
    (["--add-host", "db:not-an-ip"], "--add-host"),
    (["--add-host", ":10.0.0.1"], "--add-host"),
    (["--expose", "http"], "--expose"),
    (["--expose", "90-80"], "--expose"),
    (["--expose", "70000"], "--expose"),
    (["-P"], "-P"),
    (["--network", "container:other", "--dns", "1.1.1.1"], "conflicting"),
    (["--network", "container:other", "-h", "x"], "conflicting"),
    (["--network", "container:"], "--network"),
    (["--label", "=v"], "--label"),
    (["--label", "a b=v"], "--label"),
    (["--label-file", "/nonexistent/labels"], "--label-file"),
    (["--cidfile", ""], "--cidfile"),
    (["--pid", "private"], "--pid"),
    (["--ipc", "container:"], "--ipc"),
    (["--ipc", "sideways"], "--ipc"),
    (["--uts", "container:x"], "--uts"),
    (["--uts", "host", "-h", "x"], "conflicting"),
    (["--shm-size", "0"], "--shm-size"),
    (["--shm-size", "lots"], "--shm-size"),
    (["--shm-size", "1m", "--ipc", "host"], "conflicting"),
    (["--group-add", "-x"], "--group-add"),
    (["--memory-swappiness", "101"], "--memory-swappiness"),
    (["--memory-swappiness", "x"], "--memory-swappiness"),
    (["--cpu-period", "999"], "--cpu-period"),
    (["--cpu-quota", "10"], "--cpu-quota"),
    (["--cpus", "1", "--cpu-quota", "50000"], "conflicting"),
    (["--blkio-weight", "5"], "--blkio-weight"),
    (["--platform", "linux/s390x"], "--platform"),
    (["--platform", "windows/amd64"], "--platform"),
    (["--log-driver", "syslog"], "--log-driver"),
])
def test_bad_values_are_one_usage_error_naming_the_flag(args: list[str], words: str) -> None:
    if c.host_platform() == "linux/s390x" and "linux/s390x" in args:
        pytest.skip("that is this host's platform")
    with pytest.raises(UsageError) as err:
        config(*args)
    text = str(err.value)
    assert "\n" not in text and words in text, text


def test_an_unknown_flag_names_itself() -> None:
    with pytest.raises(UsageError, match="unknown flag --link"):
        config("--link", "db")


def test_labels_from_a_file_then_the_flags(tmp_path: Path) -> None:
    f = tmp_path / "labels"
    f.write_text("# a comment\n\nteam=web\nempty\nover=file\n")
    cfg = config("--label-file", str(f), "-l", "over=flag", "--label", "k=v=w")
    assert cfg.labels == {"team": "web", "empty": "", "over": "flag", "k": "v=w"}


def test_namespace_modes_cidfile_shm_groups_platform_log_driver(tmp_path: Path) -> None:
    cfg = config("--pid", "host", "--ipc", "shareable", "--uts", "host", "--shm-size", "128m", "--group-add",
                 "audio", "--group-add", "0100", "--cidfile", "rel/cid", "--platform", c.host_platform(),
                 "--log-driver", "none")
    assert (cfg.pid, cfg.ipc, cfg.uts, cfg.shm_size) == ("host", "shareable", "host", 128 << 20)
    assert cfg.group_add == ("audio", "100") and cfg.log_driver == "none"
    assert cfg.cidfile == os.path.abspath("rel/cid")
    assert config("--ipc", "none").ipc == "private"
    assert config("--network", "container:db", "--ipc", "container:db", "--pid", "container:db").network \
        == "container:db"


def test_resource_flags_go_through_limits_into_linux_resources() -> None:
    cfg = config("-m", "64m", "--oom-kill-disable", "--memory-swappiness", "10", "--cpu-period", "50000",
                 "--cpu-quota", "25000")
    lim = cfg.limits
    assert (lim.oom_kill_disable, lim.memory_swappiness, lim.cpu_period, lim.cpu_quota) == (True, 10, 50000, 25000)
    assert lim.cpus == 0.5
    res = ocispec.resources_from(lim)
    assert res["memory"] == {"limit": 64 << 20, "swappiness": 10, "disableOOMKiller": True}
    assert res["cpu"] == {"period": 50000, "quota": 25000}
    back = ocispec.limits_from(res, c.Limits())
    assert (back.cpus, back.cpu_period, back.memory_swappiness, back.oom_kill_disable) == (0.5, 50000, 10, True)
    assert ocispec.resources_from(c.Limits(blkio_weight=300))["blockIO"] == {"weight": 300}
    assert ocispec.limits_from({"blockIO": {"weight": 300}}).blkio_weight == 300
    # --cpus keeps Docker's default period; -1 swappiness is the host's (unset)
    assert ocispec.resources_from(config("--cpus", "0.5").limits)["cpu"] == {"quota": 50000, "period": 100000}
    assert config("--memory-swappiness", "-1").limits.memory_swappiness is None


def spec_for(cfg: c.ContainerConfig, res: c.ResolvedConfig | None = None) -> dict[str, Any]:
    res = res or c.ResolvedConfig(argv=("true",), env=(), workdir="/", user="", hostname="abc")
    return ocispec.container_spec("x" * 64, cfg, res, cfg.limits, "/nonexistent", [], {})


def test_spec_namespaces_and_dev_shm() -> None:
    plain = spec_for(config())
    kinds = {ns["type"] for ns in plain["linux"]["namespaces"]}
    assert {"pid", "ipc", "uts", "network"} <= kinds and plain["hostname"] == "abc"
    shm = next(m for m in plain["mounts"] if m["destination"] == "/dev/shm")
    assert "size=65536k" in shm["options"]  # Docker's 64m
    spec = spec_for(config("--pid", "host", "--ipc", "host", "--uts", "host"))
    kinds = {ns["type"] for ns in spec["linux"]["namespaces"]}
    assert not {"pid", "ipc", "uts"} & kinds and "hostname" not in spec
    shm = next(m for m in spec["mounts"] if m["destination"] == "/dev/shm")
    assert shm["type"] == "bind" and shm["source"] == "/dev/shm"
    sized = spec_for(config("--shm-size", "2m"))
    shm = next(m for m in sized["mounts"] if m["destination"] == "/dev/shm")
    assert f"size={2 << 20}" in shm["options"] and "size=65536k" not in shm["options"]


def test_joining_a_container_that_is_not_running_is_one_line(tmp_path: Path) -> None:
    record = tmp_path / "abc"
    record.mkdir()
    (record / "config.json").write_text('{"name": "db"}')
    (record / "state.json").write_text('{"status": "exited"}')
    res = c.ResolvedConfig(argv=("true",), hostname="abc", joins={"network": str(record)})
    with pytest.raises(Exception, match="cannot join the network namespace of container db: it is not running"):
        spec_for(config("--network", "container:db"), res)
    res = c.ResolvedConfig(argv=("true",), hostname="abc", joins={"ipc": str(tmp_path / "gone")})
    with pytest.raises(Exception, match="no longer exists"):
        spec_for(config("--ipc", "container:gone"), res)


def test_group_add_ids_in_the_spec_drop_a_non_root_users_capabilities() -> None:
    res = c.ResolvedConfig(argv=("true",), hostname="abc", user="nobody", ids=[65534, 65534, [10, 65534]])
    spec = spec_for(config("--group-add", "wheel"), res)
    assert spec["process"]["user"] == {"uid": 65534, "gid": 65534, "additionalGids": [10, 65534]}
    assert spec["process"]["capabilities"]["effective"] == [] and ocispec.USER_NAME not in spec["annotations"]


def test_image_ids_read_the_topmost_layer_and_honour_whiteouts(tmp_path: Path) -> None:
    low, high = tmp_path / "low", tmp_path / "high"
    for layer in (low, high):
        (layer / "etc").mkdir(parents=True)
    (low / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
    (low / "etc" / "group").write_text("root:x:0:\nwheel:x:10:root\napp:x:1000:\n")
    (high / "etc" / "group").write_text("root:x:0:\nwheel:x:10:root\napp:x:1000:\naudio:x:29:app\n")
    layers = [str(low), str(high)]
    assert ocispec.image_ids(layers, "", ("audio", "7")) == [0, 0, [0, 7, 10, 29]]
    assert ocispec.image_ids(layers, "app", ("wheel",)) == [1000, 1000, [10, 29, 1000]]
    assert ocispec.image_ids(layers, "app:root", ("wheel",)) == [1000, 0, [0, 10]]
    with pytest.raises(UsageError, match="--group-add video"):
        ocispec.image_ids(layers, "", ("video",))
    with pytest.raises(UsageError, match="unable to find user ghost"):
        ocispec.image_ids(layers, "ghost", ("7",))
    os.mknod(high / "etc" / "passwd", 0o600 | 0o020000, 0)  # a whiteout: the lower passwd is gone
    assert ocispec.image_ids(layers, "", ("7",)) == [0, 0, [0, 7]]  # no user named root: no groups of its
    (high / "etc" / "group").unlink()
    (high / "etc" / "group").symlink_to("/etc/shadow")  # never followed on the host
    with pytest.raises(UsageError, match="not a regular file"):
        ocispec.image_ids(layers, "", ("wheel",))
