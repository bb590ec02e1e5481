"""A spec's `linux.seccomp`: validated, compiled to a BPF program in the parent, installed in the child.

    compile(seccomp) -> bytes     parent: the untrusted spec object -> struct sock_filter array, compiled
                                  by libseccomp (loaded with dlopen on first use, see syscalls.libseccomp)
    install(bpf, flags)           child, right before execve: one seccomp(2) call, no libseccomp, no imports

Why the split: libseccomp allocates, resolves names and writes files; none of that belongs in the child
between clone and execve (no imports, no locks there), and a bad profile must fail `create` with a
one-line message, not a half-started container. The child only hands finished bytes to the kernel.

Semantics follow runc where the spec leaves room: syscall names this libseccomp does not know are
skipped (profiles list syscalls of every architecture and kernel version), a rule whose action is the
default action is skipped (libseccomp refuses it and it changes nothing), and a rule comparing the same
argument twice is added as one rule per comparison (libseccomp cannot AND two tests of one argument).
"""

from __future__ import annotations

import os

from pycontain import syscalls
from pycontain.oci.validate import array, field_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# libseccomp's SCMP_ACT_* are the kernel's SECCOMP_RET_* values (csrc/syscalls.c asserts them at build
# time); ERRNO and TRACE carry 16 bits of data (errnoRet) in the low half.
ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000,  # = KILL_THREAD
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
}
WITH_ERRNO = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")  # the actions errnoRet applies to (spec: others fail)
EPERM = 1  # the spec's default errnoRet
# libseccomp's enum scmp_compare (also asserted in csrc/syscalls.c).
OPS = {
    "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7,
}
# <linux/seccomp.h> seccomp(2) flags a spec may ask for. NEW_LISTENER (a notification agent) and
# WAIT_KILLABLE_RECV (which only matters with one) are refused along with SCMP_ACT_NOTIFY.
FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,  # log every action but ALLOW
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,  # keep speculative store bypass mitigation off
}
# The spec's architecture names; libseccomp's own name is the lower-cased rest ("SCMP_ARCH_X86_64" ->
# "x86_64"). A name in this list that this machine's libseccomp does not know, or of the other byte
# order, is skipped (csrc pc_scmp_arch_add): a profile written for several machines may name them, and
# no process here can make their syscalls.
ARCHES = frozenset(f"SCMP_ARCH_{a}" for a in (
    "X86", "X86_64", "X32", "ARM", "AARCH64", "LOONGARCH64", "M68K", "MIPS", "MIPS64", "MIPS64N32",
    "MIPSEL", "MIPSEL64", "MIPSEL64N32", "PPC", "PPC64", "PPC64LE", "S390", "S390X", "PARISC", "PARISC64",
    "RISCV64", "SH", "SHEB"))
MAX_ARGS = 6  # syscall arguments 0..5
MAX_INSNS = 4096  # BPF_MAXINSNS: the kernel refuses a longer program
INSN_SIZE = 8  # sizeof(struct sock_filter)
FIELD = "linux.seccomp"

# A rule: (field for messages, syscall names, action value, comparisons as (index, op, a, b)).
Rule = tuple[str, list[str], int, list[tuple[int, int, int, int]]]


def _action(obj: dict[str, Any], field: str, action_key: str, errno_key: str) -> int:
    """The action value of obj[action_key], with obj[errno_key] (default EPERM) in its data."""
    name = obj.get(action_key)
    if not isinstance(name, str):
        raise field_error(f"{field}.{action_key}", "must be a string naming an action (SCMP_ACT_...)")
    if name == "SCMP_ACT_NOTIFY":
        raise field_error(f"{field}.{action_key}", "SCMP_ACT_NOTIFY needs a seccomp notification agent, "
                    "which pycontain-oci does not support")
    if name not in ACTIONS:
        raise field_error(f"{field}.{action_key}", f"unknown action {name!r}")
    errno_ret = obj.get(errno_key)
    if errno_ret is None:
        return ACTIONS[name] | (EPERM if name in WITH_ERRNO else 0)
    if name not in WITH_ERRNO:
        raise field_error(f"{field}.{errno_key}", f"only SCMP_ACT_ERRNO and SCMP_ACT_TRACE take one, not {name}")
    return ACTIONS[name] | _uint(errno_ret, f"{field}.{errno_key}", 0xFFFF)


