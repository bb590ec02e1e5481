"""User namespaces: `--userns=auto` (and the config file's default), on the real kernel.

Seen from the host, the container's processes run as an unprivileged uid from pycontain's /etc/subuid
range, one range of 65536 per container, never shared between live ones; inside they are root. The
image layers are shared through idmapped mounts (nothing chowned in the store), with a chowned copy
when the kernel refuses idmapping. exec, bind mounts, bridge networking and cgroup limits keep
working, and container root can do nothing the host's root could that the range's uid cannot.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import leaks as leaks_module
import support
from netns_support import NetNs, NetPycontain, http_get, leakcheck_wrapper, monitor_pid, network_leftovers
from support import COMMAND_TIMEOUT, Pycontain, alive, assert_pycontain_error, describe, wait_for

pytest.register_assert_rewrite("oci_support", "engines")

from engines import PODMAN_IMAGE, Podman  # noqa: E402
from oci_support import Oci  # noqa: E402

pytest_plugins = ["engines"]  # the podman fixture

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SIZE = 65536


def subuid_base() -> int:
    """The first host uid of pycontain's range in /etc/subuid (scripts/install adds it)."""
    for line in Path("/etc/subuid").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name == "pycontain":
            return int(rest.split(":")[0])
    raise AssertionError("/etc/subuid has no pycontain range: run scripts/install")


def host_ids(pid: int) -> tuple[int, int]:
    """The real uid and gid of a process as the host sees them."""
    status = support.proc_status(Path(f"/proc/{pid}/status").read_text())
    return int(status["Uid"].split()[0]), int(status["Gid"].split()[0])


def init_pid(pc: Pycontain, ref: str) -> int:
    return int(pc.wait_until_running(ref)["State"]["Pid"])


def leases(pc: Pycontain) -> list[str]:
    d = pc.root / "run" / "userns"
    return sorted(n for n in os.listdir(d) if n.isdigit()) if d.is_dir() else []


def uid_map(pc: Pycontain, ref: str) -> tuple[int, int, int]:
    inside, host, size = (int(x) for x in pc.ok("exec", ref, "cat", "/proc/self/uid_map").stdout.split())
    return inside, host, size


@pytest.fixture
def upc(pc: Pycontain, no_leaks: None) -> Pycontain:
    """pycontain with busybox; the test's containers removed and nothing leaked afterwards."""
    return pc


# ---------------------------------------------------------------- who the container is

def test_pid1_is_an_unprivileged_host_uid_and_root_inside(upc: Pycontain) -> None:
    upc.ok("run", "-d", "--name", "c", "--userns=auto", "busybox", "sleep", "300")
    pid = init_pid(upc, "c")
    uid, gid = host_ids(pid)
    base = subuid_base()
    assert uid >= 100000 and uid >= base and (uid - base) % SIZE == 0, f"PID 1 runs as host uid {uid}"
    assert gid >= 100000, f"PID 1 runs as host gid {gid}"
    inside = upc.ok("exec", "c", "sh", "-c", "id -u; id -g; grep ^Uid /proc/1/status")
    assert inside.stdout.split()[:2] == ["0", "0"], inside.stdout
    assert uid_map(upc, "c") == (0, uid, SIZE)
    assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")


def test_a_file_made_in_a_bind_mount_belongs_to_the_mapped_uid_on_the_host(upc: Pycontain, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)  # the range's root is nobody special to the host: it needs the write bit
    res = upc.ok("run", "--rm", "--userns=auto", "-v", f"{shared}:/data", "busybox", "sh", "-c",
                 "touch /data/made && mkdir /data/dir && cat /proc/self/uid_map")
    host_root = int(res.stdout.split()[1])
    assert host_root >= 100000
    for name in ("made", "dir"):
        st = (shared / name).stat()
        assert (st.st_uid, st.st_gid) == (host_root, host_root), f"{name} is owned by {st.st_uid}:{st.st_gid}"


def test_two_running_containers_get_disjoint_ranges(upc: Pycontain) -> None:
    for name in ("a", "b"):
        upc.ok("run", "-d", "--name", name, "--userns=auto", "busybox", "sleep", "300")
    (_, host_a, size_a), (_, host_b, size_b) = uid_map(upc, "a"), uid_map(upc, "b")
    assert host_a + size_a <= host_b or host_b + size_b <= host_a, f"ranges overlap: {host_a}, {host_b}"
    assert host_ids(init_pid(upc, "a"))[0] == host_a and host_ids(init_pid(upc, "b"))[0] == host_b
    assert len(leases(upc)) == 2


