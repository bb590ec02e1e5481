"""User namespaces as data: /etc/subuid ranges cut into slots, leases under the state root (taken, kept,
freed, never shared), the config file's default, the spec pieces, and the checks of a bundle's
mappings. No root, no kernel."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

from pycontain import userns
from pycontain.errors import PycontainError, UsageError
from pycontain.oci import SpecError, executor, validate
from pycontain.state import Paths


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    """A state root with /etc/subuid and /etc/subgid of its own: 3 slots for uids, 4 for gids."""
    (tmp_path / "subuid").write_text("someone:100000:65536\npycontain:200000:196608\n")
    (tmp_path / "subgid").write_text("pycontain:300000:65536\n# a comment\npycontain:500000:200000\n")
    monkeypatch.setattr(userns, "SUBUID", str(tmp_path / "subuid"))
    monkeypatch.setattr(userns, "SUBGID", str(tmp_path / "subgid"))
    p = Paths(state=str(tmp_path / "run"), storage=str(tmp_path / "storage"))
    os.makedirs(p.containers)
    return p


def _record(paths: Paths, cid: str) -> str:
    os.makedirs(paths.record(cid), exist_ok=True)
    return cid


def test_subid_ranges_are_cut_into_whole_slots_of_65536_in_file_order(paths: Paths) -> None:
    uids, gids = userns.slots()
    assert uids == [200000, 265536, 331072]  # someone's range is not ours
    assert gids == [300000, 500000, 565536]  # 200000 ids hold 3 whole slots; uids bound the count anyway
    assert userns.subid_ranges(userns.SUBUID, "someone") == [(100000, 65536)]


def test_no_range_for_pycontain_is_one_clear_error(paths: Paths, tmp_path: Path) -> None:
    (tmp_path / "subuid").write_text("")
    with pytest.raises(PycontainError, match="subuid has no range .* `pycontain:100000:"):
        userns.allocate(paths, _record(paths, "a" * 64))


def test_leases_are_disjoint_kept_per_container_and_freed(paths: Paths) -> None:
    a, b, c = (_record(paths, ch * 64) for ch in "abc")
    la, lb = userns.allocate(paths, a), userns.allocate(paths, b)
    assert (la.slot, la.uid, la.gid) == (0, 200000, 300000)
    assert (lb.slot, lb.uid, lb.gid) == (1, 265536, 500000)
    assert userns.allocate(paths, a).to_json() == la.to_json()  # the same container keeps its range
    lc = userns.allocate(paths, c)
    with pytest.raises(PycontainError, match="all 3 ranges"):
        userns.allocate(paths, _record(paths, "d" * 64))
    userns.release(paths, b)
    assert userns.allocate(paths, _record(paths, "e" * 64)).slot == lb.slot  # the lowest free one
    assert lc.slot == 2


def test_a_lease_whose_record_is_gone_is_freed_by_gc_and_by_the_next_allocation(paths: Paths) -> None:
    a, b = _record(paths, "a" * 64), _record(paths, "b" * 64)
    userns.allocate(paths, a)
    userns.allocate(paths, b)
    os.rmdir(paths.record(a))  # its creator was killed after the lease, and the record went
    assert userns.gc(paths) == [f"released user namespace range 0 (container {a[:12]})"]
    assert userns.gc(paths) == []
    os.rmdir(paths.record(b))
    assert userns.allocate(paths, _record(paths, "c" * 64)).slot == 0  # b's stale lease is freed on the way
    assert sorted(os.listdir(f"{paths.state}/userns")) == ["0", "lock"]


def test_spec_pieces_add_a_user_namespace_with_the_lease_mappings() -> None:
    spec: dict[str, Any] = {"linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}}
    lease = userns.Lease(3, 296608, 396608)
    userns.apply(spec, lease.to_json())
    assert spec["linux"]["namespaces"][0] == {"type": "user"}
    assert spec["linux"]["uidMappings"] == [{"containerID": 0, "hostID": 296608, "size": 65536}]
    assert spec["linux"]["gidMappings"] == [{"containerID": 0, "hostID": 396608, "size": 65536}]
    before = copy.deepcopy(spec)
    assert userns.apply(spec, None) == before  # --userns=host: nothing changes
    assert userns.map_text(spec["linux"]["uidMappings"]) == "0 296608 65536\n"
    assert userns.host_id(spec["linux"]["uidMappings"], 0) == 296608
    assert userns.host_id(spec["linux"]["uidMappings"], 65536) is None


def test_the_config_file_sets_the_default_and_the_flag_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config"
    monkeypatch.setenv(userns.CONFIG_ENV, str(config))
    assert userns.mode(None) == "host"  # no file: like Docker without userns-remap
    config.write_text("# pycontain\n\nuserns = auto   # remap every container\n")
    assert userns.mode(None) == "auto"
    assert userns.mode("host") == "host"
    config.write_text("userns = keep-id\n")
    with pytest.raises(UsageError, match="userns = 'keep-id'"):
        userns.mode(None)
    config.write_text("userns\n")
    with pytest.raises(UsageError, match=r"config:1: expected `key = value`"):
        userns.mode(None)


def test_overlay_options_round_trip() -> None:
    lower, rest = userns.parse_overlay("lowerdir=/l/2:/l/1,upperdir=/u,workdir=/w")
    assert lower == ["/l/2", "/l/1"] and rest == {"upperdir": "/u", "workdir": "/w"}
    assert userns.overlay_text(lower, rest) == "lowerdir=/l/2:/l/1,upperdir=/u,workdir=/w"


def _spec(**linux: Any) -> dict[str, Any]:
    return {"ociVersion": "1.0.2", "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "cwd": "/"},
            "linux": {"namespaces": [{"type": "mount"}, {"type": "user"}], **linux}}


M = {"containerID": 0, "hostID": 100000, "size": 65536}


@pytest.mark.parametrize("linux,field", [
    ({"uidMappings": [M], "gidMappings": [{**M, "size": 0}]}, "linux.gidMappings[0].size"),
    ({"uidMappings": [{**M, "hostID": -1}], "gidMappings": [M]}, "linux.uidMappings[0].hostID"),
    ({"uidMappings": [{**M, "containerID": 4294967294}], "gidMappings": [M]}, "linux.uidMappings[0]"),
    ({"uidMappings": [M, {"containerID": 100, "hostID": 900000, "size": 1}], "gidMappings": [M]},
     "linux.uidMappings[1].containerID"),
    ({"uidMappings": [M, {"containerID": 70000, "hostID": 100001, "size": 1}], "gidMappings": [M]},
     "linux.uidMappings[1].hostID"),
    ({"uidMappings": [M] * 341, "gidMappings": [M]}, "linux.uidMappings"),
    ({"uidMappings": "0 100000 65536", "gidMappings": [M]}, "linux.uidMappings"),
    ({"uidMappings": [M]}, "linux.namespaces"),
])
def test_bad_mappings_are_refused_with_one_line_naming_the_field(linux: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as e:
        validate.check(_spec(**linux))
    assert str(e.value).startswith(f"config.json: {field}"), str(e.value)
    assert "\n" not in str(e.value)


def test_good_mappings_and_a_joined_user_namespace_pass() -> None:
    validate.check(_spec(uidMappings=[M, {"containerID": 65536, "hostID": 300000, "size": 10}], gidMappings=[M]))
    joined = _spec()
    joined["linux"]["namespaces"][1]["path"] = "/proc/1/ns/user"
    validate.check(joined)  # the mappings are the joined namespace's own
    no_userns = _spec(uidMappings=[M], gidMappings=[M])
    no_userns["linux"]["namespaces"] = [{"type": "mount"}]
    with pytest.raises(SpecError, match="linux.uidMappings: mappings need a user namespace"):
        validate.check(no_userns)
    with pytest.raises(SpecError, match="needs both"):
        executor._check_mappings({"uidMappings": [M]}, {"user": None})
