"""CVE-2025-52881: the runtime's own writes to procfs redirected by a mount.

runc wrote to files under /proc (LSM labels, sysctls) by path after the container's mounts were in
place; a mount over such a path (from the config, or raced in through a shared volume) sent the write
to a file of the attacker's choosing, /proc/sys/kernel/core_pattern included. A runtime must write to
procfs only through a handle it has checked is the procfs file it means (fstatfs PROC_SUPER_MAGIC on
its own procfs mount), or refuse mounts that land inside /proc as runc now does.

pycontain writes procfs in the container for --sysctl / linux.sysctl, after every mount of the spec.
Here a volume sits on the very file it will write: the decoy is a host file standing in for whatever
the volume could have been (a host sysctl bound there from another mount namespace is the CVE's case).
The control shows the write path is exercised: without the volume the value lands in procfs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cvesupport import no_leaks  # noqa: F401 - the fixture, less other test sessions' objects
from oci_support import Oci, new_id
from support import Pycontain, describe

pytestmark = pytest.mark.usefixtures("no_leaks")

DECOY = "the decoy's own content, which no sysctl write may reach\n"


@pytest.fixture
def decoy(tmp_path: Path) -> Path:
    f = tmp_path / "decoy"
    f.write_text(DECOY)
    return f


@pytest.mark.parametrize("key, value", [("net.ipv4.ip_forward", "1"), ("kernel.msgmax", "12345")])
def test_a_sysctl_write_is_not_redirected_by_a_volume_on_its_file(pc: Pycontain, decoy: Path, key: str,
                                                                   value: str) -> None:
    path = "/proc/sys/" + key.replace(".", "/")
    control = pc("run", "--rm", "--sysctl", f"{key}={value}", "busybox", "cat", path)
    assert control.returncode == 0 and control.stdout == f"{value}\n", "control: " + describe(control)
    res = pc("run", "--rm", "-v", f"{decoy}:{path}", "--sysctl", f"{key}={value}", "busybox", "true")
    assert decoy.read_text() == DECOY, f"pycontain wrote the sysctl through the volume on {path}: " + describe(res)
    assert "Traceback" not in res.stderr, describe(res)


def test_a_sysctl_write_is_not_redirected_by_a_bundle_mount(oci: Oci, decoy: Path) -> None:  # noqa: F811
    b = oci.bundle(["cat", "/proc/sys/kernel/shmmax"])
    b.linux["sysctl"] = {"kernel.shmmax": "4242"}
    code, out = oci.run_bundle(b)
    assert (code, out) == (0, "4242\n"), "control: the bundle's sysctl was not applied"
    b = oci.bundle(["true"])
    b.linux["sysctl"] = {"kernel.shmmax": "4242"}
    b.config["mounts"].append({"destination": "/proc/sys/kernel/shmmax", "type": "bind", "source": str(decoy),
                               "options": ["bind"]})
    cid = new_id()
    oci.cgroup_names.append(f"pycontain-{cid}")
    b.write()
    with open(oci.tmp / "c.out", "w") as o, open(oci.tmp / "c.err", "w") as e:
        # stdio on files: a container's init inherits them and would hold pipes open
        res = oci("create", "--bundle", b.path, "--pid-file", oci.tmp / "c.pid", cid, stdout=o, stderr=e)
    if res.returncode == 0:  # created: deleted again whatever the verdict
        oci("delete", "--force", cid)
    assert decoy.read_text() == DECOY, ("pycontain-oci wrote the sysctl through the bundle's mount (create exited "
                                        f"{res.returncode}: {(oci.tmp / 'c.err').read_text()})")