def test_a_restarted_container_keeps_its_range_and_its_files(upc: Pycontain) -> None:
    script = "cat /proc/self/uid_map; stat -c owner=%u /root/kept 2>/dev/null; touch /root/kept"
    upc.ok("run", "-d", "--name", "c", "--userns=auto", "busybox", "sh", "-c", script)
    upc.ok("wait", "c")
    first = upc.ok("logs", "c").stdout.split()
    # Meanwhile another container takes the next free range; c must still get its own back.
    upc.ok("run", "-d", "--name", "other", "--userns=auto", "busybox", "sleep", "300")
    upc.ok("start", "c")
    upc.ok("wait", "c")
    again = upc.ok("logs", "c").stdout.split()
    assert again[:3] == first[:3] and again[3:] == first[:3] + ["owner=0"], (first, again)
    assert int(first[1]) != uid_map(upc, "other")[1]


# ---------------------------------------------------------------- the image layers

def _layer_dirs(pc: Pycontain) -> list[Path]:
    layers = pc.root / "storage" / "images" / "layers"
    return [d for d in layers.iterdir() if d.is_dir()]


def _owners(top: Path) -> set[int]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            out.add(os.lstat(os.path.join(dirpath, name)).st_uid)
    return out


def _layer_dirs_owners(owners: dict[Path, set[int]]) -> list[set[int]]:
    return list(owners.values())


def test_image_layers_are_idmapped_shared_and_stay_owned_by_real_root(upc: Pycontain) -> None:
    before = {d: _owners(d) for d in _layer_dirs(upc)}
    assert before and all(0 in owners and max(owners) < 100000 for owners in before.values()), before
    upc.ok("run", "-d", "--name", "c", "--userns=auto", "busybox", "sleep", "300")
    upc.ok("run", "-d", "--name", "d", "--userns=auto", "busybox", "sleep", "300")
    seen = upc.ok("exec", "c", "sh", "-c", "stat -c %u:%g /bin/busybox /etc/passwd; echo x >> /etc/passwd && "
                  "stat -c %u /etc/passwd")
    assert seen.stdout.split() == ["0:0", "0:0", "0"], seen.stdout  # root's files, as the container sees them
    assert upc.ok("exec", "d", "stat", "-c", "%u", "/bin/busybox").stdout.strip() == "0"
    # The store itself: still owned by the host's root, nothing chowned, no per-container copy.
    assert {d: _owners(d) for d in _layer_dirs(upc)} == before
    for cid in os.listdir(upc.root / "storage" / "containers"):
        assert not (upc.root / "storage" / "containers" / cid / "idcopy").exists(), "a copy was made"
    # The one file the container changed was copied up, into its own upper dir, as its range's root.
    host_root = uid_map(upc, "c")[1]
    uppers = [p for p in (upc.root / "storage" / "containers").glob("*/upper/etc/passwd")]
    assert len(uppers) == 1 and uppers[0].stat().st_uid == host_root
    mountinfo = upc.ok("exec", "c", "head", "-n", "1", "/proc/self/mountinfo").stdout
    assert " overlay " in mountinfo and "lowerdir=/proc/self/fd/" in mountinfo, mountinfo


IDMAPPED_ROOT = """
import os, sys
sys.path.insert(0, sys.argv[1])
from pycontain import syscalls
root = sys.argv[2]
# An identity-mapped idmapped mount over the state root: every layer below it is then already idmapped,
# and the kernel refuses to idmap a mount twice (EPERM), as it does a filesystem without idmap support.
ns = syscalls.userns_fd("0 0 4294967295\\n", "0 0 4294967295\\n")
tree = syscalls.open_tree(syscalls.AT_FDCWD, root, syscalls.OPEN_TREE_CLONE | syscalls.AT_RECURSIVE | os.O_CLOEXEC,
                          root)
syscalls.mount_setattr_idmap(tree, ns, root)
syscalls.move_mount(tree, os.open(root, os.O_PATH | os.O_CLOEXEC), root)
os.execv(sys.argv[3], sys.argv[3:])
"""


