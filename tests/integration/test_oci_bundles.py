"""Acceptance tests of `pycontain-oci` with hand-written bundles: each test sets the config.json fields it
names, drives the runtime as an engine does (create -> start -> the init reaped here -> delete), and
checks what the container saw from inside and what the host shows outside.

This pytest process becomes a child subreaper once per session: a container's init outlives the
`create` that cloned it and is then this process's child, as it is conmon's or a containerd shim's.
Every test ends with its containers deleted, its cgroups gone and the repo's leak check clean.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from support import COMMAND_TIMEOUT, CGROUP_ROOT, alive, describe, proc_status, wait_for

# The helpers' asserts get pytest's rewriting only if registered before the first import.
pytest.register_assert_rewrite("oci_support")

from oci_support import (  # noqa: E402 - after the registration above
    BASE_CAPS,
    OCI,
    Bundle,
    ConsoleSocket,
    Oci,
    cap_mask,
    cgroup_dirs,
    error_line,
    new_id,
    read_all,
    wait_exit,
)

pytestmark = pytest.mark.integration

# The container runs until the test creates /go in its rootfs (the bundle's rootfs is the container's /).
WAIT_FOR_GO = "while [ ! -e /go ]; do sleep 0.1; done"
MIB = 1 << 20


def proc_fields(output: str) -> dict[str, str]:
    return proc_status(output)


def mount_table(text: str) -> dict[str, tuple[str, set[str]]]:
    """/proc/self/mounts as mount point -> (fs type, options); the last mount on a point wins."""
    table = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4:
            table[parts[1]] = (parts[2], set(parts[3].split(",")))
    return table


# ---------------------------------------------------------------- process


def test_process_args_and_env(oci: Oci) -> None:
    script = 'printf "%s|" "$0" "$1" "$2"; echo; tr "\\0" "\\n" < /proc/1/environ; exit 7'
    b = oci.bundle(["sh", "-c", script, "zero arg", "one  two", "*"])
    b.process["env"] = ["PATH=/bin:/usr/bin", "FOO=bar baz", "EMPTY="]
    code, out = oci.run_bundle(b)
    assert code == 7, "the init's exit status is the process's"
    first, *env = out.splitlines()
    assert first == "zero arg|one  two|*|", "process.args reach the program exactly, spaces and globs kept"
    assert {"PATH=/bin:/usr/bin", "FOO=bar baz", "EMPTY="} <= set(env), out
    assert [e for e in env if not e.startswith("HOME=")] == b.process["env"], \
        f"process.env is the whole environment (a HOME default aside), in order: {env}"


def test_process_cwd(oci: Oci) -> None:
    b = oci.bundle(["sh", "-c", "pwd; ls"])
    b.process["cwd"] = "/etc"
    code, out = oci.run_bundle(b)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "/etc" and "passwd" in lines, out


def test_process_user_uid_gid_additional_gids(oci: Oci) -> None:
    b = oci.bundle(["sh", "-c", "grep -E '^(Uid|Gid|Groups):' /proc/self/status; umask; "
                    "touch /tmp/made; stat -c '%u:%g %a' /tmp/made"])
    b.process["user"] = {"uid": 1000, "gid": 1001, "additionalGids": [50, 2000], "umask": 0o027}
    code, out = oci.run_bundle(b)
    assert code == 0, out
    fields = proc_fields(out)
    assert fields["Uid"].split() == ["1000"] * 4, out
    assert fields["Gid"].split() == ["1001"] * 4, out
    assert sorted(fields["Groups"].split()) == ["2000", "50"], \
        f"additionalGids are the supplementary groups, and only they: {out}"
    assert "0027" in out.splitlines(), f"process.user.umask: {out}"
    assert "1000:1001 640" in out.splitlines(), f"a file made by the process: its ids and the umask: {out}"
    # Without additionalGids the process has no supplementary groups (none of the runtime's own).
    plain = oci.bundle(["grep", "^Groups:", "/proc/self/status"])
    plain.process["user"] = {"uid": 1000, "gid": 1000}
    code, out = oci.run_bundle(plain)
    assert (code, out.split()) == (0, ["Groups:"]), out


def _caps_of(oci: Oci, b: Bundle) -> dict[str, int]:
    code, out = oci.run_bundle(b)
    assert code == 0, out
    fields = proc_fields(out)
    return {k: int(fields[k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}


def test_process_capabilities_sets(oci: Oci) -> None:
    script = "grep ^Cap /proc/self/status"
    # As root, execve makes permitted and effective the bounding set (the kernel's rule for uid 0), so
    # the root container lists the same names in each.
    root = oci.bundle(["sh", "-c", script])
    names = ["CAP_CHOWN", "CAP_KILL"]
    root.process["capabilities"] = {"bounding": names, "effective": names, "permitted": names}
    assert _caps_of(oci, root) == {"CapInh": 0, "CapPrm": cap_mask(names), "CapEff": cap_mask(names),
                                   "CapBnd": cap_mask(names), "CapAmb": 0}
    # As another user, each set the spec gives is what the process has: ambient survives execve into
    # permitted and effective, inheritable stays, the bounding set bounds.
    user = oci.bundle(["sh", "-c", script])
    user.process["user"] = {"uid": 1000, "gid": 1000}
    kept = ["CAP_KILL", "CAP_NET_BIND_SERVICE"]
    bounding = ["CAP_CHOWN", "CAP_KILL", "CAP_SETUID", "CAP_NET_BIND_SERVICE"]
    user.process["capabilities"] = {"bounding": bounding, "effective": kept, "permitted": kept,
                                    "inheritable": kept, "ambient": ["CAP_NET_BIND_SERVICE"]}
    ambient = cap_mask(["CAP_NET_BIND_SERVICE"])
    assert _caps_of(oci, user) == {"CapInh": cap_mask(kept), "CapPrm": ambient, "CapEff": ambient,
                                   "CapBnd": cap_mask(bounding), "CapAmb": ambient}


def test_process_no_new_privileges(oci: Oci) -> None:
    on = oci.bundle(["grep", "NoNewPrivs", "/proc/self/status"])
    on.process["noNewPrivileges"] = True
    assert oci.run_bundle(on) == (0, "NoNewPrivs:\t1\n")
    if "NoNewPrivs:\t1" in Path("/proc/self/status").read_text():
        return  # this test runs under no_new_privs already: a child cannot be without it
    off = oci.bundle(["grep", "NoNewPrivs", "/proc/self/status"])
    off.process["noNewPrivileges"] = False
    assert oci.run_bundle(off) == (0, "NoNewPrivs:\t0\n")


def test_process_rlimits(oci: Oci) -> None:
    b = oci.bundle(["sh", "-c", "ulimit -n; ulimit -c; grep -E '^Max (open files|processes|core file size)' "
                    "/proc/self/limits"])
    b.process["rlimits"] = [
        {"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654},
        {"type": "RLIMIT_NPROC", "soft": 500, "hard": 1000},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
    ]
    code, out = oci.run_bundle(b)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[:2] == ["321", "0"], f"ulimit -n and -c: {out}"
    limits = {" ".join(line.split()[:-3]): line.split()[-3:-1] for line in lines[2:]}
    assert limits == {"Max open files": ["321", "654"], "Max processes": ["500", "1000"],
                      "Max core file size": ["0", "0"]}, out


def test_process_oom_score_adj(oci: Oci) -> None:
    b = oci.bundle(["cat", "/proc/self/oom_score_adj"])
    b.process["oomScoreAdj"] = 345
    assert oci.run_bundle(b) == (0, "345\n")


def test_process_terminal_and_console_size(oci: Oci, tmp_path: Path) -> None:
    b = oci.bundle(["sh", "-c", "stty size; tty; test -t 0 && test -t 1 && test -t 2 && echo all-ttys"])
    b.process["terminal"] = True
    b.process["consoleSize"] = {"height": 33, "width": 111}
    console = ConsoleSocket(tmp_path / "c.sock")
    try:
        c = oci.create(b, None, "--console-socket", str(console.path))
        master = console.receive_master()
    finally:
        console.close()
    try:
        c.start()
        out = read_all(master).decode(errors="replace").replace("\r\n", "\n")
    finally:
        os.close(master)
    assert c.wait() == 0, out
    c.delete()
    lines = out.splitlines()
    assert lines[0] == "33 111", f"process.consoleSize is the pty's size: {out!r}"
    assert lines[1].startswith("/dev/pts/"), f"stdio is a pty of the container's devpts: {out!r}"
    assert lines[2] == "all-ttys", out


def test_process_terminal_needs_console_socket(oci: Oci, tmp_path: Path) -> None:
    b = oci.bundle(["true"])
    b.process["terminal"] = True
    b.write()
    line = oci.create_fails(b.path)
    assert "console-socket" in line, line
    # and the other way round: a console socket for a process without a terminal
    b.process["terminal"] = False
    b.write()
    console = ConsoleSocket(tmp_path / "c.sock")
    try:
        cid = new_id()
        oci.cgroup_names.append(f"pycontain-{cid}")
        line = error_line(oci("create", "--bundle", b.path, "--console-socket", console.path, cid))
    finally:
        console.close()
    assert "terminal" in line and not (oci.root / cid).exists(), line


# ---------------------------------------------------------------- root, hostname, mounts


def test_root_readonly(oci: Oci) -> None:
    b = oci.bundle(["sh", "-c", "touch /newfile 2>&1; echo rc=$?; touch /dev/shm/ok && echo shm-ok; "
                    "grep ' / ' /proc/self/mountinfo"])
    b.config["root"]["readonly"] = True
    code, out = oci.run_bundle(b)
    assert code == 0, out
    assert "Read-only file system" in out and "rc=1" in out, f"root.readonly: / refuses writes: {out}"
    assert "shm-ok" in out, f"mounts on a read-only root stay writable: {out}"
    root_line = [line for line in out.splitlines() if line.split()[4:5] == ["/"]]
    assert root_line and "ro" in root_line[-1].split()[5].split(","), out
    assert not (b.rootfs / "newfile").exists()


def test_hostname(oci: Oci) -> None:
    before = socket.gethostname()
    b = oci.bundle(["sh", "-c", "hostname; cat /proc/sys/kernel/hostname"])
    b.config["hostname"] = "oci-bundle-host"
    assert oci.run_bundle(b) == (0, "oci-bundle-host\noci-bundle-host\n")
    assert socket.gethostname() == before, "the host's hostname changed"


def test_hostname_without_uts_namespace_is_refused(oci: Oci) -> None:
    b = oci.bundle(["true"])
    b.linux["namespaces"] = [ns for ns in b.linux["namespaces"] if ns["type"] != "uts"]
    b.write()
    line = oci.create_fails(b.path)
    assert "hostname" in line, line


def test_mounts_proc_dev_devpts_shm_mqueue_sysfs_cgroup(oci: Oci) -> None:
    b = oci.bundle(["sh", "-c", "cat /proc/self/mounts; echo ---; ls /dev; ls /dev/pts; stat -c 'shm=%a' /dev/shm; "
                    "echo ---; ls /sys/fs/cgroup; ls /sys/fs/cgroup/memory"])
    code, out = oci.run_bundle(b)
    assert code == 0, out
    mounts_text, dev_text, cgroup_text = out.split("---\n")
    table = mount_table(mounts_text)
    expected = {"/proc": "proc", "/dev": "tmpfs", "/dev/pts": "devpts", "/dev/shm": "tmpfs",
                "/dev/mqueue": "mqueue", "/sys": "sysfs"}
    for point, fstype in expected.items():
        assert point in table and table[point][0] == fstype, f"{point} should be {fstype}:\n{mounts_text}"
    assert {"nosuid", "noexec", "nodev"} <= table["/proc"][1], table["/proc"]
    assert "ro" in table["/sys"][1], f"the sysfs mount's ro option: {table['/sys']}"
    assert "size=65536k" in table["/dev/shm"][1], table["/dev/shm"]
    cgroup_mounts = {p: v for p, v in table.items() if p.startswith("/sys/fs/cgroup")}
    assert any(fstype in ("cgroup", "cgroup2") for fstype, _ in cgroup_mounts.values()), \
        f"a cgroup filesystem under /sys/fs/cgroup:\n{mounts_text}"
    assert all("ro" in opts for fstype, opts in cgroup_mounts.values() if fstype.startswith("cgroup")), \
        f"the cgroup mount's ro option:\n{mounts_text}"
    devs = set(dev_text.split())
    assert {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue", "ptmx"} <= devs, dev_text
    assert "shm=1777" in devs, f"/dev/shm's mode=1777 option: {dev_text}"
    assert "memory.limit_in_bytes" in cgroup_text or "cgroup.controllers" in cgroup_text, cgroup_text


def test_mounts_bind_file_and_dir_ro(oci: Oci, tmp_path: Path) -> None:
    ro_dir, rw_dir, host_file = tmp_path / "ro-src", tmp_path / "rw-src", tmp_path / "greeting.txt"
    ro_dir.mkdir()
    rw_dir.mkdir()
    (ro_dir / "inside.txt").write_text("from the host\n")
    host_file.write_text("hello file\n")
    script = ("exec 2>&1; cat /data/ro/inside.txt; cat /etc/greeting; "
              "touch /data/ro/new; echo ro-dir=$?; echo x > /etc/greeting; echo ro-file=$?; "
              "echo written > /data/rw/out && echo rw-dir=0; "
              "cat /data/untyped/inside.txt /data/none/inside.txt /data/rel/rel.txt; touch /data/untyped/x; "
              "echo untyped=$?; grep ' /scratch ' /proc/self/mounts")
    b = oci.bundle(["sh", "-c", script])
    (b.path / "reldir").mkdir()
    (b.path / "reldir" / "rel.txt").write_text("relative to the bundle\n")
    b.config["mounts"] += [
        {"destination": "/data/ro", "type": "bind", "source": str(ro_dir), "options": ["rbind", "ro"]},
        {"destination": "/data/rw", "type": "bind", "source": str(rw_dir), "options": ["rbind", "rw"]},
        {"destination": "/etc/greeting", "type": "bind", "source": str(host_file), "options": ["bind", "ro"]},
        # The other spellings engines use: no type (the bind option says it), type "none", and a source
        # relative to the bundle (as the runtime spec defines it).
        {"destination": "/data/untyped", "source": str(ro_dir), "options": ["rbind", "ro"]},
        {"destination": "/data/none", "type": "none", "source": str(ro_dir), "options": ["rbind"]},
        {"destination": "/data/rel", "type": "bind", "source": "reldir", "options": ["bind"]},
        {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=1m", "mode=700"]},
    ]
    code, out = oci.run_bundle(b)
    assert code == 0, out
    assert out.startswith("from the host\nhello file\n"), out
    assert "ro-dir=1" in out and "ro-file=1" in out and "untyped=1" in out \
        and out.count("Read-only file system") == 3, f"ro binds refuse writes: {out}"
    assert "rw-dir=0" in out and (rw_dir / "out").read_text() == "written\n", out
    assert "from the host\nfrom the host\nrelative to the bundle\n" in out, out
    scratch = out.splitlines()[-1].split()
    assert scratch[2] == "tmpfs" and {"nosuid", "size=1024k", "mode=700"} <= set(scratch[3].split(",")), out
    assert host_file.read_text() == "hello file\n" and sorted(os.listdir(ro_dir)) == ["inside.txt"]


# ---------------------------------------------------------------- namespaces

NS_LINKS = ("pid", "net", "ipc", "uts", "mnt", "cgroup")
SHOW_NS = "for n in " + " ".join(NS_LINKS) + "; do echo $n $(readlink /proc/self/ns/$n); done"


def _ns_of(out: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in out.splitlines() if line.split(" ", 1)[0] in NS_LINKS)


def _host_ns() -> dict[str, str]:
    return {n: os.readlink(f"/proc/self/ns/{n}") for n in NS_LINKS}


def test_linux_namespaces_new(oci: Oci) -> None:
    b = oci.bundle(["sh", "-c", SHOW_NS + "; cat /proc/self/cgroup"])
    b.linux["namespaces"].append({"type": "cgroup"})
    code, out = oci.run_bundle(b)
    assert code == 0, out
    inside, host = _ns_of(out), _host_ns()
    assert all(inside[n] != host[n] for n in NS_LINKS), f"each listed type is a new namespace: {inside} vs {host}"
    assert all(line.endswith(":/") for line in out.splitlines() if line[:1].isdigit()), \
        f"a new cgroup namespace shows the container's cgroup as its root: {out}"
    # A type the spec does not list is the runtime's own.
    shared = oci.bundle(["sh", "-c", SHOW_NS])
    shared.linux["namespaces"] = [{"type": "pid"}, {"type": "mount"}]
    del shared.config["hostname"]
    code, out = oci.run_bundle(shared)
    inside = _ns_of(out)
    assert code == 0 and inside["pid"] != host["pid"] and inside["mnt"] != host["mnt"], out
    assert [inside[n] for n in ("net", "ipc", "uts")] == [host[n] for n in ("net", "ipc", "uts")], \
        f"unlisted namespaces are the host's: {inside} vs {host}"


def test_linux_namespaces_path_joins_existing(oci: Oci) -> None:
    netns = f"ocib-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", netns], check=True, timeout=COMMAND_TIMEOUT)
    try:
        inode = os.stat(f"/run/netns/{netns}").st_ino
        # A container to join: it owns new uts and ipc namespaces, and its hostname tells them apart.
        first = oci.bundle(["sh", "-c", WAIT_FOR_GO])
        first.config["hostname"] = "the-first-one"
        a = oci.create(first)
        joiner = oci.bundle(["sh", "-c", SHOW_NS + "; hostname"])
        del joiner.config["hostname"]
        joiner.linux["namespaces"] = [
            {"type": "pid"}, {"type": "mount"},
            {"type": "network", "path": f"/run/netns/{netns}"},
            {"type": "uts", "path": f"/proc/{a.pid}/ns/uts"},
            {"type": "ipc", "path": f"/proc/{a.pid}/ns/ipc"},
        ]
        code, out = oci.run_bundle(joiner)
        assert code == 0, out
        inside = _ns_of(out)
        assert inside["net"] == f"net:[{inode}]", f"the network namespace at the path: {out}"
        assert inside["uts"] == os.readlink(f"/proc/{a.pid}/ns/uts"), out
        assert inside["ipc"] == os.readlink(f"/proc/{a.pid}/ns/ipc"), out
        assert out.splitlines()[-1] == "the-first-one", f"the joined uts namespace's hostname: {out}"
        a.start()
        (first.rootfs / "go").touch()
        assert a.wait() == 0
        a.delete()
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=True, timeout=COMMAND_TIMEOUT)


def test_linux_namespaces_path_that_does_not_exist_is_refused(oci: Oci) -> None:
    b = oci.bundle(["true"])
    b.linux["namespaces"].remove({"type": "network"})
    b.linux["namespaces"].append({"type": "network", "path": "/run/netns/ocib-no-such-netns"})
    b.write()
    line = oci.create_fails(b.path)
    assert "linux.namespaces" in line and "/run/netns/ocib-no-such-netns" in line, line


# ---------------------------------------------------------------- cgroups


def _read(path: Path) -> str:
    return path.read_text().strip()


def test_linux_resources_memory_cpu_pids(oci: Oci) -> None:
    name = f"/ocib-res-{uuid.uuid4().hex[:8]}"
    b = oci.bundle(["sh", "-c", WAIT_FOR_GO])
    b.linux["cgroupsPath"] = name
    b.linux["resources"] = {
        "memory": {"limit": 100 * MIB, "reservation": 50 * MIB},
        "cpu": {"shares": 512, "quota": 50000, "period": 200000},
        "pids": {"limit": 42},
    }
    c = oci.create(b)
    want = {
        f"memory{name}/memory.limit_in_bytes": str(100 * MIB),
        f"memory{name}/memory.soft_limit_in_bytes": str(50 * MIB),
        f"cpu{name}/cpu.shares": "512",
        f"cpu{name}/cpu.cfs_quota_us": "50000",
        f"cpu{name}/cpu.cfs_period_us": "200000",
        f"pids{name}/pids.max": "42",
    }
    got = {f: _read(CGROUP_ROOT / f) for f in want}
    for controller in ("memory", "cpu", "pids"):
        procs = _read(CGROUP_ROOT / controller / name.lstrip("/") / "cgroup.procs").split()
        assert str(c.pid) in procs, f"the init is in its {controller} cgroup"
    c.start()
    (b.rootfs / "go").touch()
    assert c.wait() == 0
    c.delete()
    assert cgroup_dirs(name) == [], "delete removes the cgroup"
    assert got == want, "linux.resources as the host's cgroup files show them (got vs wanted)"


def test_linux_resources_devices(oci: Oci) -> None:
    # head opens each node itself (a failed redirection of a special builtin would end the shell).
    b = oci.bundle(["sh", "-c", "exec 2>&1; for d in net/tun fuse null; do head -c 0 /dev/$d && echo $d-opened; done"])
    b.linux["resources"] = {"devices": [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rw"},
    ]}
    b.linux["devices"] = [
        {"path": "/dev/net/tun", "type": "c", "major": 10, "minor": 200, "fileMode": 0o666},
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666},
    ]
    c = oci.create(b)
    rules = set(_read(CGROUP_ROOT / "devices" / f"pycontain-{c.id}" / "devices.list").splitlines())
    code, out = c.run_to_end()
    assert "a *:* rwm" not in rules and "c 10:200 rw" in rules, f"devices.list: {sorted(rules)}"
    assert not any(r.startswith("c 10:229") for r in rules), sorted(rules)
    assert "net/tun-opened" in out and "null-opened" in out, f"allowed devices open: {out}"
    assert "fuse-opened" not in out and "/dev/fuse: Operation not permitted" in out, \
        f"a device no rule allows cannot be opened: {out}"


def test_linux_cgroups_path(oci: Oci) -> None:
    top = f"ocib-cg-{uuid.uuid4().hex[:8]}"
    cid = new_id()
    name = f"/{top}/inner/{cid}"
    oci.cgroup_names.append(top)
    b = oci.bundle(["sh", "-c", "cat /proc/self/cgroup; " + WAIT_FOR_GO])
    b.linux["cgroupsPath"] = name
    # Device rules put the container in the devices hierarchy too (the freezer is there always, for pause).
    b.linux["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
    c = oci.create(b, cid)
    dirs = {d.parent.relative_to(CGROUP_ROOT).parts[0] for d in cgroup_dirs(name)}
    assert {"memory", "pids", "cpu", "devices", "freezer"} <= dirs, f"hierarchies with {name}: {dirs}"
    host_view = Path(f"/proc/{c.pid}/cgroup").read_text()
    assert f":memory:{name}\n" in host_view and f":pids:{name}\n" in host_view, host_view
    c.start()
    (b.rootfs / "go").touch()
    assert c.wait() == 0
    c.delete()
    assert cgroup_dirs(name) == [], "delete removes the leaf"
    assert cgroup_dirs(top) == [], "delete removes the parents it made for cgroupsPath"


# ---------------------------------------------------------------- masked and read-only paths, sysctl


def test_linux_masked_paths(oci: Oci) -> None:
    script = ("exec 2>&1; wc -c < /proc/timer_list; wc -c < /proc/keys; ls -A /sys/firmware | wc -l; "
              "ls -A /secret-dir | wc -l; wc -c < /etc/secret-file; cat /etc/visible; "
              "touch /secret-dir/x; echo touch=$?")
    b = oci.bundle(["sh", "-c", script])
    (b.rootfs / "secret-dir").mkdir()
    (b.rootfs / "secret-dir" / "inside").write_text("hidden\n")
    (b.rootfs / "etc" / "secret-file").write_text("TOP SECRET\n")
    (b.rootfs / "etc" / "visible").write_text("not masked\n")
    b.linux["maskedPaths"] = ["/proc/timer_list", "/proc/keys", "/sys/firmware", "/secret-dir", "/etc/secret-file",
                              "/no/such/path"]
    code, out = oci.run_bundle(b)
    assert code == 0, out
    lines = out.splitlines()
    assert [x.strip() for x in lines[:5]] == ["0"] * 5, \
        f"masked files read empty, masked directories list nothing: {out}"
    assert lines[5] == "not masked" and "touch=1" in out, out


def test_linux_readonly_paths(oci: Oci) -> None:
    script = ("exec 2>&1; echo 1 > /proc/sys/net/ipv4/ip_forward; echo sys=$?; touch /ro-dir/new; echo dir=$?; "
              "cat /ro-dir/file; touch /tmp/rw && echo tmp-writable; grep -c . /proc/sys/kernel/ostype")
    b = oci.bundle(["sh", "-c", script])
    (b.rootfs / "ro-dir").mkdir()
    (b.rootfs / "ro-dir" / "file").write_text("readable\n")
    b.linux["readonlyPaths"] = ["/proc/sys", "/ro-dir", "/no/such/path"]
    code, out = oci.run_bundle(b)
    assert code == 0, out
    assert "sys=0" not in out and "dir=1" in out and out.count("Read-only file system") == 2, out
    assert "readable" in out and "tmp-writable" in out, f"read-only paths stay readable, the rest writable: {out}"
    assert out.splitlines()[-1] == "1", out


def test_linux_sysctl(oci: Oci) -> None:
    host = {k: Path(f"/proc/sys/{k}").read_text() for k in
            ("net/ipv4/ip_forward", "net/ipv4/ip_unprivileged_port_start", "kernel/msgmax", "kernel/panic")}
    b = oci.bundle(["sh", "-c", "cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/ip_unprivileged_port_start "
                    "/proc/sys/kernel/msgmax"])
    b.linux["sysctl"] = {"net.ipv4.ip_forward": "1", "net.ipv4.ip_unprivileged_port_start": "123",
                         "kernel.msgmax": "4321"}
    assert oci.run_bundle(b) == (0, "1\n123\n4321\n"), "sysctls of the container's own net and ipc namespaces"
    # A sysctl that is the host's (not namespaced) or of a namespace the container shares: refused.
    refused = oci.bundle(["true"])
    refused.linux["sysctl"] = {"kernel.panic": "5"}
    refused.write()
    line = oci.create_fails(refused.path)
    assert "linux.sysctl" in line and "kernel.panic" in line, line
    shared_net = oci.bundle(["true"])
    shared_net.linux["namespaces"].remove({"type": "network"})
    shared_net.linux["sysctl"] = {"net.ipv4.ip_unprivileged_port_start": "99"}
    shared_net.write()
    line = oci.create_fails(shared_net.path)
    assert "linux.sysctl" in line and "net.ipv4.ip_unprivileged_port_start" in line, line
    assert {k: Path(f"/proc/sys/{k}").read_text() for k in host} == host, "a host sysctl changed"


# ---------------------------------------------------------------- hooks

HOOK = """#!/bin/sh
# $1: the hook's name; $2: the directory it records into: the order, the state read on stdin, and the
# environment the spec gave plus the mount namespace the hook ran in.
echo "$1" >> "$2/order"
cat > "$2/$1.json"
echo "$HOOK_ENV $(readlink /proc/self/ns/mnt)" > "$2/$1.env"
"""


def test_hooks_order(oci: Oci, tmp_path: Path) -> None:
    log = tmp_path / "hooklog"
    log.mkdir()
    hook = tmp_path / "hook.sh"
    hook.write_text(HOOK)
    hook.chmod(0o755)
    b = oci.bundle(["sh", "-c", WAIT_FOR_GO])
    # startContainer runs in the container: its path and the log directory are the container's.
    (b.rootfs / "hook.sh").write_text(HOOK)
    (b.rootfs / "hook.sh").chmod(0o755)
    b.config["mounts"].append({"destination": "/hooklog", "type": "bind", "source": str(log),
                               "options": ["rbind", "rw"]})
    names = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
    b.config["hooks"] = {
        n: [{"path": "/hook.sh" if n == "startContainer" else str(hook),
             "args": ["hook.sh", n, "/hooklog" if n == "startContainer" else str(log)],
             "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", f"HOOK_ENV=env-of-{n}"]}]
        for n in names
    }
    c = oci.create(b)
    assert (log / "order").read_text().split() == list(names[:3]), "create runs the first three hooks, in order"
    container_mnt = os.readlink(f"/proc/{c.pid}/ns/mnt")
    c.start()
    wait_for("the poststart hook", lambda: (log / "poststart.json").exists())
    (b.rootfs / "go").touch()
    assert c.wait() == 0
    c.delete()
    assert (log / "order").read_text().split() == list(names), "every hook ran once, in the spec's order"
    states = {n: json.loads((log / f"{n}.json").read_text()) for n in names}
    statuses = {n: s.get("status") for n, s in states.items()}
    assert statuses == {"prestart": "creating", "createRuntime": "creating", "createContainer": "creating",
                        "startContainer": "created", "poststart": "running", "poststop": "stopped"}, statuses
    assert all(s.get("id") == c.id and s.get("bundle") == str(b.path) and s.get("ociVersion") for s in
               states.values()), states
    host_mnt = os.readlink("/proc/self/ns/mnt")
    ran = {n: (log / f"{n}.env").read_text().split() for n in names}
    assert ran == {n: [f"env-of-{n}", container_mnt if n in ("createContainer", "startContainer") else host_mnt]
                   for n in names}, "hooks.*.env, and createContainer/startContainer in the container's namespace"
    pids = {n: states[n].get("pid") for n in names[:5]}
    assert pids == dict.fromkeys(names[:5], c.pid), \
        f"every hook up to poststart gets the init's pid (host pid {c.pid}): {pids}"


def test_hooks_failing_prestart_fails_create(oci: Oci, tmp_path: Path) -> None:
    marker = tmp_path / "poststart-ran"
    b = oci.bundle(["sh", "-c", "touch /started"])
    b.config["hooks"] = {
        "prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "echo prestart broke >&2; exit 3"]}],
        "poststart": [{"path": "/bin/touch", "args": ["touch", str(marker)]}],
    }
    b.write()
    line = oci.create_fails(b.path)
    assert "prestart" in line and ("exit status 3" in line or "prestart broke" in line), line
    assert not (b.rootfs / "started").exists() and not marker.exists(), "the process never ran"


def test_hooks_timeout_fails_create(oci: Oci) -> None:
    b = oci.bundle(["true"])
    b.config["hooks"] = {"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]}
    b.write()
    line = oci.create_fails(b.path)
    assert "createRuntime" in line and "timed out" in line, line


# ---------------------------------------------------------------- lifecycle


def test_lifecycle_create_start_stopped_delete(oci: Oci) -> None:
    b = oci.bundle(["sh", "-c", "echo started; " + WAIT_FOR_GO + "; echo done"])
    b.config["annotations"] = {"org.example.test": "an annotation"}
    c = oci.create(b)
    state = c.state()
    assert state["annotations"] == {"org.example.test": "an annotation"}, state
    assert state["status"] == "created" and state["pid"] == c.pid and alive(c.pid), state
    assert state["id"] == c.id and state["bundle"] == str(b.path) and state["ociVersion"] == "1.0.2", state
    assert c.output() == "", "the process must not run before start"
    c.start()
    assert c.status() == "running"
    wait_for("the process's output", lambda: "started" in c.output())
    second = oci("start", c.id)
    assert "running" in error_line(second) or "created" in error_line(second), describe(second)
    (b.rootfs / "go").touch()
    assert c.wait() == 0
    assert c.output() == "started\ndone\n"
    state = c.state()
    assert state["status"] == "stopped", state
    c.delete()
    assert not (oci.root / c.id).exists(), "delete removes the state directory"
    assert cgroup_dirs(f"pycontain-{c.id}") == [], "delete removes the cgroup"
    assert "does not exist" in error_line(oci("state", c.id))


def test_lifecycle_kill_created_container(oci: Oci) -> None:
    b = oci.bundle(["sh", "-c", "touch /ran"])
    c = oci.create(b)
    oci.ok("kill", c.id, "KILL")
    assert c.wait() == 128 + 9
    assert c.status() == "stopped"
    c.delete()
    assert not (b.rootfs / "ran").exists(), "a killed created container never ran its process"
    assert not (oci.root / c.id).exists()


def test_lifecycle_kill_signal_reaches_the_process(oci: Oci) -> None:
    b = oci.bundle(["sh", "-c", "trap 'echo got-term; exit 3' TERM; echo ready; " + WAIT_FOR_GO])
    c = oci.create(b)
    c.start()
    wait_for("the trap to be set", lambda: "ready" in c.output())
    assert "signal" in error_line(oci("kill", c.id, "SIGNOTHING"))
    oci.ok("kill", c.id)  # SIGTERM by default, as runc
    assert c.wait() == 3 and c.output() == "ready\ngot-term\n", c.output()
    error_line(oci("kill", c.id, "KILL"))  # a stopped container cannot be signalled
    c.delete()


def test_lifecycle_kill_all(oci: Oci) -> None:
    b = oci.bundle(["sh", "-c", "sleep 1000 & echo $! > /dev/shm/child; echo ready; wait"])
    c = oci.create(b)
    c.start()
    wait_for("the child", lambda: "ready" in c.output())
    procs = json.loads(oci.ok("ps", "--format", "json", c.id).stdout)
    assert len(procs) == 2 and c.pid in procs, procs
    oci.ok("kill", "--all", c.id, "9")
    assert c.wait() == 128 + 9
    wait_for("every process of the container to die", lambda: not any(alive(p) for p in procs))
    c.delete()


def test_lifecycle_delete_force_running(oci: Oci) -> None:
    c = oci.create(oci.bundle(["sleep", "1000"]))
    c.start()
    refused = error_line(oci("delete", c.id))
    assert "running" in refused, refused
    assert c.status() == "running", "a refused delete leaves the container alone"
    c.delete("--force")
    assert c.wait() == 128 + 9
    assert not (oci.root / c.id).exists() and cgroup_dirs(f"pycontain-{c.id}") == []


def test_lifecycle_delete_before_the_init_is_reaped(oci: Oci) -> None:
    """An engine may call delete before it has collected the init's status: the zombie is stopped."""
    b = oci.bundle(["sh", "-c", "exit 4"])
    c = oci.create(b)
    c.start()
    wait_for("the process to exit", lambda: c.status() == "stopped")
    c.delete()
    assert not (oci.root / c.id).exists() and cgroup_dirs(f"pycontain-{c.id}") == []
    assert c.wait() == 4


