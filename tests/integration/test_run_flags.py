"""The rarer `run`/`create` flags of issue 13, as Docker users write them: labels and --cidfile, the host's or
another container's namespaces, /dev/shm, extra groups, cgroup knobs, --platform, --log-driver, resolv.conf
and /etc/hosts; on bridge networks (each test in a network namespace of its own): --ip, --network-alias,
--mac-address, --expose and -P. And `inspect --type` for every kind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from netns_support import NetPycontain
from support import Pycontain, assert_pycontain_error, wait_for
from test_network import host_port, npc  # noqa: F401 - the network suite's fixture (ns is the conftest's)

# The bridge tests check for leaks inside their own namespace (the npc fixture); the others on the host.
leak_free = pytest.mark.usefixtures("no_leaks")


def ns_of(pc: Pycontain, ref: str, kind: str) -> str:
    return pc.ok("exec", ref, "readlink", f"/proc/self/ns/{kind}").stdout.strip()


@leak_free
def test_labels_from_flags_and_a_file_are_config_labels_that_ps_filters_on(pc: Pycontain, tmp_path: Path) -> None:
    f = tmp_path / "labels"
    f.write_text("# team labels\ntier=back\nowner=file\n")
    pc.ok("create", "--name", "a", "-l", "app=web", "--label-file", f, "--label", "owner=flag", "busybox", "true")
    pc.ok("create", "--name", "b", "--label", "app=db", "busybox", "true")
    labels = pc.inspect("a")["Config"]["Labels"]
    assert labels == {"app": "web", "tier": "back", "owner": "flag"}
    out = pc.ok("ps", "-a", "--filter", "label=app=web", "--format", "{{.Names}}").stdout.split()
    assert out == ["a"]
    assert sorted(pc.ok("ps", "-a", "--filter", "label=app", "--format", "{{.Names}}").stdout.split()) == ["a", "b"]
    assert pc.ok("ps", "-a", "--filter", "label=tier=back", "--format", "{{.Label \"owner\"}}").stdout.strip() == "flag"


@leak_free
def test_cidfile_is_written_at_create_and_refused_if_it_exists(pc: Pycontain, tmp_path: Path) -> None:
    cidfile = tmp_path / "cid"
    cid = pc.ok("create", "--cidfile", cidfile, "busybox", "true").stdout.strip()
    assert cidfile.read_text() == cid
    assert pc.inspect(cid)["HostConfig"]["ContainerIDFile"] == str(cidfile)
    res = pc("run", "--rm", "--cidfile", cidfile, "busybox", "true")
    assert_pycontain_error(res)
    assert "container ID file found" in res.stderr and cidfile.read_text() == cid
    assert len(pc.ok("ps", "-aq").stdout.split()) == 1  # nothing was made
    # a create that fails after the file was made takes it away again
    other = tmp_path / "other"
    assert_pycontain_error(pc("create", "--cidfile", other, "--name", "x", "--volumes-from", "nosuch", "busybox"))
    assert not other.exists()


@leak_free
def test_host_namespaces(pc: Pycontain) -> None:
    out = pc.ok("run", "--rm", "--pid", "host", "--ipc", "host", "--uts", "host", "busybox", "sh", "-c",
                "readlink /proc/self/ns/pid; readlink /proc/self/ns/ipc; readlink /proc/self/ns/uts; hostname; "
                "grep -c . /proc/1/comm; cat /proc/1/comm").stdout.split("\n")
    assert out[0] == os.readlink("/proc/self/ns/pid")
    assert out[1] == os.readlink("/proc/self/ns/ipc")
    assert out[2] == os.readlink("/proc/self/ns/uts")
    assert out[3] == os.uname().nodename
    assert out[5] == Path("/proc/1/comm").read_text().strip()  # the host's PID 1, not the container's sh
    own = pc.ok("run", "--rm", "busybox", "readlink", "/proc/self/ns/ipc").stdout.strip()
    assert own != os.readlink("/proc/self/ns/ipc")
    info = pc.inspect(pc.ok("create", "--pid", "host", "--ipc", "host", "--uts", "host", "busybox").stdout.strip())
    assert (info["HostConfig"]["PidMode"], info["HostConfig"]["IpcMode"], info["HostConfig"]["UTSMode"]) == \
        ("host", "host", "host")


@leak_free
def test_joining_another_containers_namespaces(pc: Pycontain) -> None:
    pc.ok("run", "-d", "--name", "donor", "--ipc", "shareable", "busybox", "sleep", "60")
    pc.wait_until_running("donor")
    donor = pc.inspect("donor")
    out = pc.ok("run", "--rm", "--network", "container:donor", "--ipc", "container:donor", "--pid",
                "container:donor", "busybox", "sh", "-c",
                "for n in net ipc pid; do readlink /proc/self/ns/$n; done; hostname; cat /proc/1/cmdline"
                ).stdout.split("\n")
    assert out[:3] == [ns_of(pc, "donor", "net"), ns_of(pc, "donor", "ipc"), ns_of(pc, "donor", "pid")]
    assert out[3] == donor["Config"]["Hostname"]
    assert out[4].startswith("sleep")
    joiner = pc.ok("create", "--network", "container:donor", "busybox", "true").stdout.strip()
    assert pc.inspect(joiner)["HostConfig"]["NetworkMode"] == f"container:{donor['Id']}"
    pc.ok("run", "-d", "--name", "private", "busybox", "sleep", "60")
    res = pc("run", "--rm", "--ipc", "container:private", "busybox", "true")
    assert_pycontain_error(res)
    assert "not shareable" in res.stderr
    assert_pycontain_error(pc("run", "--rm", "--network", "container:nosuch", "busybox", "true"))
    pc.ok("stop", "-t", "0", "donor")
    res = pc("start", joiner)
    assert_pycontain_error(res)
    assert "it is not running" in res.stderr


@leak_free
def test_shm_size(pc: Pycontain) -> None:
    def shm_kib(*flags: str) -> int:
        out = pc.ok("run", "--rm", *flags, "busybox", "df", "-k", "/dev/shm").stdout.splitlines()
        return int(out[-1].split()[1])

    assert shm_kib() == 64 * 1024  # Docker's default
    assert shm_kib("--shm-size", "2m") == 2048
    info = pc.inspect(pc.ok("create", "--shm-size", "2m", "busybox").stdout.strip())
    assert info["HostConfig"]["ShmSize"] == 2 << 20


@leak_free
def test_group_add_by_name_and_gid(pc: Pycontain) -> None:
    out = pc.ok("run", "--rm", "--group-add", "staff", "--group-add", "4242", "-u", "nobody", "busybox",
                "cat", "/proc/self/status").stdout
    status = dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)
    assert status["Uid"].split()[0] == "65534" and status["Gid"].split()[0] == "65534"
    assert sorted(map(int, status["Groups"].split())) == [50, 4242, 65534]
    assert status["CapEff"].strip() == "0000000000000000"  # a non-root user, as without --group-add
    # app is in staff by /etc/group already; --group-add keeps that and adds
    out = pc.ok("run", "--rm", "--group-add", "sys", "-u", "app", "busybox", "id", "-G").stdout.split()
    assert sorted(map(int, out)) == [3, 50, 1000]
    res = pc("run", "--rm", "--group-add", "nosuchgroup", "busybox", "true")
    assert_pycontain_error(res)
    assert "nosuchgroup" in res.stderr
    info = pc.inspect(pc.ok("create", "--group-add", "staff", "busybox").stdout.strip())
    assert info["HostConfig"]["GroupAdd"] == ["staff"]


def cgroup_file(cid: str, controller: str, name: str) -> str:
    v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    base = Path("/sys/fs/cgroup") if v2 else Path("/sys/fs/cgroup") / controller
    return (base / f"pycontain-{cid}" / name).read_text()


@leak_free
def test_cgroup_knobs(pc: Pycontain) -> None:
    v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    cid = pc.ok("run", "-d", "-m", "64m", "--oom-kill-disable", "--memory-swappiness", "10", "--cpu-period",
                "50000", "--cpu-quota", "25000", "busybox", "sleep", "60").stdout.strip()
    pc.wait_until_running(cid)
    if v2:
        assert cgroup_file(cid, "cpu", "cpu.max").split() == ["25000", "50000"]
    else:
        assert cgroup_file(cid, "cpu", "cpu.cfs_period_us").strip() == "50000"
        assert cgroup_file(cid, "cpu", "cpu.cfs_quota_us").strip() == "25000"
        assert cgroup_file(cid, "memory", "memory.swappiness").strip() == "10"
        assert "oom_kill_disable 1" in cgroup_file(cid, "memory", "memory.oom_control")
    host = pc.inspect(cid)["HostConfig"]
    assert (host["CpuPeriod"], host["CpuQuota"], host["NanoCpus"]) == (50000, 25000, 0)
    assert (host["MemorySwappiness"], host["OomKillDisable"]) == (10, True)
    res = pc("create", "--blkio-weight", "300", "busybox")
    assert res.returncode == 0, res.stderr
    weight = pc.inspect(res.stdout.strip())["HostConfig"]["BlkioWeight"]
    # Docker's rule: a kernel without a weight file (no BFQ/CFQ) discards it with a warning
    assert weight == 300 or (weight == 0 and "--blkio-weight discarded" in res.stderr)
    assert_pycontain_error(pc("run", "--rm", "--cpus", "1", "--cpu-quota", "50000", "busybox", "true"))


@leak_free
def test_platform_and_log_driver(pc: Pycontain) -> None:
    pc.ok("run", "--rm", "--platform", "linux/amd64" if os.uname().machine == "x86_64" else "linux", "busybox",
          "true")
    res = pc("run", "--rm", "--platform", "linux/mips64le", "busybox", "true")
    assert_pycontain_error(res)
    assert "--platform" in res.stderr
    cid = pc.ok("create", "--log-driver", "none", "busybox").stdout.strip()
    assert pc.inspect(cid)["HostConfig"]["LogConfig"]["Type"] == "none"
    assert pc.inspect(pc.ok("create", "busybox").stdout.strip())["HostConfig"]["LogConfig"]["Type"] == "json-file"
    assert_pycontain_error(pc("run", "--rm", "--log-driver", "fluentd", "busybox", "true"))


@leak_free
def test_dns_flags_and_add_host_without_a_bridge(pc: Pycontain) -> None:
    out = pc.ok("run", "--rm", "--dns", "192.0.2.53", "--dns-search", "corp.example", "--dns-option", "ndots:3",
                "--add-host", "db:192.0.2.10", "--add-host", "gw:host-gateway", "busybox", "sh", "-c",
                "cat /etc/resolv.conf; echo ---; cat /etc/hosts").stdout
    resolv, hosts = out.split("---\n")
    lines = resolv.splitlines()
    assert [ln for ln in lines if ln.startswith("nameserver")] == ["nameserver 192.0.2.53"]
    assert "search corp.example" in lines and "options ndots:3" in lines
    assert "192.0.2.10\tdb" in hosts.splitlines()
    gw = [ln.split("\t")[0] for ln in hosts.splitlines() if ln.endswith("\tgw")]
    assert len(gw) == 1 and gw[0].count(".") == 3
    host = pc.inspect(pc.ok("create", "--dns", "192.0.2.53", "--add-host", "db:192.0.2.10", "busybox")
                      .stdout.strip())["HostConfig"]
    assert host["Dns"] == ["192.0.2.53"] and host["ExtraHosts"] == ["db:192.0.2.10"]
    out = pc.ok("run", "--rm", "--dns-search", ".", "busybox", "cat", "/etc/resolv.conf").stdout
    assert not any(ln.startswith(("search", "domain")) for ln in out.splitlines())


@leak_free
def test_inspect_type_picks_the_kind(pc: Pycontain) -> None:
    pc.ok("create", "--name", "thing", "busybox")
    pc.ok("volume", "create", "thing")
    assert pc.ok("inspect", "--type", "container", "-f", "{{.Name}}", "thing").stdout.strip() == "/thing"
    assert pc.ok("inspect", "--type", "volume", "-f", "{{.Name}}", "thing").stdout.strip() == "thing"
    assert pc.ok("inspect", "--type", "image", "-f", "{{.Id}}", "busybox").stdout.startswith("sha256:")
    assert_pycontain_error(pc("inspect", "--type", "volume", "busybox"))
    assert_pycontain_error(pc("inspect", "--type", "image", "thing"))
    res = pc("inspect", "--type", "plugin", "thing")
    assert_pycontain_error(res)
    assert "--type" in res.stderr


# ---------------------------------------------------------------- bridge networks, in the test's own netns

def test_ip_alias_mac_and_add_host_on_a_user_network(npc: NetPycontain) -> None:  # noqa: F811 - the imported fixture
    npc.ok("network", "create", "--subnet", "10.77.0.0/24", "front")
    npc.ok("run", "-d", "--name", "web", "--network", "front", "--ip", "10.77.0.50", "--network-alias", "www",
           "--mac-address", "02:42:0a:4d:00:99", "--add-host", "extra:192.0.2.7", "--add-host", "gw:host-gateway",
           "alpine", "sleep", "60")
    npc.wait_until_running("web")
    out = npc.ok("exec", "web", "sh", "-c", "ip -o -4 addr show eth0; cat /sys/class/net/eth0/address").stdout
    assert "10.77.0.50/24" in out and "02:42:0a:4d:00:99" in out
    ep = npc.inspect("web")["NetworkSettings"]["Networks"]["front"]
    assert ep["IPAMConfig"] == {"IPv4Address": "10.77.0.50"} and ep["Aliases"] == ["www"]
    assert ep["MacAddress"] == "02:42:0a:4d:00:99"
    # its own hosts file: itself and its --add-host lines (as Docker's: the others are the network's DNS's)
    npc.ok("run", "-d", "--name", "late", "--network", "front", "alpine", "sleep", "60")
    npc.wait_until_running("late")
    hosts = npc.ok("exec", "web", "cat", "/etc/hosts").stdout.splitlines()
    assert "192.0.2.7\textra" in hosts and "10.77.0.1\tgw" in hosts
    assert "Address: " in npc.ok("exec", "web", "nslookup", "late").stdout
    # the others resolve the alias (and see none of web's --add-host lines)
    assert "Address: 10.77.0.50" in npc.ok("exec", "late", "nslookup", "www").stdout
    assert "extra" not in npc.ok("exec", "late", "cat", "/etc/hosts").stdout
    npc.ok("exec", "late", "ping", "-c", "1", "-W", "5", "www")
    res = npc("run", "--rm", "--network", "front", "--ip", "10.77.0.50", "alpine", "true")
    assert_pycontain_error(res)
    assert "already in use" in res.stderr


def test_dns_on_the_default_bridge(npc: NetPycontain) -> None:  # noqa: F811 - the imported fixture
    out = npc.ok("run", "--rm", "--network", "bridge", "--dns", "192.0.2.53", "--add-host", "gw:host-gateway",
                 "alpine", "sh", "-c", "cat /etc/resolv.conf /etc/hosts; ip route").stdout
    assert "nameserver 192.0.2.53" in out.splitlines()
    gateway = json.loads((npc.root / "run" / "networks" / "pycontain" / "network.json").read_text())["gateway"]
    assert f"{gateway}\tgw" in out.splitlines()


def test_expose_and_publish_all(npc: NetPycontain) -> None:  # noqa: F811 - the imported fixture
    cid = npc.ok("run", "-d", "-P", "--expose", "80", "--expose", "5353/udp", "-p", "127.0.0.1::81",
                 "--network", "bridge", "alpine", "sleep", "60").stdout.strip()
    npc.wait_until_running(cid)
    exposed = npc.inspect(cid)["Config"]["ExposedPorts"]
    assert set(exposed) == {"80/tcp", "5353/udp", "81/tcp"}
    ports = {line.split(" -> ")[0] for line in npc.ok("port", cid).stdout.splitlines()}
    assert ports == {"80/tcp", "5353/udp", "81/tcp"}
    assert host_port(npc, cid, "80/tcp") > 0 and host_port(npc, cid, "5353/udp") > 0
    assert npc.inspect(cid)["HostConfig"]["PublishAllPorts"] is True
    # --expose alone publishes nothing
    other = npc.ok("run", "-d", "--expose", "8080", "--network", "bridge", "alpine", "sleep", "60").stdout.strip()
    npc.wait_until_running(other)
    assert npc.ok("port", other).stdout.strip() == ""
    assert npc.inspect(other)["NetworkSettings"]["Ports"] == {"8080/tcp": None}


@leak_free
def test_a_joiner_follows_a_restarted_donor(pc: Pycontain) -> None:
    """The /proc/PID/ns path is read at each start: after the donor restarts, the joiner gets its new netns."""
    pc.ok("run", "-d", "--name", "d", "busybox", "sleep", "60")
    pc.wait_until_running("d")
    j = pc.ok("create", "--network", "container:d", "busybox", "sleep", "60").stdout.strip()
    pc.ok("restart", "-t", "0", "d")
    pc.wait_until_running("d")
    pc.ok("start", j)
    wait_for("the joiner to run", lambda: pc.inspect(j)["State"]["Status"] == "running")
    assert ns_of(pc, j, "net") == ns_of(pc, "d", "net")
