"""CVE-2022-24769 and CVE-2022-29162: inheritable capabilities.

runc (and Moby) started containers, and `runc exec --cap` processes, with a non-empty inheritable set.
Inheritable capabilities survive execve into a program whose file capabilities list them as inheritable:
a non-root user running such a file gained them, whatever the bounding set said when the container
started. The inheritable set must be empty unless the spec asks for it, for every way in.

The file-capability tests turn no_new_privs off (`--security-opt no-new-privileges=false`), since with
it the kernel ignores file capabilities altogether and the test could not fail. Their control is a file
with a *permitted* file capability, which the same user does gain there: the kernel honours file
capabilities in this configuration, so getting nothing from the inheritable-only file is the
empty inheritable set at work.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from attacks import probes  # noqa: F401 - the probes fixture
from cvesupport import no_leaks  # noqa: F401 - the fixture, less other test sessions' objects
from cvesupport import status_fields
from oci_support import BASE_CAPS, Oci
from support import Pycontain, describe, proc_status

pytestmark = pytest.mark.usefixtures("no_leaks")

NONE = "0000000000000000"
NET_BIND_SERVICE = f"{1 << 10:016x}"
NNP_OFF = ("--security-opt", "no-new-privileges=false")


def caps_of(pc: Pycontain, *args: str) -> dict[str, str]:
    res = pc(*args)
    assert res.returncode == 0, describe(res)
    return proc_status(res.stdout)


@pytest.mark.parametrize("flags", [(), ("-u", "1000"), ("--cap-add", "NET_RAW"), ("--cap-add", "ALL"),
                                   ("-u", "1000", "--cap-add", "NET_RAW"), NNP_OFF],
                         ids=["root", "user", "cap-add", "cap-add-all", "user-cap-add", "nnp-off"])
def test_run_and_exec_start_with_no_inheritable_or_ambient_capabilities(pc: Pycontain, flags: tuple[str, ...]) -> None:
    st = caps_of(pc, "run", "--rm", *flags, "busybox", "cat", "/proc/self/status")
    assert (st["CapInh"], st["CapAmb"]) == (NONE, NONE), st
    pc.ok("run", "-d", "--name", "c", *flags, "busybox", "sleep", "1000")
    for user in ((), ("-u", "1000"), ("-u", "0")):
        st = caps_of(pc, "exec", *user, "c", "cat", "/proc/self/status")
        assert (st["CapInh"], st["CapAmb"]) == (NONE, NONE), (user, st)


@pytest.fixture
def cap_files(probes: Path, tmp_path: Path) -> Path:  # noqa: F811
    """sysprobe twice, with file capabilities: `inh` only inheritable (+ei), `prm` permitted (+ep)."""
    setcap = shutil.which("setcap") or "/usr/sbin/setcap"
    d = tmp_path / "caps"
    d.mkdir()
    for name, caps in (("inh", "cap_net_raw,cap_net_bind_service,cap_sys_admin+ei"),
                       ("prm", "cap_net_bind_service+ep")):
        shutil.copy(probes / "sysprobe", d / name)
        subprocess.run([setcap, caps, str(d / name)], check=True, timeout=30)
    return d


def run_as_user(pc: Pycontain, cap_files: Path, name: str, *flags: str) -> dict[str, str]:
    res = pc("run", "--rm", "-u", "1000", *flags, "-v", f"{cap_files}:/caps:ro", "busybox", f"/caps/{name}", "status")
    assert res.returncode == 0, describe(res)
    return status_fields(res.stdout)


@pytest.mark.parametrize("flags", [NNP_OFF, (*NNP_OFF, "--cap-add", "NET_RAW"), (*NNP_OFF, "--cap-add", "ALL")],
                         ids=["defaults", "cap-add", "cap-add-all"])
def test_a_non_root_user_gains_nothing_from_an_inheritable_file_capability(pc: Pycontain, cap_files: Path,
                                                                           flags: tuple[str, ...]) -> None:
    control = run_as_user(pc, cap_files, "prm", *flags)
    assert control["NoNewPrivs"] == "0", control
    assert control["CapPrm"] == NET_BIND_SERVICE, f"control: the kernel ignored a permitted file capability: {control}"
    st = run_as_user(pc, cap_files, "inh", *flags)
    assert (st["CapInh"], st["CapPrm"], st["CapEff"]) == (NONE, NONE, NONE), st


def test_no_new_privileges_ignores_file_capabilities_altogether(pc: Pycontain, cap_files: Path) -> None:
    for name in ("prm", "inh"):
        st = run_as_user(pc, cap_files, name)
        assert st["NoNewPrivs"] == "1" and st["CapPrm"] == NONE, (name, st)


def test_exec_as_a_user_gains_nothing_from_an_inheritable_file_capability(pc: Pycontain, cap_files: Path) -> None:
    pc.ok("run", "-d", "--name", "c", *NNP_OFF, "--cap-add", "NET_RAW", "-v", f"{cap_files}:/caps:ro", "busybox",
          "sleep", "1000")
    for user in ("1000", "1000:1000", "nobody"):
        res = pc("exec", "-u", user, "c", "/caps/inh", "status")
        assert res.returncode == 0, describe(res)
        st = status_fields(res.stdout)
        assert (st["CapInh"], st["CapPrm"], st["CapEff"]) == (NONE, NONE, NONE), (user, st)


def test_oci_spec_without_inheritable_gives_none_even_with_ambient_listed(oci: Oci, cap_files: Path) -> None:  # noqa: F811
    """runc's own default spec lists ambient capabilities but no inheritable ones; a user process of such
    a spec must end with empty inheritable and ambient sets, and gain nothing from the +ei file."""
    b = oci.bundle(["sh", "-c", "grep Cap /proc/self/status; /caps/inh status"])
    b.process["user"] = {"uid": 1000, "gid": 1000}
    b.process["noNewPrivileges"] = False
    b.process["capabilities"] = {kind: list(BASE_CAPS) + ["CAP_NET_RAW"]
                                 for kind in ("bounding", "effective", "permitted", "ambient")}
    b.config["mounts"].append({"destination": "/caps", "type": "bind", "source": str(cap_files),
                               "options": ["rbind", "ro"]})
    code, out = oci.run_bundle(b)
    shell, probe = status_fields(out, prefix=""), status_fields(out)
    assert code == 0 and shell and probe, out
    assert (shell["CapInh"], shell["CapAmb"]) == (NONE, NONE), shell
    assert (probe["CapInh"], probe["CapPrm"], probe["CapEff"]) == (NONE, NONE, NONE), probe


def test_control_an_oci_spec_asking_for_inheritable_capabilities_passes_them_on(oci: Oci, cap_files: Path) -> None:  # noqa: F811
    """What the CVE did, asked for on purpose: a spec listing NET_RAW and NET_BIND_SERVICE as inheritable
    makes the +ei file give them to the user. So the empty results above are the empty set at work."""
    b = oci.bundle(["/caps/inh", "status"])
    b.process["user"] = {"uid": 1000, "gid": 1000}
    b.process["noNewPrivileges"] = False
    caps = list(BASE_CAPS) + ["CAP_NET_RAW"]
    b.process["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps,
                                 "inheritable": ["CAP_NET_RAW", "CAP_NET_BIND_SERVICE"]}
    b.config["mounts"].append({"destination": "/caps", "type": "bind", "source": str(cap_files),
                               "options": ["rbind", "ro"]})
    code, out = oci.run_bundle(b)
    st = status_fields(out)
    assert code == 0 and st["CapPrm"] == f"{1 << 13 | 1 << 10:016x}", out
