"""`pycontain doctor`'s checks against fake hosts: a /proc, cgroup root and /etc tree made in tmp_path, and
fake kernel probes, so every failure path is exercised without breaking the machine the tests run on."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pycontain import doctor, state
from pycontain.doctor import MISSING, OK, WARNING, Check, Host
from pycontain.errors import UsageError
from pycontain.network.nat import NftError

V1_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / {root}/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / {root}/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / {root}/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / {root}/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / {root}/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / {root}/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / {root}/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / {root}/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / {root}/unified rw,relatime - cgroup2 cgroup2 rw
"""
PROC_CGROUPS = """\
#subsys_name	hierarchy	num_cgroups	enabled
cpuset	3	1	1
cpu	4	1	1
cpuacct	5	1	1
blkio	6	1	1
memory	7	1	1
devices	8	1	1
freezer	9	1	1
pids	11	1	1
"""
NFT_JSON = ('{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}, '
            '{"table": {"family": "ip", "name": "pycontain", "handle": 1}}]}')
DEAD_PID = "99999999"  # above the largest pid_max Linux allows (2^22)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def fake_host(tmp: Path, *, release: str = "6.1.0-13-amd64", cgroup: int = 1, config: str = "",
              environ: dict[str, str] | None = None) -> Host:
    """A healthy host, made of files under tmp; tests then break one piece of it."""
    proc = tmp / "proc"
    for ns in ("cgroup", "ipc", "mnt", "net", "pid", "pid_for_children", "time", "user", "uts"):
        write(proc / "self" / "ns" / ns, "")
    write(proc / "sys" / "user" / "max_user_namespaces", "63420\n")
    write(proc / "filesystems", "nodev\tsysfs\nnodev\tcgroup\nnodev\tcgroup2\n\text4\nnodev\toverlay\n")
    write(proc / "self" / "status", "Name:\tpython\nSeccomp:\t0\nSeccomp_filters:\t0\n")
    write(proc / "sys" / "kernel" / "seccomp" / "actions_avail",
          "kill_process kill_thread trap errno user_notif trace log allow\n")
    write(proc / "sys" / "net" / "ipv4" / "ip_forward", "1\n")
    write(proc / "cgroups", PROC_CGROUPS)
    root = tmp / "cgroup"
    root.mkdir()
    if cgroup == 1:
        write(proc / "self" / "mountinfo", V1_MOUNTINFO.format(root=root))
        for c in ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "unified"):
            write(root / c / "cgroup.procs", "")
    else:
        write(proc / "self" / "mountinfo", f"30 23 0:26 / {root} rw - cgroup2 cgroup2 rw\n")
        write(root / "cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n")
        write(root / "cgroup.subtree_control", "memory pids\n")
    ids = "pycontain:100000:67108864\n"
    host = Host(proc=str(proc), cgroup_root=str(root), subuid=str(write(tmp / "etc" / "subuid", ids)),
                subgid=str(write(tmp / "etc" / "subgid", ids)), modules=str(tmp / "modules"), release=release,
                machine="x86_64", config=str(write(tmp / "etc" / "pycontain.conf", config)),
                environ={"PYCONTAIN_NETWORK": "bridge"} if environ is None else environ)
    host.openat2 = lambda: None
    host.idmap = lambda d: None
    host.bpf_device = lambda: None
    host.libseccomp = lambda: None
    host.nft = lambda: NFT_JSON
    return host


@pytest.fixture
def paths(tmp_path: Path) -> state.Paths:
    return state.Paths(str(tmp_path / "root" / "run"), str(tmp_path / "root" / "storage"))


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def raiser(exc: BaseException) -> Callable[..., None]:
    def probe(*_: object) -> None:
        raise exc

    return probe


# ---------------------------------------------------------------- a healthy host