def test_layers_fall_back_to_a_chowned_copy_when_the_kernel_refuses_idmapping(upc: Pycontain) -> None:
    before = {d: _owners(d) for d in _layer_dirs(upc)}
    # In a mount namespace of the test's own (gone with the command): the state root seen through an
    # idmapped mount, where no layer can be idmapped again.
    argv = ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", IDMAPPED_ROOT, str(REPO),
            str(upc.root), *upc.argv("--explain", "run", "--name", "c", "--userns=auto", "busybox", "sh", "-c",
                                      "stat -c %u /bin/busybox; echo x >> /etc/passwd && echo wrote")]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, describe(res)
    assert res.stdout.split() == ["0", "wrote"], res.stdout
    assert "image layers for the user namespace: copy" in res.stderr, res.stderr
    cid = next(iter(os.listdir(upc.root / "storage" / "containers")))
    copy = upc.root / "storage" / "containers" / cid / "idcopy" / "0"
    host_root = int(json.loads((upc.root / "run" / "containers" / cid / "config.json").read_text())["userns"]["uid"])
    image_owners = set().union(*_layer_dirs_owners(before))
    assert _owners(copy) == {host_root + uid for uid in image_owners}, "the copy is not shifted into the range"
    assert {d: _owners(d) for d in _layer_dirs(upc)} == before, "the store itself was changed"
    # Without the idmapped mount in the way the same container starts again, idmapped this time: its
    # upper directory holds host ids either way.
    upc.ok("start", "c")
    upc.ok("wait", "c")
    assert "wrote" in upc.ok("logs", "c").stdout


# ---------------------------------------------------------------- exec, and what container root cannot do

def test_exec_lands_in_the_container_user_namespace(upc: Pycontain) -> None:
    upc.ok("run", "-d", "--name", "c", "--userns=auto", "busybox", "sleep", "300")
    pid = init_pid(upc, "c")
    host_root = host_ids(pid)[0]
    res = upc.ok("exec", "c", "sh", "-c", "readlink /proc/self/ns/user; id -u")
    ns, uid = res.stdout.split()
    assert ns == os.readlink(f"/proc/{pid}/ns/user") and uid == "0", res.stdout
    # A process exec'd as another user: that user's id in the range, as the host sees it.
    cid = upc.inspect("c")["Id"]
    sleeper = upc.popen("exec", "-u", "1000:1000", "c", "sleep", "301")
    try:
        def exec_pid() -> int | None:
            for task in support.container_cgroup_dirs(f"pycontain-{cid}"):
                for line in (task / "cgroup.procs").read_text().split():
                    if Path(f"/proc/{line}/cmdline").read_bytes() == b"sleep\x00301\x00":
                        return int(line)
            return None

        kid = wait_for("the exec'd sleep", exec_pid)
        assert host_ids(kid) == (host_root + 1000, host_root + 1000), host_ids(kid)
    finally:
        # SIGTERM, which `exec` forwards to its process and then reaps it. (A SIGKILLed `exec` leaves its
        # process's zombie to the host's init, as `runc exec` does without a subreaper above it; until
        # that init reaps it, the container's PID namespace cannot finish tearing down.)
        sleeper.terminate()
        sleeper.communicate(timeout=COMMAND_TIMEOUT)


def test_container_root_cannot_do_what_only_host_root_may(upc: Pycontain, tmp_path: Path) -> None:
    owned = tmp_path / "root-owned"
    owned.write_text("host data\n")
    owned.chmod(0o644)
    secret = tmp_path / "secret"
    secret.write_text("root only\n")
    secret.chmod(0o600)
    probe = ("echo pwned >> /owned; echo write=$?; cat /secret >/dev/null; echo read=$?; "
             "chown 0 /owned; echo chown=$?")
    mounts = ["-v", f"{owned}:/owned", "-v", f"{secret}:/secret:ro"]
    mapped = upc.ok("run", "--rm", "--userns=auto", *mounts, "busybox", "sh", "-c", probe)
    assert "write=1" in mapped.stdout and "read=1" in mapped.stdout and "chown=1" in mapped.stdout, mapped.stdout
    assert "Permission denied" in mapped.stderr or "Operation not permitted" in mapped.stderr, mapped.stderr
    assert owned.read_text() == "host data\n"
    # The control: the same container without a user namespace is the host's root, and succeeds.
    plain = upc.ok("run", "--rm", "--userns=host", *mounts, "busybox", "sh", "-c", probe)
    assert "write=0" in plain.stdout and "read=0" in plain.stdout, plain.stdout
    assert owned.read_text() == "host data\npwned\n"


