"""oci/seccomp.py: a spec's linux.seccomp, validated as untrusted input and compiled by libseccomp.

No root: compiling is plain library work in this process. Installing is only faked here (the kernel
side is tests/integration/test_oci_seccomp.py).
"""

from __future__ import annotations

import struct
import subprocess
import sys
from typing import Any

import pytest

from pycontain import syscalls
from pycontain.oci import seccomp
from pycontain.oci import SpecError

BPF_RET_K = 0x06  # BPF_RET | BPF_K: "return the constant k", where a filter's verdicts live
ERRNO = 0x00050000
ALLOW = 0x7FFF0000


def podman_like() -> dict[str, Any]:
    """The shape of podman's default profile: ENOSYS by default, three x86 ABIs, an allow list, errno
    rules, and argument comparisons (personality)."""
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 38,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["read", "write", "openat", "close", "execve", "exit_group", "mmap", "brk", "futex",
                       "socketcall", "not_a_syscall"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 4294967295, "op": "SCMP_CMP_EQ"}]},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["kexec_load", "swapon", "vm86"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["bpf"], "action": "SCMP_ACT_ERRNO"},
        ],
    }


def returns(bpf: bytes) -> set[int]:
    """Every constant the program can return (the k of each BPF_RET|BPF_K instruction)."""
    found = set()
    for code, _jt, _jf, k in struct.iter_unpack("=HBBI", bpf):
        if code == BPF_RET_K:
            found.add(k)
    return found


def rules(*calls: dict[str, Any]) -> dict[str, Any]:
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": list(calls)}


def arg(**fields: Any) -> dict[str, Any]:
    return rules({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "args": [dict({"index": 0, "value": 1,
                                                                               "op": "SCMP_CMP_EQ"}, **fields)]})


def test_a_podman_like_profile_compiles_to_whole_instructions() -> None:
    bpf = seccomp.compile(podman_like())
    assert bpf and len(bpf) % 8 == 0
    verdicts = returns(bpf)
    assert ERRNO | 38 in verdicts  # defaultErrnoRet
    assert ERRNO | 1 in verdicts  # errnoRet, and EPERM where it is absent (bpf)
    assert ALLOW in verdicts


def test_each_architecture_adds_its_own_code() -> None:
    one = seccomp.compile(dict(podman_like(), architectures=["SCMP_ARCH_X86_64"]))
    three = seccomp.compile(podman_like())
    assert len(three) > len(one)


def test_unknown_syscall_names_are_skipped() -> None:
    base = {"defaultAction": "SCMP_ACT_ALLOW"}
    unknown = dict(base, syscalls=[{"names": ["no_such_call", "nor_this"], "action": "SCMP_ACT_KILL"}])
    assert seccomp.compile(unknown) == seccomp.compile(base)


def test_a_rule_with_the_default_action_is_skipped() -> None:
    base = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38}
    same = dict(base, syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}])
    assert seccomp.compile(same) == seccomp.compile(base)
    other = dict(base, syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}])
    assert ERRNO | 1 in returns(seccomp.compile(other))


def test_errno_defaults_to_eperm() -> None:
    bpf = seccomp.compile(rules({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}))
    assert returns(bpf) == {ALLOW, ERRNO | 1, 0}  # 0: KILL for a foreign architecture (libseccomp's default)


def test_two_tests_of_one_argument_compile() -> None:
    # libseccomp cannot AND them in one rule: one rule per comparison, as runc does.
    rule = {"names": ["fchdir"], "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 0, "value": 5, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 7, "op": "SCMP_CMP_EQ"}]}
    assert len(seccomp.compile({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule]})) % 8 == 0