@pytest.mark.parametrize("cgroup", [1, 2])
def test_a_healthy_host_passes_every_required_check(tmp_path: Path, paths: state.Paths, cgroup: int) -> None:
    checks = doctor.run_checks(paths, fake_host(tmp_path, cgroup=cgroup))
    found = by_name(checks)
    assert doctor.runnable(checks)
    assert [c for c in checks if c.status == MISSING] == []
    assert found["images"].status == WARNING and "pycontain import" in found["images"].fix
    assert found["leftovers"].status == OK
    assert found["nft"].detail == "nftables 1.0.6, lists 1 table, ip pycontain among them"
    for name in ("cgroup pids", "cgroup memory", "cgroup devices"):
        assert found[name].required and found[name].status == OK, found[name]
    assert len({c.name for c in checks}) == len(checks), "each check is one line with its own name"


def test_cgroup_v2_controllers_and_the_bpf_device_filter(tmp_path: Path, paths: state.Paths) -> None:
    host = fake_host(tmp_path, cgroup=2)
    (Path(host.cgroup_root) / "cgroup.controllers").write_text("cpu memory pids\n")
    found = by_name(doctor.run_checks(paths, host))
    assert found["cgroups"].detail.startswith("v2 (unified)")
    assert found["cgroup memory"].status == OK and "enabled" in found["cgroup memory"].detail
    assert found["cgroup cpu"].status == OK and "pycontain enables it" in found["cgroup cpu"].detail
    assert found["cgroup io"].status == WARNING and not found["cgroup io"].required
    assert found["cgroup cpuset"].status == WARNING
    host.bpf_device = raiser(OSError(errno.EPERM, "bpf(BPF_PROG_LOAD): Operation not permitted"))
    (Path(host.cgroup_root) / "cgroup.controllers").write_text("cpu memory\n")
    cgroups = Path(host.proc) / "cgroups"
    cgroups.write_text(cgroups.read_text().replace("pids\t11\t1\t1", "pids\t0\t1\t0"))
    checks = doctor.run_checks(paths, host)
    found = by_name(checks)
    assert found["cgroup devices"].status == MISSING and "CONFIG_CGROUP_BPF" in found["cgroup devices"].fix
    assert found["cgroup pids"].fix == "remove cgroup_disable=pids from the kernel command line"
    assert "bound to a v1 hierarchy" in found["cgroup cpuset"].fix  # a hybrid host's controllers are v1's
    assert found["cgroup pids"].status == MISSING and found["cgroup pids"].required
    assert not doctor.runnable(checks)


# ---------------------------------------------------------------- each required piece missing

def test_a_missing_namespace_type_is_required(tmp_path: Path, paths: state.Paths) -> None:
    host = fake_host(tmp_path)
    os.unlink(f"{host.proc}/self/ns/cgroup")
    checks = doctor.run_checks(paths, host)
    ns = by_name(checks)["namespaces"]
    assert ns.status == MISSING and "no cgroup" in ns.detail and "CONFIG_CGROUP_NS" in ns.fix
    assert not doctor.runnable(checks)
    assert "pid_for_children" not in ns.detail


def test_an_old_kernel_without_openat2(tmp_path: Path, paths: state.Paths) -> None:
    host = fake_host(tmp_path, release="5.4.0-150-generic")
    host.openat2 = raiser(OSError(errno.ENOSYS, "open /: Function not implemented"))
    kernel = by_name(doctor.run_checks(paths, host))["kernel"]
    assert kernel.status == MISSING and "5.6" in kernel.fix and "Function not implemented" in kernel.detail
    host.openat2 = lambda: None  # a backport: the version is old, the call works
    kernel = by_name(doctor.run_checks(paths, host))["kernel"]
    assert kernel.status == WARNING and kernel.required


@pytest.mark.parametrize("release, parsed", [("6.18.44-fc-v657", (6, 18, 44)), ("5.19.0-rc1", (5, 19, 0)),
                                             ("4.19.0+", (4, 19, 0)), ("6.1", (6, 1)), ("weird", ())])