def test_device_nodes_are_the_hosts_bound_in(upc: Pycontain) -> None:
    """mknod needs the host's CAP_MKNOD: in a user namespace /dev's nodes and --device are the host's
    own nodes, bound; writing to them works, and they are still the expected devices."""
    res = upc.ok("run", "--rm", "--userns=auto", "--device", "/dev/null:/dev/mynull", "busybox", "sh", "-c",
                 "stat -c '%t:%T %F' /dev/null /dev/zero /dev/mynull; echo x > /dev/mynull && head -c 3 /dev/zero "
                 "| wc -c")
    assert res.stdout.split("\n")[:4] == ["1:3 character special file", "1:5 character special file",
                                          "1:3 character special file", "3"], res.stdout


# ---------------------------------------------------------------- leases

def test_leases_are_freed_by_rm_and_by_gc_after_a_sigkill(upc: Pycontain) -> None:
    upc.ok("run", "-d", "--name", "c", "--userns=auto", "busybox", "sleep", "300")
    assert len(leases(upc)) == 1
    upc.ok("rm", "-f", "c")
    assert leases(upc) == []
    # The monitor of a --rm container SIGKILLed: the container dies with it (parent-death signal), and
    # gc removes it, range included.
    cid = upc.ok("run", "-d", "--rm", "--userns=auto", "busybox", "sleep", "300").stdout.strip()
    assert len(leases(upc)) == 1
    monitor = monitor_pid(upc, cid)  # type: ignore[arg-type]
    os.kill(monitor, signal.SIGKILL)
    wait_for("the monitor's death", lambda: not alive(monitor))
    upc.ok("gc")
    assert leases(upc) == [], "gc kept the range of a removed container"
    # `run` SIGKILLed right after the lease, before the record is complete: gc removes the record and
    # frees the range.
    res = subprocess.run(upc.argv("run", "--rm", "--userns=auto", "busybox", "true"), capture_output=True,
                         text=True, timeout=COMMAND_TIMEOUT, env={**os.environ, "PYCONTAIN_FAULT": "run.record"})
    assert res.returncode == -signal.SIGKILL, describe(res)
    assert len(leases(upc)) == 1
    for record in (upc.root / "run" / "containers").iterdir():
        os.utime(record, (time.time() - 60, time.time() - 60))  # gc spares a record younger than 5 s
    assert "released user namespace range" in upc.ok("gc").stdout
    assert leases(upc) == []


# ---------------------------------------------------------------- opting out, and the default

