"""`pycontain verify`'s decisions, fed observations: each claim is ok on what a confined container shows,
and FAILED, saying what was seen, on what a broken runtime would show. No root, no container: the
integration test (tests/integration/test_verify.py) proves the observations are real."""

from __future__ import annotations

import dataclasses

import pytest

from pycontain import mounts, verify
from pycontain.config import Security
from pycontain.oci import MASKED_PATHS, READONLY_PATHS

CID = "797eed03571eb54210ee416229d06c0ee0cfff055c063ea547bee8da1f288cb8"
TOKEN = "pycontain-verify-0badc0de"
DEFAULT = Security()
# What the default set looks like in /proc/PID/status, computed from pycontain's own table.
CAP_HEX = f"{verify.cap_mask(tuple(DEFAULT.capabilities())):016x}"


def status(**changes: str) -> str:
    fields = {"Name": "sh", "Pid": "1", "PPid": "0", "Uid": "0\t0\t0\t0", "NSpid": "1", "CapInh": "0" * 16,
              "CapPrm": CAP_HEX, "CapEff": CAP_HEX, "CapBnd": CAP_HEX, "CapAmb": "0" * 16, "NoNewPrivs": "1",
              "Seccomp": "2", "Seccomp_filters": "1"}
    fields.update(changes)
    return "".join(f"{k}:\t{v}\n" for k, v in fields.items())


MOUNTS = "\n".join((
    "131 65 0:64 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w",
    "132 131 0:66 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw",
    "133 131 0:67 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755",
    "137 131 0:70 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro",
    "44 132 0:48 / /proc/acpi ro,nosuid,nodev,noexec,relatime - tmpfs tmpfs ro,size=0k",
    "46 132 0:43 /null /proc/keys rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755",
    "53 132 0:42 /sys /proc/sys ro,nosuid,nodev,noexec,relatime - proc proc rw",
))
SHM_HEADER = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid"
ARGV = ["sh", "-c", "echo @@pid1\n"]
HOST_NS = {k: f"{k}:[40265318{i}]" for i, k in enumerate(verify.NAMESPACES)}
CTR_NS = {k: f"{k}:[40265323{i}]" for i, k in enumerate(verify.NAMESPACES)}


def dev_sections() -> tuple[str, str]:
    names, nodes = verify.expected_dev()
    stat_lines = [f"/dev/{n}|character special file|{nodes[n][0]:x}:{nodes[n][1]:x}" if n in nodes
                  else f"/dev/{n}|symbolic link|0:0" for n in sorted(names)]
    return "\n".join(sorted(names)), "\n".join(stat_lines)


def good() -> verify.Observed:
    """What a confined container shows (taken from a real run on this machine, trimmed)."""
    devnames, devstat = dev_sections()
    host_paths = {p: "" for p in (*MASKED_PATHS, *READONLY_PATHS)}
    host_paths.update({"/proc/keys": "file", "/proc/acpi": "dir", "/proc/sys": "dir"})
    return verify.Observed(
        argv=list(ARGV), cid=CID,
        ns={
            "pid1": "\0".join(ARGV) + "\0",
            "procs": "1 (sh) S 0 1 1 0 -1 4194560 553 56 0 0 0 0 0 0 20 0 1 0 2977833",
            "status": status(),
            "hostname": "797eed03571e",
            "net": "lo",
            "cgroup": "9:name=systemd:/\n8:pids:/\n4:memory:/\n0::/",
            "devnames": devnames, "devstat": devstat,
            "masked": "/proc/keys|character special file|1:3",
            "seccomp": "unshare: unshare(0x10000000): Operation not permitted\nexit=1",
            "ready": "",
            "mounts": MOUNTS,
            "shm": SHM_HEADER,
            "write": "sh: can't create /proc/sys/kernel/hostname: Read-only file system\nexit=1\n"
                     "hostname: sethostname: Operation not permitted\nexit=1",
            "end": "",
        },
        host_ns=dict(HOST_NS), ctr_ns=dict(CTR_NS),
        ctr_status=status(NSpid="29236\t1", Pid="29236"),
        ctr_cgroup=f"9:name=systemd:/\n8:pids:/pycontain-{CID}\n4:memory:/pycontain-{CID}\n0::/",
        hostname="797eed03571e", host_hostname=("vm", "vm"),
        mount_token=TOKEN, mount_on_host=True,
        shm_key=1220957773, shm_on_host=True,
        host_paths=host_paths,
        caps=tuple(DEFAULT.capabilities()), no_new_privs=DEFAULT.no_new_privs, seccomp=True,
        limits={"forks": f"status=2\nforks={verify.PIDS_LIMIT - 2}\nerror=sh: can't fork: Resource temporarily "
                         f"unavailable\nevents=max 1\nmax={verify.PIDS_LIMIT}\nmemory={verify.MEMORY_LIMIT}",
                "ready": ""},
        limits_exit=137, limits_oom=True,
        limits_host={"memory": str(verify.MEMORY_LIMIT), "pids": str(verify.PIDS_LIMIT)},
        userns={"uidmap": "         0     100000      65536", "gidmap": "         0     100000      65536"},
        userns_status=status(Uid="100000\t100000\t100000\t100000", Gid="100000\t100000\t100000\t100000"),
    )