def test_kernel_versions_parse(release: str, parsed: tuple[int, ...]) -> None:
    assert doctor._version(release) == parsed


def test_user_namespaces_matter_only_when_the_default_is_auto(tmp_path: Path, paths: state.Paths) -> None:
    host = fake_host(tmp_path)
    write(Path(host.proc) / "sys" / "user" / "max_user_namespaces", "0\n")
    write(Path(host.proc) / "sys" / "kernel" / "unprivileged_userns_clone", "0\n")
    checks = doctor.run_checks(paths, host)
    userns = by_name(checks)["user namespaces"]
    assert userns.status == WARNING and not userns.required and doctor.runnable(checks)
    assert "max_user_namespaces=0" in userns.detail and "does not apply to root" in userns.detail
    assert "sysctl -w user.max_user_namespaces" in userns.fix
    Path(host.config or "").write_text("userns = auto\n")
    checks = doctor.run_checks(paths, host)
    userns = by_name(checks)["user namespaces"]
    assert userns.status == MISSING and userns.required and not doctor.runnable(checks)


def test_subordinate_ids(tmp_path: Path, paths: state.Paths) -> None:
    host = fake_host(tmp_path)
    Path(host.subgid).write_text("someone:100000:65536\npycontain:200000:1000\n")  # too small to hold a range
    found = by_name(doctor.run_checks(paths, host))["subuid/subgid"]
    assert found.status == WARNING and host.subgid in found.detail and host.subuid not in found.detail
    assert f"echo pycontain:100000:{65536 * 1024} >> {host.subgid}" in found.fix
    Path(host.config or "").write_text("userns = auto\n")
    assert by_name(doctor.run_checks(paths, host))["subuid/subgid"].status == MISSING
    Path(host.subgid).write_text("pycontain:100000:196608\n")
    found = by_name(doctor.run_checks(paths, host))["subuid/subgid"]
    assert found.status == OK and found.detail.startswith("3 container ranges")


def test_a_bad_config_file_breaks_every_create(tmp_path: Path, paths: state.Paths) -> None:
    host = fake_host(tmp_path, config="userns = sometimes\n")
    checks = doctor.run_checks(paths, host)
    found = by_name(checks)["config"]
    assert found.status == MISSING and "sometimes" in found.detail and not doctor.runnable(checks)


def test_overlayfs_loaded_loadable_or_absent(tmp_path: Path, paths: state.Paths) -> None:
    host = fake_host(tmp_path)
    write(Path(host.proc) / "filesystems", "nodev\tsysfs\n\text4\n")
    write(Path(host.modules) / host.release / "modules.dep", "kernel/fs/overlayfs/overlay.ko.xz: \n")
    found = by_name(doctor.run_checks(paths, host))["overlayfs"]
    assert found.status == OK and "overlay.ko.xz" in found.detail
    os.unlink(Path(host.modules) / host.release / "modules.dep")
    checks = doctor.run_checks(paths, host)
    assert by_name(checks)["overlayfs"].status == MISSING and not doctor.runnable(checks)


def test_idmapped_layers_are_optional(tmp_path: Path, paths: state.Paths) -> None:
    host = fake_host(tmp_path)
    seen: list[str] = []
    host.idmap = seen.append
    assert by_name(doctor.run_checks(paths, host))["idmapped layers"].status == OK
    assert seen == [str(tmp_path)], "the nearest existing directory of the layer store is probed"
    host.idmap = raiser(OSError(errno.EINVAL, "mount_setattr(IDMAP): Invalid argument"))
    checks = doctor.run_checks(paths, host)
    found = by_name(checks)["idmapped layers"]
    assert found.status == WARNING and "copies" in found.detail and doctor.runnable(checks)
    host = fake_host(tmp_path / "old", release="5.15.0")
    assert "5.19" in by_name(doctor.run_checks(paths, host))["idmapped layers"].fix


