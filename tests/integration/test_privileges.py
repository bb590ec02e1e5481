"""The privilege flags of `run`, seen from inside the container and from the host: --cap-add/--cap-drop,
--privileged, --security-opt no-new-privileges, --ulimit, --sysctl. Each test also shows the default,
so that a flag that changed nothing would fail it."""

from __future__ import annotations

import os

import pytest
from support import Pycontain, assert_pycontain_error

pytestmark = pytest.mark.usefixtures("no_leaks")

CAP_NET_ADMIN, CAP_CHOWN, CAP_KILL, CAP_SYS_ADMIN = 12, 0, 5, 21


def status_of(pc: Pycontain, *args: str) -> dict[str, str]:
    """The /proc/self/status fields of a container's command (run with `args` before the image)."""
    res = pc.ok("run", "--rm", *args, "busybox", "cat", "/proc/self/status")
    return dict(line.split(":\t", 1) for line in res.stdout.splitlines() if ":\t" in line)


def caps(status: dict[str, str], field: str = "CapEff") -> int:
    return int(status[field], 16)


def test_cap_add_and_cap_drop_change_the_set_for_run_and_exec(pc: Pycontain) -> None:
    default = caps(status_of(pc))
    assert not default >> CAP_NET_ADMIN & 1 and default >> CAP_CHOWN & 1
    changed = status_of(pc, "--cap-add", "net_admin", "--cap-drop", "CAP_CHOWN")
    assert caps(changed) == (default | 1 << CAP_NET_ADMIN) & ~(1 << CAP_CHOWN)
    assert caps(changed, "CapBnd") == caps(changed) and caps(changed, "CapInh") == 0
    only = status_of(pc, "--cap-drop", "ALL", "--cap-add", "KILL")
    assert caps(only) == caps(only, "CapBnd") == 1 << CAP_KILL
    # An exec'd process gets the container's set, not pycontain's default.
    pc.ok("run", "-d", "--name", "c", "--cap-add", "NET_ADMIN", "--cap-drop", "CHOWN", "busybox", "sleep", "300")
    res = pc.ok("exec", "c", "grep", "CapEff", "/proc/self/status")
    assert int(res.stdout.split()[1], 16) == caps(changed)


def test_cap_add_net_admin_lets_root_change_its_interfaces(pc: Pycontain) -> None:
    denied = pc("run", "--rm", "busybox", "ip", "link", "set", "lo", "mtu", "1280")
    assert denied.returncode != 0, denied
    pc.ok("run", "--rm", "--cap-add", "NET_ADMIN", "busybox", "ip", "link", "set", "lo", "mtu", "1280")


def test_privileged_is_every_capability_no_filter_no_masks_and_host_devices(pc: Pycontain) -> None:
    with open("/proc/self/status") as f:
        own = int(next(x for x in f if x.startswith("CapBnd:")).split()[1], 16)
    default = status_of(pc)
    assert default["Seccomp"].strip() == "2" and caps(default) != own
    privileged = status_of(pc, "--privileged")
    assert caps(privileged) == own and privileged["Seccomp"].strip() == "0"
    res = pc.ok("run", "--rm", "--privileged", "busybox", "sh", "-c",
                "grep ' /sys ' /proc/mounts; grep -c ' /proc/timer_list ' /proc/mounts; ls /dev")
    sysfs, masked, *devices = res.stdout.split("\n", 2)
    assert " rw," in sysfs, res.stdout
    assert masked.strip() == "0", "a privileged container still has masked paths"
    host_devices = {e for e in os.listdir("/dev") if os.path.exists(f"/dev/{e}") and not os.path.isdir(f"/dev/{e}")
                    and (os.stat(f"/dev/{e}").st_mode & 0o170000) in (0o020000, 0o060000)}
    assert host_devices - {"console", "ptmx", "tty"} <= set(devices[0].split()) if devices else False, res.stdout
    unprivileged = pc.ok("run", "--rm", "busybox", "sh", "-c", "grep -c ' /proc/timer_list ' /proc/mounts; ls /dev")
    assert unprivileged.stdout.split("\n", 1)[0].strip() == "1"


def test_no_new_privileges_can_be_turned_off(pc: Pycontain) -> None:
    assert status_of(pc)["NoNewPrivs"].strip() == "1"
    assert status_of(pc, "--security-opt", "no-new-privileges")["NoNewPrivs"].strip() == "1"
    off = status_of(pc, "--security-opt", "no-new-privileges=false")
    assert off["NoNewPrivs"].strip() == "0" and off["Seccomp"].strip() == "2"


def test_ulimit_is_the_containers_and_exec_gets_it_too(pc: Pycontain) -> None:
    default = pc.ok("run", "--rm", "busybox", "sh", "-c", "ulimit -n").stdout.strip()
    assert default != "321"
    res = pc.ok("run", "--rm", "--ulimit", "nofile=321:654", "busybox", "sh", "-c", "ulimit -Sn; ulimit -Hn")
    assert res.stdout.split() == ["321", "654"]
    pc.ok("run", "-d", "--name", "u", "--ulimit", "nofile=321:654", "busybox", "sleep", "300")
    assert pc.ok("exec", "u", "sh", "-c", "ulimit -Sn").stdout.strip() == "321"
    # Above pycontain's own hard limit: only CAP_SYS_RESOURCE could raise it, so it is one clear error.
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY:
        assert_pycontain_error(pc("run", "--rm", "--ulimit", f"nofile={hard + 1}:{hard + 1}", "busybox", "true"))


def test_sysctl_sets_the_containers_namespace_not_the_hosts(pc: Pycontain) -> None:
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        host_before = f.read().strip()
    value = "80" if host_before != "80" else "81"
    res = pc.ok("run", "--rm", "--sysctl", f"net.ipv4.ip_unprivileged_port_start={value}",
                "--sysctl", "kernel.msgmax=12345", "busybox", "cat",
                "/proc/sys/net/ipv4/ip_unprivileged_port_start", "/proc/sys/kernel/msgmax")
    assert res.stdout.split() == [value, "12345"]
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        assert f.read().strip() == host_before
    for bad in (["--sysctl", "kernel.panic=1"], ["--sysctl", "net.ipv4.ip_forward=1", "--network", "host"],
                ["--sysctl", "vm.swappiness=10"]):
        assert_pycontain_error(pc("run", "--rm", *bad, "busybox", "true"))


@pytest.mark.parametrize("flags", [
    ["--cap-add", "NOT_A_CAP"], ["--cap-drop", ""], ["--security-opt", "apparmor=unconfined"],
    ["--security-opt", "seccomp=/nonexistent.json"], ["--ulimit", "nofile=2:1"], ["--ulimit", "bogus=1"],
    ["--device", "/etc/passwd"], ["--userns", "keep-id"],
])
def test_bad_privilege_flags_are_one_line_and_125(pc: Pycontain, flags: list[str]) -> None:
    assert_pycontain_error(pc("run", "--rm", *flags, "busybox", "true"))
