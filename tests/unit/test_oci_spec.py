"""The spec as data: options parsed into mount flags, resources into cgroup limits and back, the runc-style
command line, and one-line refusals of a bad bundle. No root, no kernel."""

from __future__ import annotations

from typing import Any

import pytest

from pycontain import mounts, syscalls
from pycontain.config import ContainerConfig, Limits, ResolvedConfig
from pycontain.oci import cli, executor, validate
from pycontain import oci as ocispec
from pycontain.oci import SpecError


def test_mount_options_become_flags_propagation_and_data() -> None:
    m = mounts.MountStep.parse({"destination": "/data/", "type": "tmpfs", "source": "tmpfs",
                                "options": ["nosuid", "nodev", "ro", "rw", "rslave", "mode=1777", "size=1m", "z"]},
                               "/bundle")
    assert m.destination == "/data"
    assert m.flags == syscalls.MS_NOSUID | syscalls.MS_NODEV  # rw cleared the ro before it
    assert m.propagation == syscalls.MS_SLAVE | syscalls.MS_REC
    assert m.data == "mode=1777,size=1m"  # SELinux's z is accepted and ignored
    assert not m.bind


def test_a_relative_bind_source_is_relative_to_the_bundle() -> None:
    m = mounts.MountStep.parse({"destination": "/x", "source": "files/x", "options": ["rbind", "ro", "noexec"]},
                               "/bundle")
    assert (m.bind, m.recursive, m.source) == (True, True, "/bundle/files/x")
    assert m.bind_attrs() == syscalls.MOUNT_ATTR_RDONLY | syscalls.MOUNT_ATTR_NOEXEC


def test_resources_and_limits_convert_both_ways() -> None:
    resources = {"memory": {"limit": 64 << 20, "swap": 128 << 20, "reservation": 32 << 20, "swappiness": 10},
                 "cpu": {"quota": 50_000, "period": 250_000, "shares": 512, "cpus": "0-1", "mems": "0"},
                 "pids": {"limit": 100}, "network": {"classID": 7, "priorities": [{"name": "eth0", "priority": 3}]}}
    limits = ocispec.limits_from(resources)
    assert (limits.memory, limits.memory_swap, limits.memory_reservation) == (64 << 20, 128 << 20, 32 << 20)
    assert limits.cpu_period == 250_000 and round(limits.cpus * limits.cpu_period) == 50_000
    assert (limits.cpu_shares, limits.cpuset_cpus, limits.cpuset_mems, limits.pids) == (512, "0-1", "0", 100)
    assert (limits.memory_swappiness, limits.net_classid, limits.net_priorities) == (10, 7, {"eth0": 3})
    back = ocispec.resources_from(Limits(memory=64 << 20, cpus=0.5, pids=None))
    assert back == {"memory": {"limit": 64 << 20}, "cpu": {"quota": 50_000, "period": 100_000}}


def test_unlimited_values_mean_no_limit() -> None:
    limits = ocispec.limits_from({"memory": {"limit": -1}, "pids": {"limit": 0}, "cpu": {"quota": -1}})
    assert (limits.memory, limits.pids, limits.cpus) == (None, None, None)


def test_the_front_ends_spec_is_complete_and_checks_clean() -> None:
    cfg = ContainerConfig(image="busybox", read_only=True, network="host")
    res = ResolvedConfig(argv=("sh",), env=("PATH=/bin",), workdir="/w", user="app", hostname="h")
    spec = ocispec.container_spec("c" * 64, cfg, res, cfg.limits, "/s", ["/l1", "/l2"], {"/etc/hosts": "/e/h"})
    assert validate.check(spec) is spec
    assert {ns["type"] for ns in spec["linux"]["namespaces"]} == {"pid", "mount", "uts", "ipc", "cgroup"}
    assert spec["annotations"][ocispec.OVERLAY] == "lowerdir=/l2:/l1,upperdir=/s/upper,workdir=/s/work"
    assert spec["annotations"][ocispec.USER_NAME] == "app"
    assert spec["root"] == {"path": "/s/rootfs", "readonly": True}
    assert [m["destination"] for m in spec["mounts"]][-4:] == ["/etc/hosts", "/tmp", "/var/tmp", "/run"]
    assert spec["linux"]["resources"]["pids"] == {"limit": 2048}