def test_every_action_and_operator_compiles() -> None:
    ops = list(seccomp.OPS)
    calls = [{"names": [name], "action": action, "args": [{"index": 1, "value": 8, "valueTwo": 8, "op": op}]}
             for name, action, op in zip(["mkdir", "rmdir", "chdir", "fchdir", "chmod", "fchmod", "umask"],
                                         ["SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                                          "SCMP_ACT_TRAP", "SCMP_ACT_TRACE", "SCMP_ACT_LOG", "SCMP_ACT_ERRNO"],
                                         ops)]
    flags = list(seccomp.FLAGS)
    assert len(seccomp.compile({"defaultAction": "SCMP_ACT_ALLOW", "flags": flags, "syscalls": calls})) % 8 == 0


def test_arches_this_libseccomp_may_not_know_are_not_errors() -> None:
    spec = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": sorted(seccomp.ARCHES)}
    assert len(seccomp.compile(spec)) % 8 == 0


BAD = [
    ("not an object", [], "linux.seccomp: must be an object"),
    ("no default action", {}, "linux.seccomp.defaultAction: must be a string"),
    ("unknown default", {"defaultAction": "SCMP_ACT_MAYBE"},
     "linux.seccomp.defaultAction: unknown action 'SCMP_ACT_MAYBE'"),
    ("notify default", {"defaultAction": "SCMP_ACT_NOTIFY"}, "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY needs"),
    ("listener", {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"},
     "linux.seccomp.listenerPath: seccomp notification agents are not supported"),
    ("errno on allow", {"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1},
     "linux.seccomp.defaultErrnoRet: only SCMP_ACT_ERRNO and SCMP_ACT_TRACE take one"),
    ("errno too big", {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 65536},
     "linux.seccomp.defaultErrnoRet: 65536 is out of range"),
    ("arch", {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_Z80"]},
     "linux.seccomp.architectures[1]: unknown architecture 'SCMP_ARCH_Z80'"),
    ("arch type", {"defaultAction": "SCMP_ACT_ALLOW", "architectures": "SCMP_ARCH_X86_64"},
     "linux.seccomp.architectures: must be an array"),
    ("flag", {"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_NEW_LISTENER"]},
     "linux.seccomp.flags[0]: unsupported flag 'SECCOMP_FILTER_FLAG_NEW_LISTENER'"),
    ("syscalls type", {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {"names": ["mkdir"]}},
     "linux.seccomp.syscalls: must be an array"),
    ("rule type", rules("mkdir"), "linux.seccomp.syscalls[0]: must be an object"),
    ("action", rules({"names": ["read"], "action": "SCMP_ACT_ALLOW"}, {"names": ["mkdir"], "action": "X"}),
     "linux.seccomp.syscalls[1].action: unknown action 'X'"),
    ("notify rule", rules({"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}),
     "linux.seccomp.syscalls[0].action: SCMP_ACT_NOTIFY needs a seccomp notification agent"),
    ("no names", rules({"names": [], "action": "SCMP_ACT_ERRNO"}), "linux.seccomp.syscalls[0].names: must list"),
    ("name type", rules({"names": ["mkdir", 83], "action": "SCMP_ACT_ERRNO"}),
     "linux.seccomp.syscalls[0].names[1]: must be a syscall name"),
    ("NUL in a name", rules({"names": ["mk\0dir"], "action": "SCMP_ACT_ERRNO"}),
     "linux.seccomp.syscalls[0].names[0]: must be a syscall name"),
    ("errnoRet on kill", rules({"names": ["mkdir"], "action": "SCMP_ACT_KILL", "errnoRet": 1}),
     "linux.seccomp.syscalls[0].errnoRet: only SCMP_ACT_ERRNO"),
    ("errnoRet bool", rules({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": True}),
     "linux.seccomp.syscalls[0].errnoRet: must be an integer"),
    ("arg index", arg(index=6), "linux.seccomp.syscalls[0].args[0].index: 6 is out of range"),
    ("arg value", arg(value=-1), "linux.seccomp.syscalls[0].args[0].value: -1 is out of range"),
    ("arg value too big", arg(value=2**64), "linux.seccomp.syscalls[0].args[0].value: 18446744073709551616 is out"),
    ("valueTwo", arg(valueTwo="1"), "linux.seccomp.syscalls[0].args[0].valueTwo: must be an integer"),
    ("op", arg(op="EQ"), "linux.seccomp.syscalls[0].args[0].op: unknown operator 'EQ'"),
    ("op type", arg(op=4), "linux.seccomp.syscalls[0].args[0].op: must be a string"),
]


@pytest.mark.parametrize(("spec", "message"), [(spec, message) for _, spec, message in BAD],
                         ids=[name for name, _, _ in BAD])
def test_bad_profiles_are_one_line_errors_naming_the_field(spec: Any, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        seccomp.compile(spec)
    text = str(caught.value)
    assert text.startswith("config.json: " + message), text
    assert "\n" not in text


class FakeKernel:
    """Records pc_seccomp_set_filter calls instead of making them."""

    errno = 0

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, int, int]] = []

    def pc_seccomp_set_filter(self, prog: bytes, length: int, flags: int) -> int:
        self.calls.append((prog, length, flags))
        return 0


def test_install_passes_the_program_and_flag_bits() -> None:
    bpf = seccomp.compile(podman_like())
    fake = FakeKernel()
    previous = syscalls.install(fake)
    try:
        seccomp.install(bpf)
        seccomp.install(bpf, ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"])
    finally:
        syscalls.install(previous)
    assert fake.calls == [(bpf, len(bpf) // 8, 0), (bpf, len(bpf) // 8, 1 | 2 | 4)]


def test_libseccomp_is_loaded_only_by_compile() -> None:
    # The extension is loaded on every start: it must not pull libseccomp in with it.
    script = ("import pycontain._native, pycontain.oci.seccomp as s\n"
              "maps = lambda: 'libseccomp' in open('/proc/self/maps').read()\n"
              "before = maps()\n"
              "s.compile({'defaultAction': 'SCMP_ACT_ALLOW'})\n"
              "print(before, maps())\n")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "True"]
