"""Fuzzing OCI config.json validation (pycontain/oci/validate.py), the gate of `pycontain-oci create`: a valid
spec damaged in a few places, or any JSON at all, is either accepted or refused with one SpecError naming
the field; what it accepts, the parts of the executor that read the spec as plain data (the cgroup limits,
the mount steps) read without error. Also the process, resources and id-mapping checks on their own, which
`exec --process` and `update --resources` call directly.
"""

from __future__ import annotations

import copy
from typing import Any

from fuzz_support import JSON, count, damaged, fuzz, one_line
from hypothesis import given
from hypothesis import strategies as st

from pycontain import mounts
from pycontain import oci as ocispec
from pycontain.errors import PycontainError
from pycontain.oci import validate


def full_spec() -> dict[str, Any]:
    """validate's own default spec, plus one of every section it checks."""
    spec = validate.default_spec(args=["sh", "-c", "true"])
    spec["hooks"] = {"prestart": [{"path": "/bin/true", "args": ["true"], "env": ["A=1"], "timeout": 5}]}
    spec["annotations"] = {"a": "b"}
    linux = spec.setdefault("linux", {})
    linux["namespaces"] = [*linux.get("namespaces", []), {"type": "user"}]
    linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    linux["sysctl"] = {"net.ipv4.ip_forward": "1"}
    linux["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]
    linux["resources"] = {"memory": {"limit": 1 << 30}, "cpu": {"shares": 512, "quota": 50000, "period": 100000,
                                                                 "cpus": "0-1"}, "pids": {"limit": 100}}
    linux["rootfsPropagation"] = "rslave"
    spec["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    spec["process"]["user"] = {"uid": 0, "gid": 0, "additionalGids": [1], "umask": 18}
    return spec


FULL = full_spec()


@fuzz(1200)
@given(st.one_of(st.builds(copy.deepcopy, st.just(FULL)).flatmap(damaged), JSON))
def test_config_json(spec: Any) -> None:
    count("OCI config.json: validate.check, then limits and mounts")
    try:
        checked = validate.check(spec)
    except PycontainError as e:
        one_line(e)
        return
    count("OCI config.json: ... of which accepted")
    linux = checked.get("linux") or {}
    ocispec.limits_from(linux.get("resources"))
    for m in checked.get("mounts") or ():
        mounts.MountStep.parse(m, "/nonexistent-bundle")


@fuzz(800)
@given(st.sampled_from(["process", "resources", "mappings"]),
       st.one_of(JSON, st.builds(copy.deepcopy, st.just(FULL["process"])).flatmap(damaged),
                 st.builds(copy.deepcopy, st.just(FULL["linux"]["resources"])).flatmap(damaged),
                 st.builds(copy.deepcopy, st.just(FULL["linux"]["uidMappings"])).flatmap(damaged)))
def test_process_resources_and_mappings(which: str, value: Any) -> None:
    count("OCI: process, resources and id mappings on their own")
    check = {"process": validate.check_process, "resources": validate.check_resources,
             "mappings": validate.check_mappings}[which]
    try:
        check(value, which)
        if which == "resources":
            ocispec.limits_from(value)
    except PycontainError as e:
        one_line(e)