def _spec(**changes: Any) -> dict[str, Any]:
    spec = validate.default_spec()
    for path, value in changes.items():
        target = spec
        keys = path.split("__")
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        if value is None:
            target.pop(keys[-1], None)
        else:
            target[keys[-1]] = value
    return spec


@pytest.mark.parametrize("changes,field", [
    ({"ociVersion": "2.0.0"}, "ociVersion"),
    ({"process__args": []}, "process.args"),
    ({"process__cwd": "relative"}, "process.cwd"),
    ({"process__capabilities": {"bounding": ["CAP_NOPE"]}}, "process.capabilities.bounding"),
    ({"process__rlimits": [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}]}, "process.rlimits[0]"),
    ({"linux__namespaces": [{"type": "mount"}, {"type": "spaceship"}]}, "linux.namespaces[1].type"),
    ({"linux__namespaces": [{"type": "pid"}]}, "linux.namespaces"),
    ({"linux__uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}, "linux.uidMappings"),
    ({"mounts": [{"destination": "relative"}]}, "mounts[0].destination"),
    ({"hooks": {"prestart": [{"path": "relative"}]}}, "hooks.prestart[0].path"),
    ({"hooks": {"onBoot": []}}, "hooks.onBoot"),
    ({"linux__resources": {"cpu": {"cpus": "0;rm"}}}, "linux.resources.cpu.cpus"),
    ({"root": None}, "root.path"),
])
def test_a_bad_bundle_is_refused_with_one_line_naming_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as e:
        validate.check(_spec(**changes))
    message = str(e.value)
    assert message.startswith(f"config.json: {field}"), message
    assert "\n" not in message


def test_host_affecting_sysctls_are_refused() -> None:
    with pytest.raises(SpecError, match="kernel.panic"):
        executor._sysctls({"kernel.panic": "1"}, {"network": None})
    assert executor._sysctls({"net.ipv4.ip_forward": "1"}, {"network": None}) == [
        ("proc/sys/net/ipv4/ip_forward", "1")]
    with pytest.raises(SpecError):
        executor._sysctls({"net.ipv4.ip_forward": "1"}, {})  # the host's network namespace


def test_flags_parse_as_runc_takes_them() -> None:
    opts = cli.parse(["--bundle=/b", "-pid-file", "/p", "--console-socket", "/s", "id1"], cli.CREATE_OPTS, False)
    assert opts.values == {"bundle": "/b", "pid-file": "/p", "console-socket": "/s"} and opts.args == ["id1"]
    opts = cli.parse(["-e", "A=1", "--env", "B=2", "-t", "c1"], cli.COMMAND_OPTS["exec"], True)
    assert opts.values == {"env": ["A=1", "B=2"], "tty": True} and opts.args == ["c1"]
    with pytest.raises(cli.UsageError, match="--nope"):
        cli.parse(["--nope"], cli.CREATE_OPTS, False)
    with pytest.raises(cli.UsageError, match="needs an argument"):
        cli.parse(["--bundle"], cli.CREATE_OPTS, False)


@pytest.mark.parametrize("text,number", [("9", 9), ("KILL", 9), ("sigterm", 15), ("SIGUSR1", 10)])
def test_signals_by_name_or_number(text: str, number: int) -> None:
    assert cli.parse_signal(text) == number


@pytest.mark.parametrize("text", ["0", "99", "SIG_DFL", "BOGUS", ""])
def test_bad_signals_are_usage_errors(text: str) -> None:
    with pytest.raises(cli.UsageError):
        cli.parse_signal(text)
