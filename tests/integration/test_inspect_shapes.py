"""`inspect` keeps Docker's field names and JSON types, so scripts written for `docker inspect` read it:
a created, a running and an exited container, limits, published ports (in a network namespace of the
test's own), a health check, an image, and `--type`-like lookups of networks and volumes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import leaks as leaks_module
import support
from netns_support import NetNs, NetPycontain, leakcheck_wrapper, network_leftovers
from support import Pycontain, assert_pycontain_error

STR, INT, BOOL, LIST, DICT, NONE = str, int, bool, list, dict, type(None)
ZERO_TIME = "0001-01-01T00:00:00Z"

# Docker's fields and the JSON types it gives them (a tuple: any of those).
CONTAINER: dict[str, Any] = {
    "Id": STR, "Created": STR, "Path": STR, "Args": LIST, "Image": STR, "ResolvConfPath": STR, "HostnamePath": STR,
    "HostsPath": STR, "LogPath": STR, "Name": STR, "RestartCount": INT, "Driver": STR, "Platform": STR,
    "MountLabel": STR, "ProcessLabel": STR, "AppArmorProfile": STR, "ExecIDs": (LIST, NONE), "Mounts": LIST,
    "State": {"Status": STR, "Running": BOOL, "Paused": BOOL, "Restarting": BOOL, "OOMKilled": BOOL, "Dead": BOOL,
              "Pid": INT, "ExitCode": INT, "Error": STR, "StartedAt": STR, "FinishedAt": STR},
    "HostConfig": {
        "Binds": (LIST, NONE), "NetworkMode": STR, "PortBindings": DICT,
        "RestartPolicy": {"Name": STR, "MaximumRetryCount": INT}, "AutoRemove": BOOL, "VolumesFrom": (LIST, NONE),
        "CapAdd": (LIST, NONE), "CapDrop": (LIST, NONE), "Dns": LIST, "DnsSearch": LIST, "ExtraHosts": (LIST, NONE),
        "GroupAdd": (LIST, NONE), "IpcMode": STR, "PidMode": STR, "Privileged": BOOL, "PublishAllPorts": BOOL,
        "ReadonlyRootfs": BOOL, "SecurityOpt": (LIST, NONE), "Tmpfs": (DICT, NONE), "UTSMode": STR,
        "UsernsMode": STR, "ShmSize": INT, "Runtime": STR, "Memory": INT, "MemoryReservation": INT,
        "MemorySwap": INT, "NanoCpus": INT, "CpuShares": INT, "CpusetCpus": STR, "PidsLimit": (INT, NONE),
        "Devices": LIST, "Ulimits": LIST, "Sysctls": DICT, "Init": (BOOL, NONE), "LogConfig": DICT,
    },
    "GraphDriver": {"Name": STR, "Data": {"LowerDir": STR, "UpperDir": STR, "MergedDir": STR, "WorkDir": STR}},
    "Config": {"Hostname": STR, "User": STR, "AttachStdin": BOOL, "AttachStdout": BOOL, "AttachStderr": BOOL,
               "Tty": BOOL, "OpenStdin": BOOL, "Env": LIST, "Cmd": (LIST, NONE), "Image": STR,
               "Volumes": (DICT, NONE), "WorkingDir": STR, "Entrypoint": (LIST, NONE), "Labels": DICT,
               "StopSignal": STR, "StopTimeout": (INT, NONE), "Healthcheck": (DICT, NONE),
               "ExposedPorts": (DICT, NONE)},
    "NetworkSettings": {"IPAddress": STR, "Gateway": STR, "IPPrefixLen": INT, "MacAddress": STR, "Ports": DICT,
                        "Networks": DICT},
}
ENDPOINT = {"IPAddress": STR, "Gateway": STR, "IPPrefixLen": INT, "MacAddress": STR, "NetworkID": STR,
            "EndpointID": STR, "Aliases": (LIST, NONE), "DNSNames": (LIST, NONE)}
IMAGE: dict[str, Any] = {
    "Id": STR, "RepoTags": LIST, "RepoDigests": LIST, "Parent": STR, "Comment": STR, "Created": STR,
    "Config": DICT, "Architecture": STR, "Os": STR, "Size": INT,
    "GraphDriver": {"Name": STR, "Data": DICT}, "RootFS": {"Type": STR, "Layers": LIST},
    "Metadata": {"LastTagTime": STR},
}


def shape_errors(value: Any, shape: Any, where: str = "") -> list[str]:
    """Every field of `shape` missing from `value` or of another JSON type (bool is not an int here)."""
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return [f"{where or '.'}: {type(value).__name__}, not an object"]
        out = []
        for key, sub in shape.items():
            if key not in value:
                out.append(f"{where}.{key}: missing")
            else:
                out += shape_errors(value[key], sub, f"{where}.{key}")
        return out
    kinds = shape if isinstance(shape, tuple) else (shape,)
    ok = any(isinstance(value, k) and not (k is INT and isinstance(value, bool)) for k in kinds)
    return [] if ok else [f"{where}: {value!r} is not {'/'.join(k.__name__ for k in kinds)}"]


def inspect(p: Pycontain, *args: str) -> dict[str, Any]:
    data = json.loads(p.ok("inspect", *args).stdout)
    assert isinstance(data, list) and len(data) == 1
    return dict(data[0])


pytestmark_leaks = pytest.mark.usefixtures("no_leaks")


@pytestmark_leaks
def test_created_running_and_exited_containers_have_dockers_fields_and_types(pc: Pycontain) -> None:
    pc.ok("create", "--name", "new", "busybox", "sleep", "60")
    pc.ok("run", "-d", "--name", "up", "busybox", "sleep", "60")
    pc.wait_until_running("up")
    pc("run", "--name", "done", "busybox", "sh", "-c", "exit 3")
    shown = {name: inspect(pc, name) for name in ("new", "up", "done")}
    for name, info in shown.items():
        assert shape_errors(info, CONTAINER) == [], name
        assert info["Name"] == f"/{name}" and info["Driver"] == "overlay2" and info["Platform"] == "linux"
        assert info["Image"].startswith("sha256:") and info["Config"]["Image"] == "busybox"
        assert info["GraphDriver"]["Name"] == "overlay2"
        assert info["HostConfig"]["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
        assert info["NetworkSettings"]["Networks"].keys() == {"none"}  # the suite runs with --network none
        assert info["Path"] == info["Config"]["Cmd"][0] if name != "done" else info["Path"] == "sh"
        assert "Seccomp" in info and "UserNamespace" in info and "ImageName" in info  # pycontain's own stay
    new, up, done = shown["new"]["State"], shown["up"]["State"], shown["done"]["State"]
    assert (new["Status"], new["Running"], new["Pid"], new["ExitCode"]) == ("created", False, 0, 0)
    assert new["StartedAt"] == ZERO_TIME and new["FinishedAt"] == ZERO_TIME
    # Docker says 0 while it runs: an exit code does not exist yet (pycontain said null).
    assert (up["Status"], up["Running"], up["ExitCode"], up["Paused"]) == ("running", True, 0, False)
    assert up["Pid"] > 1 and up["StartedAt"] != ZERO_TIME and up["FinishedAt"] == ZERO_TIME
    assert (done["Status"], done["Running"], done["ExitCode"], done["Pid"]) == ("exited", False, 3, 0)
    assert done["FinishedAt"] != ZERO_TIME
    assert "Health" not in up  # no health check: no Health, as Docker


@pytestmark_leaks
def test_limits_are_in_hostconfig_with_dockers_units(pc: Pycontain) -> None:
    pc.ok("create", "--name", "lim", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "100", "busybox", "true")
    host = inspect(pc, "lim")["HostConfig"]
    assert host["Memory"] == 67108864
    assert host["NanoCpus"] == 500000000
    assert host["PidsLimit"] == 100
    pc.ok("create", "--name", "plain", "busybox", "true")
    plain = inspect(pc, "plain")["HostConfig"]
    assert plain["Memory"] == 0 and plain["NanoCpus"] == 0  # 0: no limit, as Docker


@pytestmark_leaks
def test_config_comes_from_the_image_and_the_command_line(pc: Pycontain, busybox_tarball: Path) -> None:
    pc.ok("import", "--change", 'ENTRYPOINT ["/bin/sh", "-c"]', "--change", 'CMD ["echo hi"]',
          "--change", "EXPOSE 80", "--change", "LABEL team=web", "--change", "STOPSIGNAL SIGQUIT",
          busybox_tarball, "img")
    pc.ok("create", "--name", "c", "-e", "K=V", "-w", "/tmp", "img")
    cfg = inspect(pc, "c")["Config"]
    assert cfg["Entrypoint"] == ["/bin/sh", "-c"] and cfg["Cmd"] == ["echo hi"]
    assert cfg["ExposedPorts"] == {"80/tcp": {}} and cfg["Labels"] == {"team": "web"}
    assert cfg["StopSignal"] == "SIGQUIT" and cfg["WorkingDir"] == "/tmp" and "K=V" in cfg["Env"]
    assert cfg["Healthcheck"] is None
    pc.ok("create", "--name", "e", "--entrypoint", "echo", "img", "x")
    cfg = inspect(pc, "e")["Config"]
    assert cfg["Entrypoint"] == ["echo"] and cfg["Cmd"] == ["x"]  # --entrypoint drops the image's Cmd


def _edit_record(pc: Pycontain, ref: str, name: str, change: Any) -> None:
    """Write what the health-check, restart and init features record (their keys, as they store them)."""
    cid = inspect(pc, ref)["Id"]
    path = pc.root / "run" / "containers" / cid / name
    data = json.loads(path.read_text()) if path.exists() else {"status": "created"}
    change(data)
    path.write_text(json.dumps(data))


@pytestmark_leaks
def test_health_restart_and_init_as_their_features_record_them_show_in_dockers_shape(pc: Pycontain) -> None:
    pc.ok("create", "--name", "h", "busybox", "true")
    assert "Health" not in inspect(pc, "h")["State"]  # no health check: no Health, as Docker

    def config(data: dict[str, Any]) -> None:
        data["config"].update(healthcheck={"Test": ["CMD-SHELL", "true"], "Interval": 1000000000},
                              restart={"name": "on-failure", "max_retries": 5}, init=True, stop_timeout=3)

    _edit_record(pc, "h", "config.json", config)
    info = inspect(pc, "h")
    assert info["State"]["Health"] == {"Status": "starting", "FailingStreak": 0, "Log": []}
    assert info["Config"]["Healthcheck"]["Test"] == ["CMD-SHELL", "true"] and info["Config"]["StopTimeout"] == 3
    assert info["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 5}
    assert info["HostConfig"]["Init"] is True

    def health(data: dict[str, Any]) -> None:
        data.update(restart_count=2, health={"status": "unhealthy", "failing_streak": 3,
                                             "log": [{"start": "s", "end": "e", "exit_code": 1, "output": "no"}]})

    _edit_record(pc, "h", "state.json", health)
    info = inspect(pc, "h")
    assert info["RestartCount"] == 2
    assert info["State"]["Health"] == {
        "Status": "unhealthy", "FailingStreak": 3, "Log": [{"Start": "s", "End": "e", "ExitCode": 1, "Output": "no"}]}


@pytestmark_leaks
def test_an_image_has_dockers_fields_and_types(pc: Pycontain) -> None:
    info = inspect(pc, "busybox")
    assert shape_errors(info, IMAGE) == []
    assert info["RepoTags"] == ["busybox:latest"] and info["Id"].startswith("sha256:")
    assert info["RootFS"]["Type"] == "layers" and all(d.startswith("sha256:") for d in info["RootFS"]["Layers"])
    assert info["GraphDriver"]["Name"] == "overlay2" and info["Os"] == "linux"
    assert info["Config"]["Cmd"] == ["sh"]
    assert "LayerDirs" in info  # pycontain's own stays


@pytestmark_leaks
def test_inspect_answers_for_volumes_and_networks_and_misses_in_one_line(pc: Pycontain) -> None:
    pc.ok("volume", "create", "vol1")
    assert inspect(pc, "vol1")["Mountpoint"].endswith("/vol1/_data")
    assert inspect(pc, "none")["Driver"] == "null" and inspect(pc, "host")["Driver"] == "host"
    res = pc("inspect", "no-such-thing")
    assert_pycontain_error(res, 125)
    assert res.stdout.strip() == "[]"


# ---------------------------------------------------------------- published ports, in a netns of our own

@pytest.fixture
def npc(tmp_path: Path, busybox_tarball: Path, monkeypatch: pytest.MonkeyPatch,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetPycontain]:
    ns = NetNs()
    try:
        monkeypatch.setattr(leaks_module, "LEAKCHECK", leakcheck_wrapper(tmp_path, ns))
        snapshot = support.leakcheck_snapshot(tmp_path / "leakcheck-before.json")
        p = NetPycontain(tmp_path / "root", ns)
        p.ok("import", "--change", 'CMD ["sh"]', busybox_tarball, "busybox")
        yield p
        p.remove_all()
        assert network_leftovers(p) == []
        leaks = [line for line in support.leaks_since(snapshot, tmp_path_factory.getbasetemp())
                 if line != "leaked link: pycontain0" and not line.startswith("leaked nft: ")]
        assert not leaks, "left behind:\n" + "\n".join(leaks)
    finally:
        ns.close()


def test_published_ports_have_dockers_portbindings_and_ports(npc: NetPycontain) -> None:
    npc.ok("run", "-d", "--name", "web", "--network", "bridge", "-p", "8080:80", "-p", "127.0.0.1::53/udp",
           "busybox", "sleep", "60")
    npc.wait_until_running("web")
    info = inspect(npc, "web")
    assert shape_errors(info, CONTAINER) == []
    assert info["HostConfig"]["NetworkMode"] == "bridge"
    assert info["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}],
                                                  "53/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}
    ports = info["NetworkSettings"]["Ports"]
    assert ports["80/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": "8080"}]
    assert ports["53/udp"][0]["HostIp"] == "127.0.0.1" and int(ports["53/udp"][0]["HostPort"]) > 1024
    assert info["Config"]["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    settings = info["NetworkSettings"]
    bridge = settings["Networks"]["bridge"]
    assert shape_errors(bridge, ENDPOINT) == []
    net = npc.net_of("web")
    assert settings["IPAddress"] == bridge["IPAddress"] == net["address"]
    assert settings["Gateway"] == bridge["Gateway"] == net["gateway"] and bridge["IPPrefixLen"] == 16
    assert settings["MacAddress"] == bridge["MacAddress"] == net["mac"]
    # The same endpoint as `network inspect bridge` shows.
    members = json.loads(npc.ok("network", "inspect", "bridge").stdout)[0]["Containers"]
    assert members[info["Id"]]["EndpointID"] == bridge["EndpointID"]
    assert bridge["NetworkID"] == json.loads(npc.ok("network", "inspect", "bridge").stdout)[0]["Id"]


@pytestmark_leaks
def test_volume_ls_and_inspect_take_a_format(pc: Pycontain) -> None:
    pc.ok("volume", "create", "--label", "k=v", "data")
    assert pc.ok("volume", "ls", "--format", "{{.Name}} {{.Driver}} {{.Labels}}").stdout == "data local k=v\n"
    lines = pc.ok("volume", "ls", "--format", "table {{.Name}}\t{{.Scope}}").stdout.splitlines()
    assert [line.split() for line in lines] == [["VOLUME", "NAME", "SCOPE"], ["data", "local"]]
    assert json.loads(pc.ok("volume", "ls", "--format", "json").stdout)["Name"] == "data"
    out = pc.ok("volume", "inspect", "-f", "{{.Name}} {{index .Labels \"k\"}}", "data").stdout
    assert out == "data v\n"
    res = pc("volume", "inspect", "--format", "{{.Name", "data")
    assert_pycontain_error(res, 125)
    assert len(res.stderr.strip().splitlines()) == 1 and res.stdout == ""
