"""The privilege flags of `run` (--cap-add/--cap-drop, --privileged, --security-opt, --ulimit, --sysctl,
--userns) become one checked Security record and then the spec, as a Docker user expects."""

import pytest

from pycontain import config as c
from pycontain import oci as ocispec
from pycontain.config import ContainerConfig, Limits, ResolvedConfig, Security
from pycontain.errors import UsageError

DEFAULT = [f"CAP_{n}" for n in ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
                                "NET_BIND_SERVICE", "SYS_CHROOT", "SETFCAP")]


def caps(**flags):
    return set(ocispec.parse_security(**flags).capabilities())


def test_default_set_is_podmans():
    assert caps() == set(DEFAULT) == set(ocispec.DEFAULT_CAPS)


@pytest.mark.parametrize("name", ["net_admin", "NET_ADMIN", "CAP_NET_ADMIN", "cap_net_admin", " Net_Admin "])
def test_capability_names_with_or_without_prefix_any_case(name):
    assert "CAP_NET_ADMIN" in caps(cap_add=[name])


def test_add_and_drop_follow_dockers_rules():
    assert caps(cap_drop=["CHOWN"]) == set(DEFAULT) - {"CAP_CHOWN"}
    assert caps(cap_drop=["ALL"]) == set()
    assert caps(cap_drop=["ALL"], cap_add=["KILL"]) == {"CAP_KILL"}
    # add wins over drop of the same name, as in Docker
    assert "CAP_SYS_TIME" in caps(cap_add=["SYS_TIME"], cap_drop=["SYS_TIME"])
    every = c.available_capabilities()
    assert caps(cap_add=["ALL"], cap_drop=["NET_RAW"]) == {f"CAP_{n}" for n in every - {"NET_RAW"}}
    assert caps(privileged=True, cap_drop=["CHOWN"]) == {f"CAP_{n}" for n in every}


def test_every_capability_is_what_pycontain_itself_holds():
    with open("/proc/self/status") as f:
        bounding = int(next(x for x in f if x.startswith("CapBnd:")).split()[1], 16)
    assert ocispec.capability_mask(tuple(c.available_capabilities())) == bounding & ((1 << 41) - 1)


@pytest.mark.parametrize("bad", ["", "FOO", "CAP_", "CAP_ALL_THE_THINGS", "sys admin"])
def test_unknown_capability_is_one_usage_error(bad):
    with pytest.raises(UsageError, match="--cap-add"):
        ocispec.parse_security(cap_add=[bad])


@pytest.mark.parametrize(("opt", "field", "value"), [
    ("seccomp=unconfined", "seccomp", "unconfined"),
    ("seccomp:unconfined", "seccomp", "unconfined"),
    ("no-new-privileges", "no_new_privs", True),
    ("no-new-privileges=true", "no_new_privs", True),
    ("no-new-privileges=false", "no_new_privs", False),
    ("no-new-privileges:false", "no_new_privs", False),
])
def test_security_opt(opt, field, value):
    assert getattr(ocispec.parse_security(security_opt=[opt]), field) == value


@pytest.mark.parametrize("bad", ["seccomp", "seccomp=", "apparmor=unconfined", "no-new-privileges=maybe", "x"])
def test_bad_security_opt_is_one_usage_error(bad):
    with pytest.raises(UsageError, match="--security-opt"):
        ocispec.parse_security(security_opt=[bad])


def test_ulimits():
    sec = ocispec.parse_security(ulimits=["nofile=1024:2048", "core=-1", "nproc=100"])
    assert sec.ulimits == (
        {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048},
        {"type": "RLIMIT_CORE", "soft": c.RLIM_INFINITY, "hard": c.RLIM_INFINITY},
        {"type": "RLIMIT_NPROC", "soft": 100, "hard": 100},
    )


@pytest.mark.parametrize("bad", ["nofile", "nofile=", "nofile=a:b", "files=1", "nofile=5:3", "nofile=-2",
                                 "nofile=1:2:3"])
def test_bad_ulimit(bad):
    with pytest.raises(UsageError, match="--ulimit"):
        ocispec.parse_security(ulimits=[bad])


