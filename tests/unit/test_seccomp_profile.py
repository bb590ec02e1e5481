"""oci/profile.py and the compile cache of oci/seccomp.py: the default profile as data, resolve() for a
container's capabilities, architecture and kernel, load() of bad files, and compile_cached().

No root needed: resolving is plain data work, compiling is library work in this process. What the kernel
does with the result is tests/integration/test_seccomp_default.py.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest

from pycontain import syscalls
from pycontain.errors import PycontainError, UsageError
from pycontain.oci import CAPABILITIES, DEFAULT_CAPS, SpecError, profile, seccomp

PODMAN_PROFILE = Path("/usr/share/containers/seccomp.json")
SYS_ADMIN_ONLY = {"mount", "umount2", "pivot_root", "unshare", "setns", "sethostname", "setdomainname",
                  "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr"}
ALL_CAPS = set(CAPABILITIES)


def resolved(*extra: str, profile_: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    return profile.resolve(profile_ or profile.default(), [*DEFAULT_CAPS, *extra], **kw)


def allowed_unconditionally(obj: dict[str, Any]) -> set[str]:
    """Names of ALLOW rules without argument tests."""
    return {n for r in obj["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args") for n in r["names"]}


def rules_for(obj: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [r for r in obj["syscalls"] if name in r["names"]]


def passes(obj: dict[str, Any], name: str, *args: int) -> str | None:
    """The action the resolved rules give a call with these (64-bit) arguments, as libseccomp would
    (any matching rule; every test of a rule must hold), or None for the default action."""
    for rule in rules_for(obj, name):
        if all(_compare(c, args[c["index"]] if c["index"] < len(args) else 0) for c in rule.get("args", ())):
            return str(rule["action"])
    return None


def _compare(cmp: dict[str, Any], arg: int) -> bool:
    value, two = cmp["value"], cmp.get("valueTwo", 0)
    return {
        "SCMP_CMP_EQ": arg == value, "SCMP_CMP_NE": arg != value, "SCMP_CMP_LT": arg < value,
        "SCMP_CMP_LE": arg <= value, "SCMP_CMP_GT": arg > value, "SCMP_CMP_GE": arg >= value,
        "SCMP_CMP_MASKED_EQ": arg & value == two,
    }[cmp["op"]]


# ---------------------------------------------------------------- the default profile

def test_the_default_profile_passes_its_own_checks_and_compiles() -> None:
    profile.check(profile.default(), "default")
    bpf = seccomp.compile(resolved())
    assert bpf and len(bpf) % 8 == 0 and len(bpf) // 8 <= seccomp.MAX_INSNS


def test_default_caps_resolve_to_plain_rules() -> None:
    obj = resolved(arch="x86_64", kernel=(6, 1, 0))
    assert obj["defaultAction"] == "SCMP_ACT_ERRNO" and obj["defaultErrnoRet"] == 1
    assert obj["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    for rule in obj["syscalls"]:
        assert set(rule) <= {"names", "action", "errnoRet", "args"}, rule  # no conditions left
    # All the plain calls, 5 personality values, 6 socket family ranges, arch_prctl, ptrace (kernel >= 4.8),
    # clone without namespaces, clone3's ENOSYS, chroot (SYS_CHROOT).
    assert len(obj["syscalls"]) == 17
    seccomp.check(obj)  # what pycontain-oci checks a bundle's linux.seccomp with


def test_sys_admin_opens_mount_unshare_and_namespaced_clone_only_when_held() -> None:
    plain, admin = resolved(), resolved("SYS_ADMIN")
    assert not SYS_ADMIN_ONLY & {n for r in plain["syscalls"] for n in r["names"]}
    assert SYS_ADMIN_ONLY <= allowed_unconditionally(admin)
    # clone: without SYS_ADMIN only without namespace flags; clone3 fails with ENOSYS (libc falls back).
    assert passes(plain, "clone", 0x11 | 0x01000000) == "SCMP_ACT_ALLOW"  # SIGCHLD|CLONE_CHILD_SETTID: fork
    for flag in (0x20000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000):
        assert passes(plain, "clone", 0x11 | flag) is None, hex(flag)
        assert passes(admin, "clone", 0x11 | flag) == "SCMP_ACT_ALLOW", hex(flag)
    assert rules_for(plain, "clone3") == [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    assert "clone3" in allowed_unconditionally(admin)
    assert len(rules_for(admin, "clone")) == 1  # the unconditional one: the masked rule is gone


def test_perfmon_opens_perf_event_open_once_and_sys_admin_too() -> None:
    assert not rules_for(resolved(), "perf_event_open")
    for caps in (("PERFMON",), ("SYS_ADMIN",), ("PERFMON", "SYS_ADMIN")):
        assert len(rules_for(resolved(*caps), "perf_event_open")) == 1, caps


@pytest.mark.parametrize(("cap", "names"), [
    ("DAC_READ_SEARCH", {"open_by_handle_at"}),
    ("SYS_BOOT", {"reboot"}),
    ("SYS_TIME", {"settimeofday", "clock_settime", "clock_settime64"}),
    ("SYS_PTRACE", {"kcmp", "pidfd_getfd", "process_madvise"}),
    ("SYS_NICE", {"mbind", "set_mempolicy"}),
])
def test_each_capability_opens_its_calls(cap: str, names: set[str]) -> None:
    assert not names & {n for r in resolved()["syscalls"] for n in r["names"]}
    assert names <= allowed_unconditionally(resolved(cap))
    assert names <= allowed_unconditionally(resolved(f"CAP_{cap.lower()}"))  # spelt either way


def test_chroot_follows_the_default_caps() -> None:
    assert "chroot" in allowed_unconditionally(resolved())  # SYS_CHROOT is a default capability
    no_chroot = profile.resolve(profile.default(), [c for c in DEFAULT_CAPS if c != "CAP_SYS_CHROOT"])
    assert "chroot" not in allowed_unconditionally(no_chroot)


def test_never_allowed_whatever_the_capabilities() -> None:
    everything = profile.resolve(profile.default(), ALL_CAPS)
    named = {n for r in everything["syscalls"] for n in r["names"]}
    for name in ("keyctl", "add_key", "request_key", "bpf", "userfaultfd", "io_uring_setup", "io_uring_enter",
                 "io_uring_register", "kexec_load", "kexec_file_load", "init_module", "finit_module",
                 "delete_module", "acct", "swapon", "swapoff", "quotactl", "syslog", "vhangup", "lookup_dcookie",
                 "nfsservctl", "socketcall"):
        assert name in profile.NEVER, name
        assert name not in named, name
    assert not set(profile.NEVER) & named


def test_personality_only_harmless_values() -> None:
    obj = resolved()
    for value in (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF):
        assert passes(obj, "personality", value) == "SCMP_ACT_ALLOW", hex(value)
    for value in (0x40000, 0x0040008, 0x400000, 0x1, 0x1_00000000):  # ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, ...
        assert passes(obj, "personality", value) is None, hex(value)


def test_socket_every_family_but_alg_and_vsock_even_with_high_bits_set() -> None:
    obj = resolved()
    allowed = {f for f in range(200) if passes(obj, "socket", f) == "SCMP_ACT_ALLOW"}
    assert allowed == set(range(64)) - {38, 40}
    # The kernel reads the family as a 32-bit int: upper bits must not smuggle AF_VSOCK or AF_ALG past.
    for family in (40, 38, 2):
        for high in (1 << 32, 0xFFFFFFFF << 32):
            assert passes(obj, "socket", high | family) is None, hex(high | family)
    assert passes(resolved(*ALL_CAPS), "socket", 40) is None  # no capability opens them


def test_arch_specific_rules_and_arch_map_follow_the_architecture() -> None:
    x86 = resolved(arch="x86_64")
    assert resolved(arch="amd64") == x86 == resolved(arch="SCMP_ARCH_X86_64")
    assert "arch_prctl" in allowed_unconditionally(x86) and "set_tls" not in allowed_unconditionally(x86)
    arm = resolved(arch="aarch64")
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert {"set_tls", "cacheflush"} <= allowed_unconditionally(arm) and "arch_prctl" not in str(arm)
    s390 = resolved(arch="s390x")
    assert s390["architectures"] == ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"]
    assert [r["args"][0]["index"] for r in rules_for(s390, "clone")] == [1]  # flags are the 2nd argument there
    assert [r["args"][0]["index"] for r in rules_for(x86, "clone")] == [0]
    assert "architectures" not in resolved(arch="mips64")  # no archMap entry: libseccomp's native default
    with pytest.raises(UsageError, match="unknown architecture 'vax'"):
        resolved(arch="vax")


def test_includes_and_excludes_on_arch_caps_and_kernel() -> None:
    def rule(name: str, **cond: Any) -> dict[str, Any]:
        return {"names": [name], "action": "SCMP_ACT_ALLOW", **cond}

    prof = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"], "syscalls": [
        rule("a", includes={"arches": ["amd64"]}),
        rule("b", excludes={"arches": ["x86_64"]}),
        rule("c", includes={"arches": ["arm64", "x86"]}),  # a sub-architecture is not the machine's
        rule("d", includes={"minKernel": "5.10"}),
        rule("e", excludes={"minKernel": "5.10"}),
        rule("f", includes={"caps": ["CAP_SYS_ADMIN", "NET_ADMIN"]}),  # all of them
        rule("g", excludes={"caps": ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]}),  # any of them
        rule("h", includes={"caps": ["CAP_CHOWN"], "minKernel": "4.0", "arches": ["amd64"]}, excludes={}),
        rule("i", includes={"minKernel": "5.10.3"}),
    ]}

    def names(caps: list[str], kernel: tuple[int, int, int], arch: str = "x86_64") -> str:
        obj = profile.resolve(prof, caps, arch, kernel=kernel)
        return "".join(r["names"][0] for r in obj["syscalls"])

    assert names(["CHOWN"], (5, 10, 0)) == "adgh"
    assert names(["CHOWN"], (5, 9, 99)) == "aegh"
    assert names(["CHOWN"], (5, 10, 3)) == "adghi"
    assert names(["CHOWN"], (5, 10, 0), "aarch64") == "bcdg"
    assert names(["SYS_ADMIN"], (6, 1, 0)) == "adi"
    assert names(["SYS_ADMIN", "NET_ADMIN", "CHOWN"], (6, 1, 0)) == "adfhi"


def test_ptrace_from_kernel_4_8_or_with_sys_ptrace() -> None:
    modern = resolved(kernel=(4, 8, 0))
    assert {"ptrace", "process_vm_readv"} <= allowed_unconditionally(modern)
    assert len(rules_for(resolved("SYS_PTRACE", kernel=(6, 1, 0)), "ptrace")) == 1
    assert not rules_for(resolved(kernel=(4, 7, 9)), "ptrace")
    assert "ptrace" in allowed_unconditionally(resolved("SYS_PTRACE", kernel=(4, 7, 9)))


def test_resolve_is_deterministic_and_independent_of_caps_order() -> None:
    a = resolved("SYS_ADMIN", "PERFMON")
    b = profile.resolve(profile.default(), ["CAP_PERFMON", *reversed(DEFAULT_CAPS), "SYS_ADMIN"])
    c = profile.resolve(profile.default(), {"PERFMON", "SYS_ADMIN", *DEFAULT_CAPS})
    assert json.dumps(a) == json.dumps(b) == json.dumps(c)
    assert seccomp.cache_key(a) == seccomp.cache_key(c) != seccomp.cache_key(resolved())


def test_resolve_does_not_share_lists_with_the_profile() -> None:
    prof = profile.default()
    obj = profile.resolve(prof, DEFAULT_CAPS)
    obj["syscalls"][0]["names"].append("keyctl")
    obj["architectures"].append("SCMP_ARCH_ARM")
    assert "keyctl" not in prof["syscalls"][0]["names"]
    assert profile.resolve(prof, DEFAULT_CAPS) == resolved()


def test_every_name_is_known_to_libseccomp_or_listed_as_newer() -> None:
    lib = syscalls.libseccomp()
    prof = profile.default()
    names = {n for r in prof["syscalls"] for n in r["names"]} | set(profile.NEVER)
    unknown = {n for n in names if lib.pc_scmp_syscall(n.encode()) == -1}
    assert unknown <= set(profile.NEWER), f"typos, or add them to profile.NEWER: {sorted(unknown - set(profile.NEWER))}"
    assert set(profile.NEWER) <= names
    assert len(profile.ALWAYS) == len(set(profile.ALWAYS)), "a name listed twice"


def test_what_ordinary_programs_need_is_allowed() -> None:
    always = allowed_unconditionally(resolved())
    needed = {"rseq", "futex", "statx", "faccessat2", "openat2", "close_range", "pidfd_open", "pidfd_send_signal",
              "epoll_pwait2", "memfd_create", "getrandom", "newfstatat", "execveat", "set_robust_list", "prlimit64",
              "arch_prctl", "set_tid_address", "clock_nanosleep", "wait4", "pipe2", "dup3", "fchmodat2", "vfork",
              "sendfile", "copy_file_range", "capset", "setgroups", "setresuid", "prctl", "mknodat", "fchownat"}
    assert needed <= always, sorted(needed - always)


# ---------------------------------------------------------------- other profiles

@pytest.mark.skipif(not PODMAN_PROFILE.is_file(), reason=f"{PODMAN_PROFILE} is missing (podman is not installed: "
                    "scripts/install --test-deps installs it)")
def test_podmans_profile_loads_resolves_and_compiles() -> None:
    prof = profile.load(str(PODMAN_PROFILE))
    obj = profile.resolve(prof, DEFAULT_CAPS, "x86_64")
    assert obj["defaultErrnoRet"] == 38
    assert obj["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert all(set(r) <= {"names", "action", "errnoRet", "args"} for r in obj["syscalls"])  # no errno, comment
    names = {n for r in obj["syscalls"] for n in r["names"]}
    assert "open_by_handle_at" in names and "chroot" in names  # its errno rule, its SYS_CHROOT rule
    assert "bpf" in allowed_unconditionally(profile.resolve(prof, [*DEFAULT_CAPS, "SYS_ADMIN"]))
    assert "bpf" not in allowed_unconditionally(obj)
    seccomp.check(obj)
    assert len(seccomp.compile(obj)) % 8 == 0


def test_a_docker_style_profile_with_the_older_fields() -> None:
    # One `name` per rule (the older format), arches of the profile itself, caps without CAP_, flags.
    prof = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "architectures": ["SCMP_ARCH_X86_64"],
            "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"], "comment": "top-level keys nobody reads are fine",
            "syscalls": [{"name": "read", "action": "SCMP_ACT_ALLOW", "args": None},
                         {"names": ["write"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["chown"]},
                          "excludes": {}, "comment": ""}]}
    profile.check(prof, "inline")
    obj = profile.resolve(prof, DEFAULT_CAPS)
    assert obj == {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "architectures": ["SCMP_ARCH_X86_64"],
                   "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
                   "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                                {"names": ["write"], "action": "SCMP_ACT_ALLOW"}]}
    assert profile.resolve(prof, [])["syscalls"] == [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]


# ---------------------------------------------------------------- malformed profiles: one clear error each

OK_RULE = {"names": ["read"], "action": "SCMP_ACT_ALLOW"}


def with_rule(**fields: Any) -> dict[str, Any]:
    return {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [OK_RULE, OK_RULE, OK_RULE, dict(OK_RULE, **fields)]}


def with_arg(**fields: Any) -> dict[str, Any]:
    return with_rule(args=[dict({"index": 0, "op": "SCMP_CMP_EQ", "value": 1}, **fields)])


BAD_PROFILES: list[tuple[Any, str]] = [
    ([], "must be a JSON object"),
    ("SCMP_ACT_ALLOW", "must be a JSON object"),
    ({}, "defaultAction: must be a string naming an action"),
    ({"defaultAction": "SCMP_ACT_MAYBE"}, "defaultAction: unknown action 'SCMP_ACT_MAYBE'"),
    ({"defaultAction": "SCMP_ACT_NOTIFY"}, "defaultAction: SCMP_ACT_NOTIFY needs a seccomp notification agent"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}, "defaultErrnoRet: only SCMP_ACT_ERRNO"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": "1"}, "defaultErrnoRet: must be an integer"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}, "defaultErrnoRet: 70000 is out of range"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "architectures": "SCMP_ARCH_X86_64"},
     "architectures: must be a list of strings"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_VAX"]},
     "architectures[0]: unknown architecture 'SCMP_ARCH_VAX'"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
      "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}, "archMap: a profile has either architectures or archMap"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "archMap": {}}, "archMap: must be a list"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "archMap": [[]]}, "archMap[0]: must be an object"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "archMap": [{"architecture": 64}]}, "archMap[0].architecture: must be a"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                                                      "subArchitectures": ["x86"]}]},
     "archMap[0].subArchitectures[0]: unknown architecture 'x86'"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "flags": ["SECCOMP_FILTER_FLAG_NEW_LISTENER"]}, "flags[0]: unknown flag"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "listenerPath": "/run/agent.sock"}, "listenerPath: seccomp notification"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": {}}, "syscalls: must be a list"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [OK_RULE, "read"]}, "syscalls[1]: must be an object"),
    (with_rule(names="read"), "syscalls[3].names: must be a list of strings"),
    (with_rule(names=["read", 3]), "syscalls[3].names: must be a list of strings"),
    (with_rule(names=["read", ""]), "syscalls[3].names: must be a list of strings"),
    (with_rule(names=[]), "syscalls[3].names: must list at least one syscall"),
    (with_rule(names=None), "syscalls[3].names: must list at least one syscall"),
    (with_rule(name="write"), "syscalls[3]: has both name and names"),
    (with_rule(names=None, name=["write"]), "syscalls[3].name: must be a syscall name"),
    (with_rule(action=None), "syscalls[3].action: must be a string naming an action"),
    (with_rule(action="SCMP_ACT_KILL", errnoRet=1), "syscalls[3].errnoRet: only SCMP_ACT_ERRNO"),
    (with_rule(action="SCMP_ACT_ERRNO", errnoRet=-1), "syscalls[3].errnoRet: -1 is out of range"),
    (with_rule(args={}), "syscalls[3].args: must be a list"),
    (with_rule(args=[1]), "syscalls[3].args[0]: must be an object"),
    (with_arg(index=6), "syscalls[3].args[0].index: 6 is out of range (0..5)"),
    (with_arg(index="0"), "syscalls[3].args[0].index: must be an integer"),
    (with_arg(op="SCMP_CMP_ABOUT"), "syscalls[3].args[0].op: unknown operator 'SCMP_CMP_ABOUT'"),
    (with_arg(op=None), "syscalls[3].args[0].op: must be a string naming an operator"),
    (with_arg(value=-1), "syscalls[3].args[0].value: -1 is out of range"),
    (with_arg(value=2**64), "syscalls[3].args[0].value: 18446744073709551616 is out of range"),
    (with_arg(value=1.5), "syscalls[3].args[0].value: must be an integer"),
    (with_arg(value=True), "syscalls[3].args[0].value: must be an integer"),
    (with_arg(valueTwo="0"), "syscalls[3].args[0].valueTwo: must be an integer"),
    (with_rule(includes=[]), "syscalls[3].includes: must be an object"),
    (with_rule(includes={"caps": "CAP_SYS_ADMIN"}), "syscalls[3].includes.caps: must be a list of strings"),
    (with_rule(excludes={"arches": [None]}), "syscalls[3].excludes.arches: must be a list of strings"),
    (with_rule(includes={"minKernel": "four.eight"}), 'syscalls[3].includes.minKernel: must be a kernel version'),
    (with_rule(excludes={"minKernel": 4.8}), "syscalls[3].excludes.minKernel: must be a kernel version"),
    (with_rule(includes={"minKernel": "4.8.1.2"}), "syscalls[3].includes.minKernel: must be a kernel version"),
]


@pytest.mark.parametrize(("content", "message"), BAD_PROFILES, ids=[m.split(":")[0] for _, m in BAD_PROFILES])
def test_a_malformed_profile_is_one_usage_error(tmp_path: Path, content: Any, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(UsageError) as err:
        profile.load(str(path))
    text = str(err.value)
    assert text.startswith(f"seccomp profile {path}: ") and message in text and "\n" not in text, text
    assert err.value.exit_code == 125
    # resolve() of the same object, not checked first, fails (if at all) the same way, never with a
    # TypeError or KeyError.
    try:
        profile.resolve(content, DEFAULT_CAPS)
    except UsageError as e:
        assert message in str(e), str(e)


@pytest.mark.parametrize(("data", "message"), [
    (b"{", "not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
    (b'{"defaultAction": "SCMP_ACT_ALLOW",}', "not valid JSON"),
    (b"", "not valid JSON"),
    (b'{"defaultAction": "\xff"}', "not UTF-8 text"),
    (b'{"defaultAction": "SCMP_ACT_ALLOW", "x": ' + b"9" * 5000 + b"}", "not usable JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "not usable JSON"),
    (b" " * (profile.MAX_PROFILE_BYTES + 1), "larger than 1 MiB"),
])
def test_a_file_that_is_not_a_profile_is_one_usage_error(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(data)
    with pytest.raises(UsageError, match="^seccomp profile .*bad.json: ") as err:
        profile.load(str(path))
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_files_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"nope.json: cannot open it: No such file or directory$"):
        profile.load(str(tmp_path / "nope.json"))
    with pytest.raises(UsageError, match=r": not a regular file$"):
        profile.load(str(tmp_path))
    os.mkfifo(tmp_path / "fifo")  # a FIFO without a writer must not hang load()
    with pytest.raises(UsageError, match=r"fifo: not a regular file$"):
        profile.load(str(tmp_path / "fifo"))


def test_a_good_file_loads_as_written(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(profile.default()))
    assert profile.load(str(path)) == profile.default()


# ---------------------------------------------------------------- the compile cache

BPF_RET = 0x06


def test_cache_hit_is_the_compiled_program_and_skips_libseccomp(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    obj, cache = resolved(), tmp_path / "cache"
    first = seccomp.compile_cached(obj, str(cache))
    assert first == seccomp.compile(obj)
    files = list(cache.iterdir())
    assert [f.name for f in files] == [seccomp.cache_key(obj) + ".bpf"]
    assert files[0].read_bytes() == first
    assert cache.stat().st_mode & 0o777 == 0o700 and files[0].stat().st_mode & 0o777 == 0o600

    def no_compile(_: Any) -> bytes:
        raise AssertionError("compiled although the program is cached")

    monkeypatch.setattr(seccomp, "compile", no_compile)
    assert seccomp.compile_cached(obj, str(cache)) == first
    assert seccomp.compile_cached(json.loads(json.dumps(obj)), str(cache)) == first  # equal object, same key


def test_another_filter_gets_another_file(tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    a = seccomp.compile_cached(resolved(), cache)
    b = seccomp.compile_cached(resolved("SYS_ADMIN"), cache)
    assert a != b and len(os.listdir(cache)) == 2
    assert seccomp.compile_cached(resolved(), cache) == a


def test_the_key_covers_the_compiler_and_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    obj = resolved()
    key = seccomp.cache_key(obj)
    assert key == seccomp.cache_key(resolved()) and len(key) == 64
    monkeypatch.setattr(seccomp, "COMPILER_VERSION", seccomp.COMPILER_VERSION + 1)
    assert seccomp.cache_key(obj) != key
    monkeypatch.undo()
    monkeypatch.setattr(seccomp, "_library_identity", lambda: "/lib/libseccomp.so.2.9.9:1:2:3:4")
    assert seccomp.cache_key(obj) != key
    monkeypatch.undo()
    assert "libseccomp.so.2" in seccomp._library_identity()  # found where syscalls.libseccomp loads it from


@pytest.mark.parametrize("damage", [
    b"",  # empty
    b"\x06\x00\x00\x00\x00\x00\xff\x7f"[:5],  # not a whole instruction
    b"\x15\x00\x00\x01\x00\x00\x00\x00",  # one whole instruction, but a jump: not a program's end
])
def test_a_damaged_cache_file_is_compiled_again(tmp_path: Path, damage: bytes) -> None:
    obj, cache = resolved(), tmp_path / "cache"
    good = seccomp.compile_cached(obj, str(cache))
    path = cache / (seccomp.cache_key(obj) + ".bpf")
    path.write_bytes(good[:-8] + damage if damage.startswith(b"\x15") else damage)
    assert seccomp.compile_cached(obj, str(cache)) == good
    assert path.read_bytes() == good  # replaced
    code, _, _, _ = struct.unpack_from("=HBBI", good, len(good) - 8)
    assert code & 0x07 == BPF_RET


def test_an_unsafe_cache_directory_is_refused(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    cache.chmod(0o777)
    with pytest.raises(PycontainError, match="writable by others .*refusing to use it"):
        seccomp.compile_cached(resolved(), str(cache))
    cache.chmod(0o770)
    with pytest.raises(PycontainError, match="writable by its group"):
        seccomp.compile_cached(resolved(), str(cache))
    cache.chmod(0o700)
    if os.geteuid() == 0:
        os.chown(cache, 1000, 1000)
        with pytest.raises(PycontainError, match="owned by uid 1000, not by uid 0"):
            seccomp.compile_cached(resolved(), str(cache))
        os.chown(cache, 0, 0)
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PycontainError, match="not a directory .*symbolic link"):
        seccomp.compile_cached(resolved(), str(tmp_path / "link"))
    (tmp_path / "file").write_text("")
    with pytest.raises(PycontainError, match="not a directory"):
        seccomp.compile_cached(resolved(), str(tmp_path / "file"))
    assert os.listdir(cache) == [] and os.listdir(tmp_path / "elsewhere") == []


def test_a_cache_that_cannot_be_written_only_costs_the_compile(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    obj = resolved()
    assert seccomp.compile_cached(obj, str(tmp_path / "missing-parent" / "cache")) == seccomp.compile(obj)
    real_open = os.open

    def full_disk(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        if flags & os.O_CREAT:
            raise OSError(28, "No space left on device")
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", full_disk)
    assert seccomp.compile_cached(obj, str(tmp_path / "other")) == seccomp.compile(obj)
    assert os.listdir(tmp_path / "other") == []


def test_no_cache_dir_is_a_plain_compile_and_a_bad_object_is_never_stored(tmp_path: Path) -> None:
    obj = resolved()
    assert seccomp.compile_cached(obj, None) == seccomp.compile(obj)
    bad = dict(obj, defaultAction="SCMP_ACT_MAYBE")
    for _ in range(2):
        with pytest.raises(SpecError, match="unknown action"):
            seccomp.compile_cached(bad, str(tmp_path / "cache"))
    assert os.listdir(tmp_path / "cache") == []
