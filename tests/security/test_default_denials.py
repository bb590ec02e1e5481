"""What a container's root may not do under pycontain's defaults, each probe with its unlocking control.

Each probe is one system call made by sysprobe (probes/sysprobe.c) in a fresh container, and must
fail with a specific errno: EPERM where the default seccomp filter or the default capability set
stops it, EROFS where a read-only mount does. The same call is then made with the flag that lifts
exactly that protection (`--cap-add`, `--security-opt seccomp=unconfined`, `--privileged`) and must
get past it: so the default result is the protection at work, not a probe that never reached the
kernel. Nothing a probe does outlives it: mounts are undone, nodes unlinked, sysctl files opened for
writing are never written, and the time calls set nothing (settimeofday(NULL, NULL)) or the time it is.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest
from attacks import probes  # noqa: F401 - the probes fixture
from cvesupport import no_leaks  # noqa: F401 - the fixture, less other test sessions' objects
from cvesupport import probe_results, sysprobe
from support import Pycontain, proc_status

pytestmark = pytest.mark.usefixtures("no_leaks")

UNCONFINED = ("--security-opt", "seccomp=unconfined")
PRIVILEGED = ("--privileged",)
SYS_FILE = next((p for p in ("/sys/kernel/mm/transparent_hugepage/enabled", "/sys/kernel/profiling")
                 if os.path.exists(p)), "/sys/kernel/profiling")
NOT_DENIED = "not EPERM"  # the call got past the permission checks; what the kernel says then varies


class Probe:
    def __init__(self, name: str, action: str, denied: str, unlock: tuple[str, ...] | None,
                 unlocked: str = "ok", needs: str | None = None) -> None:
        self.name, self.action, self.denied, self.unlock, self.unlocked, self.needs = \
            name, action, denied, unlock, unlocked, needs


PROBES = [
    # The new mount API and mount(2) need CAP_SYS_ADMIN, and the filter allows them only with it.
    Probe("mount", "mount", "EPERM", ("--cap-add", "SYS_ADMIN", *UNCONFINED)),
    Probe("unshare-user", "unshare_user", "EPERM", UNCONFINED),  # the kernel itself lets anyone do it
    Probe("unshare-mount", "unshare_mnt", "EPERM", ("--cap-add", "SYS_ADMIN", *UNCONFINED)),
    Probe("keyctl", "keyctl", "EPERM", UNCONFINED),  # no capability needed: only the filter stops it
    Probe("add_key", "add_key", "EPERM", UNCONFINED),
    Probe("bpf", "bpf", "EPERM", PRIVILEGED),
    # This kernel may have no module support (ENOSYS): the filter's EPERM comes before the kernel's answer.
    Probe("init_module", "init_module", "EPERM", PRIVILEGED, NOT_DENIED),
    Probe("finit_module", "finit_module", "EPERM", PRIVILEGED, NOT_DENIED),
    Probe("delete_module", "delete_module", "EPERM", PRIVILEGED, NOT_DENIED),
    Probe("mknod-block", "mknod_blk=/tmp/blk", "EPERM", ("--cap-add", "MKNOD")),
    Probe("raw-socket", "raw_inet", "EPERM", ("--cap-add", "NET_RAW")),
    Probe("packet-socket", "packet", "EPERM", ("--cap-add", "NET_RAW")),
    Probe("sethostname", "sethostname=cve-probe", "EPERM", ("--cap-add", "SYS_ADMIN")),
    Probe("settimeofday", "settimeofday", "EPERM", ("--cap-add", "SYS_TIME")),
    Probe("clock_settime", "clock_settime", "EPERM", None),  # unlocked, it would set the host's clock
    Probe("proc-sys", "open_wr=/proc/sys/kernel/core_pattern", "EROFS", PRIVILEGED),
    Probe("proc-sys-vm", "open_wr=/proc/sys/vm/drop_caches", "EROFS", PRIVILEGED),
    Probe("sysrq", "open_wr=/proc/sysrq-trigger", "EROFS", PRIVILEGED, needs="/proc/sysrq-trigger"),
    Probe("sys", f"open_wr={SYS_FILE}", "EROFS", PRIVILEGED, needs=SYS_FILE),
]


def needs(probe: Probe) -> None:
    if probe.needs and not os.path.exists(probe.needs):
        pytest.skip(f"this kernel has no {probe.needs}")


@pytest.mark.parametrize("probe", PROBES, ids=lambda p: p.name)
def test_denied_under_defaults(pc: Pycontain, probes: Path, probe: Probe) -> None:  # noqa: F811
    needs(probe)
    result = sysprobe(pc, probes, probe.action)[probe.action]
    assert result == probe.denied, f"{probe.action}: expected {probe.denied} under the defaults, got {result}"


@pytest.mark.parametrize("probe", [p for p in PROBES if p.unlock], ids=lambda p: p.name)
def test_allowed_once_unlocked(pc: Pycontain, probes: Path, probe: Probe) -> None:  # noqa: F811
    """The control: with the protection lifted the same call gets through, so the default's errno is
    the protection's, not the probe's."""
    needs(probe)
    assert probe.unlock is not None
    result = sysprobe(pc, probes, probe.action, flags=probe.unlock)[probe.action]
    if probe.unlocked == NOT_DENIED:
        assert result != "EPERM", f"{probe.action} with {' '.join(probe.unlock)}: still EPERM"
    else:
        assert result == probe.unlocked, f"{probe.action} with {' '.join(probe.unlock)}: {result}"


def test_exec_is_denied_the_same_calls(pc: Pycontain, probes: Path) -> None:  # noqa: F811
    """The filter and the capability set apply to what `exec` starts too, not only to the init."""
    pc.ok("run", "-d", "--name", "c", "-v", f"{probes}:/probe:ro", "busybox", "sleep", "1000")
    actions = [p for p in PROBES if not p.needs or os.path.exists(p.needs)]
    res = pc("exec", "c", "/probe/sysprobe", *(p.action for p in actions))
    assert res.returncode == 0, res.stderr
    found = probe_results(res.stdout)
    wrong = {p.action: found.get(p.action) for p in actions if found.get(p.action) != p.denied}
    assert not wrong, f"exec'd process allowed (or never reached): {wrong}"


@pytest.mark.parametrize("how", ["run", "exec"])
def test_the_filter_is_installed(pc: Pycontain, how: str) -> None:
    """/proc/self/status says so (Seccomp: 2, filter mode); seccomp=unconfined is the control."""
    def mode(*args: str) -> str:
        return proc_status(pc.ok(*args, "cat", "/proc/self/status").stdout)["Seccomp"]

    if how == "run":
        assert mode("run", "--rm", "busybox") == "2"
        assert mode("run", "--rm", *UNCONFINED, "busybox") == "0"
    else:
        pc.ok("run", "-d", "--name", "c", "busybox", "sleep", "1000")
        pc.ok("run", "-d", "--name", "u", *UNCONFINED, "busybox", "sleep", "1000")
        assert (mode("exec", "c"), mode("exec", "u")) == ("2", "0")


def test_a_block_device_made_with_cap_mknod_still_cannot_be_opened(pc: Pycontain, probes: Path) -> None:  # noqa: F811
    """CAP_MKNOD makes the node; the device cgroup still refuses to open it (only the standard nodes)."""
    found = sysprobe(pc, probes, "mknod_blk=/tmp/blk", flags=("--cap-add", "MKNOD"))
    assert found == {"mknod_blk=/tmp/blk": "ok", "mknod_blk_open": "EPERM"}, found


@pytest.mark.parametrize("network", ["none", "host"])
def test_a_hostname_set_inside_never_reaches_the_host(pc: Pycontain, probes: Path, network: str) -> None:  # noqa: F811
    """Even with the capability and the host's network, the container has its own UTS namespace."""
    before = socket.gethostname()
    name = f"cve-{uuid.uuid4().hex[:8]}"
    res = pc("run", "--rm", "--network", network, "--cap-add", "SYS_ADMIN", "-v", f"{probes}:/probe:ro", "busybox",
             "sh", "-c", f"/probe/sysprobe sethostname={name}; hostname")
    assert f"sethostname={name} ok" in res.stdout and res.stdout.endswith(f"{name}\n"), res.stdout + res.stderr
    assert socket.gethostname() == before != name
    assert Path("/proc/sys/kernel/hostname").read_text().strip() == before