def test_lifecycle_bundle_path_with_spaces(oci: Oci, tmp_path: Path) -> None:
    b = oci.bundle(["sh", "-c", "echo spaced out"])
    spaced = tmp_path / "a bundle dir"
    b.path.rename(spaced)
    b.path, b.rootfs = spaced, spaced / "rootfs"
    b.config["root"]["path"] = str(b.rootfs)  # an absolute root.path, spaces and all
    c = oci.create(b)
    assert c.state()["bundle"] == str(spaced)
    assert c.run_to_end() == (0, "spaced out\n")


def test_lifecycle_delete_created(oci: Oci) -> None:
    b = oci.bundle(["sh", "-c", "touch /ran"])
    c = oci.create(b)
    c.delete()  # a created container is deleted without --force, as runc does: its init is killed
    assert c.wait() == 128 + 9
    assert not (oci.root / c.id).exists() and cgroup_dirs(f"pycontain-{c.id}") == []
    assert not (b.rootfs / "ran").exists()


def test_lifecycle_duplicate_id_is_refused(oci: Oci) -> None:
    b = oci.bundle(["sleep", "1000"])
    c = oci.create(b)
    res = oci("create", "--bundle", b.path, c.id)
    assert "already exists" in error_line(res)
    assert c.status() == "created" and c.state()["pid"] == c.pid, "the first container is untouched"
    c.delete()
    c.wait()