def row(o: verify.Observed, claim: str) -> verify.Row:
    rows = {r.claim: r for r in verify.decide(o)}
    return rows[claim]


def failed_with(o: verify.Observed, claim: str, *seen: str) -> None:
    r = row(o, claim)
    assert r.result.startswith("FAILED: "), r
    for text in seen:
        assert text in r.result, r


def with_ns(o: verify.Observed, **sections: str) -> verify.Observed:
    return dataclasses.replace(o, ns={**o.ns, **sections})


# ---------------------------------------------------------------- all good

def test_every_claim_is_ok_on_a_confined_container() -> None:
    rows = verify.decide(good())
    assert [r.claim for r in rows] == list(verify.CLAIMS)
    assert [r for r in rows if r.result != "ok"] == []
    assert verify.failed(rows) == []


def test_the_expected_capabilities_are_pycontains_documented_default() -> None:
    # Not a second copy of the list: the check's expectation is config.Security's default set.
    r = row(good(), "capabilities")
    for name in DEFAULT.capabilities():
        assert name.removeprefix("CAP_") in r.how


# ---------------------------------------------------------------- each claim can fail

def test_pid_namespace_fails_when_host_processes_are_visible() -> None:
    o = with_ns(good(), procs=good().ns["procs"] + "\n2 (kthreadd) S 0 0 0 0 -1\n812 (sshd) S 1 812 812 0")
    failed_with(o, "PID namespace", "[1, 2]")


def test_pid_namespace_fails_when_pid_1_is_not_the_command() -> None:
    failed_with(with_ns(good(), pid1="/sbin/init\0"), "PID namespace", "/sbin/init")


def test_pid_namespace_fails_when_the_host_sees_no_nested_pid() -> None:
    o = dataclasses.replace(good(), ctr_status=status(NSpid="29236"))
    failed_with(o, "PID namespace", "NSpid is 29236")


def test_pid_namespace_fails_when_it_is_the_hosts() -> None:
    o = dataclasses.replace(good(), ctr_ns={**CTR_NS, "pid": HOST_NS["pid"]})
    failed_with(o, "PID namespace", "pid namespace is the host's")


def test_mount_namespace_fails_when_the_host_mount_shows_inside() -> None:
    o = with_ns(good(), mounts=MOUNTS + f"\n200 131 0:99 / /tmp/x rw - tmpfs {TOKEN} rw")
    failed_with(o, "mount namespace", TOKEN)


def test_mount_namespace_fails_without_its_control() -> None:
    # A mount that was never made (or never seen on the host) proves nothing by being invisible.
    failed_with(dataclasses.replace(good(), mount_on_host=False, mount_error="Operation not permitted"),
                "mount namespace", "Operation not permitted")


def test_uts_namespace_fails_when_the_host_hostname_changed() -> None:
    failed_with(dataclasses.replace(good(), host_hostname=("vm", "797eed03571e")), "UTS namespace", "changed")


def test_uts_namespace_fails_when_a_hostname_change_inside_succeeds() -> None:
    o = with_ns(good(), write="sh: can't create x: Read-only file system\nexit=1\nexit=0")
    failed_with(o, "UTS namespace", "`hostname verify` inside succeeded")


def test_ipc_namespace_fails_when_the_host_segment_shows_inside() -> None:
    o = with_ns(good(), shm=SHM_HEADER + "\n1220957773          0   600                  4096   123     0      0")
    failed_with(o, "IPC namespace", "key 1220957773")


def test_ipc_namespace_fails_without_its_control() -> None:
    failed_with(dataclasses.replace(good(), shm_on_host=False), "IPC namespace", "not listed")


def test_network_namespace_fails_on_a_host_interface() -> None:
    failed_with(with_ns(good(), net="eth0\nlo\nwlan0"), "network namespace", "eth0, wlan0")