def test_cgroup_v1_controllers_missing_for_different_reasons(tmp_path: Path, paths: state.Paths) -> None:
    host = fake_host(tmp_path)
    mountinfo = Path(host.proc) / "self" / "mountinfo"
    mountinfo.write_text("".join(line + "\n" for line in mountinfo.read_text().splitlines()
                                 if not line.endswith((",devices", ",memory", ",freezer"))))
    cgroups = Path(host.proc) / "cgroups"
    cgroups.write_text(cgroups.read_text().replace("memory\t7\t1\t1", "memory\t0\t1\t0")
                       .replace("freezer\t9\t1\t1\n", ""))
    checks = doctor.run_checks(paths, host)
    found = by_name(checks)
    assert found["cgroup devices"].status == MISSING and "mount -t cgroup -o devices" in found["cgroup devices"].fix
    assert found["cgroup memory"].status == MISSING and "cgroup_disable=memory" in found["cgroup memory"].fix
    assert found["cgroup freezer"].status == WARNING and "not in this kernel" in found["cgroup freezer"].detail
    assert not doctor.runnable(checks)
    os.unlink(Path(host.cgroup_root) / "pids" / "cgroup.procs")  # hidden under another mount
    found = by_name(doctor.run_checks(paths, host))
    assert found["cgroup pids"].status == MISSING and "not mounted" in found["cgroup pids"].detail
    mountinfo.write_text("")
    found = by_name(doctor.run_checks(paths, host))
    assert found["cgroups"].status == MISSING and "cgroup pids" not in found


def test_seccomp_and_libseccomp(tmp_path: Path, paths: state.Paths) -> None:
    host = fake_host(tmp_path)
    write(Path(host.proc) / "self" / "status", "Name:\tpython\n")
    host.libseccomp = raiser(OSError(0, "cannot load libseccomp (libseccomp.so.2: cannot open): install libseccomp2"))
    checks = doctor.run_checks(paths, host)
    found = by_name(checks)
    assert found["seccomp"].status == MISSING and "CONFIG_SECCOMP" in found["seccomp"].fix
    assert found["libseccomp"].status == MISSING and "libseccomp2" in found["libseccomp"].fix
    assert not doctor.runnable(checks)


def test_nft_is_required_only_for_a_bridge_default(tmp_path: Path, paths: state.Paths) -> None:
    host = fake_host(tmp_path)
    host.nft = raiser(NftError("nft is not installed: install the nftables package (apt-get install nftables)"))
    checks = doctor.run_checks(paths, host)
    nft = by_name(checks)["nft"]
    assert nft.status == MISSING and nft.required and not doctor.runnable(checks)
    assert "default network is bridge" in nft.detail
    host.environ = {"PYCONTAIN_NETWORK": "none"}
    checks = doctor.run_checks(paths, host)
    assert by_name(checks)["nft"].status == WARNING and doctor.runnable(checks)
    host.nft = lambda: "this is not JSON"
    assert by_name(doctor.run_checks(paths, host))["nft"].status == WARNING


def test_ip_forwarding_is_only_a_warning(tmp_path: Path, paths: state.Paths) -> None:
    host = fake_host(tmp_path)
    write(Path(host.proc) / "sys" / "net" / "ipv4" / "ip_forward", "0\n")
    checks = doctor.run_checks(paths, host)
    found = by_name(checks)["ip forwarding"]
    assert found.status == WARNING and "pycontain sets it" in found.detail and doctor.runnable(checks)


@pytest.mark.parametrize("free, status", [(500 << 20, WARNING), (1 << 20, MISSING), (10 << 30, OK)])
def test_disk_space(tmp_path: Path, paths: state.Paths, monkeypatch: pytest.MonkeyPatch, free: int,
                    status: str) -> None:
    monkeypatch.setattr(doctor, "_free", lambda path: (path, free))
    found = by_name(doctor.run_checks(paths, fake_host(tmp_path)))["disk space"]
    assert found.status == status and found.required
    assert (found.fix == "") == (status == OK)