@pytest.mark.parametrize("bad_id", ["../escape", "a/b", "", "."])
def test_lifecycle_invalid_id_is_refused(oci: Oci, bad_id: str) -> None:
    b = oci.bundle(["true"]).write()
    line = error_line(oci("create", "--bundle", b.path, bad_id))
    assert "id" in line, line
    assert not (oci.tmp / "escape").exists() and (not oci.root.exists() or list(oci.root.iterdir()) == [])


def test_lifecycle_run_foreground_and_detached(oci: Oci, tmp_path: Path) -> None:
    b = oci.bundle(["sh", "-c", "echo hi from run; exit 5"]).write()
    cid = new_id()
    oci.cgroup_names.append(f"pycontain-{cid}")
    res = oci("run", "--bundle", b.path, cid)
    assert (res.returncode, res.stdout) == (5, "hi from run\n"), describe(res)
    assert not (oci.root / cid).exists(), "run without --detach deletes the container when it ends"
    d = oci.bundle(["sleep", "1000"]).write()
    cid = new_id()
    oci.cgroup_names.append(f"pycontain-{cid}")
    pid_file = tmp_path / "run.pid"
    with open(tmp_path / "run.out", "w") as out:
        res = oci("run", "--detach", "--bundle", d.path, "--pid-file", pid_file, cid, stdout=out, stderr=out)
    assert res.returncode == 0, (tmp_path / "run.out").read_text()
    pid = int(pid_file.read_text())
    state = json.loads(oci.ok("state", cid).stdout)
    assert state["status"] == "running" and state["pid"] == pid, state
    oci.ok("delete", "--force", cid)
    assert wait_exit(pid) == 128 + 9