def test_network_namespace_allows_the_kernels_fallback_tunnels() -> None:
    assert row(with_ns(good(), net="lo\ntunl0\nsit0"), "network namespace").result == "ok"


def test_cgroup_namespace_fails_when_inside_sees_the_hosts_paths() -> None:
    failed_with(with_ns(good(), cgroup=f"8:pids:/pycontain-{CID}\n0::/"), "cgroup namespace", "not the root")


def test_cgroup_namespace_fails_when_the_container_is_in_another_cgroup() -> None:
    o = dataclasses.replace(good(), ctr_cgroup="8:pids:/\n4:memory:/user.slice\n0::/")
    failed_with(o, "cgroup namespace", "memory:/user.slice")


def test_cgroup_namespace_reads_cgroup_v2() -> None:
    o = with_ns(dataclasses.replace(good(), ctr_cgroup=f"0::/pycontain-{CID}"), cgroup="0::/")
    assert row(o, "cgroup namespace").result == "ok"


def test_memory_limit_fails_when_the_hog_survives() -> None:
    failed_with(dataclasses.replace(good(), limits_exit=0, limits_oom=False), "memory limit",
                "exited 0", "OOMKilled false")


def test_memory_limit_fails_when_the_cgroup_has_no_limit() -> None:
    failed_with(dataclasses.replace(good(), limits_host={"memory": "9223372036854771712", "pids": "16"}),
                "memory limit", "on the host is 9223372036854771712")


def test_pids_limit_fails_when_every_fork_succeeds() -> None:
    o = dataclasses.replace(good(), limits={"forks": f"status=0\nforks={verify.FORK_TRIES}\nevents=max 0\n"
                                                     f"max=max\nmemory={verify.MEMORY_LIMIT}"})
    failed_with(o, "pids limit", f"all {verify.FORK_TRIES} forks succeeded", "no fork failure",
                "pids.max inside is max")


def test_capabilities_fail_on_an_extra_capability_and_name_it() -> None:
    extra = f"{int(CAP_HEX, 16) | 1 << 21:016x}"  # CAP_SYS_ADMIN
    failed_with(with_ns(good(), status=status(CapEff=extra)), "capabilities", "CapEff inside", "extra SYS_ADMIN")


def test_capabilities_fail_on_ambient_capabilities_seen_from_the_host() -> None:
    o = dataclasses.replace(good(), ctr_status=status(CapAmb="0000000000000400"))
    failed_with(o, "capabilities", "CapAmb from the host", "NET_BIND_SERVICE")


def test_no_new_privs_fails_when_unset() -> None:
    failed_with(with_ns(good(), status=status(NoNewPrivs="0")), "no_new_privs", "NoNewPrivs inside is 0")


def test_seccomp_fails_without_a_filter() -> None:
    failed_with(dataclasses.replace(good(), ctr_status=status(Seccomp="0")), "seccomp", "Seccomp from the host is 0")


def test_seccomp_fails_when_the_blocked_call_succeeds() -> None:
    failed_with(with_ns(good(), seccomp="exit=0"), "seccomp", "not EPERM")


def test_masked_paths_fail_when_a_file_is_readable() -> None:
    failed_with(with_ns(good(), masked="/proc/keys|regular empty file|0:0"), "masked paths",
                "/proc/keys is a regular empty file")


def test_masked_paths_fail_when_a_directory_is_not_covered() -> None:
    o = with_ns(good(), mounts="\n".join(x for x in MOUNTS.splitlines() if "/proc/acpi" not in x))
    failed_with(o, "masked paths", "/proc/acpi is not masked")


def test_masked_paths_absent_on_this_kernel_are_not_required() -> None:
    o = dataclasses.replace(good(), host_paths={**good().host_paths, "/proc/keys": "", "/proc/acpi": ""})
    assert row(with_ns(o, masked=""), "masked paths").result == "ok"


def test_read_only_paths_fail_when_proc_sys_is_writable() -> None:
    o = with_ns(good(), mounts=MOUNTS.replace("/proc/sys ro,", "/proc/sys rw,"),
                write="exit=0\nhostname: sethostname: Operation not permitted\nexit=1")
    failed_with(o, "read-only paths", "/proc/sys is mounted rw", "not EROFS")


def test_read_only_paths_fail_when_the_write_was_not_tried() -> None:
    o = good()
    del o.ns["write"]
    failed_with(o, "read-only paths", "not tried")