def _uint(value: Any, field: str, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise field_error(field, "must be an integer")
    if not 0 <= value <= high:
        raise field_error(field, f"{value} is out of range (0..{high})")
    return value


def _names(value: Any, field: str, what: str) -> list[str]:
    items = array(value, field)
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item or "\0" in item:
            raise field_error(f"{field}[{i}]", f"must be a {what} name")
    return items


def _args(value: Any, field: str) -> list[tuple[int, int, int, int]]:
    out = []
    for i, arg in enumerate(array(value, field)):
        where = f"{field}[{i}]"
        if not isinstance(arg, dict):
            raise field_error(where, "must be an object")
        index = _uint(arg.get("index"), f"{where}.index", MAX_ARGS - 1)
        op = arg.get("op")
        if op not in OPS:
            raise field_error(f"{where}.op", f"unknown operator {op!r}" if isinstance(op, str)
                        else "must be a string naming an operator (SCMP_CMP_...)")
        a = _uint(arg.get("value"), f"{where}.value", 2**64 - 1)
        b = _uint(arg.get("valueTwo", 0), f"{where}.valueTwo", 2**64 - 1)
        out.append((index, OPS[op], a, b))
    return out


def check(seccomp: Any) -> tuple[int, list[str], list[str], list[Rule]]:
    """Validate the untrusted object: (default action, arch names, flag names, rules), or SpecError."""
    if not isinstance(seccomp, dict):
        raise field_error(FIELD, "must be an object")
    if seccomp.get("listenerPath"):
        raise field_error(f"{FIELD}.listenerPath", "seccomp notification agents are not supported by pycontain-oci")
    default = _action(seccomp, FIELD, "defaultAction", "defaultErrnoRet")
    arches = _names(seccomp.get("architectures"), f"{FIELD}.architectures", "architecture")
    for i, arch in enumerate(arches):
        if arch not in ARCHES:
            raise field_error(f"{FIELD}.architectures[{i}]", f"unknown architecture {arch!r}")
    flags = _names(seccomp.get("flags"), f"{FIELD}.flags", "flag")
    for i, flag in enumerate(flags):
        if flag not in FLAGS:
            raise field_error(f"{FIELD}.flags[{i}]", f"unsupported flag {flag!r} (supported: {', '.join(FLAGS)})")
    rules: list[Rule] = []
    for i, call in enumerate(array(seccomp.get("syscalls"), f"{FIELD}.syscalls")):
        where = f"{FIELD}.syscalls[{i}]"
        if not isinstance(call, dict):
            raise field_error(where, "must be an object")
        names = _names(call.get("names"), f"{where}.names", "syscall")
        if not names:
            raise field_error(f"{where}.names", "must list at least one syscall")
        action = _action(call, where, "action", "errnoRet")
        rules.append((where, names, action, _args(call.get("args"), f"{where}.args")))
    return default, arches, flags, rules


def compile(seccomp: dict[str, Any]) -> bytes:
    """The spec's linux.seccomp as a BPF program (struct sock_filter array) for install()."""
    default, arches, _, rules = check(seccomp)
    try:
        lib = syscalls.libseccomp()
    except OSError as e:
        raise field_error(FIELD, e.strerror or str(e)) from None
    ctx = lib.pc_scmp_init(default)
    if not ctx:
        raise field_error(f"{FIELD}.defaultAction", "libseccomp refused it (not supported by this kernel?)")
    try:
        for i, arch in enumerate(arches):
            rc = lib.pc_scmp_arch_add(ctx, arch.removeprefix("SCMP_ARCH_").lower().encode())
            if rc < 0:
                raise field_error(f"{FIELD}.architectures[{i}]", f"libseccomp refused {arch}: {os.strerror(-rc)}")
        for where, names, action, args in rules:
            if action == default:
                continue  # changes nothing, and libseccomp refuses it
            # Two tests of one argument cannot be ANDed in one libseccomp rule: one rule each (as runc).
            indexes = [a[0] for a in args]
            groups = [[a] for a in args] if len(set(indexes)) < len(indexes) else [args]
            for name in names:
                nr = lib.pc_scmp_syscall(name.encode())
                if nr == -1:
                    continue  # unknown to this libseccomp: not a syscall this machine can make
                for group in groups:
                    flat = [v for cmp in group for v in cmp]
                    rc = lib.pc_scmp_rule_add(ctx, action, nr, len(group), flat)
                    if rc < 0:
                        raise field_error(where, f"libseccomp refused the rule for {name!r}: {os.strerror(-rc)}")
        return _export(lib, ctx)
    finally:
        lib.pc_scmp_release(ctx)


def _export(lib: Any, ctx: Any) -> bytes:
    fd = os.memfd_create("pycontain-seccomp", os.MFD_CLOEXEC)
    try:
        rc = lib.pc_scmp_export_bpf(ctx, fd)
        if rc < 0:
            raise field_error(FIELD, f"libseccomp could not export the filter: {os.strerror(-rc)}")
        size = os.fstat(fd).st_size
        bpf = os.pread(fd, size, 0)
    finally:
        os.close(fd)
    if not bpf or len(bpf) % INSN_SIZE or len(bpf) != size:
        raise field_error(FIELD, f"libseccomp exported a malformed filter ({len(bpf)} bytes)")
    if len(bpf) // INSN_SIZE > MAX_INSNS:
        raise field_error(FIELD, f"the filter compiles to {len(bpf) // INSN_SIZE} instructions, over the kernel's "
                    f"limit of {MAX_INSNS}")
    return bpf


def install(bpf: bytes, flags: list[str] | None = None) -> None:
    """In the child, right before execve: load `bpf` (from compile()) with the spec's flags. Needs
    no_new_privs set first, or CAP_SYS_ADMIN still held. Every syscall from here to the container's
    program must be one the filter allows."""
    bits = 0
    for flag in flags or ():
        bits |= FLAGS[flag]  # compile() validated the names
    syscalls.seccomp_set_filter(bpf, bits)