# ---------------------------------------------------------------- exec


def test_exec_args_and_exit_code(oci: Oci) -> None:
    c = oci.create(oci.bundle(["sleep", "1000"]))
    c.start()
    res = oci("exec", c.id, "sh", "-c", "echo exec-out; echo exec-err >&2; cat /proc/1/cmdline | tr '\\0' ' '; "
              "hostname; exit 3")
    assert (res.returncode, res.stdout, res.stderr) == (3, "exec-out\nsleep 1000 ocitest\n", "exec-err\n"), \
        describe(res)
    res = oci("exec", "--cwd", "/tmp", "--env", "EXTRA=1", "--user", "1000:1000", c.id,
              "sh", "-c", "pwd; echo $EXTRA; id -u; id -g")
    assert (res.returncode, res.stdout) == (0, "/tmp\n1\n1000\n1000\n"), describe(res)
    c.delete("--force")
    c.wait()


def test_exec_process_file(oci: Oci, tmp_path: Path) -> None:
    c = oci.create(oci.bundle(["sleep", "1000"]))
    c.start()
    process = {"terminal": False, "user": {"uid": 1000, "gid": 1000, "additionalGids": [50]},
               "args": ["sh", "-c", "echo $GREETING; pwd; id -G; exit 4"], "env": ["PATH=/bin", "GREETING=hello"],
               "cwd": "/etc", "noNewPrivileges": True, "capabilities": {"bounding": BASE_CAPS}}
    (tmp_path / "process.json").write_text(json.dumps(process))
    res = oci("exec", "--process", tmp_path / "process.json", c.id)
    assert (res.returncode, res.stdout) == (4, "hello\n/etc\n1000 50\n"), describe(res)
    c.delete("--force")
    c.wait()