def test_sysctls_only_namespaced_keys():
    sec = ocispec.parse_security(sysctls=["net.ipv4.ip_forward=1", "kernel.shmmax=1000", "fs.mqueue.msg_max=20",
                                    "net/ipv4/ping_group_range=0 0"])
    assert sec.sysctls == {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1000", "fs.mqueue.msg_max": "20",
                           "net.ipv4.ping_group_range": "0 0"}
    for bad in ("kernel.panic=1", "vm.swappiness=1", "kernel.hostname=x", "net..x=1", "net.x", "=1"):
        with pytest.raises(UsageError, match="--sysctl"):
            ocispec.parse_security(sysctls=[bad])
    with pytest.raises(UsageError, match="--network host"):
        ocispec.parse_security(sysctls=["net.ipv4.ip_forward=1"], network="host")
    assert ocispec.parse_security(sysctls=["kernel.shmmax=1"], network="host").sysctls == {"kernel.shmmax": "1"}


def test_userns_modes():
    assert ocispec.parse_security(userns="auto").userns == "auto"
    assert ocispec.parse_security(userns="host").userns == "host"
    assert ocispec.parse_security().userns is None
    with pytest.raises(UsageError, match="--userns"):
        ocispec.parse_security(userns="keep-id")


def test_security_survives_the_record_round_trip():
    sec = ocispec.parse_security(cap_add=["NET_ADMIN"], cap_drop=["CHOWN"], ulimits=["nofile=10:20"],
                           sysctls=["net.ipv4.ip_forward=1"], security_opt=["no-new-privileges=false"])
    cfg = ContainerConfig(image="x", security=sec)
    again = ContainerConfig.from_json(cfg.to_json())
    assert again.security == sec
    assert again.security.capabilities() == sec.capabilities()


def spec_of(sec: Security) -> dict:
    cfg = ContainerConfig(image="x", security=sec)
    res = ResolvedConfig(argv=("sh",), env=(), workdir="/", user="", hostname="h")
    return ocispec.container_spec("c" * 64, cfg, res, Limits(), "/s", ["/l"], {})


def test_the_spec_carries_the_flags():
    spec = spec_of(ocispec.parse_security(cap_add=["NET_ADMIN"], ulimits=["nofile=10:20"],
                                    sysctls=["net.core.somaxconn=100"], security_opt=["no-new-privileges=false"]))
    proc = spec["process"]
    assert "CAP_NET_ADMIN" in proc["capabilities"]["bounding"] and "CAP_NET_ADMIN" in proc["capabilities"]["effective"]
    assert "inheritable" not in proc["capabilities"] and "ambient" not in proc["capabilities"]
    assert proc["noNewPrivileges"] is False
    assert proc["rlimits"] == [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20}]
    assert spec["linux"]["sysctl"] == {"net.core.somaxconn": "100"}
    assert spec["linux"]["maskedPaths"] and spec["linux"]["readonlyPaths"]


def test_privileged_spec_unmasks_and_makes_sys_writable():
    spec = spec_of(ocispec.parse_security(privileged=True))
    assert "maskedPaths" not in spec["linux"] and "readonlyPaths" not in spec["linux"]
    sysfs = next(m for m in spec["mounts"] if m["type"] == "sysfs")
    assert "ro" not in sysfs["options"]
    unprivileged = spec_of(Security())
    assert "ro" in next(m for m in unprivileged["mounts"] if m["type"] == "sysfs")["options"]


def test_the_default_profiles_resolution_is_kept_per_capability_set(tmp_path):
    cache = str(tmp_path / "seccomp")
    plain, admin = Security(), ocispec.parse_security(cap_add=["SYS_ADMIN"])
    first = ocispec.seccomp_spec(plain, cache)
    assert first == ocispec.seccomp_spec(plain) == ocispec.seccomp_spec(plain, cache)
    assert ocispec.seccomp_spec(admin, cache) == ocispec.seccomp_spec(admin) != first
    kept = sorted(p for p in (tmp_path / "seccomp").iterdir() if p.suffix == ".spec")
    assert len(kept) == 2 and oct(kept[0].stat().st_mode & 0o777) == "0o600"
    for damaged in (b"", b"\x00garbage", kept[1].read_bytes()[:-7]):
        for path in kept:
            path.write_bytes(damaged)
        assert ocispec.seccomp_spec(plain, cache) == first  # rebuilt, not trusted
    assert ocispec.seccomp_spec(ocispec.parse_security(security_opt=["seccomp=unconfined"]), cache) is None
