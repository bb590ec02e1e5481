"""-v, --mount, --tmpfs and --volumes-from: what each form means, and one clear line for each mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from pycontain import config
from pycontain.config import BindMount, ContainerConfig
from pycontain.errors import UsageError
from pycontain.oci import container_spec


def test_v_host_path_is_a_bind(tmp_path: Path) -> None:
    m = config.parse_volume(f"{tmp_path}:/data:ro")
    assert (m.kind, m.source, m.target, m.readonly) == ("bind", str(tmp_path), "/data", True)
    assert config.parse_volume(f"{tmp_path}:/data:rshared").options == ("rshared",)


def test_v_name_is_a_named_volume_and_a_lone_path_an_anonymous_one() -> None:
    m = config.parse_volume("my-data.1:/var/lib/x/:ro,nocopy")
    assert (m.kind, m.name, m.source, m.target, m.readonly, m.options) == (
        "volume", "my-data.1", "", "/var/lib/x", True, ("nocopy",))
    anon = config.parse_volume("/cache")
    assert (anon.kind, anon.name, anon.target) == ("volume", "", "/cache")


@pytest.mark.parametrize("spec, words", [
    ("./rel:/x", "neither an absolute host path nor a volume name"),
    ("a/b:/x", "neither an absolute host path nor a volume name"),
    (".hidden:/x", "neither an absolute host path nor a volume name"),
    ("name:rel", "must be absolute"),
    ("name:/", "cannot be /"),
    ("rel", "must be absolute"),
    ("name:/x:rx", "invalid volume mode 'rx'"),
    ("name:/x:ro,rw", "conflicting modes"),
    ("name:/x:rshared", "invalid volume mode 'rshared'"),
    ("/missing-host-path-for-the-test:/x", "does not exist"),
    ("a:b:c:d", "expected"),
    ("a::/x", "expected"),
])
def test_v_errors_are_one_line(spec: str, words: str) -> None:
    with pytest.raises(UsageError, match=words) as e:
        config.parse_volume(spec)
    assert "\n" not in str(e.value)


def test_bind_mode_nocopy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="nocopy|invalid volume mode"):
        config.parse_volume(f"{tmp_path}:/x:nocopy")


def test_mount_forms(tmp_path: Path) -> None:
    b = config.parse_mount(f"type=bind,source={tmp_path},target=/b,readonly,bind-propagation=rslave")
    assert (b.kind, b.source, b.target, b.readonly, b.options) == ("bind", str(tmp_path), "/b", True, ("rslave",))
    v = config.parse_mount("type=volume,src=vol,dst=/v,volume-nocopy,volume-label=a=b")
    assert (v.kind, v.name, v.target, v.options) == ("volume", "vol", "/v", ("nocopy", "volume-label=a=b"))
    assert config.parse_mount("target=/anon").kind == "volume"  # Docker's default type
    t = config.parse_mount("type=tmpfs,destination=/t,tmpfs-size=1m,tmpfs-mode=0700,ro=true")
    assert (t.kind, t.target, t.options, t.readonly) == ("tmpfs", "/t", ("size=1048576", "mode=700"), True)


@pytest.mark.parametrize("spec, words", [
    ("type=bind,target=/x", "needs a source"),
    ("type=bind,source=rel,target=/x", "absolute"),
    ("type=bind,source=/no/such/dir/here,target=/x", "bind source path does not exist"),
    ("type=volume,source=v", "target is required"),
    ("type=tmpfs,source=x,target=/t", "takes no source"),
    ("type=nfs,target=/x", "type must be bind, volume or tmpfs"),
    ("type=volume,target=/x,tmpfs-size=1m", "not an option of type=volume"),
    ("type=tmpfs,target=/x,tmpfs-size=lots", "tmpfs-size"),
    ("type=tmpfs,target=/x,tmpfs-mode=999", "octal"),
    ("type=volume,source=a/b,target=/x", "not a volume name"),
    ("type=volume,target=/x,volume-driver=nfs", "only the local driver"),
    ("type=volume,target=/x,readonly=maybe", "true or false"),
    ("type=volume,target=/x,bogus=1", "unknown field 'bogus'"),
    ("type=volume,target=/x,target=/y", "given twice"),
    ("type=tmpfs,target=/x,volume-label=a=b", "need type=volume"),
])
def test_mount_errors_are_one_line(spec: str, words: str) -> None:
    with pytest.raises(UsageError, match=words) as e:
        config.parse_mount(spec)
    assert "\n" not in str(e.value)


def test_tmpfs_forms_and_errors() -> None:
    t = config.parse_tmpfs("/run:size=64m,mode=1777,exec,uid=1000")
    assert (t.kind, t.target, t.options) == ("tmpfs", "/run", ("size=67108864", "mode=1777", "exec", "uid=1000"))
    assert config.parse_tmpfs("/ro:ro").readonly
    for bad, words in (("rel", "absolute"), ("/x:size=", "--tmpfs size"), ("/x:bogus", "unknown tmpfs option"),
                       ("/x:mode=8", "octal"), ("/x:uid=me", "unknown tmpfs option")):
        with pytest.raises(UsageError, match=words):
            config.parse_tmpfs(bad)


def test_duplicate_mount_points_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="duplicate mount point: /x"):
        config.parse_mounts([f"{tmp_path}:/x"], ["type=tmpfs,target=/x/"])
    with pytest.raises(UsageError, match="duplicate mount point: /y"):
        config.parse_mounts(["v:/y"], [], ["/y"])
    assert config.parse_mounts([]) == ()


def test_volumes_from() -> None:
    assert config.parse_volumes_from("web:ro") == "web:ro"
    for bad in ("", "web:rx", ":ro", "a/b"):
        with pytest.raises(UsageError, match="--volumes-from"):
            config.parse_volumes_from(bad)


def test_mounts_round_trip_through_json(tmp_path: Path) -> None:
    cfg = ContainerConfig(image="x", command=("a",), volumes_from=("web",), mounts=(
        BindMount("/s", "/t", True), BindMount("/v/_data", "/v", False, kind="volume", name="v", options=("nocopy",)),
        BindMount("", "/t2", False, kind="tmpfs", options=("size=1024",))))
    back = ContainerConfig.from_json(cfg.to_json())
    assert back == cfg and back.mounts[1].options == ("nocopy",) and back.volumes_from == ("web",)
    # a record written before volumes existed still reads: a bind
    old = ContainerConfig.from_json({"image": "x", "mounts": [{"source": "/s", "target": "/t", "readonly": False}]})
    assert old.mounts[0].kind == "bind" and old.mounts[0].options == ()


def test_spec_mounts_for_each_kind() -> None:
    from pycontain.config import Limits, ResolvedConfig

    cfg = ContainerConfig(image="x", mounts=(
        BindMount("/h", "/b", True, options=("rshared", "nonrecursive")),
        BindMount("/v/_data", "/v", False, kind="volume", name="v", options=("nocopy",)),
        BindMount("", "/t", False, kind="tmpfs", options=("size=1024", "exec"))))
    spec = container_spec("c" * 64, cfg, ResolvedConfig(argv=("sh",)), Limits(), "/s", ["/l"], {})
    mine = {m["destination"]: m for m in spec["mounts"] if m["destination"] in ("/b", "/v", "/t")}
    assert mine["/b"] == {"destination": "/b", "type": "bind", "source": "/h", "options": ["bind", "ro", "rshared"]}
    assert mine["/v"] == {"destination": "/v", "type": "bind", "source": "/v/_data", "options": ["rbind"]}
    assert mine["/t"]["type"] == "tmpfs"
    assert mine["/t"]["options"] == ["noexec", "nosuid", "nodev", "size=1024", "exec"]


def test_volume_names() -> None:
    assert config.valid_volume_name("a") and config.valid_volume_name("A1_b.c-d")
    for bad in ("", "-a", "_a", ".a", "a/b", "a b", "a:b", "x" * 256):
        assert not config.valid_volume_name(bad)


def test_run_path_does_not_import_volumes() -> None:
    """A container without volumes never loads volumes.py (its start must not pay for it)."""
    import subprocess
    import sys

    code = ("import sys; from pycontain import cli, config, runtime, oci; "
            "cli.config_from({**{d: ([] if k == cli.MULTI else (False if k == cli.FLAG else None)) "
            "for _, d, k, _, _ in cli.RUN_OPTIONS}, 'volume': ['/tmp:/x']}, ['img']); "
            "print('pycontain.volumes' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