def test_exec_detach_pid_file(oci: Oci, tmp_path: Path) -> None:
    c = oci.create(oci.bundle(["sleep", "1000"]))
    c.start()
    pid_file = tmp_path / "exec.pid"
    with open(tmp_path / "exec.out", "w") as out:
        res = oci("exec", "--detach", "--pid-file", pid_file, c.id, "sleep", "999", stdout=out, stderr=out)
    assert res.returncode == 0, (tmp_path / "exec.out").read_text()
    pid = int(pid_file.read_text())
    assert alive(pid) and Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x00999\x00"
    assert os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{c.pid}/ns/pid")
    assert pid in json.loads(oci.ok("ps", "--format", "json", c.id).stdout)
    c.delete("--force")
    c.wait()
    wait_for("the exec'd process to die with the container", lambda: not alive(pid))


def test_exec_missing_program_is_one_line_error(oci: Oci) -> None:
    c = oci.create(oci.bundle(["sleep", "1000"]))
    c.start()
    res = oci("exec", c.id, "/no/such/program")
    assert res.returncode != 0 and "Traceback" not in res.stderr, describe(res)
    assert res.stderr.count("\n") == 1 and "/no/such/program" in res.stderr, describe(res)
    assert json.loads(oci.ok("ps", "--format", "json", c.id).stdout) == [c.pid], "nothing left running"
    c.delete("--force")
    c.wait()