def test_userns_host_is_the_host_root_and_the_config_file_sets_the_default(
        upc: Pycontain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    upc.ok("run", "-d", "--name", "h", "--userns=host", "busybox", "sleep", "300")
    assert host_ids(init_pid(upc, "h")) == (0, 0)
    assert uid_map(upc, "h") == (0, 0, 4294967295)
    assert leases(upc) == []
    config = tmp_path / "config"
    config.write_text("# as Docker's userns-remap\nuserns = auto\n")
    monkeypatch.setenv("PYCONTAIN_CONFIG", str(config))
    upc.ok("run", "-d", "--name", "d", "busybox", "sleep", "300")
    assert host_ids(init_pid(upc, "d"))[0] >= 100000
    upc.ok("run", "-d", "--name", "opt-out", "--userns=host", "busybox", "sleep", "300")
    assert host_ids(init_pid(upc, "opt-out"))[0] == 0
    config.write_text("userns = sometimes\n")
    assert_pycontain_error(upc("run", "--rm", "busybox", "true"))


def test_privileged_and_another_runtime_are_refused_with_a_user_namespace(upc: Pycontain) -> None:
    for extra in (["--privileged"], ["--runtime", "runc"]):
        res = upc("run", "--rm", "--userns=auto", *extra, "busybox", "true")
        assert_pycontain_error(res)
        assert "--userns=host" in res.stderr, res.stderr
        assert leases(upc) == [], "a refused run took a range"
    # the control: the same flags with the host's ids are fine
    upc.ok("run", "--rm", "--userns=host", "--privileged", "busybox", "true")
    upc.ok("run", "-d", "--name", "shown", "--userns=auto", "busybox", "sleep", "300")
    shown = json.loads(upc.ok("inspect", "shown").stdout)[0]
    assert shown["HostConfig"]["UsernsMode"] == "auto"
    base = host_ids(init_pid(upc, "shown"))[0]
    assert shown["UserNamespace"]["UidMap"] == f"0:{base}:65536", shown["UserNamespace"]


# ---------------------------------------------------------------- cgroups and networking

def test_cgroup_limits_still_apply(upc: Pycontain) -> None:
    upc.ok("run", "-d", "--name", "c", "--userns=auto", "--memory", "64m", "--pids-limit", "20", "busybox",
           "sleep", "300")
    inside = upc.ok("exec", "c", "sh", "-c", "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/"
                    "memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/memory.max")
    assert inside.stdout.split() == ["20", str(64 << 20)], inside.stdout
    # Container root forks until the limit stops it (ash gives up at the first fork that fails).
    res = upc("exec", "c", "sh", "-c", "for i in $(seq 40); do sleep 300 & done")
    assert res.returncode != 0 and "can't fork" in res.stderr, describe(res)
    cid = upc.inspect("c")["Id"]
    pids = [d for d in support.container_cgroup_dirs(f"pycontain-{cid}") if (d / "pids.current").exists()]
    assert pids and int((pids[0] / "pids.current").read_text()) <= 20


@pytest.fixture
def npc(tmp_path: Path, busybox_tarball: Path, monkeypatch: pytest.MonkeyPatch,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetPycontain]:
    """pycontain inside a network namespace of the test's own (its bridge lives there)."""
    ns = NetNs()
    try:
        monkeypatch.setattr(leaks_module, "LEAKCHECK", leakcheck_wrapper(tmp_path, ns))  # leaks.py runs it
        snapshot = support.leakcheck_snapshot(tmp_path / "leakcheck-before.json")
        p = NetPycontain(tmp_path / "root", ns)
        p.ok("import", "--change", 'CMD ["sh"]', busybox_tarball, "busybox")
        yield p
        p.remove_all()
        assert network_leftovers(p) == []
        found = [line for line in support.leaks_since(snapshot, tmp_path_factory.getbasetemp())
                 if not line.startswith("leaked link: pycontain0") and not line.startswith("leaked nft: ")]
        assert not found, "left behind:\n" + "\n".join(found)
    finally:
        ns.close()


def test_a_bridge_network_serves_from_a_user_namespace(npc: NetPycontain) -> None:
    payload = "served-by-a-remapped-root"
    httpd = ["sh", "-c", f"mkdir -p /www && echo {payload} > /www/index.html && exec httpd -f -p 80 -h /www"]
    npc.ok("run", "-d", "--name", "web", "--network", "bridge", "--userns=auto", "-p", "8080:80", "busybox", *httpd)
    pid = int(npc.wait_until_running("web")["State"]["Pid"])
    assert host_ids(pid)[0] >= 100000
    address = npc.net_of("web")["address"]
    assert payload in http_get(npc.ns, address, 80)          # the bridge: straight to the container
    assert payload in http_get(npc.ns, "127.0.0.1", 8080)    # a published port, through the NAT rules
    eth0 = npc.ok("exec", "web", "ip", "-4", "-o", "addr", "show", "eth0").stdout
    assert address in eth0, eth0


# ---------------------------------------------------------------- pycontain-oci

OCI_BASE = 3_000_000_000  # a range nobody on this machine uses: the bundle's writer picks it, not pycontain


def _shift(rootfs: Path, base: int) -> None:
    """What an engine does for a user namespace without idmapped mounts: chown the bundle's rootfs."""
    paths = [str(rootfs)]
    for dirpath, dirnames, filenames in os.walk(rootfs):
        paths += [os.path.join(dirpath, name) for name in dirnames + filenames]
    for path in paths:
        st = os.lstat(path)
        os.chown(path, base + st.st_uid, base + st.st_gid, follow_symlinks=False)


def _userns(config: dict[str, Any], base: int) -> None:
    linux = config["linux"]
    linux["namespaces"].append({"type": "user"})
    linux["uidMappings"] = [{"containerID": 0, "hostID": base, "size": SIZE}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": base, "size": SIZE}]


def test_pycontain_oci_runs_a_bundle_in_a_user_namespace_and_another_joins_it(oci: Oci) -> None:
    first = oci.bundle(["sh", "-c", "id -u; cat /proc/self/uid_map; touch /made; stat -c %u /made; "
                                    "while [ ! -e /go ]; do sleep 0.1; done"])
    _shift(first.rootfs, OCI_BASE)
    _userns(first.config, OCI_BASE)
    c = oci.create(first)
    c.start()
    wait_for("the first container's output", lambda: len(c.output().split()) >= 5)
    assert c.output().split() == ["0", "0", str(OCI_BASE), str(SIZE), "0"], c.output()
    assert host_ids(c.pid) == (OCI_BASE, OCI_BASE)
    assert (first.rootfs / "made").stat().st_uid == OCI_BASE
    # A second bundle joins its user, network, IPC and UTS namespaces by path (as a pod's containers do)
    # and gets a mount and PID namespace of its own, owned by the joined user namespace.
    second = oci.bundle(["sh", "-c", "id -u; readlink /proc/self/ns/user; readlink /proc/self/ns/net; hostname"])
    _shift(second.rootfs, OCI_BASE)
    second.config["linux"]["namespaces"] = [
        {"type": "pid"}, {"type": "mount"},
        *({"type": kind, "path": f"/proc/{c.pid}/ns/{name}"}
          for kind, name in (("user", "user"), ("network", "net"), ("ipc", "ipc"), ("uts", "uts")))]
    del second.config["hostname"]
    code, out = oci.run_bundle(second)
    assert code == 0, out
    uid, userns, netns, hostname = out.split()
    assert uid == "0" and userns == os.readlink(f"/proc/{c.pid}/ns/user"), out
    assert netns == os.readlink(f"/proc/{c.pid}/ns/net") and hostname == "ocitest", out
    # exec joins the user namespace too.
    res = oci.ok("exec", c.id, "sh", "-c", "readlink /proc/self/ns/user; id -u")
    assert res.stdout.split() == [os.readlink(f"/proc/{c.pid}/ns/user"), "0"], res.stdout
    (first.rootfs / "go").touch()
    assert c.wait() == 0
    c.delete()


def test_pycontain_oci_refuses_bad_mappings_in_one_line(oci: Oci) -> None:
    b = oci.bundle(["true"])
    _userns(b.config, OCI_BASE)
    b.config["linux"]["uidMappings"].append({"containerID": 100, "hostID": 5, "size": 1})
    b.write()
    assert "linux.uidMappings[1].containerID" in oci.create_fails(b.path)
    b.config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": OCI_BASE, "size": 0}]
    b.write()
    assert "linux.uidMappings[0].size" in oci.create_fails(b.path)
    del b.config["linux"]["gidMappings"]
    b.config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": OCI_BASE, "size": SIZE}]
    b.write()
    assert "needs linux.uidMappings and linux.gidMappings" in oci.create_fails(b.path)


def test_the_lease_of_a_running_container_survives_gc(upc: Pycontain) -> None:
    upc.ok("run", "-d", "--name", "c", "--userns=auto", "busybox", "sleep", "300")
    held = leases(upc)
    upc.ok("gc")
    assert leases(upc) == held and alive(init_pid(upc, "c"))


def test_a_device_is_never_bound_through_a_link_in_the_rootfs(oci: Oci) -> None:
    """No mknod in a user namespace, so linux.devices are the host's nodes bound in: onto a link the
    bundle planted there, that bind would land wherever the link points (here a sysctl)."""
    b = oci.bundle(["true"])
    _shift(b.rootfs, OCI_BASE)
    _userns(b.config, OCI_BASE)
    b.config["mounts"] = [m for m in b.config["mounts"] if not m["destination"].startswith("/dev")]
    (b.rootfs / "dev").mkdir(exist_ok=True)
    (b.rootfs / "dev" / "evil").symlink_to("/proc/sys/kernel/core_pattern")
    b.config["linux"]["devices"] = [{"path": "/dev/evil", "type": "c", "major": 1, "minor": 3}]
    b.write()
    before = Path("/proc/sys/kernel/core_pattern").read_text()
    assert "not a file or a device node" in oci.create_fails(b.path)
    assert Path("/proc/sys/kernel/core_pattern").read_text() == before


def test_podman_runs_a_container_with_a_uid_map_through_pycontain_oci(podman: Podman) -> None:
    """podman --uidmap hands the runtime a bundle with a user namespace and its mappings (and a rootfs it
    made owned by the range): the container is root inside and the range's first uid outside."""
    res = podman.ok(*podman.run_args("--rm", "--network", "none", "--uidmap", f"0:{OCI_BASE}:{SIZE}",
                                     "--gidmap", f"0:{OCI_BASE}:{SIZE}", PODMAN_IMAGE, "sh", "-c",
                                     "id -u; cat /proc/self/uid_map; touch /made && echo made"))
    assert res.stdout.split() == ["0", "0", str(OCI_BASE), str(SIZE), "made"], res.stdout