# ---------------------------------------------------------------- each probe on its own

def test_a_probe_that_breaks_is_one_warning_line(tmp_path: Path, paths: state.Paths,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(host: Host) -> Check:
        raise RuntimeError("surprise")

    monkeypatch.setattr(doctor, "check_seccomp", broken)
    monkeypatch.delenv("PYCONTAIN_DEBUG", raising=False)
    host = fake_host(tmp_path)
    os.unlink(f"{host.proc}/self/mountinfo")
    host.nft = raiser(KeyError("nftables"))  # only NftError/OSError are expected: the runner catches the rest
    checks = doctor.run_checks(paths, host)
    found = by_name(checks)
    assert found["seccomp"].status == WARNING and "could not check: RuntimeError: surprise" in found["seccomp"].detail
    assert found["nft"].status == WARNING and "KeyError" in found["nft"].detail
    assert found["cgroups"].status == MISSING  # no mountinfo: no hierarchy found, said in its own line
    assert found["libseccomp"].status == OK and found["leftovers"].status == OK, "the other checks still ran"


# ---------------------------------------------------------------- leftovers (read only)

def write_record(paths: state.Paths, cid: str, status: str, remove: bool = False) -> state.Record:
    state.ensure_dirs(paths)
    rec = state.Record(paths, cid)
    Path(rec.dir).mkdir(parents=True)
    state.atomic_write_json(f"{rec.dir}/config.json", {
        "id": cid, "name": f"n{cid[:4]}", "created": state.now(), "image": "busybox",
        "image_id": "sha256:" + "0" * 64, "layers": [], "config": {"image": "busybox", "remove": remove},
        "network": None, "resolved": {"argv": ["sleep", "1"], "env": [], "workdir": "/", "user": "", "hostname": "h"},
    }, durable=False)
    state.atomic_write_json(f"{rec.dir}/state.json", {"status": status}, durable=False)
    os.symlink(cid, f"{paths.names}/n{cid[:4]}")
    return rec


def test_leftovers_are_found_without_changing_anything(tmp_path: Path, paths: state.Paths) -> None:
    write_record(paths, "a" * 64, "exited")  # an ordinary stopped container: not a leftover
    write_record(paths, "b" * 64, "running")  # nobody holds its lock: its monitor was killed
    write_record(paths, "c" * 64, "exited", remove=True)  # --rm, exited, never removed
    damaged = write_record(paths, "d" * 64, "exited")
    Path(damaged.dir, "config.json").write_text("{")
    sock = write_record(paths, "e" * 64, "exited")
    Path(sock.dir, "attach.sock").write_text("")
    live = write_record(paths, "f" * 64, "running")  # a live monitor holds it
    held = os.open(live.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(held, fcntl.LOCK_EX)
    incomplete = Path(paths.record("1" * 64))
    incomplete.mkdir()
    os.utime(incomplete, (time.time() - 60, time.time() - 60))
    Path(paths.record("2" * 64)).mkdir()  # being created right now: too young to judge
    storage = Path(paths.storage) / "containers"
    (storage / ("3" * 64)).mkdir(parents=True)  # storage without a record
    (storage / ("4" * 64)).mkdir()  # a live build's RUN step
    (storage / ("5" * 64)).mkdir()  # kept for the boot hook after a reboot
    (storage / ("5" * 64) / "restart-record.json").write_text("{}")
    (storage / ("a" * 64)).mkdir()  # a record's own
    build = Path(paths.storage) / "build"
    write(build / "dead" / "lock", "")
    write(build / "alive" / "cids", "4" * 64 + "\n")
    build_lock = os.open(write(build / "alive" / "lock", ""), os.O_RDWR | os.O_CLOEXEC)
    fcntl.flock(build_lock, fcntl.LOCK_EX)
    os.symlink("9" * 64, f"{paths.names}/ghost")
    write(Path(paths.userns) / "0", "a" * 64)
    write(Path(paths.userns) / "1", "7" * 64)
    images = Path(paths.images)
    write(images / "blobs" / "sha256" / f".tmp-{DEAD_PID}-x", "")
    write(images / "blobs" / "sha256" / f".tmp-{os.getpid()}-x", "")  # still being written
    write(images / "refs.json", "{not json")
    before = sorted(str(p) for p in Path(paths.state).parent.rglob("*"))
    try:
        found = doctor.leftovers(paths)
    finally:
        os.close(held)
        os.close(build_lock)
    assert sorted(str(p) for p in Path(paths.state).parent.rglob("*")) == before
    tags = [which for kind, which in found if kind == "damaged image tags"]
    assert len(tags) == 1 and tags[0].startswith(f"the image tags file {images}/refs.json is damaged")
    assert {(kind, which) for kind, which in found if kind != "damaged image tags"} == {
        ("dead container (its monitor was killed)", "b" * 12),
        ("--rm container not removed", "c" * 12),
        ("damaged container record", "d" * 12),
        ("attach socket of a killed monitor", "e" * 12),
        ("incomplete container record", "1" * 12),
        ("container storage without a record", "3" * 12),
        ("working files of a killed build", "dead"),
        ("name of a removed container", "ghost"),
        ("user namespace range of a removed container", "slot 1"),
        ("half-written image data", f".tmp-{DEAD_PID}-x"),
    }


def test_the_leftovers_line_says_run_gc(tmp_path: Path, paths: state.Paths) -> None:
    host = fake_host(tmp_path)
    for c in "3456":
        (Path(paths.storage) / "containers" / (c * 64)).mkdir(parents=True)
    found = by_name(doctor.run_checks(paths, host))["leftovers"]
    assert found.status == WARNING and found.fix == "run `pycontain gc`" and not found.required
    assert found.detail == "4 container storage without a record (333333333333, 444444444444, 555555555555, ...)"


def test_an_orphaned_resolver_and_a_stale_pid_file(tmp_path: Path, paths: state.Paths) -> None:
    from pycontain.network import ipam, resolver

    net = Path(ipam.root(paths))
    write(net / "dead" / "network.json", "{}")
    write(net / "dead" / resolver.PIDFILE, "123\n")  # nobody holds it: its resolver was killed
    write(net / "gone" / "resolver.members", "[]")  # the network was removed under a running resolver
    proc = tmp_path / "proc"
    write(proc / "4242" / "comm", resolver.COMM + "\n")
    write(proc / "4242" / "cmdline", "\0".join(["python3", "-S", "-m", resolver.MODULE, str(net / "gone"), ""]))
    write(proc / "4243" / "comm", "bash\n")
    found = doctor.leftovers(paths, str(proc))
    assert set(found) == {("pid file of a killed DNS resolver", "dead"), ("orphaned DNS resolver", "pid 4242")}


# ---------------------------------------------------------------- output

def test_the_table_is_aligned_and_plain_unless_asked(tmp_path: Path, paths: state.Paths) -> None:
    host = fake_host(tmp_path)
    write(Path(host.proc) / "sys" / "net" / "ipv4" / "ip_forward", "0\n")
    checks = doctor.run_checks(paths, host)
    text = doctor.render(checks)
    lines = text.splitlines()
    assert lines[0].split() == ["CHECK", "STATUS", "FOUND", "FIX"]
    assert "\033" not in text
    column = lines[0].index("STATUS")
    rows = lines[1:len(checks) + 1]
    assert len(rows) == len(checks)
    for row, check in zip(rows, checks):
        assert row.startswith(check.name) and row[column:].startswith(check.status), row
    starts = {row.index(check.fix) for row, check in zip(rows, checks) if check.fix}
    assert len(starts) == 1, "the fixes line up"
    assert lines[-1] == "pycontain run will work here (2 warnings)"
    coloured = doctor.render(checks, colour=True)
    assert "\033[32mok\033[0m" in coloured and "\033[33mwarning\033[0m" in coloured


def test_images_count_tagged_and_untagged(tmp_path: Path, paths: state.Paths) -> None:
    images = Path(paths.images)
    for n in "ab":
        write(images / "blobs" / "sha256" / (n * 64), "{}")
        write(images / "meta" / f"{n * 64}.json", "{}")
    write(images / "refs.json", json.dumps({"docker.io/library/busybox:latest": "sha256:" + "a" * 64}))
    found = by_name(doctor.run_checks(paths, fake_host(tmp_path)))["images"]
    assert found.status == OK and found.detail == "2 images, 1 untagged; tagged: busybox:latest"


def test_no_fix_column_when_nothing_needs_one() -> None:
    text = doctor.render([Check("kernel", OK, "Linux 6.1", required=True)])
    assert text.splitlines()[0] == "CHECK    STATUS   FOUND"
    assert text.splitlines()[-1] == "pycontain run will work here"


def test_the_verdict_names_what_is_missing(tmp_path: Path, paths: state.Paths) -> None:
    host = fake_host(tmp_path)
    host.libseccomp = raiser(OSError(0, "cannot load libseccomp"))
    checks = doctor.run_checks(paths, host)
    assert doctor.render(checks).splitlines()[-1].startswith("pycontain run will not work here: missing libseccomp")


def test_json_has_every_check_and_the_verdict(tmp_path: Path, paths: state.Paths) -> None:
    checks = doctor.run_checks(paths, fake_host(tmp_path))
    doc = json.loads(doctor.to_json(checks))
    assert doc["ok"] is True
    assert [c["name"] for c in doc["checks"]] == [c.name for c in checks]
    for c in doc["checks"]:
        assert set(c) == {"name", "status", "detail", "fix", "required"} and c["status"] in (OK, WARNING, MISSING)


def test_bad_arguments_are_one_line(paths: state.Paths) -> None:
    with pytest.raises(UsageError, match="takes no arguments"):
        doctor.cmd_doctor(paths, {"format": None}, ["extra"])
    with pytest.raises(UsageError, match="--format 'yaml'"):
        doctor.cmd_doctor(paths, {"format": "yaml"}, [])


def test_the_command_exits_1_when_run_would_fail(tmp_path: Path, paths: state.Paths,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    host = fake_host(tmp_path)
    monkeypatch.setattr(doctor, "Host", lambda: host)
    assert doctor.cmd_doctor(paths, {"format": "json"}, []) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    host.openat2 = raiser(OSError(errno.ENOSYS, "nope"))
    assert doctor.cmd_doctor(paths, {"format": None}, []) == 1
    assert "pycontain run will not work here: missing kernel" in capsys.readouterr().out


def test_not_root_is_missing(tmp_path: Path, paths: state.Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    host = fake_host(tmp_path)
    assert by_name(doctor.run_checks(paths, host))["root"].status == OK
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    checks = doctor.run_checks(paths, host)
    found = by_name(checks)["root"]
    assert found.status == MISSING and "uid 1000" in found.detail and found.fix.startswith("sudo pycontain doctor")
    assert not doctor.runnable(checks)


def test_a_read_only_cgroup_hierarchy(tmp_path: Path, paths: state.Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    host = fake_host(tmp_path)
    pids = f"{host.cgroup_root}/pids"
    monkeypatch.setattr(doctor, "_unwritable", lambda path: "read-only" if path == pids else None)
    checks = doctor.run_checks(paths, host)
    found = by_name(checks)["cgroup pids"]
    assert found.status == MISSING and found.detail.startswith(f"{pids} is read-only")
    assert found.fix == f"mount -o remount,rw {pids}" and not doctor.runnable(checks)
    assert doctor._writable_fix(pids, "not writable by uid 1000") == "run pycontain as root"