def test_dev_fails_on_a_host_device() -> None:
    devnames, devstat = dev_sections()
    o = with_ns(good(), devnames=devnames + "\nsda", devstat=devstat + "\n/dev/sda|block special file|8:0")
    failed_with(o, "/dev", "unexpected in /dev: sda", "/dev/sda is a block special file 8:0")


def test_dev_fails_on_a_wrong_node() -> None:
    devnames, devstat = dev_sections()
    major, minor = mounts.DEVICES["null"]
    node = "/dev/null|character special file"
    wrong = devstat.replace(f"{node}|{major:x}:{minor:x}", f"{node}|1:1")
    failed_with(with_ns(good(), devstat=wrong), "/dev", "/dev/null is a character special file 1:1")


def test_dev_fails_on_a_missing_node() -> None:
    devnames, _ = dev_sections()
    failed_with(with_ns(good(), devnames=devnames.replace("null\n", "")), "/dev", "missing from /dev: null")


def test_user_namespace_fails_on_the_identity_map() -> None:
    o = dataclasses.replace(good(), userns={"uidmap": "0 0 4294967295", "gidmap": "0 0 4294967295"},
                            userns_status=status())
    failed_with(o, "user namespace", "uid_map maps root to the host's root")


def test_user_namespace_fails_when_the_host_sees_another_uid() -> None:
    failed_with(dataclasses.replace(good(), userns_status=status(Gid="100000\t100000\t100000\t100000")),
                "user namespace", "Uid is 0, not 100000")


def test_user_namespace_without_subuid_ranges_is_skipped_not_failed() -> None:
    o = dataclasses.replace(good(), userns={}, userns_skip="/etc/subuid has no range of at least 65536 ids")
    r = row(o, "user namespace")
    assert r.result == "skipped: /etc/subuid has no range of at least 65536 ids"
    assert verify.failed(verify.decide(o)) == []


# ---------------------------------------------------------------- what was not observed

def test_a_container_that_did_not_start_fails_every_claim_it_had_to_prove() -> None:
    why = 'the ns container did not start: exec: "sh": executable file not found in $PATH; exit 127'
    o = dataclasses.replace(good(), ns={}, ns_error=why, ctr_ns={}, ctr_status="", ctr_cgroup="")
    rows = {r.claim: r for r in verify.decide(o)}
    for claim in ("PID namespace", "mount namespace", "capabilities", "seccomp", "/dev"):
        assert rows[claim].result == f"FAILED: not observed: {why}"
    assert rows["memory limit"].result == "ok"


@pytest.mark.parametrize("claim, sections", [
    ("capabilities", {"status": "CapEff:\tzz\n"}),
    ("PID namespace", {"procs": "garbage ) x"}),
    ("/dev", {"devstat": "/dev/null|character special file|zz:yy"}),
])
def test_garbled_output_fails_the_claim_instead_of_crashing(claim: str, sections: dict[str, str]) -> None:
    assert row(with_ns(good(), **sections), claim).result.startswith("FAILED")


# ---------------------------------------------------------------- parsing and output

def test_sections_split_on_marker_lines_only() -> None:
    text = "@@pid1\nsh\0-c\0echo @@procs; cat\n@@ready\0\n@@procs\n1 (sh) S 0\n@@end\n"
    found = verify.sections(text)
    assert found == {"pid1": "sh\0-c\0echo @@procs; cat\n@@ready\0", "procs": "1 (sh) S 0", "end": ""}


def test_no_script_line_looks_like_a_section_marker() -> None:
    for script in (verify.ns_script(MASKED_PATHS), verify.limits_script(), verify.userns_script()):
        assert not [line for line in script.splitlines() if line.startswith(verify.MARK)]


def test_the_ns_script_stats_exactly_the_masked_files_it_is_given() -> None:
    script = verify.ns_script(("/proc/keys", "/proc/timer_list"))
    assert "stat -c '%n|%F|%t:%T' /proc/keys /proc/timer_list 2>&1" in script


def test_the_table_has_a_row_per_claim_and_fits_the_width() -> None:
    rows = verify.decide(dataclasses.replace(good(), limits_exit=0, limits_oom=False))
    text = verify.table(rows, width=100)
    assert text.splitlines()[0].split() == ["CLAIM", "HOW", "IT", "WAS", "CHECKED", "RESULT"]
    for claim in verify.CLAIMS:
        assert any(line.startswith(claim + "  ") for line in text.splitlines()), claim
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "FAILED: the hog exited 0" in " ".join(text.split())
