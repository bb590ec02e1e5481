"""`run --emit-shell` without running anything: the flags it refuses (by name), the shell words it writes
(whatever bytes a command holds), and the script it renders from a fake image: valid bash, the spec's
values in it, a block per --explain step in --explain's order."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pycontain import cli, emitshell
from pycontain.errors import UsageError


@pytest.fixture(autouse=True)
def _defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYCONTAIN_NETWORK", "none")
    monkeypatch.setenv("PYCONTAIN_PULL", "never")


def config(*args: str, image: str = "img", cmd: tuple[str, ...] = ("sh",)) -> Any:
    opts, pos = cli.parse_options(cli.RUN_OPTIONS, [*args, image, *cmd], "run")
    return cli.config_from(opts, pos)


class FakeImage:
    def __init__(self, layer: Path, config: dict[str, Any] | None = None) -> None:
        self.id = "sha256:" + "1" * 64
        self.ref = "img:latest"
        self.layers = (str(layer),)
        self.config = {"config": {"Cmd": ["sh"], **(config or {})}}


class FakePaths:
    def __init__(self, root: Path) -> None:
        self.state, self.storage = str(root / "run"), str(root / "storage")
        self.containers = f"{self.state}/containers"


@pytest.fixture
def layer(tmp_path: Path) -> Path:
    d = tmp_path / "layer"
    (d / "etc").mkdir(parents=True)
    (d / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
    (d / "etc" / "group").write_text("root:x:0:\nstaff:x:50:app\napp:x:1000:\n")
    return d


def render(tmp_path: Path, layer: Path, *args: str, cmd: tuple[str, ...] = ("sh",),
           image_config: dict[str, Any] | None = None) -> str:
    cfg = config(*args, cmd=cmd)
    emitshell.refuse_unsupported(cfg)
    return emitshell.render(FakePaths(tmp_path), cfg, FakeImage(layer, image_config))


def flat(script: str) -> str:
    """The script with each wrapped comment joined back into one line."""
    return re.sub(r"\n *#   ", " ", script)


def bash_n(script: str) -> None:
    res = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr


# ---------------------------------------------------------------- refused flags

@pytest.mark.parametrize(("args", "named"), [
    (("-d",), "-d/--detach"),
    (("--restart", "always"), "--restart"),
    (("--health-cmd", "true"), "--health-*"),
    (("--runtime", "runc"), "--runtime"),
    (("--userns", "auto"), "--userns=auto"),
    (("--privileged",), "--privileged"),
    (("--device", "/dev/null"), "--device"),
    (("--ulimit", "nofile=10:10"), "--ulimit"),
    (("--pid", "host"), "--pid"),
    (("--ipc", "host"), "--ipc"),
    (("--uts", "host"), "--uts"),
    (("--network", "front"), "--network front"),
    (("--cidfile", "/tmp/x"), "--cidfile"),
    (("--log-driver", "none"), "--log-driver"),
    (("--cpuset-cpus", "0"), "--cpuset-cpus"),
    (("--memory-swappiness", "10"), "--memory-swappiness"),
    (("-v", "vol:/data"), "volume"),
    (("-e", "my.var=1"), "'my.var'"),
    (("-e", "UID=5"), "'UID'"),
])
def test_what_the_script_cannot_do_is_refused_by_name(args: tuple[str, ...], named: str) -> None:
    with pytest.raises(UsageError) as err:
        emitshell.refuse_unsupported(config(*args))
    text = str(err.value)
    assert text.startswith("--emit-shell cannot ") and named in text and "\n" not in text


def test_what_it_can_do_is_accepted() -> None:
    emitshell.refuse_unsupported(config("--memory", "64m", "--pids-limit", "50", "--cpus", "0.5", "--hostname", "demo",
                                        "-e", "A=1", "-w", "/tmp", "-u", "1000", "--read-only", "--tmpfs", "/x",
                                        "--cap-drop", "CHOWN", "--sysctl", "net.ipv4.ping_group_range=0 0", "-i",
                                        "--network", "bridge", "-p", "8080:80", "--init", "--no-healthcheck"))


def test_the_image_s_volumes_are_refused(tmp_path: Path, layer: Path) -> None:
    with pytest.raises(UsageError, match="VOLUME /data"):
        render(tmp_path, layer, image_config={"Volumes": {"/data": {}}})


# ---------------------------------------------------------------- shell words

@pytest.mark.parametrize("text", ["plain", "with space", "it's", '"$HOME"', "`id`", "a\nb", "", "*", "-n", "é ü"])
def test_a_word_is_one_shell_word_with_exactly_those_bytes(text: str) -> None:
    out = subprocess.run(["bash", "-c", f"printf '%s' {emitshell.word(text)}"], capture_output=True, text=True,
                         timeout=30).stdout
    assert out == text


def test_run_time_markers_become_expansions() -> None:
    out = subprocess.run(["bash", "-c", f"WORK='/w d' SHORT=abc; printf '%s' {emitshell.word('@@WORK@@/x @@SHORT@@')}"],
                         capture_output=True, text=True, timeout=30).stdout
    assert out == "/w d/x abc"


def test_comments_wrap_and_stay_comments() -> None:
    lines = emitshell.comment("word " * 60)
    assert len(lines) > 1 and all(line.startswith("#") and len(line) <= 112 for line in lines)


# ---------------------------------------------------------------- the script

def test_the_demo_script_is_bash_and_carries_the_spec(tmp_path: Path, layer: Path) -> None:
    script = render(tmp_path, layer, "--memory", "64m", "--hostname", "demo")
    bash_n(script)
    assert script.startswith("#!/bin/bash\n")
    assert "HOST_NAME=demo\n" in script
    assert "echo 67108864 > \"$CG/memory.max\"" in script
    assert "echo 67108864 > \"$(v1_dir memory)/memory.limit_in_bytes\"" in script
    assert "echo 2048 > \"$CG/pids.max\"" in script
    assert f"LOWERDIRS={layer}\n" in script
    assert re.search(r"\[explain\] seccomp profile default: .* NOT REPRODUCED: no standard tool can load a seccomp "
                     r"filter", flat(script))
    assert "CAPS=+chown,+dac_override," in script
    assert "NO_NEW_PRIVS=1" in script


def test_blocks_follow_the_order_of_explain(tmp_path: Path, layer: Path) -> None:
    script = flat(render(tmp_path, layer, "--hostname", "demo", "--read-only"))
    order = ["record $WORK", "runtime spec:", "seccomp profile default", "mkdir $CG_NAME", "keyctl(", "clone(",
             "new PID, mount", "ioctl(SIOCSIFFLAGS, lo", "mount(/, MS_REC|MS_SLAVE)", "mount(overlay,",
             "mount(proc, /proc)", "mount(tmpfs, /dev)", "mount(devpts", "mount(tmpfs, /dev/shm)",
             "mount(mqueue", "mount(sysfs", "mount(cgroup, /sys/fs/cgroup", "/etc/hostname", "mknod null",
             "pivot_root(rootfs)", "masked paths", "mount_setattr(/, MOUNT_ATTR_RDONLY)", "sethostname('demo')",
             "setgroups/setgid/setuid(0:0)", "execve(sh)"]
    body = script.index("make_container() {")  # after the header, which names some steps too
    positions = [script.index(s, body) for s in order]
    assert positions == sorted(positions), [s for s, p in sorted(zip(order, positions), key=lambda x: x[1])]


def test_a_user_by_name_becomes_numbers_and_its_home(tmp_path: Path, layer: Path) -> None:
    script = render(tmp_path, layer, "-u", "app")
    assert "RUN_UID=1000\nRUN_GID=1000\nRUN_GROUPS=50,1000\n" in script
    assert "HOME=/home/app" in script
    assert "setuid(1000:1000) + capset: 11 capabilities in the bounding set, 0 effective" in flat(script)
    with pytest.raises(UsageError, match="unable to find user nobody"):
        render(tmp_path, layer, "-u", "nobody")


def test_the_command_and_environment_survive_any_bytes(tmp_path: Path, layer: Path) -> None:
    nasty = ["sh", "-c", "echo \"$X\" 'it''s' `x` $(y)\n*"]
    script = render(tmp_path, layer, "-e", "X=a b'c\"d$e", cmd=tuple(nasty))
    bash_n(script)
    probe = script.split("\n# ---------------------------------------------------------------- helpers")[0]
    out = subprocess.run(["bash", "-c", probe + "\nSHORT=s; container_env; printf '%s\\0' \"${COMMAND[@]}\" "
                          "\"${ENV[@]}\""], capture_output=True, text=True, timeout=30, env={**os.environ})
    parts = out.stdout.split("\0")
    assert parts[:3] == nasty
    assert "X=a b'c\"d$e" in parts


def test_limits_and_bridge_ports(tmp_path: Path, layer: Path) -> None:
    script = render(tmp_path, layer, "--cpus", "0.5", "--pids-limit", "50", "--memory", "64m", "--memory-swap", "-1",
                    "--network", "bridge", "-p", "127.0.0.1:8080:80", "-p", "53/udp")
    bash_n(script)
    assert 'echo "50000 100000" > "$CG/cpu.max"' in script
    assert "echo 50000 > \"$(v1_dir cpu)/cpu.cfs_quota_us\"" in script
    assert "echo 50 > \"$CG/pids.max\"" in script
    assert "memory.swap.max\" max" in script
    assert "PUBLISH=('tcp 8080 80 127.0.0.1' 'udp 0 53 -')" in script
    assert "pycontain_ipam lease" in script and "nft -f -" in script and "type bridge_slave hairpin on" in script


def test_no_network_namespace_with_host_networking(tmp_path: Path, layer: Path) -> None:
    script = render(tmp_path, layer, "--network", "host")
    assert "NEW_NETNS=0" in script and "CLONE_NEWNET" not in script and "ip link set lo up" not in script
    with pytest.raises(UsageError, match="-p needs a bridge network"):
        emitshell.render(FakePaths(tmp_path), config("--network", "host", "-p", "80"), FakeImage(layer))


def test_the_lease_helper_refuses_bad_input_in_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert emitshell.helper(["lease", "not-an-id", "--state", str(tmp_path), "--storage", str(tmp_path)]) == 125
    err = capsys.readouterr().err
    assert err.startswith("pycontain: invalid id") and err.count("\n") == 1