def test_exec_tty_console_socket(oci: Oci, tmp_path: Path) -> None:
    c = oci.create(oci.bundle(["sleep", "1000"]))
    c.start()
    process = {"terminal": True, "consoleSize": {"height": 21, "width": 77}, "cwd": "/", "env": ["PATH=/bin"],
               "args": ["sh", "-c", "stty size; tty"], "user": {"uid": 0, "gid": 0}}
    (tmp_path / "process.json").write_text(json.dumps(process))
    console = ConsoleSocket(tmp_path / "e.sock")
    pid_file = tmp_path / "exec.pid"
    try:
        res = oci("exec", "--detach", "--pid-file", pid_file, "--console-socket", console.path,
                  "--process", tmp_path / "process.json", c.id, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert res.returncode == 0, res.stderr
        master = console.receive_master()
    finally:
        console.close()
    try:
        out = read_all(master).decode(errors="replace").replace("\r\n", "\n")
    finally:
        os.close(master)
    assert wait_exit(int(pid_file.read_text())) == 0
    assert out.splitlines()[:1] == ["21 77"] and out.splitlines()[1].startswith("/dev/pts/"), repr(out)
    c.delete("--force")
    c.wait()


def test_exec_in_stopped_container_is_refused(oci: Oci) -> None:
    b = oci.bundle(["true"])
    c = oci.create(b)
    c.start()
    assert c.wait() == 0
    assert "stopped" in error_line(oci("exec", c.id, "true"))
    c.delete()


# ---------------------------------------------------------------- pause, ps, update, list


def test_pause_resume(oci: Oci) -> None:
    c = oci.create(oci.bundle(["sleep", "1000"]))
    c.start()
    freezer = CGROUP_ROOT / "freezer" / f"pycontain-{c.id}" / "freezer.state"
    oci.ok("pause", c.id)
    assert c.status() == "paused" and _read(freezer) == "FROZEN"
    again = error_line(oci("pause", c.id))
    assert "running" in again or "paused" in again, again
    oci.ok("resume", c.id)
    assert c.status() == "running" and _read(freezer) == "THAWED"
    assert "paused" in error_line(oci("resume", c.id))
    oci.ok("pause", c.id)
    c.delete("--force")  # a paused container is thawed to die
    assert c.wait() == 128 + 9


def test_pause_then_kill(oci: Oci) -> None:
    c = oci.create(oci.bundle(["sleep", "1000"]))
    c.start()
    oci.ok("pause", c.id)
    oci.ok("kill", c.id, "KILL")  # a frozen process acts on SIGKILL once thawed
    assert c.wait() == 128 + 9
    assert c.status() == "stopped"
    c.delete()


def test_ps_json_lists_init_pid(oci: Oci) -> None:
    c = oci.create(oci.bundle(["sleep", "1000"]))
    c.start()
    assert json.loads(oci.ok("ps", "--format", "json", c.id).stdout) == [c.pid]
    table = oci.ok("ps", c.id).stdout.splitlines()
    assert "PID" in table[0] and any(str(c.pid) in row.split() for row in table[1:]), table
    c.delete("--force")
    c.wait()


def test_update_resources_memory(oci: Oci) -> None:
    b = oci.bundle(["sleep", "1000"])
    b.linux["resources"] = {"memory": {"limit": 128 * MIB}, "pids": {"limit": 100}}
    c = oci.create(b)
    c.start()
    memory = CGROUP_ROOT / "memory" / f"pycontain-{c.id}"
    pids = CGROUP_ROOT / "pids" / f"pycontain-{c.id}"
    assert _read(memory / "memory.limit_in_bytes") == str(128 * MIB)
    oci.ok("update", "--resources", "-", c.id, input=json.dumps({"memory": {"limit": 64 * MIB},
                                                                   "pids": {"limit": 77}}))
    assert _read(memory / "memory.limit_in_bytes") == str(64 * MIB)
    assert _read(pids / "pids.max") == "77"
    oci.ok("update", "--memory", str(96 * MIB), c.id)
    assert _read(memory / "memory.limit_in_bytes") == str(96 * MIB)
    cpu = CGROUP_ROOT / "cpu" / f"pycontain-{c.id}"
    oci.ok("update", "--resources", "-", c.id, input=json.dumps({"cpu": {"shares": 256, "quota": 30000,
                                                                           "period": 100000}}))
    assert [_read(cpu / f) for f in ("cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us")] == \
        ["256", "30000", "100000"]
    assert _read(memory / "memory.limit_in_bytes") == str(96 * MIB), "an update keeps what it does not name"
    assert "resources" in error_line(oci("update", "--resources", "-", c.id, input="{not json"))
    c.delete("--force")
    c.wait()


def test_list_shows_containers(oci: Oci) -> None:
    created = oci.create(oci.bundle(["sleep", "1000"]))
    running = oci.create(oci.bundle(["sleep", "1000"]))
    running.start()
    rows = {r["id"]: r for r in json.loads(oci.ok("list", "--format", "json").stdout)}
    assert {cid: rows[cid]["status"] for cid in rows} == {created.id: "created", running.id: "running"}, rows
    assert rows[running.id]["pid"] == running.pid
    assert sorted(oci.ok("list", "-q").stdout.split()) == sorted([created.id, running.id])
    table = oci.ok("list").stdout.splitlines()
    assert table[0].split()[:3] == ["ID", "PID", "STATUS"]
    assert any(row.split()[:3] == [running.id, str(running.pid), "running"] for row in table[1:]), table
    for c in (created, running):
        c.delete("--force")
        c.wait()
    assert oci.ok("list", "-q").stdout.strip() == ""


# ---------------------------------------------------------------- errors and small commands


@pytest.mark.parametrize("command", ["state", "start", "kill", "delete", "pause", "resume", "ps", "exec"])
def test_unknown_id_is_one_line_error(oci: Oci, command: str) -> None:
    cid = new_id()
    args = [cid, "true"] if command == "exec" else [cid]
    line = error_line(oci(command, *args))
    assert cid in line and "does not exist" in line, line


def _break(name: str, config: dict[str, Any]) -> None:
    process, linux = config["process"], config["linux"]
    if name == "ociVersion 2.0":
        config["ociVersion"] = "2.0.0"
    elif name == "missing process.args":
        del process["args"]
    elif name == "relative cwd":
        process["cwd"] = "tmp"
    elif name == "unknown capability":
        process["capabilities"] = {"bounding": ["CAP_CHOWN", "CAP_MAKE_COFFEE"]}
    elif name == "unknown namespace type":
        linux["namespaces"].append({"type": "bogus"})
    elif name == "program not in the rootfs":
        process["args"] = ["/bin/no-such-program"]
    elif name == "missing root.path directory":
        config["root"] = {"path": "no-such-rootfs"}
    elif name == "bind source missing":
        config["mounts"].append({"destination": "/data", "type": "bind", "source": "/no/such/source",
                                 "options": ["rbind"]})
    elif name == "relative mount destination":
        config["mounts"].append({"destination": "data", "type": "tmpfs", "source": "tmpfs"})
    elif name == "relative hook path":
        config["hooks"] = {"prestart": [{"path": "bin/true"}]}
    elif name == "rlimit above the hard limit":
        # This machine's root has no CAP_SYS_RESOURCE: a hard limit above the current one cannot be set,
        # which the container's init finds out only after clone (the error path that must clean up).
        process["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1 << 40}]


BAD = {  # what each broken bundle's error line must name
    "missing config.json": "config.json",
    "invalid JSON": "config.json",
    "ociVersion 2.0": "ociVersion",
    "missing process.args": "process.args",
    "relative cwd": "process.cwd",
    "unknown capability": "CAP_MAKE_COFFEE",
    "unknown namespace type": "linux.namespaces",
    "program not in the rootfs": "/bin/no-such-program",
    "missing root.path directory": "root.path",
    "bind source missing": "/no/such/source",
    "relative mount destination": "mounts[7].destination",
    "relative hook path": "hooks.prestart[0].path",
    "rlimit above the hard limit": "rlimit",
}


@pytest.mark.parametrize("broken", list(BAD))
def test_bad_bundle_is_refused(oci: Oci, broken: str) -> None:
    b = oci.bundle(["true"])
    if broken == "invalid JSON":
        (b.path / "config.json").write_text('{"ociVersion": "1.0.2", "process": ')
    elif broken != "missing config.json":
        config = b.edit()
        _break(broken, config)
        (b.path / "config.json").write_text(json.dumps(config))
    line = oci.create_fails(b.path, code=127 if broken == "program not in the rootfs" else 125)
    assert BAD[broken].lower() in line.lower(), f"the error names {BAD[broken]!r}: {line}"
    if broken == "unknown capability":
        assert "process.capabilities" in line, line


def test_log_json_error(oci: Oci, tmp_path: Path) -> None:
    log = tmp_path / "runtime.log"
    cid = new_id()
    res = oci("state", cid, global_args=("--log", str(log), "--log-format", "json"))
    error_line(res)
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert entries and entries[-1]["level"] == "error" and cid in entries[-1]["msg"], entries


def test_systemd_cgroup_is_refused(oci: Oci) -> None:
    b = oci.bundle(["true"]).write()
    cid = new_id()
    oci.cgroup_names.append(f"pycontain-{cid}")
    line = error_line(oci("create", "--bundle", b.path, cid, global_args=("--systemd-cgroup",)))
    assert "systemd" in line, line
    assert not (oci.root / cid).exists()


def test_features_prints_json(oci: Oci) -> None:
    features = json.loads(oci.ok("features").stdout)
    assert features["ociVersionMin"].startswith("1.") and features["ociVersionMax"].startswith("1.")
    assert set(features["hooks"]) == {"prestart", "createRuntime", "createContainer", "startContainer",
                                      "poststart", "poststop"}
    assert {"pid", "network", "mount", "ipc", "uts", "cgroup"} <= set(features["linux"]["namespaces"])
    assert "CAP_SYS_ADMIN" in features["linux"]["capabilities"]


def test_version(oci: Oci) -> None:
    res = subprocess.run([OCI, "--version"], capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    assert res.returncode == 0 and res.stdout.startswith("pycontain-oci version ") and "spec: 1." in res.stdout


def test_spec_writes_a_config_that_runs(oci: Oci) -> None:
    b = oci.bundle(["true"])
    res = oci("spec", cwd=b.path)
    assert res.returncode == 0, describe(res)
    config = json.loads((b.path / "config.json").read_text())
    config["process"]["args"] = ["sh", "-c", "echo from-spec; hostname"]
    config["process"]["terminal"] = False
    (b.path / "config.json").write_text(json.dumps(config))
    assert "exists" in error_line(oci("spec", cwd=b.path)), "spec never overwrites a config.json"
    cid = new_id()
    oci.cgroup_names.append(f"pycontain-{cid}")
    res = oci("run", "--bundle", b.path, cid)
    assert (res.returncode, res.stdout.splitlines()[:1]) == (0, ["from-spec"]), describe(res)
    assert not (oci.root / cid).exists()


# ---------------------------------------------------------------- the C fast path of start and delete

LAUNCHER = "/opt/pycontain/libexec/pycontain-oci"  # the Python command line (scripts/install)


def python_ran(oci: Oci, *args: str, trace: Path) -> bool:
    """Run `pycontain-oci ARGS` under strace: did Python run (the launcher executed, or any Python
    module opened)? A shebang script shows up only as its own path, so both are looked for."""
    res = subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve,open,openat", "-o", str(trace), OCI,
                          "--root", str(oci.root), *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    assert res.returncode == 0, describe(res)
    paths = [line.split('"')[1] for line in trace.read_text().splitlines() if '"' in line]
    assert paths, "strace saw nothing"
    return any(p == LAUNCHER or p.endswith((".py", ".pyc")) for p in paths)


def test_start_and_delete_of_a_plain_container_do_not_start_python(oci: Oci, tmp_path: Path) -> None:
    b = oci.bundle(["sh", "-c", "echo ran"])
    c = oci.create(b)
    assert not python_ran(oci, "start", c.id, trace=tmp_path / "start.trace")
    assert c.wait() == 0 and c.output() == "ran\n"
    assert not python_ran(oci, "delete", c.id, trace=tmp_path / "delete.trace")
    assert not (oci.root / c.id).exists() and cgroup_dirs(f"pycontain-{c.id}") == []


def test_what_the_fast_path_does_not_know_goes_to_python(oci: Oci, tmp_path: Path) -> None:
    # A poststop hook needs the Python implementation: delete hands over, and the hook runs.
    hook_log = tmp_path / "poststop.log"
    b = oci.bundle(["true"])
    b.config["hooks"] = {"poststop": [{"path": "/bin/sh", "args": ["sh", "-c", f"cat > {hook_log}"]}]}
    c = oci.create(b)
    c.start()
    assert c.wait() == 0
    assert python_ran(oci, "delete", c.id, trace=tmp_path / "delete.trace")
    assert json.loads(hook_log.read_text())["status"] == "stopped"
    # A running container without --force: Python's one-line error, and nothing removed.
    b2 = oci.bundle(["sh", "-c", WAIT_FOR_GO])
    c2 = oci.create(b2)
    c2.start()
    line = error_line(oci("delete", c2.id))
    assert "running" in line and (oci.root / c2.id).exists(), line
    c2.delete("--force")
    assert not (oci.root / c2.id).exists()
